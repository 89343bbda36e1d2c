"""`make bench`: try-ons through ONE worker process beside a blocking worker, and the per-try-on overhead.

The real service on loopback (``bench.stack``: ministack S3, a private Redis, Postgres when it answers,
gunicorn) and the fal simulator (``devtools.fal_simulator``, in this process). Verified uploads are made
up front through the HTTP API (``users`` x ``uploads-per-user`` copies of the one-face test photo) and
reused: a verified upload may be tried on any number of times. Then, in this order:

A. the service's worker: one ``tryon worker`` process (RQ + its scheduler, as ``tryon demo`` starts it),
   the simulator answering after ``work-seconds`` (5). ``tryons`` try-ons are POSTed to ``/v1/tryons``
   by ``clients`` threads, ``rate`` per second (12: 60 in flight if the worker keeps up) or all at once
   (``rate`` 0: a burst, which the worker answers by submitting only, its checks queued behind); the
   database is read every ``sample-seconds`` until all have settled (bounded by ``settle-seconds``), and
   the simulator is sampled at the same ticks.
C. overhead: a fresh ``tryon worker``, the simulator answering at once; ``overhead-samples`` try-ons one
   after another, each followed by a client polling ``GET /v1/tryons/{id}`` every 50 ms.
B. the baseline (``bench.blocking_worker``): one process, RQ's forking worker, each job runs its try-on to
   the end (submit, then sleep and poll in the job); the same try-ons, bounded by ``blocking-seconds``.

Figures (A and B side by side):
- try-ons per minute: succeeded / (last one seen settled - first POST) x 60;
- fal jobs in flight: the simulator's jobs accepted and not yet COMPLETED (``jobs_in_flight()``), sampled;
  peak; "held": the highest count kept for ``work-seconds`` on end (the figure held to the target: a
  burst's brief peak is not "sustained"); mean over the window, and mean while asked-for try-ons were
  still waiting to be submitted; "outstanding" = submitted and result not yet fetched (``counts()``);
- failed: try-ons that ended ``failed`` (or could not be ordered, or did not settle in time);
- worker steps from its log (``bench.worker_log``): jobs run, time per job (dequeue -> Job OK, fork
  included) and how busy the one worker process was; its CPU (with its work horses) per job.
Overhead (C): the client's wall time POST -> succeeded; the worker's own time for the try-on (the sum of
its jobs' dequeue -> Job OK, fork included: the figure held to the 150 ms target; fal's own time is ~0
here); and the wall time minus the waits between those jobs (the runner asks for ``poll_seconds``, 2 s;
RQ keeps due times in whole seconds and its scheduler looks once a second), i.e. what the client waits
beyond the deliberate wait: enqueueing, the jobs, the HTTP calls and the 50 ms client poll.
The samples of A and B are written to ``var/bench/tryons-{a,b}-samples.csv``.

Targets (from the issue): one worker process sustains >= 50 fal requests in flight; overhead <= 150 ms.
The main figures are also printed beside issue 4's (issue 7: ``tryons`` 200, was 240).
It is a measurement: missing a target still exits 0. It exits 1 if the stack, the uploads or a worker
cannot be set up, or more than 1 % of A's try-ons fail (end failed, are not ordered or do not settle);
130 on Ctrl-C. Everything started is stopped.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import peewee
import requests
from rq import Queue
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

from adapters.peewee_db import open_database
from adapters.peewee_db.database import execute_sql
from adapters.redis_store import connect_redis
from bench.cli import Flag, exit_code, failed, interrupted, options_from, options_parser, stop_on_sigterm
from bench.cpu import busy_fraction, machine_ticks, process_seconds
from bench.loadgen import nearest_rank
from bench.memory import children
from bench.report import MAX_ERROR_RATIO, NOT_MEASURED, Beside, beside_earlier, by_kind
from bench.stack import ROOT, WORKDIR, Stack, progress, start_stack
from bench.worker_log import Step, read_steps
from devtools.fal_simulator import DEFAULT_KEY, FalSimulator
from domain.tryon_runner import RunnerPolicy

IN_FLIGHT_TARGET = 50
OVERHEAD_TARGET_MS = 150.0
PHOTO = ROOT / "tests" / "fixtures" / "images" / "one_face.jpg"
PROMPT = "a sleek copper bob with soft waves"
SETTLED = ("succeeded", "failed")
TOKEN_TTL_SECONDS = 3 * 3600
HTTP_TIMEOUT_SECONDS = 10
COMPLETE_TIMEOUT_SECONDS = 60
WORKER_START_SECONDS = 60
CLIENT_POLL_SECONDS = 0.05
OVERHEAD_SAMPLE_TIMEOUT_SECONDS = 30
POLL_SECONDS = RunnerPolicy().poll_seconds
SERVICE_WORKER = ["entrypoints.cli", "worker"]
BLOCKING_WORKER = ["bench.blocking_worker"]


@dataclass(frozen=True)
class Options:
    tryons: int
    rate: float
    work_seconds: float
    clients: int
    users: int
    uploads_per_user: int
    settle_seconds: float
    blocking_seconds: float
    blocking_poll_seconds: float
    overhead_samples: int
    workers: int
    sample_seconds: float
    worker_module: list[str]
    database_url: str | None


def parse_options(argv: Sequence[str] | None = None) -> Options:
    flags: list[Flag] = [
        ("--tryons", "BENCH_TRYONS", 200, "try-ons POSTed in scenarios A and B"),
        ("--rate", "BENCH_TRYON_RATE", 12, "POST them at this many per second; 0: all at once"),
        ("--work-seconds", "BENCH_FAL_WORK_SECONDS", 5, "how long the simulator works on a job (A, B)"),
        ("--clients", "BENCH_TRYON_CLIENTS", 4, "client threads POSTing the try-ons"),
        ("--users", "BENCH_TRYON_USERS", 10, "distinct users"),
        ("--uploads-per-user", "BENCH_TRYON_UPLOADS_PER_USER", 2, "verified uploads per user, reused"),
        ("--settle-seconds", "BENCH_TRYON_SETTLE_SECONDS", 300, "scenario A: stop waiting after this"),
        ("--blocking-seconds", "BENCH_BLOCKING_SECONDS", 120, "scenario B: stop after this"),
        ("--blocking-poll-seconds", "BENCH_BLOCKING_POLL_SECONDS", 0.5, "scenario B: the job's poll sleep"),
        ("--overhead-samples", "BENCH_OVERHEAD_SAMPLES", 20, "scenario C: sequential try-ons; 0 skips"),
        ("--workers", "BENCH_WORKERS", 2, "gunicorn workers of the service"),
        ("--sample-seconds", "BENCH_TRYON_SAMPLE_SECONDS", 0.25, "how often in-flight jobs are sampled"),
    ]
    parser = options_parser("bench.tryons", __doc__, flags)
    parser.add_argument(
        "--worker-module",
        default=os.environ.get("BENCH_TRYON_WORKER_MODULE") or " ".join(SERVICE_WORKER),
        type=str.split,  # applied to the default too: a list of `python -m` arguments
        help="the service's worker for A and C, as `python -m` arguments (to try a fix);"
        f" default {' '.join(SERVICE_WORKER)!r}",
    )
    args = parser.parse_args(argv)
    options = options_from(args, Options)
    if not 1 <= options.tryons <= 1000 or not 0 <= options.work_seconds <= 120:
        parser.error("try-ons must be 1-1000 and work seconds 0-120")
    if not (0 <= options.rate <= 200 and options.worker_module):
        parser.error("rate must be 0-200 per second and the worker module not empty")
    if not (1 <= options.clients <= 32 and 1 <= options.users <= 100 and 1 <= options.uploads_per_user <= 10):
        parser.error("clients must be 1-32, users 1-100, uploads per user 1-10")
    if not (10 <= options.settle_seconds <= 3600 and 10 <= options.blocking_seconds <= 3600):
        parser.error("settle and blocking seconds must be 10-3600")
    if not (0.05 <= options.blocking_poll_seconds <= 10 and 0 <= options.overhead_samples <= 200):
        parser.error("blocking poll seconds must be 0.05-10 and overhead samples 0-200")
    if not (1 <= options.workers <= 32 and 0.05 <= options.sample_seconds <= 5):
        parser.error("workers must be 1-32 and sample seconds 0.05-5")
    return options


class SetupFailed(Exception):
    pass


class OrderFailed(Exception):
    pass


# -- the HTTP API, as a mobile client uses it ------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    upload_id: str
    user: int


class Api:
    """``requests`` sessions, one per thread; ``auth[n]`` is user n's bearer header."""

    def __init__(self, stack: Stack, users: int) -> None:
        self.url = stack.service.url
        tokens = [stack.issuer.mint(f"benchtry{n:03d}", ttl_seconds=TOKEN_TTL_SECONDS) for n in range(users)]
        self.auth = [{"Authorization": f"Bearer {token}"} for token in tokens]
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            with self._lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        with self._lock:
            for session in self._sessions:
                session.close()

    def verified_upload(self, user: int, photo: bytes) -> Upload:
        auth = self.auth[user]
        checksum = base64.b64encode(hashlib.sha256(photo).digest()).decode()
        body = {"content_type": "image/jpeg", "content_length": len(photo), "checksum_sha256": checksum}
        issued = self.session().post(
            f"{self.url}/v1/uploads", json=body, headers=auth, timeout=HTTP_TIMEOUT_SECONDS
        )
        if issued.status_code != 201:
            raise SetupFailed(f"POST /v1/uploads answered {issued.status_code}: {issued.text[:200]}")
        ticket = issued.json()
        sent = self.session().put(
            ticket["url"], data=photo, headers=ticket["headers"], timeout=HTTP_TIMEOUT_SECONDS
        )
        if sent.status_code != 200:
            raise SetupFailed(f"PUT answered {sent.status_code}: {sent.text[:200]}")
        done = self.session().post(
            f"{self.url}/v1/uploads/{ticket['upload_id']}/complete",
            json={"object_key": ticket["object_key"]},
            headers=auth,
            timeout=COMPLETE_TIMEOUT_SECONDS,
        )
        if done.status_code != 200 or done.json().get("status") != "verified":
            raise SetupFailed(f"complete answered {done.status_code}: {done.text[:300]}")
        return Upload(str(ticket["upload_id"]), user)

    def order(self, upload: Upload) -> str:
        headers = {**self.auth[upload.user], "Idempotency-Key": secrets.token_hex(12)}
        body = {"upload_id": upload.upload_id, "style_prompt": PROMPT}
        response = self.session().post(
            f"{self.url}/v1/tryons", json=body, headers=headers, timeout=HTTP_TIMEOUT_SECONDS
        )
        if response.status_code != 202:
            raise OrderFailed(f"POST /v1/tryons answered {response.status_code}: {response.text[:200]}")
        return str(response.json()["tryon_id"])

    def look_up(self, upload: Upload, tryon_id: str) -> dict[str, Any]:
        response = self.session().get(
            f"{self.url}/v1/tryons/{tryon_id}", headers=self.auth[upload.user], timeout=HTTP_TIMEOUT_SECONDS
        )
        if response.status_code != 200:
            raise OrderFailed(f"GET /v1/tryons/{{id}} answered {response.status_code}: {response.text[:200]}")
        body: dict[str, Any] = response.json()
        return body


def make_uploads(api: Api, options: Options) -> list[Upload]:
    photo = PHOTO.read_bytes()
    uploads = []
    for _ in range(options.uploads_per_user):
        for user in range(options.users):
            uploads.append(api.verified_upload(user, photo))
        progress(f"  {len(uploads)} verified uploads")
    return uploads


# -- worker processes -----------------------------------------------------------------------------------


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log: Path


def start_worker(
    stack: Stack, sim: FalSimulator, module: list[str], log: Path, extra: dict[str, str]
) -> WorkerProcess:
    """``python -m <module...>`` with the environment ``tryon demo`` gives its worker; ready once RQ
    logs that it listens."""
    env = {
        **os.environ,
        **stack.env,
        "FAL_API_KEY": DEFAULT_KEY,
        "FAL_QUEUE_URL": sim.base_url,
        "FAL_RESULT_HOSTS": sim.base_url,
        **extra,
    }
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", *module], env=env, stdout=out, stderr=out, cwd=ROOT)
    worker = WorkerProcess(process, log)
    deadline = time.monotonic() + WORKER_START_SECONDS
    while "Listening on" not in log.read_text(errors="replace"):
        if process.poll() is not None:
            raise SetupFailed(f"{' '.join(module)} exited {process.returncode} while starting; see {log}")
        if time.monotonic() > deadline:
            stop_worker(worker)
            raise SetupFailed(f"{' '.join(module)} not listening after {WORKER_START_SECONDS} s; see {log}")
        time.sleep(0.1)
    return worker


def stop_worker(worker: WorkerProcess) -> None:
    """SIGTERM (RQ's warm shutdown: the current job ends first), again (cold: the work horse is killed),
    then SIGKILL for it and whatever children it still has (its scheduler, a work horse)."""
    process = worker.process
    for _ in range(2):
        if process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            pass
    leftovers = children(process.pid)
    process.kill()
    process.wait(timeout=5)
    for pid in leftovers:
        with suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@contextmanager
def running_worker(
    stack: Stack, sim: FalSimulator, module: list[str], log: Path, extra: dict[str, str] | None = None
) -> Iterator[WorkerProcess]:
    worker = start_worker(stack, sim, module, log, extra or {})
    try:
        yield worker
    finally:
        stop_worker(worker)


# -- scenarios A and B: a batch through one worker -------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    at: float
    in_flight: int
    outstanding: int
    waiting: int
    """Try-ons asked for and not yet submitted to fal (not yet POSTed, or ``queued`` in the database)."""


@dataclass
class Batch:
    name: str
    asked: int
    started: float = 0.0
    """The first POST (``time.monotonic()``); ``started_epoch`` is the same instant on the logs' clock."""
    started_epoch: float = 0.0
    owners: dict[str, Upload] = field(default_factory=dict)
    posted_at: dict[str, float] = field(default_factory=dict)
    settled_at: dict[str, float] = field(default_factory=dict)
    final: dict[str, str] = field(default_factory=dict)
    """Status as GET /v1/tryons/{id} answered at the end (with the error code of a failed one)."""
    order_failures: int = 0
    first_error: str = ""
    samples: list[Sample] = field(default_factory=list)
    timed_out: bool = False
    steps: list[Step] = field(default_factory=list)
    worker_cpu_seconds: float = math.nan
    machine_busy: float = math.nan

    @property
    def succeeded(self) -> int:
        return sum(1 for status in self.final.values() if status == "succeeded")

    @property
    def failed(self) -> int:
        return sum(1 for status in self.final.values() if status != "succeeded")

    @property
    def unsettled(self) -> int:
        return len(self.owners) - len(self.settled_at)

    @property
    def errors(self) -> int:
        return self.failed + self.order_failures + self.unsettled

    @property
    def finished(self) -> float:
        return max(self.settled_at.values(), default=math.nan)

    @property
    def window(self) -> float:
        return self.finished - self.started

    @property
    def per_minute(self) -> float:
        return self.succeeded / self.window * 60 if self.window > 0 else math.nan

    def in_window(self) -> list[Sample]:
        return [s for s in self.samples if self.started <= s.at <= self.finished]

    def tryon_steps(self) -> list[Step]:
        return [step for step in self.steps if step.tryon_id in self.owners]

    def note(self, error: str) -> None:
        self.first_error = self.first_error or error

    def error_kinds(self) -> Counter[str]:
        """``errors`` by kind: ``failed:<code>`` (answered at the end), ``not ordered``, ``not settled``."""
        kinds = Counter(status for status in self.final.values() if status != "succeeded")
        kinds.update({"not ordered": self.order_failures, "not settled": self.unsettled})
        return +kinds  # drops the zero counts


def settled_statuses(db: peewee.Database) -> dict[str, str]:
    rows = execute_sql(db, "SELECT tryon_id, status FROM tryons").fetchall()
    return {str(tryon_id): str(status) for tryon_id, status in rows}


def run_batch(
    name: str,
    api: Api,
    uploads: Sequence[Upload],
    sim: FalSimulator,
    db: peewee.Database,
    worker: WorkerProcess,
    options: Options,
    budget: float,
) -> Batch:
    batch = Batch(name, options.tryons)
    lock = threading.Lock()
    before = sim.counts()

    def order(index: int) -> None:
        upload = uploads[index % len(uploads)]
        if options.rate > 0:  # open loop: the index-th try-on is asked for at index / rate
            time.sleep(max(0.0, batch.started + index / options.rate - time.monotonic()))
        started = time.monotonic()
        try:
            tryon_id = api.order(upload)
        except (OrderFailed, requests.RequestException, ValueError, KeyError) as error:
            with lock:
                batch.order_failures += 1
                batch.note(f"{type(error).__name__}: {error}")
            return
        with lock:
            batch.owners[tryon_id] = upload
            batch.posted_at[tryon_id] = started

    cpu_before, ticks_before = process_seconds(worker.process.pid), machine_ticks()
    batch.started, batch.started_epoch = time.monotonic(), time.time()
    deadline = batch.started + budget
    pace = f"{options.rate:g} per second" if options.rate > 0 else "all at once"
    progress(f"{name}: POSTing {options.tryons} try-ons, {pace}, from {options.clients} client threads ...")
    with ThreadPoolExecutor(options.clients, thread_name_prefix="bench-client") as pool:
        futures = [pool.submit(order, index) for index in range(options.tryons)]
        next_report = batch.started + 10
        while True:
            now = time.monotonic()
            statuses = settled_statuses(db)
            with lock:
                known = list(batch.owners)
                due = options.tryons
                if options.rate > 0:
                    due = min(due, math.floor((now - batch.started) * options.rate) + 1)
                unposted = max(0, due - len(known) - batch.order_failures)
            for tryon_id in known:
                if statuses.get(tryon_id) in SETTLED and tryon_id not in batch.settled_at:
                    batch.settled_at[tryon_id] = now
            counts = sim.counts()
            waiting = unposted + sum(1 for tryon_id in known if statuses.get(tryon_id) == "queued")
            outstanding = (counts.submissions - before.submissions) - (
                counts.result_fetches - before.result_fetches
            )
            batch.samples.append(Sample(now, sim.jobs_in_flight(), outstanding, waiting))
            if all(f.done() for f in futures) and len(batch.settled_at) == len(batch.owners):
                break
            if now > deadline:
                batch.timed_out = True
                break
            if now >= next_report:
                progress(
                    f"  {now - batch.started:.0f} s: {len(batch.settled_at)}/{options.tryons} settled, "
                    f"{batch.samples[-1].in_flight} fal jobs in flight, {waiting} waiting"
                )
                next_report += 10
            time.sleep(max(0.0, now + options.sample_seconds - time.monotonic()))
        pool.shutdown(wait=True, cancel_futures=True)
    batch.worker_cpu_seconds = process_seconds(worker.process.pid) - cpu_before
    batch.machine_busy = busy_fraction(ticks_before, machine_ticks())
    took = time.monotonic() - batch.started
    progress(
        f"{name}: {len(batch.settled_at)}/{options.tryons} settled in {took:.1f} s"
        + (" (time budget reached)" if batch.timed_out else "")
    )
    for tryon_id in batch.settled_at:
        try:
            body = api.look_up(batch.owners[tryon_id], tryon_id)
        except (OrderFailed, requests.RequestException, ValueError) as error:
            batch.final[tryon_id] = "unknown"
            batch.note(f"{type(error).__name__}: {error}")
            continue
        status = str(body.get("status"))
        error_code = (body.get("error") or {}).get("code")
        batch.final[tryon_id] = status if status == "succeeded" else f"{status}:{error_code}"
        if status != "succeeded":
            batch.note(f"try-on {status}: {body.get('error')}")
    return batch


def write_samples(batch: Batch, path: Path) -> None:
    settled = sorted(batch.settled_at.values())
    lines = ["seconds,fal_in_flight,outstanding,waiting,settled"]
    for sample in batch.samples:
        done = sum(1 for at in settled if at <= sample.at)
        lines.append(
            f"{sample.at - batch.started:.2f},{sample.in_flight},{sample.outstanding},{sample.waiting},{done}"
        )
    path.write_text("\n".join(lines) + "\n")


def abandon_unsettled(db: peewee.Database, redis_url: str) -> int:
    """So a scenario that ran out of time cannot spill into the next: its jobs are dropped from Redis and
    its try-ons marked failed (the reconciler would otherwise queue them again)."""
    cursor = execute_sql(
        db,
        "UPDATE tryons SET status = 'failed', error_code = 'bench_abandoned', lease_until = NULL"
        " WHERE status NOT IN ('succeeded', 'failed')",
    )
    abandoned = int(cursor.rowcount or 0)
    connection = connect_redis(redis_url)
    queue = Queue("tryons", connection=connection, serializer=JSONSerializer)
    queue.empty()  # type: ignore[no-untyped-call]
    scheduled = ScheduledJobRegistry(queue=queue)  # type: ignore[no-untyped-call]
    for job_id in scheduled.get_job_ids():
        scheduled.remove(job_id, delete_job=True)
    return abandoned


# -- scenario C: overhead -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OverheadSample:
    tryon_id: str
    status: str
    wall_seconds: float
    steps: list[Step]

    @property
    def worker_seconds(self) -> float:
        return sum(step.seconds or 0.0 for step in self.steps)

    @property
    def perform_seconds(self) -> float:
        return sum(step.perform_seconds or 0.0 for step in self.steps)

    @property
    def gaps_seconds(self) -> list[float]:
        """From each step's end to the next step's start: the runner asked for ``POLL_SECONDS``; RQ keeps
        due times in whole seconds and its scheduler moves due jobs once a second, so it varies."""
        return [
            current.taken_at - (previous.ended_at or previous.taken_at)
            for previous, current in zip(self.steps, self.steps[1:], strict=False)
        ]

    @property
    def beyond_waits_seconds(self) -> float:
        """Wall time minus the waits between steps (fal's own time, ~0 here, lies within them)."""
        return self.wall_seconds - sum(self.gaps_seconds)


def run_overhead(api: Api, uploads: Sequence[Upload], samples: int) -> list[tuple[str, str, float]]:
    """(try-on id, final status, wall seconds POST -> settled) for each, one after another."""
    measured = []
    for index in range(samples):
        upload = uploads[index % len(uploads)]
        started = time.monotonic()
        tryon_id = api.order(upload)
        deadline = started + OVERHEAD_SAMPLE_TIMEOUT_SECONDS
        status = "queued"
        while time.monotonic() < deadline:
            status = str(api.look_up(upload, tryon_id)["status"])
            if status in SETTLED:
                break
            time.sleep(CLIENT_POLL_SECONDS)
        wall = time.monotonic() - started
        measured.append((tryon_id, status, wall))
        progress(f"  overhead {index + 1}/{samples}: {status} after {wall * 1000:.0f} ms")
    return measured


def overhead_samples(
    measured: Sequence[tuple[str, str, float]], steps: Sequence[Step]
) -> list[OverheadSample]:
    by_tryon: dict[str, list[Step]] = {}
    for step in steps:
        if step.tryon_id is not None:
            by_tryon.setdefault(step.tryon_id, []).append(step)
    return [OverheadSample(t, status, wall, by_tryon.get(t, [])) for t, status, wall in measured]


# -- the report -----------------------------------------------------------------------------------------


def _num(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def _ms(values: Sequence[float], p: float) -> str:
    return _num(nearest_rank([v * 1000 for v in values], p), 0)


Row = Callable[[Batch], str]


def _step_seconds(batch: Batch) -> list[float]:
    return [s.seconds for s in batch.tryon_steps() if s.seconds is not None]


def _perform_seconds(batch: Batch) -> list[float]:
    return [s.perform_seconds for s in batch.tryon_steps() if s.perform_seconds is not None]


def _busy(batch: Batch) -> float:
    """Share of the window the one worker process spent inside jobs (dequeue -> Job OK), any job."""
    if not batch.window > 0:
        return math.nan
    start, end = batch.started_epoch, batch.started_epoch + batch.window
    inside = [min(s.ended_at, end) - max(s.taken_at, start) for s in batch.steps if s.ended_at is not None]
    return sum(max(0.0, seconds) for seconds in inside) / batch.window


BATCH_ROWS: list[tuple[str, Row]] = [
    ("try-ons asked / POSTed", lambda b: f"{b.asked} / {len(b.owners)}"),
    ("succeeded", lambda b: str(b.succeeded)),
    ("failed (ended failed / not ordered)", lambda b: f"{b.failed} / {b.order_failures}"),
    ("not settled when stopped", lambda b: str(b.unsettled)),
    ("window s (first POST -> last settled)", lambda b: _num(b.window)),
    ("try-ons per minute", lambda b: _num(b.per_minute)),
    ("fal jobs in flight: peak", lambda b: str(max((s.in_flight for s in b.in_window()), default=0))),
    ("fal jobs in flight: mean", lambda b: _num(_mean([s.in_flight for s in b.in_window()]))),
    (
        "  mean while try-ons waited for the worker",
        lambda b: _num(_mean([s.in_flight for s in b.in_window() if s.waiting > 0])),
    ),
    (
        "fal requests outstanding: peak / mean",
        lambda b: (
            f"{max((s.outstanding for s in b.in_window()), default=0)} / "
            f"{_num(_mean([s.outstanding for s in b.in_window()]))}"
        ),
    ),
    (
        "POST -> settled s: p50 / p95",
        lambda b: "{} / {}".format(
            *(
                _num(nearest_rank([b.settled_at[t] - b.posted_at[t] for t in b.settled_at], p))
                for p in (50.0, 95.0)
            )
        ),
    ),
    ("worker jobs for these try-ons", lambda b: str(len(b.tryon_steps()))),
    (
        "  jobs per settled try-on",
        lambda b: (
            _num(sum(1 for s in b.tryon_steps() if s.tryon_id in b.settled_at) / len(b.settled_at), 2)
            if b.settled_at
            else "n/a"
        ),
    ),
    (
        "  ms per job (dequeue -> Job OK): p50 / p95",
        lambda b: f"{_ms(_step_seconds(b), 50)} / {_ms(_step_seconds(b), 95)}",
    ),
    ("  of which the job body: p50 ms", lambda b: _ms(_perform_seconds(b), 50)),
    ("worker busy in jobs, % of window", lambda b: _num(_busy(b) * 100, 0)),
    (
        "worker CPU ms per job (incl. work horses)",
        lambda b: _num(b.worker_cpu_seconds * 1000 / len(b.tryon_steps()), 0) if b.tryon_steps() else "n/a",
    ),
    ("machine CPU busy % (2 cores = 100)", lambda b: _num(b.machine_busy * 100, 0)),
]


def sustained(batch: Batch, hold_seconds: float) -> int:
    """The highest number of fal jobs in flight held for ``hold_seconds`` on end (one job's duration):
    the largest minimum over any window that long. A burst's brief peak does not count."""
    samples = batch.in_window()
    best = 0
    for first, sample in enumerate(samples):
        end = sample.at + hold_seconds
        if end > batch.finished:
            break
        held = min(s.in_flight for s in samples[first:] if s.at <= end)
        best = max(best, held)
    return best


def batch_table(a: Batch, b: Batch | None, hold_seconds: float) -> str:
    names = [a.name] + ([b.name] if b else [])
    rows: list[tuple[str, list[str]]] = [("", names)]
    rows += [(label, [f(a)] + ([f(b)] if b else [])) for label, f in BATCH_ROWS]
    held = f"  held for {hold_seconds:g} s (one fal job) on end"
    rows.insert(8, (held, [str(sustained(x, hold_seconds)) for x in (a, b) if x is not None]))
    width = max(len(label) for label, _ in rows) + 2
    lines = [f"{label:<{width}}" + "".join(f"{cell:>22}" for cell in cells) for label, cells in rows]
    lines.insert(1, "-" * (width + 22 * len(names)))
    return "\n".join(lines)


EARLIER_ISSUE = 4
"""Issue 4's figures (README, Benchmarks): 240 try-ons at 12/s, the simulator answering after 5 s."""


def beside_issue_4(a: Batch, b: Batch | None, samples: Sequence[OverheadSample], options: Options) -> str:
    order_to_settled = [a.settled_at[t] - a.posted_at[t] for t in a.settled_at]
    done = [s.worker_seconds for s in samples if s.status == "succeeded" and s.steps]
    pace = f"{options.rate:g}/s" if options.rate > 0 else "all at once"
    rows: list[Beside] = [
        (f"A: one tryon worker process, {a.asked} try-ons at {pace}", "", ""),
        ("  succeeded / asked", NOT_MEASURED, f"{a.succeeded} / {a.asked}"),
        ("  failed (ended failed, not ordered, not settled)", "0", by_kind(a.error_kinds())),
        ("  try-ons per minute", "528", _num(a.per_minute)),
        (
            f"  fal requests in flight, held for {options.work_seconds:g} s",
            "55",
            str(sustained(a, options.work_seconds)),
        ),
        ("  fal requests in flight, peak", "65", str(max((s.in_flight for s in a.in_window()), default=0))),
        (
            f"  POST -> settled s, p50 / p99 ({options.sample_seconds:g} s ticks)",
            NOT_MEASURED,
            f"{_num(nearest_rank(order_to_settled, 50))} / {_num(nearest_rank(order_to_settled, 99))}",
        ),
        ("B: one blocking worker process", "", ""),
        ("  try-ons per minute", "11.5", _num(b.per_minute) if b else "skipped"),
        ("C: overhead, the simulator answering at once", "", ""),
        ("  worker's own time per try-on p50 / p95 ms", "41 / 58", f"{_ms(done, 50)} / {_ms(done, 95)}"),
    ]
    return beside_earlier("try-ons through the fal simulator", EARLIER_ISSUE, rows)


def error_problem(a: Batch) -> str | None:
    """What to say if more than 1 % of A's try-ons failed (the figures are then not worth reading)."""
    if a.errors <= MAX_ERROR_RATIO * a.asked:
        return None
    return (
        f"{a.name}: {a.errors}/{a.asked} try-ons failed: {by_kind(a.error_kinds())} (first: {a.first_error})"
    )


def overhead_lines(samples: Sequence[OverheadSample]) -> list[str]:
    done = [s for s in samples if s.status == "succeeded" and s.steps]
    if not done:
        return ["overhead: no try-on succeeded with its steps in the worker log"]

    def figures(values: Sequence[float]) -> str:
        return f"p50 {_ms(values, 50)} ms, p95 {_ms(values, 95)} ms, max {_ms([max(values)], 50)} ms"

    steps = [len(s.steps) for s in done]
    rows = [
        ("client wall time POST -> succeeded (50 ms polls)", [s.wall_seconds for s in done]),
        ("wall minus the waits between the worker's jobs", [s.beyond_waits_seconds for s in done]),
        (
            f"the waits between jobs (the runner asks {POLL_SECONDS:g} s)",
            [g for s in done for g in s.gaps_seconds],
        ),
        ("worker's own time per try-on (sum of dequeue -> Job OK)", [s.worker_seconds for s in done]),
        ("  of which the job bodies (runner + adapters)", [s.perform_seconds for s in done]),
    ]
    width = max(len(label) for label, _ in rows) + 2
    return [
        f"overhead (C): {len(done)} of {len(samples)} try-ons succeeded; simulator answering at once;"
        f" runner poll_seconds {POLL_SECONDS:g} s; worker jobs per try-on {min(steps)}-{max(steps)}",
        *(f"  {label + ':':<{width}}{figures(values)}" for label, values in rows),
    ]


def verdicts(a: Batch, samples: Sequence[OverheadSample], options: Options) -> list[str]:
    def mark(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    peak = max((s.in_flight for s in a.in_window()), default=0)
    held = sustained(a, options.work_seconds)
    figures = f"held for {options.work_seconds:g} s: {held}, peak {peak}"
    lines = []
    if options.tryons < IN_FLIGHT_TARGET:
        lines.append(
            f">= {IN_FLIGHT_TARGET} in flight: NOT MEASURABLE with {options.tryons} try-ons ({figures})"
        )
    else:
        verdict = mark(held >= IN_FLIGHT_TARGET)
        lines.append(f">= {IN_FLIGHT_TARGET} in flight: {verdict} (one worker process, {figures})")
    done = [s for s in samples if s.status == "succeeded" and s.steps]
    if not done:
        lines.append(f"overhead <= {OVERHEAD_TARGET_MS:g} ms: NOT MEASURED")
    else:
        p95 = nearest_rank([s.worker_seconds * 1000 for s in done], 95)
        lines.append(
            f"overhead <= {OVERHEAD_TARGET_MS:g} ms: {mark(p95 <= OVERHEAD_TARGET_MS)} "
            f"(the worker's own time per try-on, p95 {p95:.1f} ms; fal's time ~0 here)"
        )
    return lines


# -- main -----------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    a: Batch | None = None
    b: Batch | None = None
    overhead: list[OverheadSample] = field(default_factory=list)


def run(options: Options, stack: ExitStack, outcome: Outcome) -> None:
    progress(f"starting the stack on loopback (logs under {WORKDIR}) ...")
    started = start_stack(
        stack,
        workers=options.workers,
        database_url=options.database_url,
        with_floor=False,
        private_redis=True,
    )
    sim = stack.enter_context(FalSimulator(max_jobs=max(500, 4 * options.tryons)))
    progress(f"fal simulator at {sim.base_url}")
    api = Api(started, options.users)
    stack.callback(api.close)
    db = open_database(started.env["DATABASE_URL"])
    stack.callback(db.close)
    progress(f"making {options.users * options.uploads_per_user} verified uploads ({PHOTO.name}) ...")
    uploads = make_uploads(api, options)

    sim.set_work_seconds(options.work_seconds)
    progress(
        f"A: one worker process (python -m {' '.join(options.worker_module)});"
        f" the simulator answers after {options.work_seconds:g} s"
    )
    with running_worker(started, sim, options.worker_module, WORKDIR / "worker-a.log") as worker:
        outcome.a = run_batch(
            "A: tryon worker", api, uploads, sim, db, worker, options, options.settle_seconds
        )
    outcome.a.steps = read_steps(WORKDIR / "worker-a.log")
    write_samples(outcome.a, WORKDIR / "tryons-a-samples.csv")
    if abandoned := abandon_unsettled(db, started.redis_url):
        progress(f"  {abandoned} unsettled try-ons of A abandoned")

    if options.overhead_samples:
        sim.set_work_seconds(0)
        sim.set_queue_seconds(0)
        progress(
            f"C: overhead, {options.overhead_samples} try-ons one at a time; the simulator answers at once"
        )
        with running_worker(started, sim, options.worker_module, WORKDIR / "worker-c.log"):
            measured = run_overhead(api, uploads, options.overhead_samples)
        outcome.overhead = overhead_samples(measured, read_steps(WORKDIR / "worker-c.log"))
        if abandoned := abandon_unsettled(db, started.redis_url):
            progress(f"  {abandoned} unsettled try-ons of C abandoned")

    sim.set_work_seconds(options.work_seconds)
    progress(
        f"B: one blocking worker process (polls every {options.blocking_poll_seconds:g} s in the job);"
        f" bounded to {options.blocking_seconds:g} s"
    )
    extra = {"BENCH_BLOCKING_POLL_SECONDS": str(options.blocking_poll_seconds)}
    with running_worker(started, sim, BLOCKING_WORKER, WORKDIR / "worker-b.log", extra) as worker:
        outcome.b = run_batch(
            "B: blocking worker", api, uploads, sim, db, worker, options, options.blocking_seconds
        )
    outcome.b.steps = read_steps(WORKDIR / "worker-b.log")
    write_samples(outcome.b, WORKDIR / "tryons-b-samples.csv")
    progress("stopping everything started ...")


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    stop_on_sigterm()
    outcome = Outcome()
    try:
        with ExitStack() as stack:
            try:
                run(options, stack, outcome)
            except Exception as error:
                return failed(error)
    except KeyboardInterrupt:
        return interrupted()
    assert outcome.a is not None
    print()
    print(batch_table(outcome.a, outcome.b, options.work_seconds))
    print()
    for line in overhead_lines(outcome.overhead):
        print(line)
    print()
    print(beside_issue_4(outcome.a, outcome.b, outcome.overhead, options))
    print()
    for batch in (outcome.a, outcome.b):
        if batch is not None and batch.first_error:
            print(f"{batch.name}: first error: {batch.first_error}")
    for line in verdicts(outcome.a, outcome.overhead, options):
        print(line)
    problem = error_problem(outcome.a)
    return exit_code([problem] if problem is not None else [])


if __name__ == "__main__":
    sys.exit(main())
