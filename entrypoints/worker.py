"""The `worker` process: an RQ worker with its scheduler. It never imports tensorflow."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from rq import Queue, Worker
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

from adapters.redis_store import connect_redis
from entrypoints import jobs
from entrypoints.bootstrap import bootstrap
from entrypoints.logs import configure_logging
from entrypoints.settings import Settings, SettingsError

QUEUE_NAMES = ("tryons", "maintenance")
RECONCILER_JOB_PREFIX = "tryon-reconciler-"

log = logging.getLogger(__name__)


def run_worker(settings: Settings, *, burst: bool = False) -> int:
    if not settings.fal_api_key:
        raise SettingsError("FAL_API_KEY is required by the worker")
    services = bootstrap(settings)
    configure_logging(services.scrubber)
    jobs.install(services)
    connection = connect_redis(settings.redis_url)
    queues = [Queue(name, connection=connection, serializer=JSONSerializer) for name in QUEUE_NAMES]
    schedule_reconciler(queues[1])
    worker = Worker(queues, connection=connection, serializer=JSONSerializer)
    log.info("worker starting", extra={"queues": list(QUEUE_NAMES), "burst": burst})
    worker.work(with_scheduler=True, burst=burst)
    return 0


def schedule_reconciler(queue: Queue) -> None:
    """Start the self-rescheduling ``reconcile`` chain unless one is already queued or scheduled
    (workers restart; chains must not pile up)."""
    scheduled = ScheduledJobRegistry(queue=queue)  # type: ignore[no-untyped-call]
    pending = [*queue.get_job_ids(), *scheduled.get_job_ids()]
    if not any(job_id.startswith(RECONCILER_JOB_PREFIX) for job_id in pending):
        _enqueue_reconciler(queue, delay_seconds=0)


def reconcile_and_reschedule() -> int:
    try:
        return jobs.reconcile()
    finally:
        connection = connect_redis(jobs.services().settings.redis_url)
        queue = Queue(QUEUE_NAMES[1], connection=connection, serializer=JSONSerializer)
        _enqueue_reconciler(queue, delay_seconds=jobs.RECONCILE_EVERY_SECONDS)


def _enqueue_reconciler(queue: Queue, *, delay_seconds: int) -> None:
    job_id = f"{RECONCILER_JOB_PREFIX}{uuid.uuid4().hex}"
    function = "entrypoints.worker.reconcile_and_reschedule"
    queue.enqueue_in(
        timedelta(seconds=delay_seconds), function, job_id=job_id, result_ttl=0, failure_ttl=3600
    )
