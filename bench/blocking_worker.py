"""The baseline for ``bench.tryons``: a naive "blocking" try-on worker, one job at a time.

``python -m bench.blocking_worker`` (environment as for ``tryon worker``). It takes the same RQ jobs the web
process queues (``entrypoints.jobs.advance_tryon`` on the ``tryons`` queue) with RQ's default forking
``Worker``, but each job runs its try-on from submission to the stored result before it returns: it
submits to fal, then sleeps and polls until fal is done. So one worker process has at most one fal
request in flight.

To keep the comparison honest it does the same work per try-on as the service: the very same
``TryOnRunner`` and adapters from ``bootstrap`` (``FalQueueGenerator``, S3, the database, leases, audit
events), only its "ask again in N seconds" is answered by sleeping in the job instead of scheduling a new
one. It sleeps ``min(what the runner asks, BENCH_BLOCKING_POLL_SECONDS)`` (0.5 s by default: a naive
client polls often; polling sooner than the service's 2 s only helps the baseline).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import replace
from datetime import datetime
from typing import cast

from rq import Queue, Worker
from rq.serializers import JSONSerializer

from adapters.redis_store import connect_redis
from domain.ports import TryOnQueue
from domain.tryon_runner import TryOnRunner
from entrypoints import jobs
from entrypoints.bootstrap import bootstrap, rq_tryon_queue
from entrypoints.logs import configure_logging
from entrypoints.settings import Settings

QUEUE_NAME = "tryons"
DEFAULT_POLL_SECONDS = 0.5
MAX_STEPS_PER_TRYON = 2000  # a bound on one job's loop (about 17 minutes at 0.5 s)

log = logging.getLogger(__name__)


class InlineQueue(TryOnQueue):
    """Remembers when the runner wants to be called again instead of queuing a job for it.

    Deleting the selfie later is still scheduled on the real queue, as the service does.
    """

    def __init__(self, real: TryOnQueue) -> None:
        self._real = real
        self.next_in: float | None = None

    def advance_soon(self, tryon_id: str) -> None:
        self.next_in = 0.0

    def advance_in(self, tryon_id: str, seconds: float) -> None:
        self.next_in = seconds

    def advance_once(self, tryon_id: str, key: str) -> None:
        self.next_in = 0.0

    def expire_upload_at(self, upload_id: str, when: datetime) -> None:
        self._real.expire_upload_at(upload_id, when)


class BlockingRunner:
    """``advance`` runs the whole try-on: step, sleep, step ... until the runner stops asking."""

    def __init__(self, runner: TryOnRunner, queue: InlineQueue, poll_seconds: float) -> None:
        self._runner = runner
        self._queue = queue
        self._poll_seconds = poll_seconds

    def advance(self, tryon_id: str) -> None:
        for _ in range(MAX_STEPS_PER_TRYON):
            self._queue.next_in = None
            self._runner.advance(tryon_id)
            if self._queue.next_in is None:
                return  # settled (or held by someone else)
            time.sleep(min(self._queue.next_in, self._poll_seconds))
        log.warning("try-on still unsettled after %d steps; giving up", MAX_STEPS_PER_TRYON)

    def reconcile(self, limit: int = 200) -> int:
        return 0


def main() -> int:
    settings = Settings.from_env()
    poll_seconds = float(os.environ.get("BENCH_BLOCKING_POLL_SECONDS", DEFAULT_POLL_SECONDS))
    connection = connect_redis(settings.redis_url)
    inline = InlineQueue(rq_tryon_queue(connection))
    services = bootstrap(settings, queue=inline)
    configure_logging(services.scrubber)
    if services.tryon_runner is None:
        print("FAL_API_KEY is required", file=sys.stderr)
        return 2
    blocking = BlockingRunner(services.tryon_runner, inline, poll_seconds)
    # ``entrypoints.jobs.advance_tryon`` calls ``services().tryon_runner.advance(id)``: the blocking one.
    jobs.install(replace(services, tryon_runner=cast(TryOnRunner, blocking)))
    queue = Queue(QUEUE_NAME, connection=connection, serializer=JSONSerializer)
    worker = Worker([queue], connection=connection, serializer=JSONSerializer)
    log.info("blocking worker starting", extra={"queue": QUEUE_NAME, "poll_seconds": poll_seconds})
    worker.work(with_scheduler=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
