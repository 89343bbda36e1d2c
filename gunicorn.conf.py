"""Gunicorn settings for the `web` process (gunicorn reads this file from the working directory).

Threaded workers (gthread): ``WEB_CONCURRENCY`` processes of ``WEB_THREADS`` threads each, so a slow client
or a long wait holds one thread, not a whole process. Everything a request touches is safe across threads
(the database pool hands each thread a connection of its own).

Each worker opens its pools (database, Redis, S3) before it takes traffic. The web never loads the face
model: verification runs in the ``verifier`` process, and ``complete`` waits for its verdict on Redis.

Metrics: prometheus_client's multi-process mode. ``PROMETHEUS_MULTIPROC_DIR`` must be set before anything
imports prometheus_client (it picks its value store at import), so it is set first here, and the app is
imported only inside the hooks. The directory is ``WEB_METRICS_DIR`` if the operator chose one (emptied of an
earlier run's files at start), else a fresh one this file makes (and removes on exit). It is set here, for the
web only: the worker and the verifier (``tryon``) drop an inherited ``PROMETHEUS_MULTIPROC_DIR``. Each
worker writes its values to files there and ``/metrics`` adds up every process's, including exited ones.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
OPERATORS_DIR = "WEB_METRICS_DIR"
MADE_DIR = "TRYON_MADE_METRICS_DIR"
"""The directory the first load of this file made. gunicorn loads the file again on SIGHUP: the reload must
keep using (and on exit remove) that one, not make another and leak the first."""


def metrics_directory() -> tuple[str, bool]:
    """(where the web's processes keep their values, whether this file made it)."""
    chosen = os.environ.get(OPERATORS_DIR)
    if chosen:
        return chosen, False
    made = os.environ.get(MADE_DIR) or tempfile.mkdtemp(prefix="tryon-metrics-")
    os.environ[MADE_DIR] = made
    return made, True


METRICS_DIR, _MADE_HERE = metrics_directory()
os.environ[MULTIPROC_DIR] = METRICS_DIR  # before any import of prometheus_client, in this and every worker

worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "8"))
timeout = 30
graceful_timeout = 28
"""On SIGTERM (a deploy, a restart) a worker finishes what it holds for up to this long: above the longest
long poll (``?wait=25``), so a held request still gets its answer, and below the 30 s the platform allows
between SIGTERM and SIGKILL."""
accesslog = None  # the app logs one scrubbed JSON line per request; gunicorn's would repeat it raw


def on_starting(server: Any) -> None:
    """Once, before the first worker: an earlier run's files (dead processes' values, in the operator's
    directory) would be summed forever; prometheus_client's docs say to empty the directory first."""
    for stale in Path(METRICS_DIR).glob("*.db"):
        stale.unlink(missing_ok=True)


def when_ready(server: Any) -> None:
    server.log.info("prometheus multiprocess directory: %s", os.environ[MULTIPROC_DIR])


def post_worker_init(worker: Any) -> None:
    from entrypoints.http.app import WORKER_WARM, warm_up  # noqa: PLC0415 - after the metrics directory is set

    if warm_up(worker.wsgi):
        worker.log.info("%s (pid %s)", WORKER_WARM, worker.pid)


def child_exit(server: Any, worker: Any) -> None:
    """A worker's counters stay (its files are still summed); only its live gauges go (we keep none)."""
    from prometheus_client import multiprocess  # noqa: PLC0415 - after the metrics directory is set

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    if _MADE_HERE:
        shutil.rmtree(METRICS_DIR, ignore_errors=True)
