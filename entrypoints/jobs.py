"""RQ job functions: module-level, ids only, each one short step. The worker installs the services.

Bootstrap hands these functions to the queue adapters, so it imports this module: this one imports
bootstrap only where it needs it (typing, and a process that never installed its services).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from rq import get_current_job

from adapters.prometheus_metrics import observe_queue_wait, timing_verification

if TYPE_CHECKING:
    from entrypoints.bootstrap import Services

log = logging.getLogger(__name__)

_services: Services | None = None


def install(services: Services) -> None:
    """Called once by the worker process before it starts taking jobs."""
    global _services  # noqa: PLW0603 - the one process-wide handle jobs reach the composition root by
    _services = services


def services() -> Services:
    global _services  # noqa: PLW0603
    if _services is None:
        from entrypoints.bootstrap import bootstrap  # noqa: PLC0415 - bootstrap imports this module

        _services = bootstrap()
    return _services


def waited() -> None:
    """Observes how long the running RQ job waited in its queue (nothing outside a job)."""
    try:
        job = get_current_job()
        if job is not None:
            observe_queue_wait(job.origin, job.enqueued_at, job.started_at)
    except Exception:  # a metric never fails the job
        log.exception("queue wait not observed")


def advance_tryon(tryon_id: str) -> None:
    waited()
    runner = services().runner()
    try:
        runner.advance(tryon_id)
    finally:
        services().end_request()


def verify_upload(upload_id: str) -> str:
    """The verifier's job: one upload, with the face model this process loaded at start."""
    waited()
    try:
        with timing_verification():
            return services().upload_verifier.verify(upload_id)
    finally:
        services().end_request()


def expire_upload(upload_id: str) -> None:
    waited()
    try:
        services().source_expiry.expire(upload_id)
    finally:
        services().end_request()


def reconcile() -> int:
    """Re-queue try-ons whose next step was lost (a killed worker, a Redis outage); runs every 30 s."""
    waited()
    runner = services().tryon_runner
    try:
        found = runner.reconcile() if runner else 0
    finally:
        services().end_request()
    if found:
        log.info("re-queued overdue try-ons", extra={"count": found})
    return found


def sweep() -> str:
    """One retention pass (the same as `tryon sweep`), every 10 minutes on the maintenance queue."""
    waited()
    try:
        return services().sweeper.sweep().summary()
    finally:
        services().end_request()
