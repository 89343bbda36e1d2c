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
    SignedUrl,
    Upload,
    UploadRequest,
    UploadStatus,
)
from domain.tryons import TryOn, TryOnResult


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

    def hold_source(self, object_key: str, held: bool) -> None:
        """Tag the sanitised selfie so the bucket's lifecycle backstop keeps it (held: a favourite needs it)
        or expires it again; a selfie that is not there is nothing to do."""
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

    def for_user(self, user_id: str) -> list[Upload]: ...

    def delete(self, upload_id: str) -> None: ...

    def to_purge(self, settled_before: datetime, limit: int) -> list[Upload]:
        """Uploads whose objects may still exist but must not: originals of verified uploads, intents never
        completed or rejected (their URL long dead), deleted uploads; all unpurged and settled before."""
        ...

    def overdue_sources(self, now: datetime, limit: int) -> list[str]:
        """Verified uploads whose deletion deadline has passed."""
        ...

    def claim_sweep(self, upload_id: str, now: datetime, lease_until: datetime) -> bool: ...

    def mark_purged(self, upload_id: str, now: datetime, status: UploadStatus) -> None:
        """The upload's objects are gone; record it (and its new status) and end the sweep lease."""
        ...

    def claim_for_verification(self, upload_id: str, now: datetime, stale_before: datetime) -> bool:
        """Atomically move an issued upload (or one whose verification stalled before ``stale_before``)
        to ``verifying``; False when another request holds it or it is settled."""
        ...


class AuditLog(Protocol):
    def append(self, event: AuditEvent) -> None: ...


class TryOnRepository(Protocol):
    def add(self, tryon: TryOn) -> None: ...

    def get(self, tryon_id: str) -> TryOn | None: ...

    def by_idempotency_key(self, user_id: str, key: str) -> TryOn | None: ...

    def save(self, tryon: TryOn) -> None:
        """Persist the try-on's state; this also ends the current step's lease."""
        ...

    def claim(self, tryon_id: str, now: datetime, lease_until: datetime) -> bool:
        """Take the try-on for one step unless it is settled or another worker's lease is still running."""
        ...

    def unsettled_for_upload(self, upload_id: str) -> int: ...

    def delete_for_user(self, user_id: str) -> int: ...

    def due(self, before: datetime, limit: int) -> list[str]:
        """Unsettled try-ons whose next step was due before ``before`` and that nobody holds."""
        ...


class ResultRepository(Protocol):
    def add_if_absent(self, result: TryOnResult) -> None: ...

    def set_favorite(self, result_id: str, favorite: bool) -> None: ...

    def for_upload(self, upload_id: str) -> list[TryOnResult]: ...

    def for_user(self, user_id: str) -> list[TryOnResult]: ...

    def delete(self, result_id: str) -> None: ...

    def expired(self, created_before: datetime, limit: int) -> list[TryOnResult]:
        """Results that are not favourites, created before the cut-off."""
        ...

    def claim_sweep(self, result_id: str, now: datetime, lease_until: datetime) -> bool: ...

    def for_tryon(self, tryon_id: str) -> list[TryOnResult]: ...

    def get(self, result_id: str) -> TryOnResult | None: ...


class UnitOfWork(Protocol):
    """One transaction. Nothing is kept unless ``commit`` is called before the block ends."""

    uploads: UploadRepository
    audit: AuditLog
    tryons: TryOnRepository
    results: ResultRepository

    def __enter__(self) -> UnitOfWork: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None: ...


class TryOnQueue(Protocol):
    """Asks a worker to advance a try-on by one step, now or later. Raises DependencyUnavailable."""

    def advance_soon(self, tryon_id: str) -> None: ...

    def advance_in(self, tryon_id: str, seconds: float) -> None: ...

    def expire_upload_at(self, upload_id: str, when: datetime) -> None: ...


class SourceUrlSigner(Protocol):
    def presign_get(self, object_key: str, ttl_seconds: int) -> SignedUrl:
        """A short-lived GET URL for a stored source image, for the generator to fetch once."""
        ...


class ResultStorage(Protocol):
    """The private processed bucket."""

    def put_new(self, object_key: str, data: bytes, content_type: str) -> None: ...

    def read(self, object_key: str, max_bytes: int) -> bytes: ...

    def delete(self, object_key: str) -> None: ...

    def mark_favorite(self, object_key: str, favorite: bool) -> None:
        """Tag the object so the bucket's lifecycle backstop keeps (or again expires) it."""
        ...


@dataclass(frozen=True)
class Credentials:
    """What a request presented: a bearer value and/or cookies. Never logged."""

    bearer: str | None = field(default=None, repr=False)
    cookies: Mapping[str, str] = field(default_factory=dict, repr=False)


class Authenticator(Protocol):
    def authenticate(self, credentials: Credentials) -> str:
        """Return the caller's user id, or raise Unauthenticated / AuthUnavailable."""
        ...
