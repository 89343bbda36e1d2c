"""Uploads and the audit trail, stored with Peewee.

Every query names its database explicitly, so a repository works on the ``Database`` it was given
whatever ``database_proxy`` points at. Integrity errors (duplicate id or key) propagate unchanged.
"""

from __future__ import annotations

import json
from datetime import datetime

import peewee

from adapters.peewee_db.database import unavailable_on_failure
from adapters.peewee_db.models import AuditRow, UploadRow, bound_to
from domain.model import AuditEvent, UploadIntent, UploadStatus
from domain.ports import AuditLog, UploadRepository


class PeeweeUploadRepository(UploadRepository):
    def __init__(self, db: peewee.Database) -> None:
        self._db = db

    def add(self, intent: UploadIntent) -> None:
        with unavailable_on_failure("recording an upload"), bound_to(self._db):
            UploadRow.insert(
                upload_id=intent.upload_id,
                user_id=intent.user_id,
                object_key=intent.object_key,
                content_type=intent.content_type,
                content_length=intent.content_length,
                checksum_sha256=intent.checksum_sha256,
                status=intent.status.value,
                created_at=intent.created_at,
                expires_at=intent.expires_at,
            ).execute(self._db)

    def get(self, upload_id: str) -> UploadIntent | None:
        with unavailable_on_failure("reading an upload"), bound_to(self._db):
            # Not get_or_none(db): on a miss it builds its error message through the model's proxy.
            row = UploadRow.select().where(UploadRow.upload_id == upload_id).first(self._db)
        if row is None:
            return None
        return UploadIntent(
            upload_id=row.upload_id,
            user_id=row.user_id,
            object_key=row.object_key,
            content_type=row.content_type,
            content_length=row.content_length,
            checksum_sha256=row.checksum_sha256,
            created_at=row.created_at,
            expires_at=row.expires_at,
            status=UploadStatus(row.status),
        )


class PeeweeAuditLog(AuditLog):
    """Append-only: there is no update or delete here, and the database refuses both anyway."""

    def __init__(self, db: peewee.Database) -> None:
        self._db = db

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

    def events(self, since: datetime | None = None, user_id: str | None = None) -> list[AuditEvent]:
        """Events in the order they were appended; ``since`` is inclusive, ``user_id`` matches the actor."""
        query = AuditRow.select().order_by(AuditRow.id)
        if since is not None:
            query = query.where(AuditRow.occurred_at >= since)
        if user_id is not None:
            query = query.where(AuditRow.actor_id == user_id)
        with unavailable_on_failure("reading the audit trail"), bound_to(self._db):
            rows = list(query.execute(self._db))
        return [
            AuditEvent(
                event=row.event,
                actor_id=row.actor_id,
                subject_id=row.subject_id,
                outcome=row.outcome,
                occurred_at=row.occurred_at,
                reason=row.reason,
                details=json.loads(row.details),
            )
            for row in rows
        ]
