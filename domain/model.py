"""Entities and value objects of the upload flow."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

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

    ``object_key`` is where the client PUTs. Two deadlines, never one for the other:
    ``url_expires_at`` is when the PUT URL dies (a late ``complete`` is refused, an upload never completed
    is swept); ``source_expires_at`` is when the sanitised selfie is deleted, set once it is verified
    (UNUSED_UPLOAD_TTL_SECONDS on), and restarted when a try-on on it settles or its last favourite goes
    (SOURCE_RETENTION_SECONDS on); a try-on or a favourite holds it past that.
    """

    upload_id: str
    user_id: str
    object_key: str
    content_type: str
    content_length: int
    checksum_sha256: str | None
    created_at: datetime
    url_expires_at: datetime
    status: UploadStatus = UploadStatus.ISSUED
    updated_at: datetime | None = None
    source_expires_at: datetime | None = None
    stored: StoredImage | None = None
    rejection_reason: str | None = None
    version: int = 0
    """Bumped by every change of the row: a change is written only if the row is still at the version it
    was derived from (compare-and-set), so a decision made on a stale read never lands."""
    verification_attempts: int = 0
    """Verifications started on it: a verification that never finishes is not retried forever."""
    source_kept: bool = False
    """A favourite result holds the selfie: its expiry found one past its deadline
    (``UploadRepository.keep_if_held``), or migration 9 did. The sweep does not list it. Every restart of
    its retention clears the mark (an unfavourite always restarts it), and the sweep re-checks each mark about
    once a week (``SweepPolicy.kept_recheck_seconds``) and clears one no favourite justifies
    (``UploadRepository.recheck_kept``: migration 9's marks can outlive the old code's unfavourite), so no
    selfie is kept by the mark alone."""

    def source_expired(self, now: datetime) -> bool:
        """The selfie's deletion deadline has come (an upload that was never verified has none)."""
        return self.source_expires_at is not None and self.source_expires_at <= now

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
    """What issuing an upload gives the client: the upload on record and the pre-signed PUT to send."""

    intent: Upload
    put: PresignedPut


@dataclass(frozen=True)
class Credentials:
    """What a request presented: a bearer value and/or cookies. Never logged."""

    bearer: str | None = field(default=None, repr=False)
    cookies: Mapping[str, str] = field(default_factory=dict, repr=False)


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


# Image generation (fal.ai's queue API), as the domain sees it.


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    image_url: SignedUrl = field(repr=False)
    num_images: int = 1
    output_format: str = "jpeg"
    start_deadline_seconds: int = 240
    """fal must start the job within this (it downloads the image then), or give up: keep it below
    the signed URL's remaining life."""


@dataclass(frozen=True)
class Submission:
    """A job accepted by the queue. The URLs carry no secret but are only ever used with our key."""

    request_id: str
    status_url: str
    response_url: str
    cancel_url: str


@dataclass(frozen=True)
class FalDelivery:
    """A verified fal webhook delivery, as fal documents it: ``{request_id, gateway_request_id, status,
    payload, error, payload_error}``. ``signed_at`` is the signed ``X-Fal-Webhook-Timestamp`` (epoch
    seconds); ``signature`` the hex signature (its replay key). Only a hint that a request finished: the
    result is still fetched from the queue's ``response_url``."""

    request_id: str
    gateway_request_id: str | None
    status: Literal["OK", "ERROR"]
    error: str | None
    payload_error: str | None
    payload: Any = field(repr=False)  # the model's output (OK) or error details (ERROR); untrusted content
    signed_at: int = 0
    signature: str = field(default="", repr=False)


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"  # fal says COMPLETED for failures too: only the result tells


@dataclass(frozen=True)
class GeneratedImage:
    url: str = field(repr=False)
    content_type: str | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class DownloadedImage:
    data: bytes = field(repr=False)
    content_type: str


# Try-ons (US3).


class TryOnStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


TERMINAL = (TryOnStatus.SUCCEEDED, TryOnStatus.FAILED)
UNSETTLED = tuple(status for status in TryOnStatus if status not in TERMINAL)
"""Queued or running: a try-on still under way (what the partial indexes, the gauges and long polls mean)."""


@dataclass(frozen=True)
class TryOnError:
    code: str
    message: str
    retryable: bool


@dataclass(frozen=True)
class TryOn:
    tryon_id: str
    user_id: str
    upload_id: str
    style_prompt: str = field(repr=False)
    num_images: int
    output_format: str
    created_at: datetime
    status: TryOnStatus = TryOnStatus.QUEUED
    attempts: int = 0
    completed_at: datetime | None = None
    error: TryOnError | None = None
    idempotency_key: str | None = None
    request_fingerprint: str | None = None
    submission: Submission | None = None
    submitted_at: datetime | None = None
    next_action_at: datetime | None = None
    version: int = 0
    """Compare-and-set token, as ``Upload.version``: bumped by every change, including each claim."""
    notified_request_id: str | None = None
    """The generator request a verified webhook said has finished (set only by ``note_finished``): when it
    is the current submission's, the next step fetches the result without asking for the status."""


@dataclass(frozen=True)
class TryOnResult:
    result_id: str
    tryon_id: str
    user_id: str
    position: int
    object_key: str
    content_type: str
    size: int
    width: int | None
    height: int | None
    created_at: datetime
    favorite: bool = False
