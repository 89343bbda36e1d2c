"""Verifying an upload (US2), the verifier's half: check what S3 holds, sanitise, gate on a face.

Runs in the ``verifier`` process on an upload the web claimed (``domain/completion.py``). Only a real,
sane image with one face goes on; everything else is deleted, audited and recorded with a clear reason.
Every outcome is announced on the change board, so a waiting ``complete`` (or ``GET ?wait``) answers at once.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, NoReturn

from domain import audit
from domain.changes import SETTLED, announce
from domain.errors import Conflict, ContentRejected, DependencyUnavailable, DomainError, Forbidden, Gone
from domain.faces import FacePolicy
from domain.model import (
    SanitizedImage,
    StoredImage,
    Upload,
    UploadStatus,
)
from domain.objects import source_object_key
from domain.ports import ChangeBoard, Clock, FaceDetector, ImageSanitizer, Topic, UnitOfWork, UploadStorage

log = logging.getLogger(__name__)

_GONE = (UploadStatus.DELETED, UploadStatus.EXPIRED, UploadStatus.REJECTED)


@dataclass(frozen=True)
class VerificationPolicy:
    max_upload_bytes: int
    unused_upload_ttl_seconds: int
    completion_grace_seconds: int = 600
    """How long after the PUT URL expires the client may still complete."""
    claim_lease_seconds: int = 120
    """After this, a verification that never finished (a crashed process) may be taken over."""
    wait_seconds: float = 8.0
    """How long ``complete`` waits for the verdict before answering 202 (VERIFY_WAIT_SECONDS)."""
    max_attempts: int = 2
    """Verifications started on one upload before it is refused as too costly: a run that never ends
    (killed by its budget, or crashing the verifier) must not be retried forever."""


def sha256_base64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def settled_answer(upload: Upload) -> Upload | None:
    """A settled upload's answer: itself when verified, the refusal when rejected or gone; None while open."""
    if upload.status is UploadStatus.VERIFIED:
        return upload
    if upload.status is UploadStatus.REJECTED:
        raise ContentRejected(
            f"the upload was rejected: {upload.rejection_reason}", code=upload.rejection_reason
        )
    if upload.status in (UploadStatus.EXPIRED, UploadStatus.DELETED):
        raise Gone("the upload has expired; ask for a new upload URL", code="upload_expired")
    return None


def release(unit_of_work: Callable[[], UnitOfWork], upload: Upload, now: datetime) -> bool:
    """Hand an unfinished verification back, so a retry can start at once; False when the upload changed
    meanwhile (deleted, say) and there is nothing to hand back."""
    with unit_of_work() as uow:
        released = uow.uploads.update(replace(upload, status=UploadStatus.ISSUED, updated_at=now))
        uow.commit()
    return released


def refuse(
    unit_of_work: Callable[[], UnitOfWork], upload: Upload, now: datetime, error: Forbidden | Conflict
) -> NoReturn:
    """Audit a refused completion (nothing about the upload changes) and raise it."""
    with unit_of_work() as uow:
        uow.audit.append(audit.complete_refused(upload.user_id, upload.upload_id, now, error.code))
        uow.commit()
    raise error


class UploadVerifier:
    def __init__(
        self,
        *,
        policy: VerificationPolicy,
        faces: FacePolicy,
        storage: UploadStorage,
        sanitizer: ImageSanitizer,
        detector: FaceDetector,
        changes: ChangeBoard,
        unit_of_work: Callable[[], UnitOfWork],
        clock: Clock,
    ) -> None:
        self._policy = policy
        self._faces = faces
        self._storage = storage
        self._sanitizer = sanitizer
        self._detector = detector
        self._changes = changes
        self._unit_of_work = unit_of_work
        self._clock = clock

    def verify(self, upload_id: str) -> str:
        """Verify a claimed upload and announce the verdict; returns it. An upload that is not (or no
        longer) claimed for verification is left alone: it was settled, deleted, or verified by a twin job."""
        now = self._clock.now().replace(microsecond=0)
        with self._unit_of_work() as uow:
            upload = uow.uploads.begin_verification(upload_id, now)
            uow.commit()
        if upload is None:
            return SETTLED
        verdict = SETTLED
        try:
            if upload.verification_attempts > self._policy.max_attempts:
                self._reject(upload, now, "image_too_large", {"attempts": upload.verification_attempts})
            self._verify(upload, now)
        except Conflict as refused:
            verdict = refused.code
        except DependencyUnavailable as outage:
            log.warning("verification put back after an outage", extra={"code": outage.code})
            verdict = outage.code if release(self._unit_of_work, upload, now) else SETTLED
        except DomainError:
            verdict = SETTLED  # rejected (recorded), or lost to a deletion (cleaned up)
        finally:
            # Not announced (the board down): a waiting complete answers 202; the row holds the verdict.
            announce(self._changes, Topic.UPLOAD, upload_id, verdict)
        return verdict

    def _verify(self, upload: Upload, now: datetime) -> Upload:
        info = self._storage.head(upload.object_key)
        if info is None:
            release(self._unit_of_work, upload, now)
            refuse(
                self._unit_of_work,
                upload,
                now,
                Conflict("nothing was uploaded yet; PUT first", code="upload_missing"),
            )
        if info.size > min(self._policy.max_upload_bytes, upload.content_length):
            self._reject(upload, now, "too_large", {"size": info.size})
        if info.size != upload.content_length:
            self._reject(upload, now, "not_an_image", {"size": info.size})
        if info.content_type != upload.content_type:
            self._reject(upload, now, "content_type_mismatch", {"stored_content_type": info.content_type})
        try:
            image = self._sanitizer.sanitize(
                self._storage.read(upload.object_key, upload.content_length), upload.content_type
            )
        except ContentRejected as refused:
            self._reject(upload, now, refused.code, {"size": info.size})
        faces = self._detector.detect(image.preview)
        reason = self._faces.refusal(faces, image.preview.width, image.preview.height)
        if reason is not None:
            self._reject(
                upload, now, reason, {"faces": len(faces), "width": image.width, "height": image.height}
            )
        return self._accept(upload, now, image, len(faces))

    def _accept(self, upload: Upload, now: datetime, image: SanitizedImage, faces: int) -> Upload:
        key = source_object_key(upload.user_id, upload.upload_id, image.content_type)
        self._storage.put_new(key, image.data, image.content_type)
        stored = StoredImage(
            key, image.content_type, len(image.data), image.width, image.height, sha256_base64(image.data)
        )
        verified = replace(
            upload,
            status=UploadStatus.VERIFIED,
            stored=stored,
            updated_at=now,
            source_expires_at=now + timedelta(seconds=self._policy.unused_upload_ttl_seconds),
        )
        details = {"size": stored.size, "width": image.width, "height": image.height, "faces": faces}
        with self._unit_of_work() as uow:
            won = uow.uploads.update(verified)
            if won:
                uow.audit.append(audit.upload_validated(upload, now, details))
            uow.commit()
        if not won:
            return self._lost_while_verifying(upload, now, key)
        self._delete_original(upload)
        log.info("upload verified", extra={"upload_id": upload.upload_id, **details})
        return replace(verified, version=verified.version + 1)

    def _lost_while_verifying(self, upload: Upload, now: datetime, stored_key: str | None) -> Upload:
        """The upload changed under this verification. Deleted or erased meanwhile: what this verification
        stored goes (the deletion may have run before the copy existed). Taken over after a stall, or
        verified by the other claimant: the copy is that verification's too, and stays."""
        with self._unit_of_work() as uow:
            current = uow.uploads.get(upload.upload_id)
        if current is None or current.status in _GONE:
            for key in (stored_key, upload.object_key):
                if key is not None:
                    self._storage.delete(key)
            log.info("verification lost to a deletion", extra={"upload_id": upload.upload_id})
            raise Gone("the upload was deleted; upload the selfie again", code="upload_expired")
        return current  # verified by a twin job, or taken over by one after a stall

    def _delete_original(self, upload: Upload) -> None:
        """The client's bytes (EXIF, GPS and all) go as soon as the sanitised copy is on record."""
        try:
            self._storage.delete(upload.object_key)
        except DependencyUnavailable:
            log.warning("original not deleted yet; the sweeper will", extra={"upload_id": upload.upload_id})

    def _reject(self, upload: Upload, now: datetime, reason: str, details: dict[str, Any]) -> NoReturn:
        self._storage.delete(upload.object_key)
        rejected = replace(upload, status=UploadStatus.REJECTED, rejection_reason=reason, updated_at=now)
        details = {"declared_size": upload.content_length, "declared_type": upload.content_type, **details}
        with self._unit_of_work() as uow:
            if uow.uploads.update(rejected):  # lost: deleted meanwhile, and the object is gone either way
                uow.audit.append(audit.upload_rejected(upload, now, reason, details))
            uow.commit()
        log.info("upload rejected", extra={"upload_id": upload.upload_id, "reason": reason, **details})
        raise ContentRejected(f"the upload was rejected: {reason}", code=reason)
