"""Retention and deletion on the user's say-so: favourites, deleting an upload, erasing everything."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint

from entrypoints.http.context import services
from entrypoints.http.problems import documents_problem
from entrypoints.http.security import current_user_id

blp = Blueprint("user_data", __name__, url_prefix="/v1", description="Favourites and deletion")


def _no_content() -> Response:
    return Response(status=204)


@blp.route("/results/<string:result_id>/favorite")
class Favorite(MethodView):
    @blp.response(204)
    @documents_problem(blp, 401, "unauthenticated: missing or invalid token")
    @documents_problem(blp, 404, "result_not_found (also for another user's result)")
    @documents_problem(blp, 429, "rate_limited: per-user limit on mutations; see Retry-After")
    @documents_problem(blp, 503, "database_unavailable | auth_unavailable (retryable)")
    def put(self, result_id: str) -> Response:
        """Keep this result (and the selfie it was made from) until you unfavourite or delete it."""
        services().user_data.favorite(current_user_id(), result_id, True)
        return _no_content()

    @blp.response(204)
    @documents_problem(blp, 401, "unauthenticated: missing or invalid token")
    @documents_problem(blp, 404, "result_not_found (also for another user's result)")
    @documents_problem(blp, 429, "rate_limited: per-user limit on mutations; see Retry-After")
    @documents_problem(blp, 503, "database_unavailable | auth_unavailable (retryable)")
    def delete(self, result_id: str) -> Response:
        """Let this result expire again with the normal retention."""
        services().user_data.favorite(current_user_id(), result_id, False)
        return _no_content()


@blp.route("/uploads/<string:upload_id>")
class UploadById(MethodView):
    @blp.response(204)
    @documents_problem(blp, 401, "unauthenticated: missing or invalid token")
    @documents_problem(blp, 404, "upload_not_found (also for another user's upload)")
    @documents_problem(blp, 429, "rate_limited: per-user limit on mutations; see Retry-After")
    @documents_problem(
        blp,
        503,
        "storage_unavailable | database_unavailable | auth_unavailable "
        "(retryable; nothing half-done is lost)",
    )
    def delete(self, upload_id: str) -> Response:
        """Delete the selfie now, with its results except favourites."""
        services().user_data.delete_upload(current_user_id(), upload_id)
        return _no_content()


@blp.route("/me/data")
class MyData(MethodView):
    @blp.response(202)
    @documents_problem(blp, 401, "unauthenticated: missing or invalid token")
    @documents_problem(blp, 429, "rate_limited: per-user limit on mutations; see Retry-After")
    @documents_problem(blp, 503, "storage_unavailable | database_unavailable | auth_unavailable (retryable)")
    def delete(self) -> dict[str, Any]:
        """Erase every object and record of yours; the audit trail keeps ids and events, no image data."""
        erased = services().user_data.erase(current_user_id())
        return {
            "status": "erased",
            "uploads": erased.uploads,
            "results": erased.results,
            "tryons": erased.tryons,
        }
