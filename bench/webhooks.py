"""`make bench`: how soon the app learns a try-on's result, and at what cost in calls, with fal's signed
webhooks beside polling (issue 14), in one run.

The stack of ``bench.stack`` (gunicorn, a private Redis, Postgres when it answers, ministack S3, the
verifier) and the fal simulator in this process; the web reads the simulator's JWKS
(``FAL_WEBHOOK_JWKS_URL``). Two modes, one after the other, each with a fresh ``tryon worker`` process:

- polling: no ``PUBLIC_BASE_URL``: the worker asks fal for the status every 2 s (as before issue 14);
- webhooks: ``PUBLIC_BASE_URL`` = the bench gunicorn's loopback URL: the worker submits with
  ``?fal_webhook=``, the simulator POSTs its signed delivery to ``/v1/webhooks/fal`` and the worker then
  fetches the result without asking for the status.

In each, one warm-up try-on (not counted), then ``tryons`` try-ons one after another. The simulator works
on the k-th for a fixed time spread evenly over [``work-min``, ``work-max``] s, the same schedule in both
modes, so the 2 s poll meets completions at every phase instead of one lucky or unlucky one. After each
``POST /v1/tryons`` two clients follow the try-on at once: the app's way (``GET /v1/tryons/{id}?wait=25``
in a loop until succeeded or failed) and a client polling every ``client-poll-seconds`` (1 s).

Figures, the two modes side by side:

- POST -> settled as the ``?wait=25`` client learns it, minus fal's time for that try-on (the simulator's
  own record: submission received -> COMPLETED, on this process's monotonic clock, as the client's times
  are): p50 / p95 / max; split into POST -> fal had the submission, and fal COMPLETED -> the app knew.
  (The database's ``completed_at`` is the settling step's start, before the result is copied, so the
  client's view is the measure.)
- calls to fal's queue API per try-on, counted by the simulator: submit, status, result, cancel; the
  downloads of the result files from its CDN apart; webhook deliveries and what they were answered.
- GETs to us per try-on: ``?wait=25`` vs the 1 s client poll, and when the 1 s poller learned.

Targets (issue 14): with webhooks, p95 <= 300 ms and <= 2 fal calls per try-on. A missed target still
exits 0; it exits 1 if the stack, the upload or a worker cannot be set up or a try-on does not succeed;
130 on Ctrl-C. Everything started is stopped.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, fields

import peewee
import requests

from adapters.peewee_db import open_database
from adapters.peewee_db.database import execute_sql
from bench.cli import Flag, exit_code, failed, interrupted, options_from, options_parser, stop_on_sigterm
from bench.loadgen import nearest_rank
from bench.stack import WORKDIR, Stack, progress, start_stack
from bench.tryons import (
    PHOTO,
    SERVICE_WORKER,
    SETTLED,
    Api,
    OrderFailed,
    Upload,
    running_worker,
)
from devtools.fal_simulator import FalSimulator
from devtools.fal_simulator.engine import Counts
from domain.tryon_runner import RunnerPolicy

LATENCY_TARGET_MS = 300.0
FAL_CALLS_TARGET = 2
WAIT_SECONDS = 25
HTTP_TIMEOUT_SECONDS = 10
LONG_POLL_TIMEOUT_SECONDS = WAIT_SECONDS + 10
TRYON_TIMEOUT_SECONDS = 60.0
"""One try-on must settle within this (a lost webhook is polled for 30 s after submit)."""
TRANSPORT_RETRIES = 3
"""A GET that meets gunicorn closing a kept-alive connection is sent again (and counted again)."""
QUEUE_CALLS = ("submissions", "status_polls", "result_fetches", "cancels")
POLL_SECONDS = RunnerPolicy().poll_seconds


@dataclass(frozen=True)
class Options:
    tryons: int
    work_min: float
    work_max: float
    client_poll_seconds: float
    workers: int
    database_url: str | None

    def work_seconds(self, index: int) -> float:
        """The simulator's time for the index-th measured try-on: evenly spread over [min, max]."""
        if self.tryons == 1:
            return self.work_min
        return self.work_min + (self.work_max - self.work_min) * index / (self.tryons - 1)


def parse_options(argv: Sequence[str] | None = None) -> Options:
    flags: list[Flag] = [
        ("--tryons", "BENCH_WEBHOOK_TRYONS", 24, "try-ons per mode, one after another"),
        ("--work-min", "BENCH_WEBHOOK_WORK_MIN", 1.0, "the simulator's shortest work time, s"),
        ("--work-max", "BENCH_WEBHOOK_WORK_MAX", 3.0, "the simulator's longest work time, s"),
        ("--client-poll-seconds", "BENCH_WEBHOOK_CLIENT_POLL", 1.0, "the polling client's interval"),
        ("--workers", "BENCH_WORKERS", 2, "gunicorn workers of the service"),
    ]
    parser = options_parser("bench.webhooks", __doc__ or "", flags)
    options = options_from(parser.parse_args(argv), Options)
    if not 1 <= options.tryons <= 200:
        parser.error("try-ons must be 1-200")
    if not 0.5 <= options.work_min <= options.work_max <= 20:
        parser.error("work times must satisfy 0.5 <= min <= max <= 20 (the submit must be recorded first)")
    if not (0.2 <= options.client_poll_seconds <= 10 and 1 <= options.workers <= 32):
        parser.error("client poll seconds must be 0.2-10 and workers 1-32")
    return options


# -- one try-on, followed two ways ----------------------------------------------------------------------


@dataclass(frozen=True)
class Followed:
    status: str
    seconds: float
    """From just before the POST to the answer that said succeeded or failed."""
    gets: int


@dataclass(frozen=True)
class Sample:
    tryon_id: str
    status: str
    work_seconds: float
    """What the simulator was asked to take."""
    fal_seconds: float
    """What it took: submission received -> COMPLETED."""
    to_submit_seconds: float
    """POST sent -> the simulator had the submission."""
    waited: Followed
    polled: Followed
    calls: Counts
    """The simulator's counters from this try-on's POST to both clients knowing."""

    @property
    def overhead(self) -> float:
        return self.waited.seconds - self.fal_seconds

    @property
    def after_fal(self) -> float:
        return self.waited.seconds - self.to_submit_seconds - self.fal_seconds

    @property
    def polled_overhead(self) -> float:
        return self.polled.seconds - self.fal_seconds

    @property
    def queue_calls(self) -> int:
        return sum(getattr(self.calls, name) for name in QUEUE_CALLS)


def _get(api: Api, upload: Upload, tryon_id: str, wait: int | None) -> tuple[str, int]:
    """(status, GETs sent): the try-on's status, retrying a connection the server closed meanwhile."""
    url = f"{api.url}/v1/tryons/{tryon_id}" + (f"?wait={wait}" if wait else "")
    timeout = LONG_POLL_TIMEOUT_SECONDS if wait else HTTP_TIMEOUT_SECONDS
    for attempt in range(1, TRANSPORT_RETRIES + 1):
        try:
            response = api.session().get(url, headers=api.auth[upload.user], timeout=timeout)
        except requests.ConnectionError:
            if attempt == TRANSPORT_RETRIES:
                raise
            continue
        if response.status_code != 200:
            raise OrderFailed(f"GET /v1/tryons/{{id}} answered {response.status_code}: {response.text[:200]}")
        return str(response.json()["status"]), attempt
    raise AssertionError("unreachable")


def follow_waiting(api: Api, upload: Upload, tryon_id: str, started: float) -> Followed:
    """The app's loop: ``GET ?wait=25`` again until the status is succeeded or failed."""
    gets, status = 0, "queued"
    while time.monotonic() < started + TRYON_TIMEOUT_SECONDS:
        status, sent = _get(api, upload, tryon_id, WAIT_SECONDS)
        gets += sent
        if status in SETTLED:
            break
    return Followed(status, time.monotonic() - started, gets)


def follow_polling(api: Api, upload: Upload, tryon_id: str, started: float, every: float) -> Followed:
    """A client asking every ``every`` s (its first GET ``every`` s after the POST)."""
    gets, status, tick = 0, "queued", 1
    while time.monotonic() < started + TRYON_TIMEOUT_SECONDS:
        time.sleep(max(0.0, started + tick * every - time.monotonic()))
        tick += 1
        status, sent = _get(api, upload, tryon_id, None)
        gets += sent
        if status in SETTLED:
            break
    return Followed(status, time.monotonic() - started, gets)


def fal_request_id(db: peewee.Database, tryon_id: str) -> str:
    rows = execute_sql(db, f"SELECT fal_request_id FROM tryons WHERE tryon_id = {db.param}", (tryon_id,))
    found = rows.fetchone()
    if found is None or found[0] is None:
        raise OrderFailed(f"try-on {tryon_id} has no fal request id")
    return str(found[0])


def _minus(after: Counts, before: Counts) -> Counts:
    return Counts(
        **{name: getattr(after, name) - getattr(before, name) for name in (f.name for f in fields(Counts))}
    )


def run_one(
    api: Api,
    upload: Upload,
    sim: FalSimulator,
    db: peewee.Database,
    pool: ThreadPoolExecutor,
    work_seconds: float,
    options: Options,
) -> Sample:
    sim.set_work_seconds(work_seconds)
    before = sim.counts()
    started = time.monotonic()
    tryon_id = api.order(upload)
    waiting = pool.submit(follow_waiting, api, upload, tryon_id, started)
    polling = pool.submit(follow_polling, api, upload, tryon_id, started, options.client_poll_seconds)
    waited, polled = waiting.result(), polling.result()
    calls = _minus(sim.counts(), before)
    submitted_at, completed_at = sim.job_times(fal_request_id(db, tryon_id))
    fal_seconds = math.nan if completed_at is None else completed_at - submitted_at
    return Sample(
        tryon_id, waited.status, work_seconds, fal_seconds, submitted_at - started, waited, polled, calls
    )


# -- a mode: one worker process, its try-ons --------------------------------------------------------------


@dataclass(frozen=True)
class Mode:
    name: str
    label: str
    webhooks: bool


MODES = (
    Mode("polling", "polling (no PUBLIC_BASE_URL)", webhooks=False),
    Mode("webhooks", "webhooks (PUBLIC_BASE_URL)", webhooks=True),
)


@dataclass
class ModeRun:
    mode: Mode
    samples: list[Sample] = field(default_factory=list)
    totals: Counts = field(default_factory=Counts)
    """The simulator's counters over the measured try-ons, read once the last had settled."""
    deliveries: Counter[str] = field(default_factory=Counter)
    """Webhook POSTs by the answer they got (``None``: no connection)."""
    errors: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> list[Sample]:
        return [s for s in self.samples if s.status == "succeeded" and s.polled.status == "succeeded"]


def run_mode(
    mode: Mode,
    started: Stack,
    sim: FalSimulator,
    api: Api,
    upload: Upload,
    db: peewee.Database,
    options: Options,
) -> ModeRun:
    extra = {"FAL_WEBHOOK_JWKS_URL": sim.jwks_url}
    if mode.webhooks:
        extra["PUBLIC_BASE_URL"] = started.service.url
    outcome = ModeRun(mode)
    log = WORKDIR / f"worker-webhooks-{mode.name}.log"
    with (
        running_worker(started, sim, SERVICE_WORKER, log, extra),
        ThreadPoolExecutor(2, thread_name_prefix="bench-follow") as pool,
    ):
        warm = run_one(api, upload, sim, db, pool, options.work_min, options)
        progress(f"  {mode.name}: warm-up {warm.status}, app knew {warm.overhead * 1000:.0f} ms after fal")
        before, seen_before = sim.counts(), len(sim.webhook_deliveries())
        for index in range(options.tryons):
            try:
                sample = run_one(api, upload, sim, db, pool, options.work_seconds(index), options)
            except (OrderFailed, requests.RequestException, KeyError, ValueError) as error:
                outcome.errors.append(f"{type(error).__name__}: {error}")
                progress(f"  {mode.name} {index + 1}/{options.tryons}: {type(error).__name__}: {error}")
                continue
            outcome.samples.append(sample)
            if sample.status != "succeeded":
                outcome.errors.append(f"try-on {sample.tryon_id} ended {sample.status}")
            progress(
                f"  {mode.name} {index + 1}/{options.tryons}: {sample.status};"
                f" fal {sample.fal_seconds:.2f} s;"
                f" app knew +{sample.overhead * 1000:.0f} ms (?wait GETs {sample.waited.gets},"
                f" {options.client_poll_seconds:g} s poller +{sample.polled_overhead * 1000:.0f} ms,"
                f" {sample.polled.gets} GETs); fal calls {sample.queue_calls}"
            )
        outcome.totals = _minus(sim.counts(), before)
        outcome.deliveries = Counter(str(d.answered) for d in sim.webhook_deliveries()[seen_before:])
    return outcome


# -- the report -----------------------------------------------------------------------------------------


def _ms(values: Sequence[float], p: float) -> str:
    value = nearest_rank([v * 1000 for v in values], p)
    return "n/a" if math.isnan(value) else f"{value:.0f}"


def _spread(values: Sequence[float]) -> str:
    return f"{_ms(values, 50)} / {_ms(values, 95)} / {_ms(values, 100)}"


def _per(run: ModeRun, total: float) -> str:
    return f"{total / len(run.samples):.2f}" if run.samples else "n/a"


def _mean_max(values: Sequence[int]) -> str:
    return f"{statistics.fmean(values):.2f} ({max(values)})" if values else "n/a"


Row = Callable[[ModeRun], str]

ROWS: list[tuple[str, Row]] = [
    ("try-ons succeeded / measured", lambda r: f"{len(r.succeeded)} / {len(r.samples) + len(r.errors)}"),
    (
        "fal's time per try-on, s: min / max",
        lambda r: (
            f"{min(s.fal_seconds for s in r.samples):.2f} / {max(s.fal_seconds for s in r.samples):.2f}"
            if r.samples
            else "n/a"
        ),
    ),
    ("POST -> app knew (?wait=25) minus fal's time,", lambda r: ""),
    ("  ms: p50 / p95 / max", lambda r: _spread([s.overhead for s in r.succeeded])),
    (
        "  of which POST -> fal had it: p50 / p95 / max",
        lambda r: _spread([s.to_submit_seconds for s in r.succeeded]),
    ),
    (
        "  of which fal done -> app knew: p50 / p95 / max",
        lambda r: _spread([s.after_fal for s in r.succeeded]),
    ),
    ("fal queue API calls per try-on: mean (max)", lambda r: _mean_max([s.queue_calls for s in r.samples])),
    (
        "  submit / status / result / cancel, per try-on",
        lambda r: " / ".join(_per(r, getattr(r.totals, n)) for n in QUEUE_CALLS),
    ),
    ("  fal CDN downloads of results, per try-on", lambda r: _per(r, r.totals.file_fetches)),
    (
        "  webhook POSTs to us, by answer",
        lambda r: ", ".join(f"{k} x{v}" for k, v in sorted(r.deliveries.items())) or "none",
    ),
    ("GETs to us per try-on: mean (max)", lambda r: ""),
    ("  the app's ?wait=25 loop", lambda r: _mean_max([s.waited.gets for s in r.samples])),
    ("  a 1 s client poll", lambda r: _mean_max([s.polled.gets for s in r.samples])),
    (
        "1 s poller knew, minus fal's time, ms: p50 / p95 / max",
        lambda r: _spread([s.polled_overhead for s in r.succeeded]),
    ),
]


def table(runs: Sequence[ModeRun]) -> str:
    rows: list[tuple[str, list[str]]] = [("", [run.mode.label for run in runs])]
    rows += [(label, [f(run) for run in runs]) for label, f in ROWS]
    width = max(len(label) for label, _ in rows) + 2
    cell = max(len(c) for _, cells in rows for c in cells) + 2
    lines = [f"{label:<{width}}" + "".join(f"{c:>{cell}}" for c in cells) for label, cells in rows]
    lines.insert(1, "-" * (width + cell * len(runs)))
    return "\n".join(lines)


def verdicts(polling: ModeRun, webhooks: ModeRun) -> list[str]:
    def mark(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    lines = []
    done = webhooks.succeeded
    if not done:
        lines.append(f"webhooks p95 <= {LATENCY_TARGET_MS:g} ms: NOT MEASURED")
        lines.append(f"fal calls per try-on <= {FAL_CALLS_TARGET} with webhooks: NOT MEASURED")
        return lines
    p95 = nearest_rank([s.overhead * 1000 for s in done], 95)
    before = nearest_rank([s.overhead * 1000 for s in polling.succeeded], 95)
    lines.append(
        f"webhooks: POST -> app knew minus fal's time p95 <= {LATENCY_TARGET_MS:g} ms: "
        f"{mark(p95 <= LATENCY_TARGET_MS)} ({p95:.0f} ms; polling p95 {before:.0f} ms)"
    )
    most = max(s.queue_calls for s in webhooks.samples)
    lines.append(
        f"webhooks: fal queue API calls per try-on <= {FAL_CALLS_TARGET}: {mark(most <= FAL_CALLS_TARGET)}"
        f" (max {most}; polling max {max((s.queue_calls for s in polling.samples), default=0)})"
    )
    return lines


# -- main -----------------------------------------------------------------------------------------------


def run(options: Options, stack: ExitStack, runs: list[ModeRun]) -> None:
    os.environ.pop("PUBLIC_BASE_URL", None)  # polling must not inherit one from the caller's shell
    sim = stack.enter_context(FalSimulator())
    progress(f"fal simulator at {sim.base_url}")
    progress(f"starting the stack on loopback (logs under {WORKDIR}) ...")
    started = start_stack(
        stack,
        workers=options.workers,
        database_url=options.database_url,
        with_floor=False,
        private_redis=True,
        extra_env={"FAL_WEBHOOK_JWKS_URL": sim.jwks_url},
    )
    api = Api(started, users=1)
    stack.callback(api.close)
    db = open_database(started.env["DATABASE_URL"])
    stack.callback(db.close)
    upload = api.verified_upload(0, PHOTO.read_bytes())
    progress(f"one verified upload ({PHOTO.name}), reused by every try-on")
    spread = f"{options.work_min:g}-{options.work_max:g} s"
    for mode in MODES:
        progress(
            f"{mode.label}: {options.tryons} try-ons one at a time, the simulator working {spread};"
            f" worker polls every {POLL_SECONDS:g} s" + (" only as the fallback" if mode.webhooks else "")
        )
        runs.append(run_mode(mode, started, sim, api, upload, db, options))
    progress("stopping everything started ...")


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    stop_on_sigterm()
    runs: list[ModeRun] = []
    try:
        with ExitStack() as stack:
            try:
                run(options, stack, runs)
            except Exception as error:
                return failed(error)
    except KeyboardInterrupt:
        return interrupted()
    polling, webhooks = runs
    print()
    print(
        f"try-ons: POST -> the app knew it settled, minus fal's own time"
        f" ({options.tryons} per mode, one at a time;"
        f" fal working {options.work_min:g}-{options.work_max:g} s)"
    )
    print(table(runs))
    print()
    for line in verdicts(polling, webhooks):
        print(line)
    return exit_code([f"{run.mode.name}: {problem}" for run in runs for problem in run.errors])


if __name__ == "__main__":
    sys.exit(main())
