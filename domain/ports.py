"""Ports: what the domain needs from the world, as Protocols. Adapters subclass them explicitly."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Protocol

from domain.model import (
    AuditEvent,
    DetectedFace,
    ObjectInfo,
    Pixels,
    PresignedPut,
    SanitizedImage,
    Upload,
    UploadRequest,
)


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class IdGenerator(Protocol):
    def new_id(self) -> str:
        """A fresh, unguessable, URL- and key-safe identifier."""
        ...


class UploadUrlSigner(Protocol):
    def presign_put(self, object_key: str, request: UploadRequest, ttl_seconds: int) -> PresignedPut:
        """Sign a single-use PUT that S3 accepts only with exactly the returned headers."""
        ...


class UploadStorage(Protocol):
    """The private uploads bucket, as verification needs it."""

    def head(self, object_key: str) -> ObjectInfo | None:
        """Metadata of the object, or None when there is none."""
        ...

    def read(self, object_key: str, max_bytes: int) -> bytes:
        """The object's bytes; refuses (ContentRejected ``too_large``) to read more than ``max_bytes``."""
        ...

    def put_new(self, object_key: str, data: bytes, content_type: str) -> None:
        """Store encrypted; never overwrites an existing object."""
        ...

    def delete(self, object_key: str) -> None:
        """Remove the object; deleting what is not there is not an error."""
        ...


class ImageSanitizer(Protocol):
    def sanitize(self, data: bytes, declared_type: str) -> SanitizedImage:
        """Decode within safe limits, upright by EXIF, re-encode without metadata.

        Raises ContentRejected with ``content_type_mismatch``, ``not_an_image`` or ``image_too_large``.
        """
        ...


class FaceDetector(Protocol):
    def detect(self, image: Pixels) -> list[DetectedFace]: ...

    def warm_up(self) -> None:
        """Load whatever is slow to load, so that the first real detection is fast."""
        ...


class UploadRepository(Protocol):
    def add(self, upload: Upload) -> None: ...

    def get(self, upload_id: str) -> Upload | None: ...

    def save(self, upload: Upload) -> None:
        """Persist the upload's current state (status, stored image, reason, times)."""
        ...

    def claim_for_verification(self, upload_id: str, now: datetime, stale_before: datetime) -> bool:
        """Atomically move an issued upload (or one whose verification stalled before ``stale_before``)
        to ``verifying``; False when another request holds it or it is settled."""
        ...


class AuditLog(Protocol):
    def append(self, event: AuditEvent) -> None: ...


class UnitOfWork(Protocol):
    """One transaction. Nothing is kept unless ``commit`` is called before the block ends."""

    uploads: UploadRepository
    audit: AuditLog

    def __enter__(self) -> UnitOfWork: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None: ...


@dataclass(frozen=True)
class Credentials:
    """What a request presented: a bearer value and/or cookies. Never logged."""

    bearer: str | None = field(default=None, repr=False)
    cookies: Mapping[str, str] = field(default_factory=dict, repr=False)


class Authenticator(Protocol):
    def authenticate(self, credentials: Credentials) -> str:
        """Return the caller's user id, or raise Unauthenticated / AuthUnavailable."""
        ...
