"""Request and response bodies of /v1, as marshmallow schemas (they also feed /openapi.json).

Schemas check shapes and types; the domain policy checks values, so each refusal has one stable code.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import marshmallow as ma

from domain.changes import MAX_WAIT_SECONDS
from domain.model import ALLOWED_CONTENT_TYPES, HARD_MAX_UPLOAD_BYTES

UTC_SECONDS = "%Y-%m-%dT%H:%M:%SZ"
UTC_SECONDS_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"


class UtcSeconds(ma.fields.DateTime):
    """A UTC time to the second, ``2026-11-28T22:05:00Z``, documented as ``format: date-time``.

    ``DateTime(format=UTC_SECONDS)`` made apispec write ``format: null``: no valid OpenAPI.
    """

    def __init__(self, **kwargs: Any) -> None:
        metadata = {"pattern": UTC_SECONDS_PATTERN, **kwargs.pop("metadata", {})}
        super().__init__(metadata=metadata, **kwargs)

    def _serialize(self, value: dt.datetime | None, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else value.strftime(UTC_SECONDS)


class UploadRequestSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    content_type = ma.fields.String(
        required=True,
        metadata={
            "description": "The exact MIME type the client will PUT.",
            "enum": list(ALLOWED_CONTENT_TYPES),
        },
    )
    content_length = ma.fields.Integer(
        required=True,
        strict=True,
        metadata={
            "description": "Exact size in bytes; at most MAX_UPLOAD_BYTES.",
            "minimum": 1,
            "maximum": HARD_MAX_UPLOAD_BYTES,
        },
    )
    checksum_sha256 = ma.fields.String(
        load_default=None,
        metadata={"description": "Optional base64 of the SHA-256 of the bytes; S3 then verifies it."},
    )


class UploadTicketSchema(ma.Schema):
    upload_id = ma.fields.String(required=True)
    object_key = ma.fields.String(required=True, metadata={"example": "uploads/<user_id>/<upload_id>"})
    method = ma.fields.String(required=True, metadata={"example": "PUT"})
    url = ma.fields.String(required=True, metadata={"description": "Pre-signed, single-use, short-lived."})
    expires_at = UtcSeconds(required=True, metadata={"example": "2026-11-28T22:05:00Z"})
    headers = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.String(),
        required=True,
        metadata={"description": "Send exactly these headers with the PUT; S3 rejects anything else."},
    )


class CompleteUploadSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    object_key = ma.fields.String(
        required=True, metadata={"description": "The object_key issued with the upload URL."}
    )


class VerifiedUploadSchema(ma.Schema):
    upload_id = ma.fields.String(required=True)
    status = ma.fields.String(required=True, metadata={"enum": ["verified"]})
    content_type = ma.fields.String(
        required=True, metadata={"description": "Of the sanitised image we keep."}
    )
    size = ma.fields.Integer(required=True, metadata={"description": "Bytes of the sanitised image."})
    width = ma.fields.Integer(required=True)
    height = ma.fields.Integer(required=True)
    checksum_sha256 = ma.fields.String(
        required=True, metadata={"description": "base64 SHA-256 of the sanitised image we keep."}
    )
    expires_at = UtcSeconds(
        required=True, metadata={"description": "When the selfie is deleted if no try-on uses it."}
    )


class UploadErrorSchema(ma.Schema):
    code = ma.fields.String(required=True, metadata={"description": "Why verification refused the upload."})
    message = ma.fields.String(required=True)


class UploadStateSchema(ma.Schema):
    """An upload's state; the verified fields are present only when it is verified."""

    upload_id = ma.fields.String(required=True)
    status = ma.fields.String(
        required=True,
        metadata={"enum": ["issued", "verifying", "verified", "rejected", "deleted", "expired"]},
    )
    error = ma.fields.Nested(UploadErrorSchema, allow_none=True, required=True)
    content_type = ma.fields.String()
    size = ma.fields.Integer()
    width = ma.fields.Integer()
    height = ma.fields.Integer()
    checksum_sha256 = ma.fields.String()
    expires_at = UtcSeconds(metadata={"description": "When the selfie is deleted if no try-on uses it."})


class VerifyingUploadSchema(ma.Schema):
    upload_id = ma.fields.String(required=True)
    status = ma.fields.String(required=True, metadata={"enum": ["verifying"]})


class WaitSeconds(ma.fields.Integer):
    """Whole seconds in plain ASCII digits: "7", never "7.0", "+7", " 7", "1e1" or a non-ASCII digit."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if not (isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 9):
            raise self.make_error("invalid")
        number: int = super()._deserialize(value, attr, data, **kwargs)
        return number


class WaitQuerySchema(ma.Schema):
    wait = WaitSeconds(
        load_default=0,
        validate=ma.validate.Range(min=0, max=MAX_WAIT_SECONDS),
        metadata={
            "description": (
                "Long poll: answer as soon as the state changes, or with the unchanged state after this "
                f"many seconds (0-{MAX_WAIT_SECONDS}). A settled resource answers at once. Absent or 0: "
                "answer now. A busy server may answer sooner, unchanged: just ask again."
            )
        },
    )
