"""Starts what the benchmarks measure, on loopback: the real service and (for issuance) the floor.

Shared by ``bench.issuance``, ``bench.verification`` and ``bench.tryons``: ministack, Redis, a dev JWT
issuer, a fresh database, ``tryon migrate`` / ``provision``, then the real service under gunicorn (gthread
workers, pools open; the web carries no face model) and one ``tryon verifier`` (the face model loaded). The
floor runs with the same gunicorn command line (the one
``devtools.local_stack.start_gunicorn`` uses), only the app module differs. Everything started is
registered on the caller's ``ExitStack``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import requests

from devtools.demo import find_or_start_redis, run_cli
from devtools.dev_issuer import DevJwtIssuer
from devtools.local_stack import (
    EMULATOR_CREDENTIALS,
    LocalProcess,
    LocalServiceError,
    start_gunicorn,
    start_ministack,
    start_verifier,
)
from entrypoints.http.app import WORKER_WARM

ROOT = Path(__file__).resolve().parents[1]
WORKDIR = ROOT / "var" / "bench"
DATABASE = WORKDIR / "tryon.db"
UPLOADS_BUCKET = "hairfluencer-bench-uploads"
PROCESSED_BUCKET = "hairfluencer-bench-processed"
UNTRIPPABLE_RATE_LIMIT = "1000000/minute"
UNTRIPPABLE_COUNT = "1000000"  # per-user try-on limits: the bench measures throughput, not the limits
POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BENCH_DATABASE = "tryon_bench"


@dataclass(frozen=True)
class Stack:
    service: LocalProcess
    issuer: DevJwtIssuer
    redis_url: str
    service_log: Path
    """The service's gunicorn log (appended to across runs): its JSON access lines carry ``duration_ms``."""
    floor: LocalProcess | None = None
    env: dict[str, str] = field(default_factory=dict)
    """The service's environment (database, Redis, S3, buckets, issuer): what a worker process needs too."""
    verifier: LocalProcess | None = None
    """The one ``tryon verifier`` (its process, not a wrapper: its pid is the verifier's)."""
    verifier_log: Path | None = None
    """The verifier's log, this run's only (the previous one is moved to ``verifier.previous.log``): JSON
    lines with millisecond ``ts``."""


def progress(message: str) -> None:
    print(f"[bench] {message}", flush=True)


@contextmanager
def heartbeat(what: str, expected_seconds: float, every: float = 15.0) -> Iterator[None]:
    """A progress line every ``every`` s while the block runs (``what: 30 of ~62 s``), so a long quiet
    measurement does not look hung."""
    started = time.monotonic()
    done = threading.Event()

    def beat() -> None:
        while not done.wait(every):
            progress(f"  {what}: {time.monotonic() - started:.0f} of ~{expected_seconds:.0f} s")

    thread = threading.Thread(target=beat, name="bench-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _release(command: str, env: dict[str, str]) -> str:
    return " / ".join(run_cli(command, env).splitlines())


def _log_size(log: Path) -> int:
    return log.stat().st_size if log.exists() else 0


def _wait_until_every_worker_is_warm(log: Path, since: int, workers: int, timeout: float = 120) -> None:
    """Each web worker opens its pools after it starts; measuring before that measures the opening.

    The log is appended to across runs: only what this run wrote (from byte ``since``) counts.
    """
    deadline = time.monotonic() + timeout
    while log.read_bytes()[since:].decode(errors="replace").count(WORKER_WARM) < workers:
        if time.monotonic() > deadline:
            raise LocalServiceError(f"web workers not warm after {timeout:.0f} s; see {log}")
        time.sleep(0.2)


def _postgres_admin(*statements: str) -> None:
    """Run ``statements`` (outside a transaction) on the server at ``POSTGRES_ADMIN_URL``."""
    admin = psycopg2.connect(POSTGRES_ADMIN_URL, connect_timeout=3)
    try:
        admin.autocommit = True
        with admin.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    finally:
        admin.close()


def postgres_database(name: str) -> str:
    """A freshly created Postgres database ``name`` (dropped first if it exists): its URL. Raises
    psycopg2.OperationalError when no Postgres answers at ``POSTGRES_ADMIN_URL``."""
    _postgres_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}")
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_postgres_database(name: str) -> None:
    """Drop ``name``, closing whatever is still connected to it."""
    _postgres_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def fresh_database() -> str:
    """Production's backend when it is here: a freshly created Postgres database; else SQLite."""
    try:
        return postgres_database(BENCH_DATABASE)
    except psycopg2.OperationalError:
        for leftover in (DATABASE, DATABASE.with_name("tryon.db-wal"), DATABASE.with_name("tryon.db-shm")):
            leftover.unlink(missing_ok=True)
        return f"sqlite:///{DATABASE}"


def start_stack(
    stack: ExitStack,
    *,
    workers: int,
    database_url: str | None = None,
    with_floor: bool = True,
    private_redis: bool = False,
    extra_env: dict[str, str] | None = None,
) -> Stack:
    """``database_url`` None: see ``fresh_database``. ``with_floor``: also start ``bench.floor_app``.
    ``private_redis``: start a redis-server of our own even if one answers at ``REDIS_URL`` (its queues
    are then not shared with, or flushed by, anything else running on the machine, such as a test suite).
    ``extra_env``: more settings for the service (and ``Stack.env``), e.g. where fal's webhook keys are."""
    WORKDIR.mkdir(parents=True, exist_ok=True)
    database_url = database_url or fresh_database()
    os.environ.update(EMULATOR_CREDENTIALS)
    s3 = stack.enter_context(start_ministack(log_path=WORKDIR / "ministack.log"))
    progress(f"ministack S3 emulator at {s3.url}")
    redis_url, found = find_or_start_redis(stack, private=private_redis)
    progress(found)
    issuer = stack.enter_context(DevJwtIssuer())
    progress(f"dev JWT issuer at {issuer.jwks_url}")
    env = {
        **EMULATOR_CREDENTIALS,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "S3_ENDPOINT_URL": s3.url,
        "UPLOADS_BUCKET": UPLOADS_BUCKET,
        "PROCESSED_BUCKET": PROCESSED_BUCKET,
        "BETTER_AUTH_URL": issuer.base_url,
        "RATE_LIMIT_UPLOADS": UNTRIPPABLE_RATE_LIMIT,
        "RATE_LIMIT_TRYONS": UNTRIPPABLE_RATE_LIMIT,
        "RATE_LIMIT_MUTATIONS": UNTRIPPABLE_RATE_LIMIT,
        "MAX_ACTIVE_TRYONS": UNTRIPPABLE_COUNT,
        "DAILY_IMAGE_QUOTA": UNTRIPPABLE_COUNT,
        **(extra_env or {}),
    }
    progress(f"database {database_url.split('://')[0]}; tryon migrate: {_release('migrate', env)}")
    progress(f"tryon provision: {_release('provision', env)}")
    service_log = WORKDIR / "web.log"
    log_start = _log_size(service_log)
    service = stack.enter_context(start_gunicorn(env, workers=workers, log_path=service_log))
    _wait_until_every_worker_is_warm(service_log, log_start, workers)
    ready = requests.get(f"{service.url}/readyz", timeout=10)
    if ready.status_code != 200:
        raise LocalServiceError(f"service /readyz answered {ready.status_code}: {ready.text[:300]}")
    threads = os.environ.get("WEB_THREADS", "8")
    progress(
        f"service: gunicorn wsgi:app, {workers} gthread workers x {threads} threads, at {service.url} (ready)"
    )
    verifier_log = WORKDIR / "verifier.log"
    if verifier_log.exists():  # start_verifier looks for its "warm" line anywhere in the file: start afresh
        verifier_log.replace(verifier_log.with_name("verifier.previous.log"))
    verifier = stack.enter_context(start_verifier(env, log_path=verifier_log))
    progress(f"verifier: tryon verifier, pid {verifier.process.pid} (face model loaded)")
    floor = None
    if with_floor:
        floor = stack.enter_context(
            start_gunicorn(env, app="bench.floor_app:app", workers=workers, log_path=WORKDIR / "floor.log")
        )
        progress(f"floor: gunicorn bench.floor_app:app, {workers} workers, at {floor.url}")
    return Stack(
        service=service,
        issuer=issuer,
        redis_url=redis_url,
        service_log=service_log,
        floor=floor,
        env=env,
        verifier=verifier,
        verifier_log=verifier_log,
    )
