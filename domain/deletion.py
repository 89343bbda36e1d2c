"""Finishing the deletion of an upload: its objects, then its non-favourite results (objects, then rows).

The upload is marked deleted before anything goes, so a process that dies half-way leaves a deleted,
unpurged row that the sweeper finishes with this same code; deleting what is already gone is fine.
Each result is claimed before its object goes, and a claim is refused for a favourite: a result
favourited while the deletion runs is kept whole, never a row without its object. A claim left by a
finisher that died is taken over at once: finishing twice only repeats idempotent deletes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from domain import audit
from domain.model import Upload, UploadStatus
from domain.ports import Clock, ResultStorage, UnitOfWork, UploadStorage

RESULT_CLAIM_SECONDS = 300


class DeletedUploadPurge:
    def __init__(
        self,
        *,
        uploads: UploadStorage,
        results: ResultStorage,
        unit_of_work: Callable[[], UnitOfWork],
        clock: Clock,
    ) -> None:
        self._uploads = uploads
        self._results = results
        self._unit_of_work = unit_of_work
        self._clock = clock

    def finish(self, upload: Upload, reason: str) -> int:
        """Deletes what a deleted upload still has and marks it purged; returns the results deleted."""
        now = self._clock.now()
        lease_until = now + timedelta(seconds=RESULT_CLAIM_SECONDS)
        with self._unit_of_work() as uow:
            candidates = [r for r in uow.results.for_upload(upload.upload_id) if not r.favorite]
            results = [r for r in candidates if uow.results.claim_for_deletion(r.result_id, lease_until)]
            uow.commit()
        for key in upload.object_keys():
            self._uploads.delete(key)
        for result in results:
            self._results.delete(result.object_key)
        with self._unit_of_work() as uow:
            for result in results:
                if uow.results.delete(result.result_id):  # once, whoever else finishes it too
                    uow.audit.append(audit.result_deleted(result, now, reason))
            uow.uploads.mark_purged(upload, now, UploadStatus.DELETED)
            uow.commit()
        return len(results)
