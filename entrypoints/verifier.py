"""The `verifier` process: an RQ worker on the `verify` queue that loads the face model once, at start.

It runs each verification in-process (SimpleWorker: no fork, so the model is never re-loaded or forked
with TensorFlow's threads); the decoding of every image runs in a child process with its own budget
(the sanitiser's sandbox), and RQ's job timeout bounds the rest. Its maintenance pass re-queues
verifications whose verifier died mid-job (their claim went stale): each is counted, and an upload that
keeps killing its verifier is refused rather than retried forever.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from typing import Any

import redis
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer

from adapters.rq_queue import VERIFY_QUEUE
from domain.errors import DependencyUnavailable
from entrypoints import jobs
from entrypoints.bootstrap import Services, verifier_process
from entrypoints.logs import configure_logging
from entrypoints.settings import Settings
from entrypoints.worker import MAINTENANCE_SECONDS, RESTART_PAUSE_SECONDS, export_metrics, pause

log = logging.getLogger(__name__)

VERIFIER_WARM = "verifier warm: face model loaded"


def run_verifier(settings: Settings, *, burst: bool = False) -> int:
    process = verifier_process(settings)
    services, connection = process.services, process.redis
    configure_logging(services.scrubber)
    jobs.install(services)
    export_metrics(settings, "verifier")
    start_sandbox = getattr(services.sanitizer, "start", None)
    if start_sandbox is not None:  # its child interpreter starts now, not in the first verification
        start_sandbox()
    services.face_detector.warm_up()
    log.info(VERIFIER_WARM)
    queue = Queue(VERIFY_QUEUE, connection=connection, serializer=JSONSerializer)
    while True:
        worker = VerifierWorker(services, [queue], connection=connection, serializer=JSONSerializer)
        try:
            worker.work(burst=burst)
        except redis.RedisError as error:
            log.warning("verifier loop ended: Redis unavailable", extra={"error": type(error).__name__})
            if burst:
                return 1
            if pause(RESTART_PAUSE_SECONDS):
                continue
            return 0
        return 0


class VerifierWorker(SimpleWorker):
    """RQ's in-process worker; every maintenance pass (15 s) re-queues stalled verifications."""

    def __init__(self, services: Services, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("maintenance_interval", MAINTENANCE_SECONDS)
        kwargs.setdefault("worker_ttl", MAINTENANCE_SECONDS * 2)
        super().__init__(*args, **kwargs)
        self._services = services

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()  # type: ignore[no-untyped-call]
        with suppress(DependencyUnavailable):
            found = self._services.upload_completion.requeue_stalled()
            if found:
                log.info("re-queued stalled verifications", extra={"count": found})
        self._services.end_request()
