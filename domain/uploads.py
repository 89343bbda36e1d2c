"""Issuing upload URLs (US1): the policy and the service."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from domain import audit
from domain.errors import InvalidRequest
from domain.model import (
    ALLOWED_CONTENT_TYPES,
    HARD_MAX_UPLOAD_BYTES,
    HARD_MAX_URL_TTL_SECONDS,
    IssuedUpload,
    Upload,
    UploadRequest,
)
from domain.objects import upload_object_key
from domain.ports import Clock, IdGenerator, UnitOfWork, UploadUrlSigner


@dataclass(frozen=True)
class UploadPolicy:
    max_upload_bytes: int = HARD_MAX_UPLOAD_BYTES
    url_ttl_seconds: int = HARD_MAX_URL_TTL_SECONDS

    def __post_init__(self) -> None:
        if not 1 <= self.max_upload_bytes <= HARD_MAX_UPLOAD_BYTES:
            raise ValueError(f"max upload size must be 1..{HARD_MAX_UPLOAD_BYTES} bytes")
        if not 1 <= self.url_ttl_seconds <= HARD_MAX_URL_TTL_SECONDS:
            raise ValueError(f"upload URL lifetime must be 1..{HARD_MAX_URL_TTL_SECONDS} seconds")

    def check(self, request: UploadRequest) -> None:
        """Refuse anything but an allow-listed image type of a sane size and a well-formed checksum."""
        if request.content_type not in ALLOWED_CONTENT_TYPES:
            raise InvalidRequest(
                f"content_type must be one of {', '.join(ALLOWED_CONTENT_TYPES)}",
                code="unsupported_content_type",
            )
        if request.content_length < 1:
            raise InvalidRequest("content_length must be at least 1 byte", code="invalid_content_length")
        if request.content_length > self.max_upload_bytes:
            raise InvalidRequest(
                f"content_length exceeds the {self.max_upload_bytes}-byte limit", code="too_large"
            )
        if request.checksum_sha256 is not None and not is_sha256_base64(request.checksum_sha256):
            raise InvalidRequest(
                "checksum_sha256 must be the base64 encoding of a 32-byte SHA-256 digest",
                code="invalid_checksum",
            )


def is_sha256_base64(value: str) -> bool:
    try:
        return len(base64.b64decode(value, validate=True)) == 32
    except (binascii.Error, ValueError):
        return False


class UploadIssuer:
    """Grants one caller one write-once slot under their own prefix, and records that it did."""

    def __init__(
        self,
        *,
        policy: UploadPolicy,
        signer: UploadUrlSigner,
        unit_of_work: Callable[[], UnitOfWork],
        clock: Clock,
        ids: IdGenerator,
    ) -> None:
        self._policy = policy
        self._signer = signer
        self._unit_of_work = unit_of_work
        self._clock = clock
        self._ids = ids

    def issue(self, user_id: str, request: UploadRequest) -> IssuedUpload:
        self._policy.check(request)
        upload_id = self._ids.new_id()
        key = upload_object_key(user_id, upload_id)
        now = self._clock.now().replace(microsecond=0)  # S3 signs whole seconds (X-Amz-Date)
        ttl = self._policy.url_ttl_seconds
        intent = Upload(
            upload_id=upload_id,
            user_id=user_id,
            object_key=key,
            content_type=request.content_type,
            content_length=request.content_length,
            checksum_sha256=request.checksum_sha256,
            created_at=now,
            url_expires_at=now + timedelta(seconds=ttl),
        )
        presigned = self._signer.presign_put(key, request, ttl)
        with self._unit_of_work() as uow:
            uow.uploads.add(intent)
            uow.audit.append(audit.upload_issued(intent, ttl))
            uow.commit()
        return IssuedUpload(intent=intent, put=presigned)
