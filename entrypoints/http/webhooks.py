"""POST /v1/webhooks/fal: fal.ai's signed callback when a request finishes.

No user token: fal's Ed25519 signature is checked before anything else (after the body cap), and a
delivery that fails any check, a replay or one for a request we never submitted gets one identical answer
(401 ``webhook_rejected``); the reason is only counted and logged. A verified delivery marks the try-on and
queues its next step; the worker fetches the result from fal's queue itself. Nothing is downloaded here.
"""

from __future__ import annotations

import logging
from typing import Any

import marshmallow as ma
from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint

from adapters.prometheus_metrics import FAL_WEBHOOKS
from domain.errors import DependencyUnavailable
from domain.webhooks import Outcome, RejectReason, WebhookRejected
from entrypoints.http.context import services
from entrypoints.http.problems import documents_problem, problem

log = logging.getLogger(__name__)

REJECTED_DETAIL = "The delivery was not accepted."

blp = Blueprint(
    "webhooks", __name__, url_prefix="/v1/webhooks", description="Callbacks from the image generator"
)


class DeliveryAnsweredSchema(ma.Schema):
    outcome = ma.fields.String(
        required=True,
        metadata={
            "enum": [outcome.value for outcome in Outcome],
            "description": "queued: the try-on's result is being fetched; settled: it already was; "
            "superseded: an earlier attempt's request, nothing to do",
        },
    )


def _rejected(reason: RejectReason) -> Response:
    FAL_WEBHOOKS.labels(outcome="rejected", reason=reason).inc()
    log.warning("fal webhook rejected", extra={"reason": reason})
    return problem(401, "webhook_rejected", REJECTED_DETAIL)


def _read_capped(limit: int) -> bytes | None:
    """The raw body, or None when it is (or declares to be) more than ``limit`` bytes."""
    declared = request.content_length
    if declared is not None and declared > limit:
        return None
    body = request.stream.read(limit + 1)
    return None if len(body) > limit else body


@blp.route("/fal")
class FalWebhook(MethodView):
    @blp.doc(
        security=[],
        parameters=[
            {"in": "header", "name": name, "required": True, "schema": {"type": "string"}}
            for name in (
                "X-Fal-Webhook-Request-Id",
                "X-Fal-Webhook-User-Id",
                "X-Fal-Webhook-Timestamp",
                "X-Fal-Webhook-Signature",
            )
        ],
        requestBody={
            "required": True,
            "description": "fal's delivery, verified over its raw bytes: "
            '{"request_id", "gateway_request_id", "status": "OK"|"ERROR", "payload", "error"}',
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
    )
    @blp.response(202, DeliveryAnsweredSchema, description="queued: the result is fetched from fal now")
    @blp.alt_response(
        200, schema=DeliveryAnsweredSchema, description="settled | superseded: nothing to do (fal stops)"
    )
    @documents_problem(
        blp, 401, "webhook_rejected: forged, stale, replayed or unknown (one answer for every reason)"
    )
    @documents_problem(blp, 413, "payload_too_large")
    @documents_problem(
        blp, 503, "webhook_keys_unavailable | database_unavailable | queue_unavailable (retryable)"
    )
    def post(self) -> Any:
        """fal's signed callback: the try-on's result is fetched at once (polling is the fallback)."""
        desk = services().fal_webhooks
        body = _read_capped(desk.max_body_bytes)
        if body is None:
            FAL_WEBHOOKS.labels(outcome="rejected", reason="body_too_large").inc()
            return problem(413, "payload_too_large", "The delivery is larger than accepted.")
        try:
            outcome = desk.receive(dict(request.headers), body)
        except WebhookRejected as rejected:
            return _rejected(rejected.reason)
        except DependencyUnavailable as outage:
            FAL_WEBHOOKS.labels(outcome="unavailable", reason=outage.code).inc()
            raise
        FAL_WEBHOOKS.labels(outcome=outcome.value, reason="").inc()
        return {"outcome": outcome.value}, 202 if outcome is Outcome.QUEUED else 200
