"""/v1/tryons and /v1/results: asking for a try-on, following it, fetching what it made (US3)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint

from domain.tryons import TryOnOrder
from entrypoints.http.context import services
from entrypoints.http.problems import documents_problem
from entrypoints.http.schemas import WaitQuerySchema
from entrypoints.http.security import current_user_id
from entrypoints.http.tryon_schemas import (
    IdempotencyHeaderSchema,
    TryOnAcceptedSchema,
    TryOnOrderSchema,
    TryOnSchema,
)

blp = Blueprint("tryons", __name__, url_prefix="/v1", description="AI hairstyle try-ons")


@blp.route("/tryons")
class TryOns(MethodView):
    @blp.arguments(IdempotencyHeaderSchema, location="headers")
    @blp.arguments(TryOnOrderSchema)
    @blp.response(202, TryOnAcceptedSchema)
    @documents_problem(blp, 400, "bad_request: the body is not valid JSON")
    @documents_problem(blp, 401, "unauthenticated: missing or invalid token")
    @documents_problem(blp, 404, "upload_not_found (also for another user's upload)")
    @documents_problem(blp, 409, "upload_not_verified: complete the upload first")
    @documents_problem(blp, 410, "upload_expired: upload the selfie again")
    @documents_problem(
        blp, 422, "validation_error | invalid_prompt | invalid_num_images | idempotency_key_reused"
    )
    @documents_problem(
        blp,
        429,
        "rate_limited (too many orders a minute) | too_many_active_tryons (wait for one to settle) | "
        "quota_exceeded (today's images are used up); retryable, see Retry-After",
    )
    @documents_problem(blp, 503, "database_unavailable (retryable)")
    def post(self, headers: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        """Ask for a try-on of a verified selfie; follow it with GET /v1/tryons/{tryon_id}."""
        order = TryOnOrder(body["upload_id"], body["style_prompt"], body["num_images"], body["output_format"])
        tryon = services().tryon_desk.order(current_user_id(), order, headers["idempotency_key"])
        return {"tryon_id": tryon.tryon_id, "status": tryon.status.value}


@blp.route("/tryons/<string:tryon_id>")
class TryOnById(MethodView):
    @blp.arguments(WaitQuerySchema, location="query")
    @blp.response(200, TryOnSchema)
    @documents_problem(blp, 401, "unauthenticated: missing or invalid token")
    @documents_problem(blp, 404, "tryon_not_found (also for another user's try-on)")
    @documents_problem(blp, 422, "validation_error: wait is not a whole number of seconds from 0 to 25")
    @documents_problem(blp, 503, "database_unavailable | auth_unavailable (retryable)")
    def get(self, query: dict[str, Any], tryon_id: str) -> dict[str, Any]:
        """The try-on's progress, its error if it failed, and its results once it succeeded.

        With ``?wait=N`` (N ≤ 25) the answer comes as soon as the state changes (running, retrying,
        succeeded, failed), or unchanged after N seconds; a succeeded or failed try-on answers at once.
        The app asks with ``?wait=25`` in a loop until the status is succeeded or failed."""
        tryon, results = services().tryon_desk.look_up(current_user_id(), tryon_id, query["wait"])
        return {
            "tryon_id": tryon.tryon_id,
            "upload_id": tryon.upload_id,
            "status": tryon.status.value,
            "attempts": tryon.attempts,
            "created_at": tryon.created_at,
            "completed_at": tryon.completed_at,
            "error": asdict(tryon.error) if tryon.error else None,
            "results": [
                {
                    "result_id": r.result_id,
                    "content_type": r.content_type,
                    "width": r.width,
                    "height": r.height,
                    "favorite": r.favorite,
                }
                for r in results
            ],
        }


@blp.route("/results/<string:result_id>/image")
class ResultImage(MethodView):
    @blp.response(200, content_type="image/*", description="The result's bytes, to its owner only")
    @documents_problem(blp, 401, "unauthenticated: missing or invalid token")
    @documents_problem(blp, 404, "result_not_found (also for another user's result)")
    @documents_problem(blp, 503, "database_unavailable | storage_unavailable | auth_unavailable (retryable)")
    def get(self, result_id: str) -> Response:
        """The generated image, to its owner only (Cache-Control: no-store: no cache keeps a copy)."""
        result, data = services().tryon_desk.result_image(current_user_id(), result_id)
        response = Response(data, mimetype=result.content_type)
        response.headers["Cache-Control"] = "no-store"
        return response
