"""What a scrape answers: this process's metrics (or, in gunicorn's multi-process mode, every web
process's, added up), plus gauges of shared state read at scrape time from cheap indexed queries and Redis.

The worker and the verifier serve theirs on ``METRICS_PORT`` (``MetricsExporter``). Like the web's
``/metrics``, only the bearer of ``METRICS_TOKEN`` gets an answer; anyone else gets 404.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, generate_latest, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from domain.errors import DependencyUnavailable
from domain.model import UNSETTLED

log = logging.getLogger(__name__)

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
EXPORTER_TIMEOUT_SECONDS = 10

QueueDepths = Callable[[], Mapping[tuple[str, str], int]]
"""(queue, state) -> jobs: ``queued`` (waiting now) and ``scheduled`` (due later)."""
Unsettled = Callable[[], tuple[Mapping[str, int], datetime | None]]
"""Unsettled try-ons by status, and when the oldest of them was created (None when there is none)."""


def bearer_matches(expected: str | None, authorization: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <expected>``. Constant-time, and hashed first
    so that not even the token's length shows in the timing; no token configured matches nothing."""
    scheme, _, presented = authorization.partition(" ")
    if not expected or scheme.lower() != "bearer":
        return False
    presented_hash = hashlib.sha256(presented.strip().encode()).digest()
    return hmac.compare_digest(presented_hash, hashlib.sha256(expected.encode()).digest())


class SharedStateCollector(Collector):
    """Gauges describing shared state, read when scraped: queue depths (Redis LLEN/ZCARD), unsettled
    try-ons and the oldest one's age (a partial-index read), and whether each source answered. Registered
    once per scrape beside the per-process metrics, so they are reported once, not once per process."""

    def __init__(
        self,
        *,
        queue_depths: QueueDepths | None,
        unsettled: Unsettled | None,
        now: Callable[[], datetime],
    ) -> None:
        self._queue_depths, self._unsettled, self._now = queue_depths, unsettled, now

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "tryon_dependency_up", "Whether the scrape could read a dependency", labels=["of"]
        )
        if self._unsettled is not None:
            try:
                by_status, oldest = self._unsettled()
            except DependencyUnavailable:
                up.add_metric(["database"], 0)
            else:
                up.add_metric(["database"], 1)
                yield from self._unsettled_gauges(by_status, oldest)
        if self._queue_depths is not None:
            try:
                depths = self._queue_depths()
            except DependencyUnavailable:
                up.add_metric(["redis"], 0)
            else:
                up.add_metric(["redis"], 1)
                jobs = GaugeMetricFamily(
                    "tryon_queue_jobs", "RQ jobs by queue and state", labels=["queue", "state"]
                )
                for (queue, state), count in sorted(depths.items()):
                    jobs.add_metric([queue, state], count)
                yield jobs
        yield up

    def _unsettled_gauges(self, by_status: Mapping[str, int], oldest: datetime | None) -> Iterator[Metric]:
        count = GaugeMetricFamily("tryon_tryons_unsettled", "Try-ons queued or running", labels=["status"])
        for status in UNSETTLED:
            count.add_metric([status.value], by_status.get(status.value, 0))
        yield count
        age = (self._now() - oldest).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "tryon_tryons_oldest_unsettled_age_seconds",
            "Age of the oldest try-on still queued or running (0 when there is none)",
            value=max(age, 0.0),
        )


class _Everything(Collector):
    """Another registry's metrics, so that a scrape registry can add collectors of its own."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        return self._registry.collect()


def scrape_registry(shared: Collector | None = None) -> CollectorRegistry:
    """This process's metrics, or every process's added up when ``PROMETHEUS_MULTIPROC_DIR`` is set
    (gunicorn), plus ``shared`` once."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get(MULTIPROC_DIR):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Everything(REGISTRY))
    if shared is not None:
        registry.register(shared)
    return registry


def exposition(shared: Collector | None = None) -> bytes:
    return generate_latest(scrape_registry(shared))


EXPORTER_MAX_CONNECTIONS = 4
"""Connections the exporter serves at once; beyond them a connection is closed at once. A scraper needs one:
idle or trickling clients (port scanners, TCP health checks) can hold no more threads than this."""


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def server_activate(self) -> None:
        super().server_activate()
        self._slots = threading.BoundedSemaphore(EXPORTER_MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that failed (timed out idle, reset): one quiet line, not socketserver's traceback
        on stderr naming the client's address."""
        log.debug("metrics exporter: a connection ended in an error")


class _QuietHandler(WSGIRequestHandler):
    timeout = EXPORTER_TIMEOUT_SECONDS  # a client that sends nothing holds a thread this long at most

    def log_message(self, format: str, *args: Any) -> None:
        """No raw access lines: they would carry client addresses and paths nobody scrubbed."""


def guarded(app: Callable[..., Iterable[bytes]], token: str) -> Callable[..., Iterable[bytes]]:
    """``app`` at ``/metrics`` for the bearer of ``token``; 404 for anything else."""

    def guarded_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics" or not bearer_matches(
            token, environ.get("HTTP_AUTHORIZATION", "")
        ):
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"not found\n"]
        return app(environ, start_response)

    return guarded_app


class MetricsExporter:
    """This process's metrics over HTTP on ``port`` (all interfaces), in a daemon thread, for the bearer of
    ``token`` only. For the worker and the verifier: one process each, so the default registry is theirs."""

    def __init__(self, port: int, token: str, *, host: str = "0.0.0.0") -> None:  # noqa: S104 - scraped from outside
        app = guarded(make_wsgi_app(scrape_registry()), token)
        self._server = make_server(
            host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler
        )
        self._server.timeout = EXPORTER_TIMEOUT_SECONDS
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-exporter", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> MetricsExporter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=EXPORTER_TIMEOUT_SECONDS)
