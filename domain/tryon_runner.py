"""Running a try-on through the generator, one short step at a time, so a worker never sits waiting.

Each step claims the try-on with a lease, does one thing (submit, or check), saves where it got to
and asks to be called again. The database is the truth: a step lost with a killed worker or a Redis
outage is found again by ``reconcile`` once its lease has run out.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from domain import audit
from domain.changes import announce
from domain.errors import DependencyUnavailable, GenerationFailed
from domain.model import (
    TERMINAL,
    AuditEvent,
    GenerationRequest,
    JobState,
    TryOn,
    TryOnError,
    TryOnResult,
    TryOnStatus,
    UploadStatus,
)
from domain.objects import result_object_key
from domain.ports import (
    ChangeBoard,
    Clock,
    IdGenerator,
    ImageGenerator,
    ResultStorage,
    SourceUrlSigner,
    Topic,
    TryOnQueue,
    UnitOfWork,
)
from domain.retention import SOURCE_RETENTION_SECONDS, restart_retention

log = logging.getLogger(__name__)

SOURCE_GONE = "the selfie was deleted or expired; upload it again"


@dataclass(frozen=True)
class RunnerPolicy:
    max_attempts: int = 3
    image_url_ttl_seconds: int = 300
    start_margin_seconds: int = 30
    """fal must start before the signed URL has less than this left."""
    poll_seconds: float = 2.0
    attempt_timeout_seconds: int = 600
    lease_seconds: int = 60
    backoff_seconds: float = 2.0
    source_retention_seconds: int = SOURCE_RETENTION_SECONDS
    max_result_bytes: int = 20 * 1024 * 1024
    outage_retry_seconds: float = 5.0
    """A step cut short by an outage (database, storage, queue) is tried again this much later."""
    webhooks: bool = False
    """The generator calls back when a request finishes (PUBLIC_BASE_URL is set): polling is the fallback."""
    webhook_grace_seconds: float = 30.0
    """With webhooks, the first status check comes this long after submit; later ones back off."""
    max_poll_seconds: float = 120.0

    def poll_delay(self, elapsed: float) -> float:
        """Seconds until the next status check, ``elapsed`` seconds after submit. Without webhooks, every
        ``poll_seconds``; with them, first at the grace period, then at twice the time since submit
        (30 s, 60 s, 120 s, 240 s ... after submit), at most ``max_poll_seconds`` apart."""
        if not self.webhooks:
            return self.poll_seconds
        if elapsed < self.webhook_grace_seconds:
            return self.webhook_grace_seconds - elapsed
        return min(max(elapsed, self.poll_seconds), self.max_poll_seconds)


class TryOnRunner:
    def __init__(
        self,
        *,
        policy: RunnerPolicy,
        generator: ImageGenerator,
        signer: SourceUrlSigner,
        results: ResultStorage,
        unit_of_work: Callable[[], UnitOfWork],
        queue: TryOnQueue,
        changes: ChangeBoard,
        clock: Clock,
        ids: IdGenerator,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._policy = policy
        self._generator = generator
        self._signer = signer
        self._results = results
        self._unit_of_work = unit_of_work
        self._queue = queue
        self._changes = changes
        self._clock = clock
        self._ids = ids
        self._jitter = jitter

    def advance(self, tryon_id: str) -> None:
        """One step. A try-on someone else holds, or that is settled, is left alone.

        An outage (database, storage, queue) does not end the try-on: the step is put back to run again
        ``outage_retry_seconds`` later, and if even that cannot be recorded, the lease runs out and
        ``reconcile`` finds the try-on again."""
        now = self._clock.now()
        try:
            with self._unit_of_work() as uow:
                tryon = uow.tryons.claim(tryon_id, now, now + timedelta(seconds=self._policy.lease_seconds))
                uow.commit()
        except DependencyUnavailable as outage:
            self._retry_later(tryon_id, outage, release=False)
            return
        if tryon is None:
            self._come_back_if_notified(tryon_id)
            return
        if tryon.status in TERMINAL:
            return
        try:
            delay = self._submit(tryon, now) if tryon.submission is None else self._check(tryon, now)
            if delay is not None:
                self._queue.advance_in(tryon_id, delay)
        except DependencyUnavailable as outage:
            self._retry_later(tryon_id, outage, release=True)

    def _come_back_if_notified(self, tryon_id: str) -> None:
        """This step found the try-on held (or settled). If a webhook said its current request finished, the
        holder may have asked for the status just before and will wait a whole poll interval: come back
        shortly instead (each such step schedules at most one more, until the holder lets go)."""
        with suppress(DependencyUnavailable):
            with self._unit_of_work() as uow:
                current = uow.tryons.get(tryon_id)
            if current is None or current.status in TERMINAL or current.submission is None:
                return
            if current.notified_request_id == current.submission.request_id:
                self._queue.advance_in(tryon_id, self._policy.poll_seconds)

    def _retry_later(self, tryon_id: str, outage: DependencyUnavailable, *, release: bool) -> None:
        """Put a step an outage cut short back. ``release`` only when this step holds the lease."""
        delay = self._policy.outage_retry_seconds
        log.warning(
            "try-on step put back after an outage",
            extra={"tryon_id": tryon_id, "code": outage.code, "retry_in_seconds": delay},
        )
        if release:
            try:
                with self._unit_of_work() as uow:
                    current = uow.tryons.get(tryon_id)
                    if current is not None and current.status not in TERMINAL:
                        retry_at = self._clock.now() + timedelta(seconds=delay)
                        uow.tryons.update(replace(current, next_action_at=retry_at))
                    uow.commit()
            except DependencyUnavailable:
                return  # the lease runs out and the reconciler finds the try-on again
        with suppress(DependencyUnavailable):  # if the queue is down too, the reconciler re-queues it
            self._queue.advance_in(tryon_id, delay)

    def reconcile(self, limit: int = 200) -> int:
        """Ask again for every unsettled try-on whose next step is overdue and unheld; returns how many."""
        overdue = self._clock.now() - timedelta(seconds=self._policy.poll_seconds * 5)
        with self._unit_of_work() as uow:
            due = uow.tryons.due(overdue, limit)
        for tryon_id in due:
            self._queue.advance_soon(tryon_id)
        return len(due)

    def _submit(self, tryon: TryOn, now: datetime) -> float | None:
        attempt = tryon.attempts + 1
        with self._unit_of_work() as uow:
            upload = uow.uploads.get(tryon.upload_id)
        if upload is None or upload.status is not UploadStatus.VERIFIED or upload.stored is None:
            self._settle_failed(tryon, now, attempt, "source_expired", SOURCE_GONE)
            return None
        ttl = self._policy.image_url_ttl_seconds
        url = self._signer.presign_get(upload.stored.object_key, ttl)
        request = GenerationRequest(
            prompt=tryon.style_prompt,
            image_url=url,
            num_images=tryon.num_images,
            output_format=tryon.output_format,
            start_deadline_seconds=max(ttl - self._policy.start_margin_seconds, 1),
        )
        try:
            submission = self._generator.submit(request)
        except GenerationFailed as failure:
            return self._attempt_failed(tryon, now, attempt, failure)
        delay = self._policy.poll_delay(0)
        running = replace(
            tryon,
            status=TryOnStatus.RUNNING,
            attempts=attempt,
            submission=submission,
            submitted_at=now,
            error=None,
            next_action_at=now + timedelta(seconds=delay),
        )
        event = audit.generation_submitted(tryon, now, attempt, submission.request_id)
        if not self._save(running, event, submitted=submission.request_id):
            self._generator.cancel(submission)  # lost to another change: this submission is nobody's
            return None
        return delay

    def _check(self, tryon: TryOn, now: datetime) -> float | None:
        submission = tryon.submission
        assert submission is not None
        if not self._source_still_verified(tryon):
            self._generator.cancel(submission)
            self._settle_failed(tryon, now, tryon.attempts, "source_expired", SOURCE_GONE)
            return None
        try:
            if tryon.submitted_at and now - tryon.submitted_at > timedelta(
                seconds=self._policy.attempt_timeout_seconds
            ):
                self._generator.cancel(submission)
                raise GenerationFailed("fal did not finish in time", code="upstream_timeout", retryable=True)
            # A verified webhook said this very request finished: fetch the result without asking.
            notified = tryon.notified_request_id == submission.request_id
            if not notified and self._generator.state(submission) is not JobState.COMPLETED:
                elapsed = (now - tryon.submitted_at).total_seconds() if tryon.submitted_at else 0.0
                delay = self._policy.poll_delay(elapsed)
                polled = replace(tryon, next_action_at=now + timedelta(seconds=delay))
                return delay if self._save(polled) else None
            images = self._generator.result(submission)
            if not images:
                raise GenerationFailed("fal returned no image", code="generation_failed", retryable=True)
            stored = [self._store(tryon, now, position, image) for position, image in enumerate(images)]
        except GenerationFailed as failure:
            return self._attempt_failed(tryon, now, tryon.attempts, failure)
        self._settle_succeeded(tryon, now, stored)
        return None

    def _source_still_verified(self, tryon: TryOn) -> bool:
        with self._unit_of_work() as uow:
            upload = uow.uploads.get(tryon.upload_id)
        return upload is not None and upload.status is UploadStatus.VERIFIED

    def _store(self, tryon: TryOn, now: datetime, position: int, image: Any) -> TryOnResult:
        downloaded = self._generator.download(image, self._policy.max_result_bytes)
        key = result_object_key(tryon.user_id, tryon.tryon_id, position, downloaded.content_type)
        self._results.put_new(key, downloaded.data, downloaded.content_type)
        return TryOnResult(
            result_id=f"{tryon.tryon_id}-{position}",
            tryon_id=tryon.tryon_id,
            user_id=tryon.user_id,
            position=position,
            object_key=key,
            content_type=downloaded.content_type,
            size=len(downloaded.data),
            width=image.width,
            height=image.height,
            created_at=now,
        )

    def _attempt_failed(
        self, tryon: TryOn, now: datetime, attempt: int, failure: GenerationFailed
    ) -> float | None:
        if failure.retryable and attempt < self._policy.max_attempts:
            delay: float = self._policy.backoff_seconds * (2 ** (attempt - 1)) * (1 + self._jitter())
            retry = replace(
                tryon,
                status=TryOnStatus.QUEUED,
                attempts=attempt,
                submission=None,
                submitted_at=None,
                next_action_at=now + timedelta(seconds=delay),
            )
            event = audit.generation_failed(
                tryon, now, attempt, failure.code, failure.retryable, retrying=True
            )
            return delay if self._save(retry, event) else None
        self._settle_failed(tryon, now, attempt, failure.code, failure.detail, retryable=failure.retryable)
        return None

    def _settle_failed(
        self,
        tryon: TryOn,
        now: datetime,
        attempt: int,
        code: str,
        message: str,
        *,
        retryable: bool | None = None,
    ) -> None:
        """``retryable`` is the generator's word on a failure it reported; None for a failure of ours."""
        failed = replace(
            tryon,
            status=TryOnStatus.FAILED,
            attempts=attempt,
            completed_at=now,
            error=TryOnError(code, message, bool(retryable)),
            next_action_at=None,
        )
        event = audit.generation_failed(tryon, now, attempt, code, retryable, retrying=False)
        if not self._save(failed, event):
            return
        self._schedule_source_deletion(tryon, now)
        log.info("try-on failed", extra={"tryon_id": tryon.tryon_id, "code": code, "attempts": attempt})

    def _settle_succeeded(self, tryon: TryOn, now: datetime, stored: list[TryOnResult]) -> None:
        done = replace(tryon, status=TryOnStatus.SUCCEEDED, completed_at=now, next_action_at=None)
        events = [audit.generation_succeeded(tryon, now)]
        events += [audit.result_stored(tryon, now, result) for result in stored]
        with self._unit_of_work() as uow:
            # Holding the upload orders this against a deletion: either the deletion comes after and
            # finds these results, or it came first and nothing is kept.
            source_kept = uow.uploads.lock_verified(tryon.upload_id) is not None
            won = source_kept and uow.tryons.update(done)
            if won:
                for result in stored:
                    uow.results.add_if_absent(result)
                for event in events:
                    uow.audit.append(event)
                uow.commit()
        if not won:
            self._discard(tryon, now, stored, source_kept=source_kept)
            return
        announce(self._changes, Topic.TRYON, tryon.tryon_id, done.status.value)
        self._schedule_source_deletion(tryon, now)
        log.info("try-on succeeded", extra={"tryon_id": tryon.tryon_id, "results": len(stored)})

    def _discard(self, tryon: TryOn, now: datetime, stored: list[TryOnResult], *, source_kept: bool) -> None:
        """Results made for a try-on that lost a race go, unless they are on record (a twin step of this
        same try-on settled it first with the very same objects)."""
        with self._unit_of_work() as uow:
            on_record = {r.object_key for r in uow.results.for_tryon(tryon.tryon_id)}
        for result in stored:
            if result.object_key not in on_record:
                self._results.delete(result.object_key)
        log.info("try-on results discarded", extra={"tryon_id": tryon.tryon_id, "source_kept": source_kept})
        if not source_kept:
            self._settle_failed(tryon, now, tryon.attempts, "source_expired", SOURCE_GONE)

    def _schedule_source_deletion(self, tryon: TryOn, now: datetime) -> None:
        """The selfie lives SOURCE_RETENTION_SECONDS after its last try-on completes."""
        with self._unit_of_work() as uow:
            deadline = restart_retention(uow, tryon.upload_id, now, self._policy.source_retention_seconds)
            uow.commit()
        if deadline is not None:
            self._queue.expire_upload_at(tryon.upload_id, deadline)

    def _save(self, tryon: TryOn, event: AuditEvent | None = None, *, submitted: str | None = None) -> bool:
        """Write the step's outcome if nothing changed the try-on since this step claimed it; False when
        something did (erased, or a twin step after a lost lease): this step then stops. An outcome with
        an event is one the app sees (running, retrying, failed): it is announced once committed.
        ``submitted``: the generator request this step made, recorded with it (webhooks find the try-on
        by it)."""
        with self._unit_of_work() as uow:
            won = uow.tryons.update(tryon)
            if won and event is not None:
                uow.audit.append(event)
            if won and submitted is not None:
                uow.tryons.record_request(tryon.tryon_id, submitted)
            uow.commit()
        if not won:
            log.info("try-on step lost a race", extra={"tryon_id": tryon.tryon_id})
        elif event is not None:
            announce(self._changes, Topic.TRYON, tryon.tryon_id, tryon.status.value)
        return won
