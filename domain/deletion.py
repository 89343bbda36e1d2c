"""Deleting things: always objects first, then rows (``ObjectsThenRows``); and finishing the deletion of an
upload: its objects, then its non-favourite results (objects, then rows).

Objects go first so that a process dying half-way leaves a row that points at nothing (a later pass finds
the row and finishes; deleting a missing object is fine), never an object no row leads to.

The upload is marked deleted before anything goes, so a process that dies half-way leaves a deleted,
unpurged row that the sweeper finishes with this same code; deleting what is already gone is fine.
Each result is claimed before its object goes, and a claim is refused for a favourite: a result
favourited while the deletion runs is kept whole, never a row without its object. A claim left by a
finisher that died is taken over at once: finishing twice only repeats idempotent deletes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TypeVar

from domain import audit
from domain.model import TryOnResult, Upload, UploadStatus
from domain.ports import Clock, ResultStorage, UnitOfWork, UploadStorage

RESULT_CLAIM_SECONDS = 300

T = TypeVar("T")


class ObjectsThenRows:
    """The one order of every deletion (deletion, erasure, the sweep, retention's expiry)."""

    def __init__(
        self, *, uploads: UploadStorage, results: ResultStorage, unit_of_work: Callable[[], UnitOfWork]
    ) -> None:
        self._uploads = uploads
        self._results = results
        self._unit_of_work = unit_of_work

    def delete(
        self,
        rows: Callable[[UnitOfWork], T],
        *,
        upload_keys: Iterable[str] = (),
        results: Iterable[TryOnResult] = (),
    ) -> T:
        """Delete the objects under ``upload_keys`` (uploads bucket) and ``results``' objects (processed
        bucket), then run ``rows`` in one transaction, commit it, and return what ``rows`` returned."""
        for key in upload_keys:
            self._uploads.delete(key)
        for result in results:
            self._results.delete(result.object_key)
        with self._unit_of_work() as uow:
            outcome = rows(uow)
            uow.commit()
        return outcome


class DeletedUploadPurge:
    def __init__(
        self,
        *,
        uploads: UploadStorage,
        results: ResultStorage,
        unit_of_work: Callable[[], UnitOfWork],
        clock: Clock,
    ) -> None:
        self._unit_of_work = unit_of_work
        self._clock = clock
        self._objects_then_rows = ObjectsThenRows(uploads=uploads, results=results, unit_of_work=unit_of_work)

    def finish(self, upload: Upload, reason: str) -> int:
        """Deletes what a deleted upload still has and marks it purged; returns the results deleted."""
        now = self._clock.now()
        lease_until = now + timedelta(seconds=RESULT_CLAIM_SECONDS)
        with self._unit_of_work() as uow:
            candidates = [r for r in uow.results.for_upload(upload.upload_id) if not r.favorite]
            results = [r for r in candidates if uow.results.claim_for_deletion(r.result_id, lease_until)]
            uow.commit()

        def rows(uow: UnitOfWork) -> None:
            for result in results:
                if uow.results.delete(result.result_id):  # once, whoever else finishes it too
                    uow.audit.append(audit.result_deleted(result, now, reason))
            uow.uploads.mark_purged(upload, now, UploadStatus.DELETED)

        self._objects_then_rows.delete(rows, upload_keys=upload.object_keys(), results=results)
        return len(results)
