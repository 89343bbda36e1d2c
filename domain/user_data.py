"""What users decide about their data: favourites, deleting an upload, erasing everything (US4)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta

from domain.deletion import DeletedUploadPurge
from domain.errors import NotFound
from domain.model import AuditEvent, UploadStatus
from domain.ports import Clock, ResultStorage, TryOnQueue, UnitOfWork, UploadStorage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Erasure:
    uploads: int
    results: int
    tryons: int


class UserData:
    def __init__(
        self,
        *,
        uploads: UploadStorage,
        results: ResultStorage,
        queue: TryOnQueue,
        unit_of_work: Callable[[], UnitOfWork],
        clock: Clock,
        source_retention_seconds: int,
    ) -> None:
        self._uploads = uploads
        self._results = results
        self._queue = queue
        self._unit_of_work = unit_of_work
        self._clock = clock
        self._source_retention = timedelta(seconds=source_retention_seconds)
        self._purge = DeletedUploadPurge(
            uploads=uploads, results=results, unit_of_work=unit_of_work, clock=clock
        )

    def favorite(self, user_id: str, result_id: str, favorite: bool) -> None:
        """A favourite result is kept, and so is the selfie it was made from; when the last favourite of
        a selfie goes, the selfie's SOURCE_RETENTION_SECONDS start again."""
        now = self._clock.now()
        with self._unit_of_work() as uow:
            result = uow.results.get(result_id)
            if result is None or result.user_id != user_id:
                raise NotFound("no result of yours has that id", code="result_not_found")
            tryon = uow.tryons.get(result.tryon_id)
        if result.favorite == favorite:
            return
        self._results.mark_favorite(result.object_key, favorite)
        event = "result.favorited" if favorite else "result.unfavorited"
        with self._unit_of_work() as uow:
            uow.results.set_favorite(result_id, favorite)
            uow.audit.append(AuditEvent(event, user_id, result_id, "success", now))
            upload = uow.uploads.get(tryon.upload_id) if tryon else None
            others = [r for r in uow.results.for_upload(upload.upload_id) if r.favorite] if upload else []
            new_deadline = None
            if upload and not favorite and not others and upload.status is UploadStatus.VERIFIED:
                new_deadline = now + self._source_retention
                uow.uploads.save(replace(upload, expires_at=new_deadline))
            uow.commit()
        if upload is not None and new_deadline is not None:
            self._queue.expire_upload_at(upload.upload_id, new_deadline)

    def delete_upload(self, user_id: str, upload_id: str) -> None:
        """The selfie and the results made from it go now; favourite results stay.

        The row says "deleted" before any object goes: the selfie is unusable at once, and if this
        process dies half-way the sweeper finishes the deletion (objects, then rows)."""
        now = self._clock.now()
        with self._unit_of_work() as uow:
            upload = uow.uploads.get(upload_id)
            if upload is None or upload.user_id != user_id:
                raise NotFound("no upload of yours has that id", code="upload_not_found")
            deleted = replace(upload, status=UploadStatus.DELETED, updated_at=now)
            uow.uploads.save(deleted)
            uow.audit.append(AuditEvent("upload.deleted", user_id, upload_id, "success", now, "user_request"))
            uow.commit()
        self._purge.finish(deleted, "user_request")

    def erase(self, user_id: str) -> Erasure:
        """Every object first, then every record; the audit trail keeps ids and events only."""
        now = self._clock.now()
        with self._unit_of_work() as uow:
            uploads = uow.uploads.for_user(user_id)
            results = uow.results.for_user(user_id)
            for upload in uploads:  # a process that dies below leaves deletions the sweeper finishes
                uow.uploads.save(replace(upload, status=UploadStatus.DELETED, updated_at=now))
            uow.commit()
        for upload in uploads:
            for key in upload.object_keys():
                self._uploads.delete(key)
        for result in results:
            self._results.delete(result.object_key)
        with self._unit_of_work() as uow:
            for result in results:
                uow.results.delete(result.result_id)
            tryons = uow.tryons.delete_for_user(user_id)
            for upload in uploads:
                uow.uploads.delete(upload.upload_id)
            details = {"uploads": len(uploads), "results": len(results), "tryons": tryons}
            uow.audit.append(AuditEvent("user.erased", user_id, user_id, "success", now, "erasure", details))
            uow.commit()
        log.info("user data erased", extra={"user_id": user_id, **details})
        return Erasure(len(uploads), len(results), tryons)
