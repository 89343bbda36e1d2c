"""Bodies of /v1/tryons and /v1/results (marshmallow; they also feed /openapi.json)."""

from __future__ import annotations

import marshmallow as ma

from domain.tryons import MAX_IMAGES, MAX_PROMPT_CHARS, OUTPUT_FORMATS
from entrypoints.http.schemas import UtcSeconds


class TryOnOrderSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    upload_id = ma.fields.String(required=True)
    style_prompt = ma.fields.String(
        required=True,
        metadata={"minLength": 1, "maxLength": MAX_PROMPT_CHARS, "example": "a sleek copper bob"},
    )
    num_images = ma.fields.Integer(
        load_default=1, strict=True, metadata={"minimum": 1, "maximum": MAX_IMAGES}
    )
    output_format = ma.fields.String(load_default="jpeg", metadata={"enum": list(OUTPUT_FORMATS)})


class IdempotencyHeaderSchema(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    idempotency_key = ma.fields.String(
        data_key="Idempotency-Key",
        load_default=None,
        validate=ma.validate.Length(min=1, max=255),
        metadata={"description": "Retrying with the same key returns the same try-on."},
    )


class TryOnAcceptedSchema(ma.Schema):
    tryon_id = ma.fields.String(required=True)
    status = ma.fields.String(required=True, metadata={"enum": ["queued", "running", "succeeded", "failed"]})


class TryOnErrorSchema(ma.Schema):
    code = ma.fields.String(required=True)
    message = ma.fields.String(required=True)
    retryable = ma.fields.Boolean(required=True)


class ResultSchema(ma.Schema):
    result_id = ma.fields.String(required=True)
    content_type = ma.fields.String(required=True)
    width = ma.fields.Integer(allow_none=True)
    height = ma.fields.Integer(allow_none=True)
    favorite = ma.fields.Boolean(required=True)


class TryOnSchema(ma.Schema):
    tryon_id = ma.fields.String(required=True)
    upload_id = ma.fields.String(required=True)
    status = ma.fields.String(required=True, metadata={"enum": ["queued", "running", "succeeded", "failed"]})
    attempts = ma.fields.Integer(required=True)
    created_at = UtcSeconds(required=True)
    completed_at = UtcSeconds(allow_none=True)
    error = ma.fields.Nested(TryOnErrorSchema, allow_none=True)
    results = ma.fields.List(ma.fields.Nested(ResultSchema), required=True)
