"""Entities and value objects of the upload flow."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.errors import Unauthenticated

ALLOWED_CONTENT_TYPES: tuple[str, ...] = (
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/heic",
    "image/heif",
)
HARD_MAX_UPLOAD_BYTES = 16 * 1024 * 1024
HARD_MAX_URL_TTL_SECONDS = 300

_USER_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def validated_user_id(subject: object) -> str:
    """A user id becomes part of an object key, so only a conservative alphabet is accepted.

    Better Auth ids are alphanumeric; anything with ``/``, ``.`` or other punctuation could escape
    the caller's prefix and is refused as an authentication failure.
    """
    if not isinstance(subject, str) or not _USER_ID.fullmatch(subject):
        raise Unauthenticated("the token's subject is not a valid user id")
    return subject


class UploadStatus(enum.StrEnum):
    ISSUED = "issued"
    VERIFYING = "verifying"
    VERIFIED = "verified"
    REJECTED = "rejected"
    EXPIRED = "expired"
    DELETED = "deleted"


@dataclass(frozen=True)
class UploadRequest:
    """What the client declares it is going to upload."""

    content_type: str
    content_length: int
    checksum_sha256: str | None = None


@dataclass(frozen=True)
class StoredImage:
    """The sanitised image verification stored in place of what the client uploaded."""

    object_key: str
    content_type: str
    size: int
    width: int
    height: int
    checksum_sha256: str


@dataclass(frozen=True)
class Upload:
    """One selfie slot, from the pre-signed PUT we handed out to the verified (or rejected) image.

    ``object_key`` is where the client PUTs; ``expires_at`` is when the PUT URL dies while the upload is
    issued, and when an unused verified upload is deleted once it is verified.
    """

    upload_id: str
    user_id: str
    object_key: str
    content_type: str
    content_length: int
    checksum_sha256: str | None
    created_at: datetime
    expires_at: datetime
    status: UploadStatus = UploadStatus.ISSUED
    updated_at: datetime | None = None
    stored: StoredImage | None = None
    rejection_reason: str | None = None
    version: int = 0
    """Bumped by every change of the row: a change is written only if the row is still at the version it
    was derived from (compare-and-set), so a decision made on a stale read never lands."""
    verification_attempts: int = 0
    """Verifications started on it: a verification that never finishes is not retried forever."""

    def object_keys(self) -> tuple[str, ...]:
        """Every object this upload may have in the uploads bucket: what the client PUT, and the
        sanitised copy once verified."""
        return (self.object_key,) if self.stored is None else (self.object_key, self.stored.object_key)


class SignedUrl(str):
    """A pre-signed URL: a bearer credential. Its repr never shows it, so it cannot slip into logs."""

    def __repr__(self) -> str:
        return "SignedUrl('<redacted>')"


@dataclass(frozen=True)
class PresignedPut:
    url: SignedUrl = field(repr=False)
    headers: dict[str, str]


@dataclass(frozen=True)
class IssuedUpload:
    intent: Upload
    request: PresignedPut


@dataclass(frozen=True)
class AuditEvent:
    """One append-only fact. ``details`` holds ids, sizes and reasons: never URLs, tokens or image data."""

    event: str
    actor_id: str | None
    subject_id: str | None
    outcome: str
    occurred_at: datetime
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ObjectInfo:
    """What object storage says about an object without reading it."""

    size: int
    content_type: str | None
    encrypted: bool


@dataclass(frozen=True)
class Pixels:
    """A small RGB image (row-major, 3 bytes per pixel) for detectors; never stored."""

    width: int
    height: int
    rgb: bytes = field(repr=False)


@dataclass(frozen=True)
class SanitizedImage:
    """Re-encoded image bytes with no metadata, plus a downscaled copy for face detection."""

    data: bytes = field(repr=False)
    content_type: str
    width: int
    height: int
    preview: Pixels


@dataclass(frozen=True)
class DetectedFace:
    """A face box in the coordinates of the image it was detected in."""

    x: float
    y: float
    width: float
    height: float
    confidence: float
