"""The `worker` process: an RQ worker with its scheduler. It never imports tensorflow."""

from __future__ import annotations

import logging
import signal
import threading
import uuid
from collections.abc import Callable
from contextlib import suppress
from datetime import timedelta
from types import FrameType
from typing import Any

import redis
from rq import Queue, SimpleWorker, get_current_job
from rq.registry import ScheduledJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from entrypoints import jobs
from entrypoints.bootstrap import metrics_exporter, worker_process
from entrypoints.logs import configure_logging
from entrypoints.settings import Settings

QUEUE_NAMES = ("tryons", "maintenance")
MAINTENANCE_SECONDS = 15
"""How often the worker checks its scheduler is alive (restarting it after a Redis outage) and cleans
RQ's registries."""
RESTART_PAUSE_SECONDS = 2.0

log = logging.getLogger(__name__)


def run_worker(settings: Settings, *, burst: bool = False) -> int:
    """Raises SettingsError without FAL_API_KEY."""
    process = worker_process(settings)
    configure_logging(process.services.scrubber)
    jobs.install(process.services)
    export_metrics(settings, "worker")
    queues = [Queue(name, connection=process.redis, serializer=JSONSerializer) for name in QUEUE_NAMES]
    log.info("worker starting", extra={"queues": list(QUEUE_NAMES), "burst": burst})
    previous: TryOnWorker | None = None
    while True:
        ended_as_asked, previous = _work_until_redis_fails(queues, burst=burst, previous=previous)
        if ended_as_asked:
            return 0
        if burst:
            log.error("burst run stopped: Redis unavailable")
            return 1
        # Redis is down (at start, or RQ gave up on it). Exiting would make the platform restart us, with a
        # growing cool-down on repeated crashes; trying again here is quicker and loses nothing.
        log.warning("worker restarting after losing Redis", extra={"in_seconds": RESTART_PAUSE_SECONDS})
        if not pause(RESTART_PAUSE_SECONDS):
            return 0


def export_metrics(settings: Settings, process: str) -> None:
    """This process's own /metrics on METRICS_PORT, for the bearer of METRICS_TOKEN only; says which."""
    exporter = metrics_exporter(settings)
    if exporter is not None:
        log.info("metrics exporter listening", extra={"role": process, "port": exporter.port})
    elif settings.metrics_port is not None:
        log.warning(
            "metrics exporter off: METRICS_PORT is set but METRICS_TOKEN is not", extra={"role": process}
        )
    else:
        log.info("metrics exporter off: METRICS_PORT is not set", extra={"role": process})


def _work_until_redis_fails(
    queues: list[Queue], *, burst: bool, previous: TryOnWorker | None
) -> tuple[bool, TryOnWorker | None]:
    """Runs one RQ worker. Returns whether it ended as asked (burst done, SIGTERM) rather than by losing
    Redis, and the worker to hand to the next call."""
    worker: TryOnWorker | None = None
    try:
        if previous is not None:
            previous.release_scheduler_locks()
        schedule_periodic(queues[1])
        worker = TryOnWorker(queues, connection=queues[0].connection, serializer=JSONSerializer)
        worker.work(with_scheduler=True, burst=burst)
    except redis.RedisError as error:  # RQ quits on some Redis errors, and its setup or teardown may raise
        log.warning("worker loop ended: Redis unavailable", extra={"error": type(error).__name__})
        return (worker is not None and worker.stop_requested), worker or previous
    return burst or worker.stop_requested, worker


class TryOnWorker(SimpleWorker):
    """RQ's in-process worker, tuned for short steps and for Redis outages.

    Every job is one short step carrying ids only, so forking a work horse per job (RQ's default) would
    cost more than the step: measured 48 ms vs 18 ms per job. A crash loses at most a step, which the
    lease and the reconciler recover.

    RQ's scheduler (a child process) dies when Redis drops it, and RQ restarts it only from its
    maintenance pass, which runs between dequeues: by default every 10 minutes, behind a 405 s BLPOP.
    Until then no status check or reconcile is enqueued. Here the idle BLPOP returns every 15 s and the
    maintenance pass runs then: it restarts the scheduler and re-seeds the periodic chains if Redis came
    back empty.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("maintenance_interval", MAINTENANCE_SECONDS)
        kwargs.setdefault("worker_ttl", MAINTENANCE_SECONDS * 2)
        super().__init__(*args, **kwargs)
        self.stop_requested = False

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested = True
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]

    def release_scheduler_locks(self) -> None:
        """Its scheduler died with Redis; without this, the next worker's scheduler would wait ~60 s for
        the locks to expire before it could start."""
        if self.scheduler is not None:
            self.scheduler.release_locks()  # type: ignore[no-untyped-call]

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()  # type: ignore[no-untyped-call]
        with suppress(redis.RedisError):
            schedule_periodic(self.queues[-1])


def pause(seconds: float) -> bool:
    """Sleep, unless SIGTERM/SIGINT arrives first (then False)."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return not stop.wait(seconds)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def schedule_periodic(queue: Queue) -> None:
    """Start each periodic chain unless one is already queued, scheduled or running (workers restart,
    and re-check every maintenance pass: chains must survive a Redis that came back empty, and must not
    pile up)."""
    scheduled = ScheduledJobRegistry(queue=queue)  # type: ignore[no-untyped-call]
    running = StartedJobRegistry(queue=queue)
    pending = [*queue.get_job_ids(), *scheduled.get_job_ids(), *running.get_job_ids()]
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
    """The queue the running job came from, on the connection the worker took it with."""
    job = get_current_job()
    assert job is not None  # called only by the periodic jobs, while RQ runs them
    return Queue(job.origin, connection=job.connection, serializer=JSONSerializer)


# Periodic maintenance, each a self-rescheduling job chain: (job id prefix, function, every N seconds).
# RQ stores each function's dotted path (entrypoints.worker.reconcile_and_reschedule, ...).
PERIODIC: dict[str, tuple[str, Callable[[], object], int]] = {
    "reconcile": ("tryon-reconciler-", reconcile_and_reschedule, 30),
    "sweep": ("tryon-sweep-", sweep_and_reschedule, 600),
}


def _enqueue(name: str, queue: Queue, *, now: bool = False) -> None:
    prefix, function, every = PERIODIC[name]
    delay = timedelta(seconds=0 if now else every)
    job_id = f"{prefix}{uuid.uuid4().hex}"
    queue.enqueue_in(delay, function, job_id=job_id, result_ttl=0, failure_ttl=3600)
