"""GET /metrics: Prometheus text from prometheus_client, per process; and the HTTP request metrics.

Each process counts what it did (Prometheus adds the targets up). Under gunicorn, ``PROMETHEUS_MULTIPROC_DIR``
is set (gunicorn.conf.py) and a scrape adds up every web process of this dyno; the gauges of shared state
(queues, unsettled try-ons) are read once per scrape, not per process.

Only the bearer of ``METRICS_TOKEN`` gets them. Without that token, with a wrong one, or when no token is
configured, the answer is the same 404 problem as for any unknown URL: the endpoint is not advertised, and a
scraper with a wrong token sees 404 (not 401), which the runbook says.
"""

from __future__ import annotations

import re
import time
from functools import lru_cache

from flask import Blueprint, Flask, Response, abort, g, request
from prometheus_client import CONTENT_TYPE_LATEST

from adapters.prometheus_metrics import bearer_matches, exposition, observe_http_request
from entrypoints.http.context import services

blp = Blueprint("metrics", __name__)


@blp.route("/metrics")
def metrics() -> Response:
    current = services()
    if not bearer_matches(current.settings.metrics_token, request.headers.get("Authorization", "")):
        abort(404)
    return Response(exposition(current.shared_metrics), mimetype=CONTENT_TYPE_LATEST)


_CONVERTER = re.compile(r"<(?:[^<>:]+:)?([^<>:]+)>")


@lru_cache(maxsize=256)  # one entry per route of this app
def route_label(rule: str) -> str:
    """A rule's text without its converters: ``/v1/tryons/<string:tryon_id>`` → ``/v1/tryons/<tryon_id>``."""
    return _CONVERTER.sub(r"<\1>", rule)


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _observe(response: Response) -> Response:
    """Labelled by the matched rule's text (``/v1/tryons/<tryon_id>``), never the path: a URL no route
    matched is ``unmatched``, so hostile URLs cannot add series."""
    started = g.get("metrics_started")
    elapsed = time.perf_counter() - started if started is not None else 0.0
    rule = route_label(request.url_rule.rule) if request.url_rule is not None else None
    observe_http_request(rule, request.method, response.status_code, elapsed)
    return response


def install_request_metrics(app: Flask) -> None:
    """Install right after request logging: the timer starts before authentication or rate limits run."""
    app.before_request(_start_timer)
    app.after_request(_observe)
