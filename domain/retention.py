"""A source selfie's retention: when its time starts again, and deleting it when its time is up (the
scheduled half of retention; the sweep comes later)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from domain import audit
from domain.changes import SETTLED, announce
from domain.model import Upload, UploadStatus
from domain.ports import ChangeBoard, Clock, Topic, TryOnQueue, UnitOfWork, UploadStorage

log = logging.getLogger(__name__)

SOURCE_RETENTION_SECONDS = 3600
"""The default SOURCE_RETENTION_SECONDS: how long a selfie lives after its last try-on settles or a
favourite of it goes."""


def restart_retention(
    uow: UnitOfWork, upload_id: str, now: datetime, retention_seconds: int
) -> datetime | None:
    """The selfie's retention starts again at ``now``: its deletion deadline moves inside ``uow`` (only while
    the upload is verified). The new deadline, or None when the selfie is already gone. Once ``uow`` is
    committed, hand the deadline to ``TryOnQueue.expire_upload_at``."""
    deadline = now + timedelta(seconds=retention_seconds)
    return deadline if uow.uploads.set_deadline(upload_id, deadline) else None


class SourceExpiry:
    def __init__(
        self,
        *,
        storage: UploadStorage,
        unit_of_work: Callable[[], UnitOfWork],
        clock: Clock,
        changes: ChangeBoard,
        queue: TryOnQueue | None = None,
    ) -> None:
        self._storage = storage
        self._changes = changes
        self._unit_of_work = unit_of_work
        self._clock = clock
        self._queue = queue

    def announce_gone(self, upload_id: str) -> None:
        """A waiting ``GET /v1/uploads/{id}?wait`` learns at once that the upload expired or was deleted."""
        announce(self._changes, Topic.UPLOAD, upload_id, SETTLED)

    def expire(self, upload_id: str) -> bool:
        """Delete the stored selfie if its deadline has passed, no try-on still needs it and none of its
        results is a favourite — decided and marked in one conditional update, so a try-on ordered or a
        favourite set at the same moment either keeps the selfie or finds it gone, never half of each.

        Run before its deadline (the deadline moved since this was scheduled), it schedules itself again
        for the new one. Kept for a try-on or a favourite, it waits: settling the try-on or an unfavourite
        schedules it anew. Kept for a favourite, it is also marked kept (``keep_if_held``), so the sweep
        stops listing it; the unfavourite's new deadline clears the mark (and the sweep's re-check one no
        favourite justifies any more)."""
        now = self._clock.now()
        current: Upload | None = None
        with self._unit_of_work() as uow:
            deleted = uow.uploads.expire_if_due(upload_id, now)
            if deleted is not None:
                uow.audit.append(audit.upload_deleted(deleted.user_id, upload_id, now, "retention"))
            else:
                uow.uploads.keep_if_held(upload_id, now)
                current = uow.uploads.get(upload_id)
            uow.commit()
        if deleted is None:
            verified = current is not None and current.status is UploadStatus.VERIFIED
            deadline = current.source_expires_at if verified and current is not None else None
            if deadline is not None and deadline > now and self._queue is not None:
                self._queue.expire_upload_at(upload_id, deadline)
            return False
        self.announce_gone(upload_id)
        for key in deleted.object_keys():
            self._storage.delete(key)
        log.info("source selfie deleted", extra={"upload_id": upload_id, "reason": "retention"})
        return True
