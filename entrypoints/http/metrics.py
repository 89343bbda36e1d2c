"""GET /metrics: Prometheus text, computed at scrape time from the database and Redis.

Counting from the audit trail gives the same figures whichever web process is scraped and includes
what the worker did; nothing is kept in process memory.

Only the bearer of ``METRICS_TOKEN`` gets them. Without that token, with a wrong one, or when no token is
configured, the answer is the same 404 problem as for any unknown URL: the endpoint is not advertised, and a
scraper with a wrong token sees 404 (not 401), which the runbook says.
"""

from __future__ import annotations

import hashlib
import hmac
import statistics
from collections.abc import Iterator

from flask import Blueprint, Response, abort, request
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from adapters.peewee_db import Counts
from domain.errors import DependencyUnavailable
from entrypoints.bootstrap import Services
from entrypoints.http.context import services

blp = Blueprint("metrics", __name__)

FAL_WEBHOOKS = Counter(
    "tryon_fal_webhooks",
    "fal webhook deliveries this process answered, by outcome (and why one was rejected)",
    ["outcome", "reason"],
    registry=None,  # per process; registered into each scrape's registry below
)

DELETIONS = {"upload.deleted": "source", "result.deleted": "result", "upload.expired": "unfinished_upload"}


class ServiceCollector(Collector):
    def __init__(self, services: Services) -> None:
        self._services = services

    def collect(self) -> Iterator[Metric]:
        read_counts, queue_depth = self._services.read_counts, self._services.queue_depth
        up = GaugeMetricFamily(
            "tryon_dependency_up", "Whether /metrics could read a dependency", labels=["of"]
        )
        if read_counts is not None:
            try:
                yield from _from_counts(read_counts())
                up.add_metric(["database"], 1)
            except DependencyUnavailable:
                up.add_metric(["database"], 0)
        if queue_depth is not None:
            try:
                depth = GaugeMetricFamily("tryon_queue_jobs", "Try-on jobs in the queue", labels=["state"])
                for state, count in queue_depth().items():
                    depth.add_metric([state], count)
                yield depth
                up.add_metric(["redis"], 1)
            except DependencyUnavailable:
                up.add_metric(["redis"], 0)
        yield up


def _from_counts(counts: Counts) -> Iterator[Metric]:
    events = counts.events
    issued = CounterMetricFamily("tryon_uploads_issued", "Upload URLs issued")
    verified = CounterMetricFamily("tryon_uploads_verified", "Uploads that passed verification")
    rejected = CounterMetricFamily(
        "tryon_uploads_rejected", "Uploads refused by verification", labels=["reason"]
    )
    fal = CounterMetricFamily("tryon_fal_attempts", "fal.ai attempts by outcome", labels=["outcome", "code"])
    deleted = CounterMetricFamily("tryon_deletions", "Deletions by what and why", labels=["what", "reason"])
    erased = CounterMetricFamily("tryon_users_erased", "Erasure requests carried out")
    for (event, outcome, reason), count in events.items():
        if event == "upload.issued":
            issued.add_metric([], count)
        elif event == "upload.validated":
            verified.add_metric([], count)
        elif event == "upload.rejected":
            rejected.add_metric([reason], count)
        elif event.startswith("falai."):
            fal.add_metric([outcome if event != "falai.succeeded" else "succeeded", reason], count)
        elif event in DELETIONS:
            deleted.add_metric([DELETIONS[event], reason], count)
        elif event == "user.erased":
            erased.add_metric([], count)
    yield from (issued, verified, rejected, fal, deleted, erased)
    tryons = GaugeMetricFamily(
        "tryon_tryons", "Try-ons on record by status and error code", labels=["status", "code"]
    )
    for (status, code), count in counts.tryons.items():
        tryons.add_metric([status, code], count)
    yield tryons
    seconds = counts.fal_seconds
    latency = GaugeMetricFamily(
        "tryon_fal_latency_seconds", "Submit to completion, latest 500 succeeded try-ons", labels=["quantile"]
    )
    if len(seconds) >= 2:
        cuts = statistics.quantiles(seconds, n=20)
        latency.add_metric(["0.5"], statistics.median(seconds))
        latency.add_metric(["0.95"], cuts[18])
    yield latency


def bearer_matches(expected: str | None) -> bool:
    """Constant-time, and hashed first so that not even the token's length shows in the timing."""
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if not expected or scheme.lower() != "bearer":
        return False
    presented_hash = hashlib.sha256(presented.strip().encode()).digest()
    return hmac.compare_digest(presented_hash, hashlib.sha256(expected.encode()).digest())


@blp.route("/metrics")
def metrics() -> Response:
    if not bearer_matches(services().settings.metrics_token):
        abort(404)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(services()))
    registry.register(FAL_WEBHOOKS)
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
