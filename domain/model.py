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


def upload_object_key(user_id: str, upload_id: str) -> str:
    return f"uploads/{user_id}/{upload_id}"


class UploadStatus(enum.StrEnum):
    ISSUED = "issued"
    VERIFIED = "verified"
    REJECTED = "rejected"
    DELETED = "deleted"


@dataclass(frozen=True)
class UploadRequest:
    """What the client declares it is going to upload."""

    content_type: str
    content_length: int
    checksum_sha256: str | None = None


@dataclass(frozen=True)
class UploadIntent:
    """A pre-signed PUT we handed out: who may put what, where, until when."""

    upload_id: str
    user_id: str
    object_key: str
    content_type: str
    content_length: int
    checksum_sha256: str | None
    created_at: datetime
    expires_at: datetime
    status: UploadStatus = UploadStatus.ISSUED


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
    intent: UploadIntent
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
