"""The `worker` process: an RQ worker with its scheduler. It never imports tensorflow."""

from __future__ import annotations

import logging

from rq import Queue, Worker
from rq.serializers import JSONSerializer

from adapters.redis_store import connect_redis
from entrypoints.bootstrap import bootstrap
from entrypoints.logs import configure_logging
from entrypoints.settings import Settings

QUEUE_NAMES = ("tryons", "maintenance")

log = logging.getLogger(__name__)


def run_worker(settings: Settings, *, burst: bool = False) -> int:
    services = bootstrap(settings)
    configure_logging(services.scrubber)
    connection = connect_redis(settings.redis_url)
    queues = [Queue(name, connection=connection, serializer=JSONSerializer) for name in QUEUE_NAMES]
    worker = Worker(queues, connection=connection, serializer=JSONSerializer)
    log.info("worker starting", extra={"queues": list(QUEUE_NAMES), "burst": burst})
    worker.work(with_scheduler=True, burst=burst)
    return 0
