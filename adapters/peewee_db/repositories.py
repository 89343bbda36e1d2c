"""Uploads and the audit trail, stored with Peewee.

Every query names its database explicitly, so a repository works on the ``Database`` it was given
whatever ``database_proxy`` points at. Integrity errors (duplicate id or key) propagate unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import peewee
from peewee import fn

from adapters.peewee_db.database import unavailable_on_failure
from adapters.peewee_db.models import (
    AuditRow,
    ResultRow,
    TryOnRow,
    UploadRow,
    UsageRow,
    bound_to,
    unsettled_tryon,
)
from adapters.peewee_db.outbox import EventOutbox
from domain.model import AuditEvent, StoredImage, Upload, UploadStatus
from domain.ports import AuditLog, UploadRepository, UsageRepository

EXPORT_BATCH_SIZE = 1000


class PeeweeUploadRepository(UploadRepository):
    def __init__(self, db: peewee.Database) -> None:
        self._db = db

    def add(self, upload: Upload) -> None:
        with unavailable_on_failure("recording an upload"), bound_to(self._db):
            UploadRow.insert(upload_id=upload.upload_id, **_columns(upload)).execute(self._db)

    def update(self, upload: Upload) -> bool:
        at_version = (UploadRow.upload_id == upload.upload_id) & (UploadRow.version == upload.version)
        with unavailable_on_failure("updating an upload"), bound_to(self._db):
            query = UploadRow.update(version=UploadRow.version + 1, **_columns(upload)).where(at_version)
            return bool(query.execute(self._db) == 1)

    def claim_for_verification(self, upload_id: str, now: datetime, stale_before: datetime) -> Upload | None:
        issued = UploadRow.status == UploadStatus.ISSUED.value
        stalled = (UploadRow.status == UploadStatus.VERIFYING.value) & (UploadRow.updated_at < stale_before)
        with unavailable_on_failure("claiming an upload"), bound_to(self._db):
            changed = (
                UploadRow.update(
                    status=UploadStatus.VERIFYING.value, updated_at=now, version=UploadRow.version + 1
                )
                .where((UploadRow.upload_id == upload_id) & (issued | stalled))
                .execute(self._db)
            )
        return self.get(upload_id) if changed == 1 else None

    def begin_verification(self, upload_id: str, now: datetime) -> Upload | None:
        verifying = (UploadRow.upload_id == upload_id) & (UploadRow.status == UploadStatus.VERIFYING.value)
        with unavailable_on_failure("starting a verification"), bound_to(self._db):
            changed = (
                UploadRow.update(
                    updated_at=now,
                    verification_attempts=UploadRow.verification_attempts + 1,
                    version=UploadRow.version + 1,
                )
                .where(verifying)
                .execute(self._db)
            )
        return self.get(upload_id) if changed == 1 else None

    def stalled_verifications(self, before: datetime, limit: int) -> list[str]:
        """Reads ``uploads_verifying_updated_at`` (uploads being verified only), in its order."""
        stalled = (UploadRow.status == UploadStatus.VERIFYING.value) & (UploadRow.updated_at < before)
        with unavailable_on_failure("finding stalled verifications"), bound_to(self._db):
            query = UploadRow.select(UploadRow.upload_id).where(stalled).order_by(UploadRow.updated_at)
            return [row.upload_id for row in query.limit(limit).execute(self._db)]

    def lock_verified(self, upload_id: str) -> Upload | None:
        verified = (UploadRow.upload_id == upload_id) & (UploadRow.status == UploadStatus.VERIFIED.value)
        with unavailable_on_failure("holding an upload"), bound_to(self._db):
            changed = UploadRow.update(version=UploadRow.version + 1).where(verified).execute(self._db)
        return self.get(upload_id) if changed == 1 else None

    def set_deadline(self, upload_id: str, when: datetime) -> bool:
        verified = (UploadRow.upload_id == upload_id) & (UploadRow.status == UploadStatus.VERIFIED.value)
        with unavailable_on_failure("moving a deadline"), bound_to(self._db):
            query = UploadRow.update(
                source_expires_at=when, source_kept=False, version=UploadRow.version + 1
            ).where(verified)
            return bool(query.execute(self._db) == 1)

    def mark_deleted(self, upload_id: str, now: datetime) -> None:
        self._mark_deleted(UploadRow.upload_id == upload_id, now)

    def mark_user_deleted(self, user_id: str, now: datetime) -> int:
        return self._mark_deleted(UploadRow.user_id == user_id, now)

    def _mark_deleted(self, which: Any, now: datetime) -> int:
        """Unpurged again, so the sweeper finishes a deletion whose process died half-way."""
        not_yet = UploadRow.status != UploadStatus.DELETED.value
        with unavailable_on_failure("marking uploads deleted"), bound_to(self._db):
            query = UploadRow.update(
                status=UploadStatus.DELETED.value,
                updated_at=now,
                purged_at=None,
                version=UploadRow.version + 1,
            )
            return int(query.where(which & not_yet).execute(self._db))

    def expire_if_due(self, upload_id: str, now: datetime) -> Upload | None:
        due = (
            (UploadRow.upload_id == upload_id)
            & (UploadRow.status == UploadStatus.VERIFIED.value)
            & (UploadRow.source_expires_at <= now)
            & ~_held(upload_id)
        )
        with unavailable_on_failure("expiring an upload"), bound_to(self._db):
            query = UploadRow.update(
                status=UploadStatus.DELETED.value,
                updated_at=now,
                purged_at=now,
                version=UploadRow.version + 1,
            )
            changed = query.where(due).execute(self._db)
        return self.get(upload_id) if changed == 1 else None

    def keep_if_held(self, upload_id: str, now: datetime) -> bool:
        """One conditional UPDATE, the row's lock deciding its races (Postgres, READ COMMITTED; SQLite's
        units of work are serialised outright). Against an unfavourite, whose unit of work turns the flag
        off and then moves the deadline (``set_deadline``: a future one, ``source_kept`` cleared):

        - the unfavourite commits first: this statement's snapshot sees the new deadline, not yet due, and
          marks nothing;
        - this UPDATE takes the row first (it saw the favourite, committed or not yet turned off): it marks
          and commits, then the unfavourite's deadline update, which waited for the row, clears the mark;
        - the unfavourite's deadline update takes the row first: this UPDATE waits for the row, and once
          the unfavourite commits Postgres re-checks the row's own conditions on its new version (the
          EXISTS is not re-read: it still sees the favourite), where ``source_expires_at <= now`` no longer
          holds, so nothing is marked. That re-check is what makes the deadline a term here.

        Whatever the order, once an unfavourite has committed the selfie is unmarked with a future deadline,
        and its expiry looks at its holds again then. Not bumping ``version``: a mark the sweep reads, like
        its lease, not a change of state (a compare-and-set that read the row before it still lands)."""
        held = (
            (UploadRow.upload_id == upload_id)
            & (UploadRow.status == UploadStatus.VERIFIED.value)
            & (UploadRow.source_expires_at <= now)
            & ~UploadRow.source_kept
            & _favourite(upload_id)
        )
        with unavailable_on_failure("keeping a selfie"), bound_to(self._db):
            changed = UploadRow.update(source_kept=True, source_kept_at=now).where(held).execute(self._db)
        return bool(changed == 1)

    def recheck_kept(self, confirmed_before: datetime, now: datetime, limit: int) -> list[str]:
        """Reads ``uploads_kept_sources`` (verified selfies marked kept), in its order, probing each one's
        favourites; the WHERE says the index's predicate as it is written. Each stale mark is cleared by a
        conditional UPDATE of its own that looks at the favourites again (a favourite committed since the
        read keeps the mark; clearing one wrongly would only make the expiry look and mark it again)."""
        kept = (
            (UploadRow.status == UploadStatus.VERIFIED.value)
            & UploadRow.source_kept
            & (UploadRow.source_kept_at < confirmed_before)
        )
        with unavailable_on_failure("re-checking kept selfies"), bound_to(self._db):
            query = (
                UploadRow.select(UploadRow.upload_id, _favourite(UploadRow.upload_id).alias("justified"))
                .where(kept)
                .order_by(UploadRow.source_kept_at)
                .limit(limit)
            )
            rows = [(row.upload_id, bool(row.justified)) for row in query.execute(self._db)]
            cleared: list[str] = []
            for upload_id, justified in rows:
                if justified:
                    continue
                stale = (
                    (UploadRow.upload_id == upload_id)
                    & (UploadRow.status == UploadStatus.VERIFIED.value)
                    & UploadRow.source_kept
                    & ~_favourite(upload_id)
                )
                if UploadRow.update(source_kept=False).where(stale).execute(self._db) == 1:
                    cleared.append(upload_id)
            confirmed = [upload_id for upload_id, justified in rows if justified]
            if confirmed:
                still = UploadRow.upload_id.in_(confirmed) & UploadRow.source_kept
                UploadRow.update(source_kept_at=now).where(still).execute(self._db)
        return cleared

    def for_user(self, user_id: str) -> list[Upload]:
        with unavailable_on_failure("reading uploads"), bound_to(self._db):
            query = UploadRow.select().where(UploadRow.user_id == user_id).order_by(UploadRow.created_at)
            return [_upload(row) for row in query.execute(self._db)]

    def delete(self, upload_id: str) -> None:
        deleted = (UploadRow.upload_id == upload_id) & (UploadRow.status == UploadStatus.DELETED.value)
        with unavailable_on_failure("deleting an upload"), bound_to(self._db):
            UploadRow.delete().where(deleted).execute(self._db)

    def to_purge(self, settled_before: datetime, limit: int) -> list[Upload]:
        """Reads ``uploads_unpurged_created_at`` (``WHERE purged_at IS NULL``: uploads whose objects are all
        gone are not in it), in its order; ``purged_at IS NULL`` must stay a term of the outer AND."""
        unfinished = [s.value for s in (UploadStatus.ISSUED, UploadStatus.VERIFYING)]
        dead = UploadRow.status.in_(
            [*unfinished, UploadStatus.REJECTED.value, UploadStatus.EXPIRED.value]
        ) & (UploadRow.url_expires_at < settled_before)
        verified = (UploadRow.status == UploadStatus.VERIFIED.value) & (UploadRow.updated_at < settled_before)
        deleted = UploadRow.status == UploadStatus.DELETED.value
        with unavailable_on_failure("finding uploads to purge"), bound_to(self._db):
            query = UploadRow.select().where(UploadRow.purged_at.is_null() & (dead | verified | deleted))
            return [
                _upload(row) for row in query.order_by(UploadRow.created_at).limit(limit).execute(self._db)
            ]

    def overdue_sources(self, now: datetime, limit: int) -> list[str]:
        """Reads ``uploads_overdue_sources`` (verified selfies not kept by a favourite), in its order: the
        WHERE says the index's predicate as it is written. Selfies a favourite keeps were marked by their
        expiry (``keep_if_held``) and are not in it; one not yet marked is listed, and the sweep's expiry
        marks it, once. A selfie held by an unsettled try-on is never marked (settling restarts its
        retention, but in a unit of work of its own, so a mark could outlive a worker dying in between):
        those are left out here, one index probe per due selfie, or more than ``limit`` of them would be
        listed every pass and the others never reached."""
        overdue = (
            (UploadRow.status == UploadStatus.VERIFIED.value)
            & ~UploadRow.source_kept
            & (UploadRow.source_expires_at < now)
            & ~_unsettled(UploadRow.upload_id)
        )
        with unavailable_on_failure("finding overdue selfies"), bound_to(self._db):
            query = (
                UploadRow.select(UploadRow.upload_id)
                .where(overdue)
                .order_by(UploadRow.source_expires_at)
                .limit(limit)
            )
            return [row.upload_id for row in query.execute(self._db)]

    def claim_sweep(self, upload_id: str, now: datetime, lease_until: datetime) -> bool:
        free = UploadRow.sweep_lease_until.is_null() | (UploadRow.sweep_lease_until < now)
        with unavailable_on_failure("claiming an upload for the sweep"), bound_to(self._db):
            query = UploadRow.update(sweep_lease_until=lease_until)
            changed = query.where((UploadRow.upload_id == upload_id) & free).execute(self._db)
        return bool(changed == 1)

    def release_sweep(self, upload_id: str) -> None:
        with unavailable_on_failure("releasing a sweep lease"), bound_to(self._db):
            query = UploadRow.update(sweep_lease_until=None)
            query.where(UploadRow.upload_id == upload_id).execute(self._db)

    def mark_purged(self, upload: Upload, now: datetime, status: UploadStatus) -> bool:
        at_version = (UploadRow.upload_id == upload.upload_id) & (UploadRow.version == upload.version)
        with unavailable_on_failure("recording a purge"), bound_to(self._db):
            query = UploadRow.update(
                purged_at=now,
                status=status.value,
                updated_at=now,
                sweep_lease_until=None,
                version=UploadRow.version + 1,
            )
            return bool(query.where(at_version).execute(self._db) == 1)

    def get(self, upload_id: str) -> Upload | None:
        with unavailable_on_failure("reading an upload"), bound_to(self._db):
            # Not get_or_none(db): on a miss it builds its error message through the model's proxy.
            row = UploadRow.select().where(UploadRow.upload_id == upload_id).first(self._db)
        return None if row is None else _upload(row)


def _held(upload_id: Any) -> Any:
    """The upload ``upload_id`` (a value, or the outer query's column) is kept: a try-on on it is unsettled,
    or one of its results is a favourite."""
    return _unsettled(upload_id) | _favourite(upload_id)


def _unsettled(upload_id: Any) -> Any:
    """Spelled as the unsettled try-ons' partial indexes' predicate: as an anti-join (Postgres turns a lone
    ``NOT EXISTS`` into one) it reads the few unsettled try-ons from one of them, never the table."""
    tryons = TryOnRow.select(TryOnRow.tryon_id).where(TryOnRow.upload_id == upload_id)
    return fn.EXISTS(tryons.where(unsettled_tryon(TryOnRow.status)))


def _favourite(upload_id: Any) -> Any:
    favourites = ResultRow.select(ResultRow.result_id).where(
        ResultRow.tryon_id.in_(TryOnRow.select(TryOnRow.tryon_id).where(TryOnRow.upload_id == upload_id))
        & (ResultRow.favorite == True)  # noqa: E712
    )
    return fn.EXISTS(favourites)


def _columns(upload: Upload) -> dict[str, Any]:
    stored = upload.stored
    return {
        "user_id": upload.user_id,
        "object_key": upload.object_key,
        "content_type": upload.content_type,
        "content_length": upload.content_length,
        "checksum_sha256": upload.checksum_sha256,
        "status": upload.status.value,
        "created_at": upload.created_at,
        "url_expires_at": upload.url_expires_at,
        "source_expires_at": upload.source_expires_at,
        "updated_at": upload.updated_at,
        "rejection_reason": upload.rejection_reason,
        "stored_key": stored and stored.object_key,
        "stored_content_type": stored and stored.content_type,
        "stored_size": stored and stored.size,
        "width": stored and stored.width,
        "height": stored and stored.height,
        "stored_checksum_sha256": stored and stored.checksum_sha256,
        "source_kept": upload.source_kept,
    }


def _upload(row: Any) -> Upload:
    """Rows written by ``_columns``: the stored-image columns are all set or all null."""
    stored = None
    if row.stored_key is not None:
        stored = StoredImage(
            object_key=row.stored_key,
            content_type=row.stored_content_type,
            size=row.stored_size,
            width=row.width,
            height=row.height,
            checksum_sha256=row.stored_checksum_sha256,
        )
    return Upload(
        upload_id=row.upload_id,
        user_id=row.user_id,
        object_key=row.object_key,
        content_type=row.content_type,
        content_length=row.content_length,
        checksum_sha256=row.checksum_sha256,
        created_at=row.created_at,
        url_expires_at=row.url_expires_at,
        source_expires_at=row.source_expires_at,
        status=UploadStatus(row.status),
        updated_at=row.updated_at,
        stored=stored,
        rejection_reason=row.rejection_reason,
        version=row.version,
        verification_attempts=row.verification_attempts,
        source_kept=row.source_kept,
    )


class PeeweeAuditLog(AuditLog):
    """Append-only: there is no update or delete here, and the database refuses both anyway."""

    def __init__(self, db: peewee.Database, outbox: EventOutbox | None = None) -> None:
        self._db = db
        self._outbox = outbox

    def append(self, event: AuditEvent) -> None:
        details = json.dumps(event.details, sort_keys=True)
        with unavailable_on_failure("appending an audit event"), bound_to(self._db):
            AuditRow.insert(
                occurred_at=event.occurred_at,
                event=event.event,
                actor_id=event.actor_id,
                subject_id=event.subject_id,
                outcome=event.outcome,
                reason=event.reason,
                details=details,
            ).execute(self._db)
        if self._outbox is not None:
            self._outbox.hold(event)

    def events(
        self, since: datetime | None = None, user_id: str | None = None, until: datetime | None = None
    ) -> list[AuditEvent]:
        """Events in the order they were appended; ``since`` is inclusive, ``until`` exclusive, ``user_id``
        matches the actor."""
        return list(self.stream(since, user_id, until))

    def stream(
        self,
        since: datetime | None = None,
        user_id: str | None = None,
        until: datetime | None = None,
        *,
        batch_size: int = EXPORT_BATCH_SIZE,
    ) -> Iterator[AuditEvent]:
        """``events``, read in keyset batches by id, so memory stays flat however many there are. The user
        filter is served by the actor_id index, the period by occurred_at (on Postgres it also prunes the
        monthly partitions it cannot touch)."""
        last_id = 0
        while True:
            query = AuditRow.select().where(AuditRow.id > last_id)
            if since is not None:
                query = query.where(AuditRow.occurred_at >= since)
            if until is not None:
                query = query.where(AuditRow.occurred_at < until)
            if user_id is not None:
                query = query.where(AuditRow.actor_id == user_id)
            with unavailable_on_failure("reading the audit trail"), bound_to(self._db):
                rows = list(query.order_by(AuditRow.id).limit(batch_size).execute(self._db))
            for row in rows:
                yield AuditEvent(
                    event=row.event,
                    actor_id=row.actor_id,
                    subject_id=row.subject_id,
                    outcome=row.outcome,
                    occurred_at=row.occurred_at,
                    reason=row.reason,
                    details=json.loads(row.details),
                )
            if len(rows) < batch_size:
                return
            last_id = rows[-1].id


class PeeweeUsageRepository(UsageRepository):
    def __init__(self, db: peewee.Database) -> None:
        self._db = db

    def hold(self, user_id: str, today: str) -> int:
        """A write first, so the lock is taken at once: on Postgres the row lock, on SQLite the database's
        write lock (a read first would let SQLite fail the later write instead of waiting)."""
        with unavailable_on_failure("holding a user's usage"), bound_to(self._db):
            UsageRow.insert(user_id=user_id, quota_day=today, images=0).on_conflict(
                conflict_target=[UsageRow.user_id], update={UsageRow.user_id: UsageRow.user_id}
            ).execute(self._db)
            row = UsageRow.select().where(UsageRow.user_id == user_id).first(self._db)
        return int(row.images) if row is not None and row.quota_day == today else 0

    def record_images(self, user_id: str, today: str, images: int) -> None:
        with unavailable_on_failure("recording usage"), bound_to(self._db):
            query = UsageRow.update(quota_day=today, images=images)
            query.where(UsageRow.user_id == user_id).execute(self._db)
