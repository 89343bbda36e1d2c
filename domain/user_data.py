"""What users decide about their data: favourites, deleting an upload, erasing everything (US4).

Each change is conditional on the state it expects, so these race safely with verification, the
worker and the sweeper: a deleted upload never becomes usable again, and a favourite is either kept
whole or deleted whole.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from domain import audit
from domain.changes import ERASED, SETTLED, announce
from domain.deletion import DeletedUploadPurge, ObjectsThenRows
from domain.errors import NotFound
from domain.model import UploadStatus
from domain.ports import ChangeBoard, Clock, ResultStorage, Topic, TryOnQueue, UnitOfWork, UploadStorage
from domain.retention import restart_retention

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
        changes: ChangeBoard,
        unit_of_work: Callable[[], UnitOfWork],
        clock: Clock,
        source_retention_seconds: int,
    ) -> None:
        self._uploads = uploads
        self._changes = changes
        self._results = results
        self._queue = queue
        self._unit_of_work = unit_of_work
        self._clock = clock
        self._source_retention_seconds = source_retention_seconds
        self._purge = DeletedUploadPurge(
            uploads=uploads, results=results, unit_of_work=unit_of_work, clock=clock
        )
        self._objects_then_rows = ObjectsThenRows(uploads=uploads, results=results, unit_of_work=unit_of_work)

    def favorite(self, user_id: str, result_id: str, favorite: bool) -> None:
        """A favourite result is kept, and so is the selfie it was made from; when a favourite of a
        selfie goes, the selfie's SOURCE_RETENTION_SECONDS start again. Setting what is already set
        changes nothing (no audit event, no job); a result being deleted cannot be favourited.

        Every unfavourite restarts retention, not only the last one: two unfavourites of a selfie's last
        two favourites at once would each see the other still set, and if neither restarted it, the selfie
        would stay marked kept (``keep_if_held``) and never expire. Restarting is harmless while another
        favourite remains: at the new deadline the expiry finds it held and marks it kept again.

        The S3 hold (the tag the lifecycle backstop honours) is released only when no other favourite of
        the selfie is left in this unit of work's view: releasing it while one remains would let the
        backstop delete a favourite's selfie. In that same race neither may release it; the tag then only
        outlives the row's hold, and the expiry at the new deadline deletes the object outright anyway.

        A favourite set at the same moment as the last one goes is invisible to the unfavourite's unit of
        work until it commits, so the release may land after the new favourite's hold. Each side therefore
        writes and then reads the other's state: the unfavourite releases, then reads the favourites afresh
        and holds again if one is set; the favourite holds before its flag flips and once more after it is
        committed. Whichever tag write is last, the object ends held while a committed favourite keeps it:
        the favourite's second hold comes after its commit, and a release after that second hold is followed
        by a read that sees the commit."""
        now = self._clock.now()
        with self._unit_of_work() as uow:
            result = uow.results.get(result_id)
            if result is None or result.user_id != user_id:
                raise NotFound("no result of yours has that id", code="result_not_found")
            tryon = uow.tryons.get(result.tryon_id)
        if result.favorite == favorite:
            return
        source = self._source_key(tryon.upload_id) if tryon else None
        if favorite and source is not None:  # held before the flag flips: the backstop never takes it
            self._uploads.hold_source(source, True)
        self._results.mark_favorite(result.object_key, favorite)
        new_deadline = None
        with self._unit_of_work() as uow:
            if not uow.results.set_favorite(result_id, favorite, now):
                current = uow.results.get(result_id)
                if current is None or current.favorite != favorite:
                    raise NotFound("no result of yours has that id", code="result_not_found")
                return  # a concurrent identical request set it first
            uow.audit.append(audit.result_favorite(user_id, result_id, now, favorite))
            upload_id = tryon.upload_id if tryon else None
            others = [r for r in uow.results.for_upload(upload_id) if r.favorite] if upload_id else []
            if upload_id and not favorite:
                new_deadline = restart_retention(uow, upload_id, now, self._source_retention_seconds)
            uow.commit()
        if favorite and source is not None:  # again after the commit: a release racing the first is undone
            self._uploads.hold_source(source, True)
        if upload_id is not None and new_deadline is not None:
            if source is not None and not others:  # after the flag: until then the row holds it anyway
                self._uploads.hold_source(source, False)
                if self._favourite_of(upload_id):  # one set meanwhile: its hold may predate this release
                    self._uploads.hold_source(source, True)
            self._queue.expire_upload_at(upload_id, new_deadline)

    def _favourite_of(self, upload_id: str) -> bool:
        with self._unit_of_work() as uow:
            return any(r.favorite for r in uow.results.for_upload(upload_id))

    def _source_key(self, upload_id: str) -> str | None:
        with self._unit_of_work() as uow:
            upload = uow.uploads.get(upload_id)
        return upload.stored.object_key if upload is not None and upload.stored is not None else None

    def delete_upload(self, user_id: str, upload_id: str) -> None:
        """The selfie and the results made from it go now; favourite results stay.

        The row says "deleted" before any object goes: the selfie is unusable at once (whatever raced
        this, nothing moves a row out of "deleted"), and if this process dies half-way the sweeper
        finishes the deletion (objects, then rows)."""
        now = self._clock.now()
        with self._unit_of_work() as uow:
            upload = uow.uploads.get(upload_id)
            if upload is None or upload.user_id != user_id:
                raise NotFound("no upload of yours has that id", code="upload_not_found")
            uow.uploads.mark_deleted(upload_id, now)
            uow.audit.append(audit.upload_deleted(user_id, upload_id, now, "user_request"))
            uow.commit()
        announce(self._changes, Topic.UPLOAD, upload_id, SETTLED)
        with self._unit_of_work() as uow:
            deleted = uow.uploads.get(upload_id)  # as it is now: what a verification stored is on it
        if deleted is not None and deleted.status is UploadStatus.DELETED:
            self._purge.finish(deleted, "user_request")

    def erase(self, user_id: str) -> Erasure:
        """Every object first, then every record; the audit trail keeps ids and events only.

        The uploads are marked deleted before anything is read, so a verification or a try-on finishing
        meanwhile loses its compare-and-set and removes what it made itself."""
        now = self._clock.now()
        with self._unit_of_work() as uow:
            uow.uploads.mark_user_deleted(user_id, now)
            uow.commit()
        with self._unit_of_work() as uow:
            uploads = [u for u in uow.uploads.for_user(user_id) if u.status is UploadStatus.DELETED]
            results = uow.results.for_user(user_id)
            waited_on = uow.tryons.unsettled_ids_for_user(user_id)

        def rows(uow: UnitOfWork) -> int:
            for result in results:
                uow.results.delete(result.result_id)
            tryons = uow.tryons.delete_for_user(user_id)
            for upload in uploads:
                uow.uploads.delete(upload.upload_id)
            uow.audit.append(
                audit.user_erased(user_id, now, uploads=len(uploads), results=len(results), tryons=tryons)
            )
            return tryons

        keys = [key for upload in uploads for key in upload.object_keys()]
        tryons = self._objects_then_rows.delete(rows, upload_keys=keys, results=results)
        for upload in uploads:  # a waiting GET finds it gone (404) at once
            announce(self._changes, Topic.UPLOAD, upload.upload_id, SETTLED)
        for tryon_id in waited_on:  # the same for a try-on still under way (a settled one is not waited on)
            announce(self._changes, Topic.TRYON, tryon_id, ERASED)
        counts = {"uploads": len(uploads), "results": len(results), "tryons": tryons}
        log.info("user data erased", extra={"user_id": user_id, **counts})
        return Erasure(len(uploads), len(results), tryons)
