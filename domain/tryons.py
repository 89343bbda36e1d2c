"""Try-ons (US3): the record, its states, and what asking for one checks."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

from domain import audit
from domain.changes import watch
from domain.errors import Conflict, DependencyUnavailable, Gone, InvalidRequest, LimitExceeded, NotFound
from domain.model import TERMINAL, TryOn, TryOnResult, UploadStatus
from domain.ports import ChangeBoard, Clock, IdGenerator, ResultStorage, Topic, TryOnQueue, UnitOfWork

log = logging.getLogger(__name__)

OUTPUT_FORMATS = ("jpeg", "png", "webp")
MAX_PROMPT_CHARS = 1000
MAX_IMAGES = 4
ACTIVE_RETRY_AFTER_SECONDS = 10
"""A try-on usually settles within seconds; asking again after this is reasonable."""


@dataclass(frozen=True)
class TryOnOrder:
    upload_id: str
    style_prompt: str = field(repr=False)
    num_images: int = 1
    output_format: str = "jpeg"

    def fingerprint(self) -> str:
        body = json.dumps([self.upload_id, self.style_prompt, self.num_images, self.output_format])
        return hashlib.sha256(body.encode()).hexdigest()

    def check(self) -> None:
        if not 1 <= len(self.style_prompt.strip()) <= MAX_PROMPT_CHARS:
            raise InvalidRequest(
                f"style_prompt must be 1..{MAX_PROMPT_CHARS} characters", code="invalid_prompt"
            )
        if not 1 <= self.num_images <= MAX_IMAGES:
            raise InvalidRequest(f"num_images must be 1..{MAX_IMAGES}", code="invalid_num_images")
        if self.output_format not in OUTPUT_FORMATS:
            raise InvalidRequest(
                f"output_format must be one of {', '.join(OUTPUT_FORMATS)}", code="invalid_format"
            )


@dataclass(frozen=True)
class TryOnLimits:
    """What one user may have in flight and order per UTC day: each image is a paid generation."""

    max_active: int = 3
    daily_images: int = 40


class TryOnDesk:
    """Takes try-on orders: only for the caller's own verified, unexpired upload; at most once per
    Idempotency-Key; within the caller's limits. The job is queued only after the try-on is committed.

    A user's orders are serialised by holding their usage row for the whole transaction, so two orders at
    once can neither both pass a limit nor both create a try-on for the same Idempotency-Key."""

    def __init__(
        self,
        *,
        unit_of_work: Callable[[], UnitOfWork],
        queue: TryOnQueue,
        results: ResultStorage,
        clock: Clock,
        ids: IdGenerator,
        changes: ChangeBoard,
        limits: TryOnLimits | None = None,
    ) -> None:
        self._unit_of_work = unit_of_work
        self._changes = changes
        self._results = results
        self._queue = queue
        self._clock = clock
        self._ids = ids
        self._limits = limits or TryOnLimits()

    def order(self, user_id: str, order: TryOnOrder, idempotency_key: str | None = None) -> TryOn:
        order.check()
        now = self._clock.now().replace(microsecond=0)
        with self._unit_of_work() as uow:
            today = now.date().isoformat()
            used_today = uow.usage.hold(user_id, today)
            if idempotency_key is not None:
                earlier = uow.tryons.by_idempotency_key(user_id, idempotency_key)
                if earlier is not None:
                    if earlier.request_fingerprint != order.fingerprint():
                        raise InvalidRequest(
                            "this Idempotency-Key was used for a different request",
                            code="idempotency_key_reused",
                        )
                    return earlier
            upload = uow.uploads.get(order.upload_id)
            if upload is None or upload.user_id != user_id:
                raise NotFound("no upload of yours has that id", code="upload_not_found")
            if upload.status is not UploadStatus.VERIFIED:
                if upload.status in (UploadStatus.ISSUED, UploadStatus.VERIFYING):
                    raise Conflict("complete the upload first", code="upload_not_verified")
                raise Gone("that upload is gone; upload the selfie again", code="upload_expired")
            if upload.source_expired(now):
                raise Gone("that upload has expired; upload the selfie again", code="upload_expired")
            self._check_limits(uow, user_id, order, used_today, now)
            if uow.uploads.lock_verified(order.upload_id) is None:  # deleted since it was read
                raise Gone("that upload is gone; upload the selfie again", code="upload_expired")
            tryon = TryOn(
                tryon_id=self._ids.new_id(),
                user_id=user_id,
                upload_id=order.upload_id,
                style_prompt=order.style_prompt,
                num_images=order.num_images,
                output_format=order.output_format,
                created_at=now,
                idempotency_key=idempotency_key,
                request_fingerprint=order.fingerprint(),
                next_action_at=now,
            )
            uow.tryons.add(tryon)
            uow.usage.record_images(user_id, today, used_today + order.num_images)
            uow.audit.append(audit.tryon_requested(tryon))
            uow.commit()
        try:
            self._queue.advance_soon(tryon.tryon_id)
        except DependencyUnavailable:
            log.warning("try-on not queued yet; the reconciler will", extra={"tryon_id": tryon.tryon_id})
        return tryon

    def _check_limits(
        self, uow: UnitOfWork, user_id: str, order: TryOnOrder, used_today: int, now: datetime
    ) -> None:
        if uow.tryons.unsettled_for_user(user_id) >= self._limits.max_active:
            raise LimitExceeded(
                f"you have {self._limits.max_active} try-ons in progress; wait for one to finish",
                code="too_many_active_tryons",
                retry_after_seconds=ACTIVE_RETRY_AFTER_SECONDS,
            )
        if used_today + order.num_images > self._limits.daily_images:
            resets_at = datetime.combine(now.date() + timedelta(days=1), time(), tzinfo=UTC)
            raise LimitExceeded(
                f"today's {self._limits.daily_images} images are used up ({used_today} ordered);"
                f" the quota resets at {resets_at.isoformat().replace('+00:00', 'Z')}",
                code="quota_exceeded",
                retry_after_seconds=math.ceil((resets_at - now).total_seconds()),
            )

    def look_up(
        self, user_id: str, tryon_id: str, wait_seconds: float = 0
    ) -> tuple[TryOn, list[TryOnResult]]:
        """The caller's try-on and its results (anyone else's is reported as not found, before any
        waiting): as it is now, or, given ``wait_seconds``, as soon as it changes (running, retrying,
        settled) or once they have passed; a settled try-on answers at once."""
        return watch(
            self._changes,
            Topic.TRYON,
            tryon_id,
            wait_seconds=wait_seconds,
            read=lambda: self._current(user_id, tryon_id),
            settled=lambda found: found[0].status in TERMINAL,
        )

    def _current(self, user_id: str, tryon_id: str) -> tuple[TryOn, list[TryOnResult]]:
        with self._unit_of_work() as uow:
            tryon = uow.tryons.get(tryon_id)
            if tryon is None or tryon.user_id != user_id:
                raise NotFound("no try-on of yours has that id", code="tryon_not_found")
            return tryon, uow.results.for_tryon(tryon_id)

    def result_image(
        self, user_id: str, result_id: str, max_bytes: int = 20 * 1024 * 1024
    ) -> tuple[TryOnResult, bytes]:
        """A stored result's bytes, for its owner only (anyone else is told it does not exist)."""
        with self._unit_of_work() as uow:
            result = uow.results.get(result_id)
        if result is None or result.user_id != user_id:
            raise NotFound("no result of yours has that id", code="result_not_found")
        return result, self._results.read(result.object_key, max_bytes)
