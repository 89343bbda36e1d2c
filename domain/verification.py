"""Completing an upload (US2): prove it is the caller's, check what S3 holds, sanitise, gate on a face.

Only the caller's own, real, sane image with one face goes on; everything else is deleted, audited
and answered with a clear reason. A settled upload answers the same way again without redoing work.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, NoReturn

from domain.errors import Conflict, ContentRejected, DependencyUnavailable, Forbidden, Gone, NotFound
from domain.faces import FacePolicy
from domain.model import (
    AuditEvent,
    SanitizedImage,
    StoredImage,
    Upload,
    UploadStatus,
    source_object_key,
)
from domain.ports import Clock, FaceDetector, ImageSanitizer, UnitOfWork, UploadStorage

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


def sha256_base64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


class UploadVerifier:
    def __init__(
        self,
        *,
        policy: VerificationPolicy,
        faces: FacePolicy,
        storage: UploadStorage,
        sanitizer: ImageSanitizer,
        detector: FaceDetector,
        unit_of_work: Callable[[], UnitOfWork],
        clock: Clock,
    ) -> None:
        self._policy = policy
        self._faces = faces
        self._storage = storage
        self._sanitizer = sanitizer
        self._detector = detector
        self._unit_of_work = unit_of_work
        self._clock = clock

    def complete(self, user_id: str, upload_id: str, object_key: str) -> Upload:
        now = self._clock.now().replace(microsecond=0)
        upload = self._owned(user_id, upload_id, now)
        if object_key != upload.object_key or not object_key.startswith(f"uploads/{user_id}/"):
            self._refuse(
                upload, now, Forbidden("that object key was not issued to you", code="key_not_owned")
            )
        settled = self._settled(upload)
        if settled is not None:
            return settled
        if now > upload.expires_at + timedelta(seconds=self._policy.completion_grace_seconds):
            self._expire(upload, now)
        stale_before = now - timedelta(seconds=self._policy.claim_lease_seconds)
        with self._unit_of_work() as uow:
            claimed = uow.uploads.claim_for_verification(upload_id, now, stale_before)
            uow.commit()
        if claimed is None:
            return self._answer_for_someone_elses_claim(user_id, upload_id, now)
        try:
            return self._verify(claimed, now)
        except DependencyUnavailable:
            if self._release(claimed, now):
                raise
            return self._lost_while_verifying(claimed, now, None)  # deleted meanwhile: 410, not 503

    def look_up(self, user_id: str, upload_id: str) -> Upload:
        """The caller's upload as it is now (anyone else's is reported as not found)."""
        with self._unit_of_work() as uow:
            upload = uow.uploads.get(upload_id)
        if upload is None or upload.user_id != user_id:
            raise NotFound("no upload of yours has that id", code="upload_not_found")
        return upload

    def _owned(self, user_id: str, upload_id: str, now: datetime) -> Upload:
        with self._unit_of_work() as uow:
            upload = uow.uploads.get(upload_id)
            if upload is None or upload.user_id != user_id:
                uow.audit.append(
                    self._event("upload.complete_refused", user_id, upload_id, now, "upload_not_found")
                )
                uow.commit()
                raise NotFound("no upload of yours has that id", code="upload_not_found")
        return upload

    def _settled(self, upload: Upload) -> Upload | None:
        if upload.status is UploadStatus.VERIFIED:
            return upload
        if upload.status is UploadStatus.REJECTED:
            raise ContentRejected(
                f"the upload was rejected: {upload.rejection_reason}", code=upload.rejection_reason
            )
        if upload.status in (UploadStatus.EXPIRED, UploadStatus.DELETED):
            raise Gone("the upload has expired; ask for a new upload URL", code="upload_expired")
        return None

    def _answer_for_someone_elses_claim(self, user_id: str, upload_id: str, now: datetime) -> Upload:
        upload = self._owned(user_id, upload_id, now)
        settled = self._settled(upload)
        if settled is not None:
            return settled
        raise Conflict("the upload is being verified; retry in a moment", code="upload_missing")

    def _verify(self, upload: Upload, now: datetime) -> Upload:
        info = self._storage.head(upload.object_key)
        if info is None:
            self._release(upload, now)
            self._refuse(upload, now, Conflict("nothing was uploaded yet; PUT first", code="upload_missing"))
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
            expires_at=now + timedelta(seconds=self._policy.unused_upload_ttl_seconds),
        )
        details = {"size": stored.size, "width": image.width, "height": image.height, "faces": faces}
        with self._unit_of_work() as uow:
            won = uow.uploads.update(verified)
            if won:
                uow.audit.append(
                    self._event(
                        "upload.validated", upload.user_id, upload.upload_id, now, None, details=details
                    )
                )
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
        settled = self._settled(current)
        if settled is not None:
            return settled
        raise Conflict("the upload is being verified; retry in a moment", code="upload_missing")

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
                uow.audit.append(
                    self._event(
                        "upload.rejected", upload.user_id, upload.upload_id, now, reason, details=details
                    )
                )
            uow.commit()
        log.info("upload rejected", extra={"upload_id": upload.upload_id, "reason": reason, **details})
        raise ContentRejected(f"the upload was rejected: {reason}", code=reason)

    def _expire(self, upload: Upload, now: datetime) -> NoReturn:
        self._storage.delete(upload.object_key)
        expired = replace(upload, status=UploadStatus.EXPIRED, updated_at=now)
        with self._unit_of_work() as uow:
            if uow.uploads.update(expired):  # lost: deleted meanwhile; gone is still the answer
                uow.audit.append(
                    self._event("upload.expired", upload.user_id, upload.upload_id, now, "upload_expired")
                )
            uow.commit()
        raise Gone(
            "the upload URL expired before the upload was completed; ask for a new one", code="upload_expired"
        )

    def _release(self, upload: Upload, now: datetime) -> bool:
        """Hand an unfinished verification back, so a retry can start at once; False when the upload changed
        meanwhile (deleted, say) and there is nothing to hand back."""
        with self._unit_of_work() as uow:
            released = uow.uploads.update(replace(upload, status=UploadStatus.ISSUED, updated_at=now))
            uow.commit()
        return released

    def _refuse(self, upload: Upload, now: datetime, error: Forbidden | Conflict) -> NoReturn:
        with self._unit_of_work() as uow:
            uow.audit.append(
                self._event("upload.complete_refused", upload.user_id, upload.upload_id, now, error.code)
            )
            uow.commit()
        raise error

    @staticmethod
    def _event(
        name: str,
        actor: str,
        upload_id: str,
        now: datetime,
        reason: str | None,
        *,
        details: dict[str, Any] | None = None,
    ) -> AuditEvent:
        outcome = "success" if reason is None else "failure"
        return AuditEvent(name, actor, upload_id, outcome, now, reason, details or {})
