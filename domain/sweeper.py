"""The cleanup sweep: what retention says must be gone, gone — batched, idempotent, safe to run twice.

A selfie a favourite keeps is marked kept and not listed; each pass also re-checks the few marks confirmed
longest ago (at most a batch, each at most once per ``kept_recheck_seconds``), so a mark no favourite
justifies any more (left by migration 9's backfill under the old code, say) cannot keep a selfie forever.

Each item is claimed with a lease before anything is deleted; objects go first, rows after, so a
sweep that dies in between is simply finished by the next one (deleting a missing object is fine).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from domain import audit
from domain.audit_retention import AuditRetainer
from domain.deletion import DeletedUploadPurge, ObjectsThenRows
from domain.model import TryOnResult, Upload, UploadStatus
from domain.ports import Clock, ResultStorage, UnitOfWork, UploadStorage
from domain.retention import SourceExpiry

log = logging.getLogger(__name__)

NEVER_COMPLETED = (UploadStatus.ISSUED, UploadStatus.VERIFYING)


@dataclass(frozen=True)
class SweepPolicy:
    processed_retention_days: int = 30
    settle_margin_seconds: int = 900
    """How long after an upload last changed (or its URL died) the sweep may purge its objects."""
    batch_size: int = 200
    lease_seconds: int = 300
    kept_recheck_seconds: int = 7 * 86400
    """How long a selfie's kept mark stands before a sweep looks again whether a favourite still justifies
    it (each pass re-checks at most ``batch_size`` of them, the longest unconfirmed first). A week: a stale
    mark only comes from a path that dropped a favourite without restarting retention (migration 9's backfill
    under the old code); the object is not kept by it (releasing the favourite's hold tag hands it to the
    bucket's lifecycle backstop), only the row waits; and each pass then re-checks 1/1,008 of the kept."""


@dataclass
class SweepCounts:
    objects_purged: int = 0
    intents_expired: int = 0
    sources_deleted: int = 0
    results_deleted: int = 0
    skipped: int = 0
    kept_marks_cleared: int = 0
    audit_partitions_created: int = 0
    audit_partitions_dropped: int = 0
    audit_events_dropped: int = 0

    def summary(self) -> str:
        return (
            f"purged {self.objects_purged} upload(s)' objects, expired {self.intents_expired} unfinished"
            f" upload(s), deleted {self.sources_deleted} source selfie(s) and {self.results_deleted}"
            f" result(s); {self.skipped} held by another sweep; cleared {self.kept_marks_cleared} kept"
            f" mark(s) no favourite justifies; dropped {self.audit_partitions_dropped}"
            f" audit partition(s) ({self.audit_events_dropped} event(s)), created"
            f" {self.audit_partitions_created}"
        )


class Sweeper:
    def __init__(
        self,
        *,
        policy: SweepPolicy,
        uploads: UploadStorage,
        results: ResultStorage,
        expiry: SourceExpiry,
        unit_of_work: Callable[[], UnitOfWork],
        clock: Clock,
        audit_retention: AuditRetainer | None = None,
    ) -> None:
        self._policy = policy
        self._audit_retention = audit_retention
        self._expiry = expiry
        self._unit_of_work = unit_of_work
        self._clock = clock
        self._deleted = DeletedUploadPurge(
            uploads=uploads, results=results, unit_of_work=unit_of_work, clock=clock
        )
        self._objects_then_rows = ObjectsThenRows(uploads=uploads, results=results, unit_of_work=unit_of_work)

    def sweep(self) -> SweepCounts:
        counts = SweepCounts()
        now = self._clock.now()
        lease_until = now + timedelta(seconds=self._policy.lease_seconds)
        limit = self._policy.batch_size
        with self._unit_of_work() as uow:  # first: a selfie whose stale mark goes is listed overdue below
            confirmed_before = now - timedelta(seconds=self._policy.kept_recheck_seconds)
            counts.kept_marks_cleared = len(uow.uploads.recheck_kept(confirmed_before, now, limit))
            uow.commit()
        with self._unit_of_work() as uow:
            to_purge = uow.uploads.to_purge(
                now - timedelta(seconds=self._policy.settle_margin_seconds), limit
            )
            overdue = uow.uploads.overdue_sources(now, limit)
            expired = uow.results.expired(now - timedelta(days=self._policy.processed_retention_days), limit)
        for upload in to_purge:
            if self._claim_upload(upload.upload_id, now, lease_until, counts):
                self._purge(upload, now, counts)
        for upload_id in overdue:
            if not self._claim_upload(upload_id, now, lease_until, counts):
                continue
            if self._expiry.expire(upload_id):
                counts.sources_deleted += 1
            else:  # kept (a favourite, a try-on, a new deadline): let the next pass look again at once
                self._release_upload(upload_id)
        for result in expired:
            with self._unit_of_work() as uow:
                claimed = uow.results.claim_sweep(result.result_id, now, lease_until)
                uow.commit()
            if not claimed:
                counts.skipped += 1
                continue
            self._objects_then_rows.delete(self._forget_result(result, now), results=[result])
            counts.results_deleted += 1
        if self._audit_retention is not None:  # last: a slow lock here holds up nothing above
            report = self._audit_retention.rotate()
            counts.audit_partitions_created = len(report.created)
            counts.audit_partitions_dropped = report.partitions_dropped
            counts.audit_events_dropped = report.rows_removed
            counts.skipped += report.held
        log.info("sweep finished", extra={"summary": counts.summary()})
        return counts

    @staticmethod
    def _forget_result(result: TryOnResult, now: datetime) -> Callable[[UnitOfWork], None]:
        def rows(uow: UnitOfWork) -> None:
            uow.results.delete(result.result_id)
            uow.audit.append(audit.result_deleted(result, now, "retention"))

        return rows

    def _claim_upload(
        self, upload_id: str, now: datetime, lease_until: datetime, counts: SweepCounts
    ) -> bool:
        with self._unit_of_work() as uow:
            claimed = uow.uploads.claim_sweep(upload_id, now, lease_until)
            uow.commit()
        if not claimed:
            counts.skipped += 1
        return claimed

    def _release_upload(self, upload_id: str) -> None:
        with self._unit_of_work() as uow:
            uow.uploads.release_sweep(upload_id)
            uow.commit()

    def _purge(self, upload: Upload, now: datetime, counts: SweepCounts) -> None:
        if upload.status is UploadStatus.DELETED:  # a user's deletion that a dead process left unfinished
            counts.results_deleted += self._deleted.finish(upload, "user_request")
            counts.objects_purged += 1
            return
        never_completed = upload.status in NEVER_COMPLETED
        status = UploadStatus.EXPIRED if never_completed else upload.status

        def rows(uow: UnitOfWork) -> bool:
            won = uow.uploads.mark_purged(upload, now, status)
            if won and never_completed:
                uow.audit.append(audit.upload_expired(upload, now, at_completion=False))
            if not won:  # it changed since it was listed (deleted, say): the next pass sees it as it is now
                uow.uploads.release_sweep(upload.upload_id)
            return won

        # A verified upload's sanitised copy is still in use: only what the client PUT goes.
        keys = (upload.object_key,) if upload.status is UploadStatus.VERIFIED else upload.object_keys()
        won = self._objects_then_rows.delete(rows, upload_keys=keys)
        if not won:
            return
        if never_completed:
            self._expiry.announce_gone(upload.upload_id)
        counts.objects_purged += 1
        counts.intents_expired += int(never_completed)
