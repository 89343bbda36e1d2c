"""/v1/uploads: issuing pre-signed upload URLs (US1)."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from flask.views import MethodView
from flask_smorest import Blueprint

from domain.model import Upload, UploadRequest, UploadStatus
from entrypoints.http.context import services
from entrypoints.http.problems import documents_problem
from entrypoints.http.schemas import (
    CompleteUploadSchema,
    UploadRequestSchema,
    UploadStateSchema,
    UploadTicketSchema,
    VerifiedUploadSchema,
    VerifyingUploadSchema,
    WaitQuerySchema,
)
from entrypoints.http.security import current_user_id

blp = Blueprint("uploads", __name__, url_prefix="/v1/uploads", description="Private selfie uploads")


@blp.route("")
class Uploads(MethodView):
    @blp.arguments(UploadRequestSchema)
    @blp.response(201, UploadTicketSchema)
    @documents_problem(blp, 400, "bad_request: the body is not valid JSON")
    @documents_problem(blp, 401, "unauthenticated: missing or invalid token")
    @documents_problem(
        blp,
        422,
        "unsupported_content_type | too_large | invalid_content_length | invalid_checksum | validation_error",
    )
    @documents_problem(blp, 429, "rate_limited: per-user limit; see Retry-After")
    @documents_problem(blp, 503, "database_unavailable | storage_unavailable | auth_unavailable (retryable)")
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Get a pre-signed, single-use PUT URL for one selfie.

        The client PUTs the bytes to ``url`` with exactly ``headers``. S3 enforces the lifetime, type,
        length, checksum, encryption and single use (a second PUT gets 412).
        """
        issued = services().upload_issuer.issue(
            current_user_id(),
            UploadRequest(
                content_type=body["content_type"],
                content_length=body["content_length"],
                checksum_sha256=body["checksum_sha256"],
            ),
        )
        return {
            "upload_id": issued.intent.upload_id,
            "object_key": issued.intent.object_key,
            "method": "PUT",
            "url": str(issued.put.url),
            "expires_at": issued.intent.url_expires_at,
            "headers": issued.put.headers,
        }


@blp.route("/<string:upload_id>/complete")
class CompleteUpload(MethodView):
    @blp.arguments(CompleteUploadSchema)
    @blp.response(200, VerifiedUploadSchema)
    @blp.alt_response(
        202,
        schema=VerifyingUploadSchema,
        description="No verdict yet: follow GET /v1/uploads/{upload_id} (see Retry-After)",
    )
    @documents_problem(blp, 400, "bad_request: the body is not valid JSON")
    @documents_problem(blp, 401, "unauthenticated: missing or invalid token")
    @documents_problem(blp, 403, "key_not_owned: that key was not issued to you (nothing was touched)")
    @documents_problem(blp, 404, "upload_not_found (also for another user's upload)")
    @documents_problem(blp, 409, "upload_missing: nothing uploaded yet, or being verified (retryable)")
    @documents_problem(blp, 410, "upload_expired: ask for a new upload URL (retryable)")
    @documents_problem(
        blp,
        422,
        "too_large | content_type_mismatch | not_an_image | image_too_large | no_face_detected | "
        "multiple_faces | face_too_small (the object has been deleted)",
    )
    @documents_problem(blp, 429, "rate_limited: per-user limit on mutations; see Retry-After")
    @documents_problem(
        blp,
        503,
        "database_unavailable | storage_unavailable | queue_unavailable | auth_unavailable (retryable)",
    )
    def post(self, body: dict[str, Any], upload_id: str) -> dict[str, Any] | Response:
        """Verify an uploaded selfie: ownership, size, type, real content, metadata stripped, one face.

        Hands the upload to the verifier (once, however often it is called) and waits up to
        VERIFY_WAIT_SECONDS for the verdict: 200 or a refusal as soon as it is known, else 202 (follow
        GET /v1/uploads/{upload_id}). Completing a settled upload again returns the same answer.
        """
        upload = services().upload_completion.complete(current_user_id(), upload_id, body["object_key"])
        if upload.status is not UploadStatus.VERIFIED:
            return _still_verifying(upload)
        return _verified_fields(upload)


@blp.route("/<string:upload_id>")
class UploadState(MethodView):
    @blp.arguments(WaitQuerySchema, location="query")
    @blp.response(200, UploadStateSchema)
    @documents_problem(blp, 401, "unauthenticated: missing or invalid token")
    @documents_problem(blp, 404, "upload_not_found (also for another user's upload)")
    @documents_problem(blp, 422, "validation_error: wait is not a whole number of seconds from 0 to 25")
    @documents_problem(blp, 503, "database_unavailable | auth_unavailable (retryable)")
    def get(self, query: dict[str, Any], upload_id: str) -> dict[str, Any]:
        """The upload's state: issued, verifying, verified (with the stored image's fields), rejected (with
        the reason in ``error``), deleted or expired.

        With ``?wait=N`` (N ≤ 25) the answer comes as soon as the state changes (the verifier's verdict,
        a deletion), or unchanged after N seconds; a verified, rejected, deleted or expired upload answers
        at once. Follow a 202 from complete with ``?wait=25`` until the status settles."""
        upload: Upload = services().upload_completion.look_up(current_user_id(), upload_id, query["wait"])
        if upload.status is UploadStatus.VERIFIED and upload.stored is not None:
            return {**_verified_fields(upload), "error": None}
        error = None
        if upload.status is UploadStatus.REJECTED:
            reason = upload.rejection_reason or "not_an_image"
            error = {"code": reason, "message": f"the upload was rejected: {reason}"}
        return {"upload_id": upload.upload_id, "status": upload.status.value, "error": error}


VERIFYING_RETRY_AFTER_SECONDS = "2"


def _still_verifying(upload: Upload) -> Response:
    response = jsonify({"upload_id": upload.upload_id, "status": UploadStatus.VERIFYING.value})
    response.status_code = 202
    response.headers["Retry-After"] = VERIFYING_RETRY_AFTER_SECONDS
    response.headers["Cache-Control"] = "no-store"
    return response


def _verified_fields(upload: Upload) -> dict[str, Any]:
    stored = upload.stored
    assert stored is not None
    return {
        "upload_id": upload.upload_id,
        "status": upload.status.value,
        "content_type": stored.content_type,
        "size": stored.size,
        "width": stored.width,
        "height": stored.height,
        "checksum_sha256": stored.checksum_sha256,
        "expires_at": upload.source_expires_at,
    }
