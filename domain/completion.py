"""Completing an upload (US2), the web's half: prove it is the caller's, hand it to the verifier once, and
wait a bounded time for the verdict without doing the work (``domain/verification.py`` does it).

A settled upload answers the same way again without redoing work. No verdict within
``VerificationPolicy.wait_seconds``: the upload is returned still ``verifying`` (HTTP 202), and the app
follows it with ``GET /v1/uploads/{id}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import NoReturn

from domain import audit
from domain.changes import SETTLED, announce, watch
from domain.errors import (
    Conflict,
    DependencyUnavailable,
    Forbidden,
    Gone,
    NotFound,
    PersistenceUnavailable,
    QueueUnavailable,
    StorageUnavailable,
)
from domain.model import Upload, UploadStatus
from domain.objects import user_uploads_prefix
from domain.ports import ChangeBoard, Clock, Topic, UnitOfWork, UploadStorage, VerificationQueue
from domain.verification import (
    VerificationPolicy,
    refuse,
    release,
    settled_answer,
)

log = logging.getLogger(__name__)

UPLOAD_SETTLED = frozenset(
    (UploadStatus.VERIFIED, UploadStatus.REJECTED, UploadStatus.DELETED, UploadStatus.EXPIRED)
)
"""An upload in one of these states has nothing left for the app to wait for: a wait answers at once."""

_OUTAGES: dict[str, type[DependencyUnavailable]] = {
    error.code: error for error in (StorageUnavailable, PersistenceUnavailable, QueueUnavailable)
}


class UploadCompletion:
    def __init__(
        self,
        *,
        policy: VerificationPolicy,
        storage: UploadStorage,
        queue: VerificationQueue,
        changes: ChangeBoard,
        unit_of_work: Callable[[], UnitOfWork],
        clock: Clock,
    ) -> None:
        self._policy = policy
        self._storage = storage
        self._queue = queue
        self._changes = changes
        self._unit_of_work = unit_of_work
        self._clock = clock

    def complete(self, user_id: str, upload_id: str, object_key: str) -> Upload:
        """The verified upload, or the upload still being verified; raises the refusal otherwise."""
        now = self._clock.now().replace(microsecond=0)
        upload = self._owned(user_id, upload_id, now)
        if object_key != upload.object_key or not object_key.startswith(user_uploads_prefix(user_id)):
            refuse(
                self._unit_of_work,
                upload,
                now,
                Forbidden("that object key was not issued to you", code="key_not_owned"),
            )
        settled = settled_answer(upload)
        if settled is not None:
            return settled
        if now > upload.url_expires_at + timedelta(seconds=self._policy.completion_grace_seconds):
            self._expire(upload, now)
        # Listening begins before the hand-off, so no verdict is missed.
        with self._changes.listen(Topic.UPLOAD, upload_id) as listener:
            self._hand_off(upload_id, now)
            verdict = listener.wait(self._policy.wait_seconds)
        current = self._owned(user_id, upload_id, now)
        settled = settled_answer(current)
        if settled is not None:
            return settled
        if verdict in (None, SETTLED) or current.status is UploadStatus.VERIFYING:
            return current
        if verdict == "upload_missing":
            raise Conflict("nothing was uploaded yet; PUT first", code="upload_missing")
        outage = _OUTAGES.get(verdict, DependencyUnavailable)
        raise outage("the verification could not finish; retry", code=verdict)

    def look_up(self, user_id: str, upload_id: str, wait_seconds: float = 0) -> Upload:
        """The caller's upload (anyone else's is reported as not found, before any waiting): as it is now,
        or, given ``wait_seconds``, as soon as it changes (a verdict, a deletion) or once they have passed;
        a settled upload (verified, rejected, deleted, expired) answers at once."""
        return watch(
            self._changes,
            Topic.UPLOAD,
            upload_id,
            wait_seconds=wait_seconds,
            read=lambda: self._current(user_id, upload_id),
            settled=lambda upload: upload.status in UPLOAD_SETTLED,
        )

    def _current(self, user_id: str, upload_id: str) -> Upload:
        with self._unit_of_work() as uow:
            upload = uow.uploads.get(upload_id)
        if upload is None or upload.user_id != user_id:
            raise NotFound("no upload of yours has that id", code="upload_not_found")
        return upload

    def requeue_stalled(self, limit: int = 100) -> int:
        """Queue again the verifications whose claim went stale (a verifier that died mid-job, or a queue
        that lost its job); returns how many. The verifier counts each start."""
        before = self._clock.now() - timedelta(seconds=self._policy.claim_lease_seconds)
        with self._unit_of_work() as uow:
            stalled = uow.uploads.stalled_verifications(before, limit)
        for upload_id in stalled:
            self._queue.verify_soon(upload_id)
        return len(stalled)

    def _hand_off(self, upload_id: str, now: datetime) -> None:
        """Claim the upload for verification and queue it, once: a complete that finds it claimed (and the
        claim fresh) only waits for the same verdict."""
        stale_before = now - timedelta(seconds=self._policy.claim_lease_seconds)
        with self._unit_of_work() as uow:
            claimed = uow.uploads.claim_for_verification(upload_id, now, stale_before)
            uow.commit()
        if claimed is None:
            return
        try:
            self._queue.verify_soon(upload_id)
        except DependencyUnavailable:
            release(self._unit_of_work, claimed, now)
            raise

    def _owned(self, user_id: str, upload_id: str, now: datetime) -> Upload:
        with self._unit_of_work() as uow:
            upload = uow.uploads.get(upload_id)
            if upload is None or upload.user_id != user_id:
                uow.audit.append(audit.complete_refused(user_id, upload_id, now, "upload_not_found"))
                uow.commit()
                raise NotFound("no upload of yours has that id", code="upload_not_found")
        return upload

    def _expire(self, upload: Upload, now: datetime) -> NoReturn:
        self._storage.delete(upload.object_key)
        expired = replace(upload, status=UploadStatus.EXPIRED, updated_at=now)
        with self._unit_of_work() as uow:
            if uow.uploads.update(expired):  # lost: deleted meanwhile; gone is still the answer
                uow.audit.append(audit.upload_expired(upload, now, at_completion=True))
            uow.commit()
        announce(self._changes, Topic.UPLOAD, upload.upload_id, SETTLED)
        raise Gone(
            "the upload URL expired before the upload was completed; ask for a new one", code="upload_expired"
        )
