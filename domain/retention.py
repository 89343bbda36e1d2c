"""Deleting a source selfie when its time is up (the scheduled half of retention; the sweep comes later)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from domain.model import AuditEvent, UploadStatus
from domain.ports import Clock, UnitOfWork, UploadStorage

log = logging.getLogger(__name__)


class SourceExpiry:
    def __init__(
        self, *, storage: UploadStorage, unit_of_work: Callable[[], UnitOfWork], clock: Clock
    ) -> None:
        self._storage = storage
        self._unit_of_work = unit_of_work
        self._clock = clock

    def expire(self, upload_id: str) -> bool:
        """Delete the stored selfie if its deadline has passed, no try-on still needs it and none of its
        results is a favourite."""
        now = self._clock.now()
        with self._unit_of_work() as uow:
            upload = uow.uploads.get(upload_id)
            busy = uow.tryons.unsettled_for_upload(upload_id) or any(
                result.favorite for result in uow.results.for_upload(upload_id)
            )
        if upload is None or upload.status is not UploadStatus.VERIFIED or upload.expires_at > now or busy:
            return False
        for key in upload.object_keys():
            self._storage.delete(key)
        with self._unit_of_work() as uow:
            uow.uploads.save(replace(upload, status=UploadStatus.DELETED, updated_at=now))
            uow.audit.append(
                AuditEvent("upload.deleted", upload.user_id, upload_id, "success", now, "retention")
            )
            uow.commit()
        log.info("source selfie deleted", extra={"upload_id": upload_id, "reason": "retention"})
        return True
