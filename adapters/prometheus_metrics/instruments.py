"""This process's counters and histograms (prometheus_client), and the audit events they count.

Each process counts what it did; Prometheus adds the processes up. Counters of outcomes come from the
audit events a unit of work has committed (``record_events``, handed to the unit of work by bootstrap), so
they equal the audit trail and a rolled-back change is never counted. Every label value is bounded: codes
come from this service's code, and anything unexpected is counted as ``other``.

The web runs several gunicorn processes: with ``PROMETHEUS_MULTIPROC_DIR`` set before prometheus_client is
first imported (gunicorn.conf.py does it), every value here lives in a per-process file the scrape adds up.
No gauge lives here: shared state is read at scrape time (``exposition.SharedStateCollector``).
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

from prometheus_client import Counter, Histogram

from domain.model import AuditEvent

log = logging.getLogger(__name__)

OTHER = "other"
NONE = ""
"""The code label of an event that has none (an attempt submitted, a generation that succeeded)."""

REJECTION_REASONS = frozenset(
    {
        "too_large",
        "not_an_image",
        "content_type_mismatch",
        "unsupported_content_type",
        "image_too_large",
        "no_face_detected",
        "multiple_faces",
        "face_too_small",
    }
)
FAL_CODES = frozenset(
    {NONE, "upstream_unavailable", "upstream_timeout", "generation_failed", "source_expired"}
)
FAL_OUTCOMES = frozenset({"submitted", "retrying", "failed", "succeeded"})
DELETED = {"upload.deleted": "source", "result.deleted": "result", "upload.expired": "unfinished_upload"}
DELETION_REASONS = frozenset({"user_request", "retention", "upload_expired", "never_completed"})
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
"""The route label of a request no route matched (404, 405): a hostile URL adds no series."""

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0)
"""Up to the longest long poll (25 s) and gunicorn's 30 s timeout."""
VERIFICATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
"""Up to RQ's 60 s job timeout; 8 s is how long ``complete`` waits for a verdict."""
GENERATION_BUCKETS = (2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0)
FAL_REQUEST_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Up to the adapter's 10 s deadline per call."""
QUEUE_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

UPLOADS_ISSUED = Counter("tryon_uploads_issued", "Upload URLs issued")
UPLOADS_VERIFIED = Counter("tryon_uploads_verified", "Uploads that passed verification")
UPLOADS_REJECTED = Counter("tryon_uploads_rejected", "Uploads refused by verification", ["reason"])
FAL_ATTEMPTS = Counter("tryon_fal_attempts", "fal.ai attempts by outcome and error code", ["outcome", "code"])
TRYONS_SETTLED = Counter(
    "tryon_tryons_settled", "Try-ons that ended, by status and error code", ["status", "code"]
)
DELETIONS = Counter("tryon_deletions", "Deletions by what and why", ["what", "reason"])
USERS_ERASED = Counter("tryon_users_erased", "Erasure requests carried out")
FAL_WEBHOOKS = Counter(
    "tryon_fal_webhooks",
    "fal webhook deliveries answered, by outcome (and why one was rejected)",
    ["outcome", "reason"],
)
HTTP_REQUESTS = Counter("tryon_http_requests", "HTTP requests answered", ["route", "method", "status"])
HTTP_SECONDS = Histogram(
    "tryon_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["route", "method"],
    buckets=HTTP_BUCKETS,
)
VERIFICATION_SECONDS = Histogram(
    "tryon_verification_duration_seconds",
    "One verification job, by verdict (verified, rejected, or unsettled: put back, lost, or a twin's)",
    ["verdict"],
    buckets=VERIFICATION_BUCKETS,
)
GENERATION_SECONDS = Histogram(
    "tryon_fal_generation_seconds",
    "fal submit to success, for the attempt that succeeded",
    buckets=GENERATION_BUCKETS,
)
FAL_REQUEST_SECONDS = Histogram(
    "tryon_fal_request_seconds",
    "One HTTP call to fal's queue, by call",
    ["call"],
    buckets=FAL_REQUEST_BUCKETS,
)
FAL_CALLS = frozenset({"submit", "status", "result", "cancel"})
QUEUE_WAIT_SECONDS = Histogram(
    "tryon_queue_wait_seconds",
    "RQ job enqueued (or due) to started, by queue",
    ["queue"],
    buckets=QUEUE_WAIT_BUCKETS,
)
QUEUES = frozenset({"tryons", "verify", "maintenance"})


def bounded(value: str | None, allowed: Collection[str]) -> str:
    """``value`` if it is one of ``allowed``, else ``other`` (None is the empty code)."""
    value = NONE if value is None else value
    return value if value in allowed else OTHER


_job_events: contextvars.ContextVar[list[AuditEvent] | None] = contextvars.ContextVar(
    "job_events", default=None
)


def record_events(events: Sequence[AuditEvent]) -> None:
    """The unit of work's listener: counts audit events that have just been committed."""
    seen = _job_events.get()
    if seen is not None:
        seen.extend(events)
    for event in events:
        _count(event)


def _count(event: AuditEvent) -> None:
    name, reason = event.event, event.reason
    if name == "upload.issued":
        UPLOADS_ISSUED.inc()
    elif name == "upload.validated":
        UPLOADS_VERIFIED.inc()
    elif name == "upload.rejected":
        UPLOADS_REJECTED.labels(reason=bounded(reason, REJECTION_REASONS)).inc()
    elif name == "falai.invoked":
        FAL_ATTEMPTS.labels(outcome="submitted", code=NONE).inc()
    elif name == "falai.failed":
        code = bounded(reason, FAL_CODES)
        FAL_ATTEMPTS.labels(outcome=bounded(event.outcome, FAL_OUTCOMES), code=code).inc()
        if event.outcome == "failed":
            TRYONS_SETTLED.labels(status="failed", code=code).inc()
    elif name == "falai.succeeded":
        FAL_ATTEMPTS.labels(outcome="succeeded", code=NONE).inc()
        TRYONS_SETTLED.labels(status="succeeded", code=NONE).inc()
        seconds = event.details.get("generation_seconds")
        if isinstance(seconds, int | float) and seconds >= 0:
            GENERATION_SECONDS.observe(seconds)
    elif name in DELETED:
        DELETIONS.labels(what=DELETED[name], reason=bounded(reason, DELETION_REASONS)).inc()
    elif name == "user.erased":
        USERS_ERASED.inc()


@contextmanager
def timing_verification() -> Iterator[None]:
    """Times one verification job; its verdict is what the job committed (``upload.validated`` →
    verified, ``upload.rejected`` → rejected, nothing → unsettled). Events are collected per context, so
    this is right in the verifier's one job thread whatever other threads commit."""
    seen: list[AuditEvent] = []
    token = _job_events.set(seen)
    started = time.perf_counter()
    try:
        yield
    finally:
        _job_events.reset(token)
        names = {event.event for event in seen}
        verdict = (
            "verified"
            if "upload.validated" in names
            else "rejected"
            if "upload.rejected" in names
            else "unsettled"
        )
        VERIFICATION_SECONDS.labels(verdict=verdict).observe(time.perf_counter() - started)


def observe_fal_request(call: str, seconds: float) -> None:
    """The fal queue adapter's hook: one HTTP call (submit, status, result, cancel) took ``seconds``."""
    FAL_REQUEST_SECONDS.labels(call=bounded(call, FAL_CALLS)).observe(seconds)


def observe_queue_wait(queue: str, enqueued_at: datetime | None, started_at: datetime | None) -> None:
    """An RQ job waited from ``enqueued_at`` (a scheduled job: from when it fell due) to ``started_at``."""
    if enqueued_at is None or started_at is None:
        return
    enqueued_at, started_at = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (enqueued_at, started_at))
    waited = max((started_at - enqueued_at).total_seconds(), 0.0)
    QUEUE_WAIT_SECONDS.labels(queue=bounded(queue, QUEUES)).observe(waited)


def observe_http_request(route: str | None, method: str, status: int, seconds: float) -> None:
    """``route`` is the matched rule's text (``/v1/tryons/<tryon_id>``), None when nothing matched."""
    route_label = route if route is not None else UNMATCHED
    method_label = bounded(method, HTTP_METHODS)
    status_label = str(status) if 100 <= status <= 599 else OTHER
    HTTP_REQUESTS.labels(route=route_label, method=method_label, status=status_label).inc()
    HTTP_SECONDS.labels(route=route_label, method=method_label).observe(seconds)
