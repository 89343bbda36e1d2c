"""Gunicorn settings for the `web` process (gunicorn reads this file from the working directory).

Threaded workers (gthread): ``WEB_CONCURRENCY`` processes of ``WEB_THREADS`` threads each, so a slow client
or a long wait holds one thread, not a whole process. Everything a request touches is safe across threads
(the database pool hands each thread a connection of its own).

Each worker opens its pools (database, Redis, S3) before it takes traffic. The web never loads the face
model: verification runs in the ``verifier`` process, and ``complete`` waits for its verdict on Redis.
"""

from __future__ import annotations

import os
from typing import Any

from entrypoints.http.app import WORKER_WARM, warm_up

worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "8"))
timeout = 30
graceful_timeout = 20
accesslog = None  # the app logs one scrubbed JSON line per request; gunicorn's would repeat it raw


def post_worker_init(worker: Any) -> None:
    if warm_up(worker.wsgi):
        worker.log.info("%s (pid %s)", WORKER_WARM, worker.pid)
