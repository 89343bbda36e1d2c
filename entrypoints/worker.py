"""The `worker` process: an RQ worker with its scheduler. It never imports tensorflow."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from rq import Queue, SimpleWorker
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

from adapters.redis_store import connect_redis
from entrypoints import jobs
from entrypoints.bootstrap import bootstrap
from entrypoints.logs import configure_logging
from entrypoints.settings import Settings, SettingsError

QUEUE_NAMES = ("tryons", "maintenance")
MAINTENANCE_SECONDS = 15
"""How often the worker checks its scheduler is alive (restarting it after a Redis outage) and cleans
RQ's registries."""

log = logging.getLogger(__name__)


def run_worker(settings: Settings, *, burst: bool = False) -> int:
    if not settings.fal_api_key:
        raise SettingsError("FAL_API_KEY is required by the worker")
    services = bootstrap(settings)
    configure_logging(services.scrubber)
    jobs.install(services)
    connection = connect_redis(settings.redis_url)
    queues = [Queue(name, connection=connection, serializer=JSONSerializer) for name in QUEUE_NAMES]
    schedule_periodic(queues[1])
    # Every job is one short step carrying ids only, so forking a work horse per job (RQ's default)
    # would cost more than the step: measured 48 ms vs 18 ms per job. A crash loses at most a step,
    # which the lease and the reconciler recover.
    # RQ's scheduler (a child process) dies when Redis drops it, and RQ restarts it only from its
    # maintenance pass, which runs between dequeues: by default every 10 minutes, behind a 405 s BLPOP.
    # Until then no status check or reconcile is enqueued. A 30 s worker TTL makes the idle BLPOP
    # return every 15 s, and the maintenance pass then restarts the scheduler.
    worker = SimpleWorker(
        queues,
        connection=connection,
        serializer=JSONSerializer,
        maintenance_interval=MAINTENANCE_SECONDS,
        worker_ttl=MAINTENANCE_SECONDS * 2,
    )
    log.info("worker starting", extra={"queues": list(QUEUE_NAMES), "burst": burst})
    worker.work(with_scheduler=True, burst=burst)
    return 0


# Periodic maintenance, each a self-rescheduling job chain: (job id prefix, function, every N seconds).
PERIODIC = {
    "reconcile": ("tryon-reconciler-", "entrypoints.worker.reconcile_and_reschedule", 30),
    "sweep": ("tryon-sweep-", "entrypoints.worker.sweep_and_reschedule", 600),
}


def schedule_periodic(queue: Queue) -> None:
    """Start each periodic chain unless one is already queued or scheduled (workers restart; chains
    must not pile up)."""
    scheduled = ScheduledJobRegistry(queue=queue)  # type: ignore[no-untyped-call]
    pending = [*queue.get_job_ids(), *scheduled.get_job_ids()]
    for name, (prefix, _, _) in PERIODIC.items():
        if not any(job_id.startswith(prefix) for job_id in pending):
            _enqueue(name, queue, now=True)


def reconcile_and_reschedule() -> int:
    try:
        return jobs.reconcile()
    finally:
        _enqueue("reconcile", _maintenance_queue())


def sweep_and_reschedule() -> str:
    try:
        return jobs.sweep()
    finally:
        _enqueue("sweep", _maintenance_queue())


def _maintenance_queue() -> Queue:
    connection = connect_redis(jobs.services().settings.redis_url)
    return Queue(QUEUE_NAMES[1], connection=connection, serializer=JSONSerializer)


def _enqueue(name: str, queue: Queue, *, now: bool = False) -> None:
    prefix, function, every = PERIODIC[name]
    delay = timedelta(seconds=0 if now else every)
    job_id = f"{prefix}{uuid.uuid4().hex}"
    queue.enqueue_in(delay, function, job_id=job_id, result_ttl=0, failure_ttl=3600)
