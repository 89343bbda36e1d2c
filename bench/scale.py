"""`make bench`: what a busy year of rows costs, on two Postgres databases side by side in one run (issue 15).

Two databases with names unique to the run, each with the stack of ``bench.stack`` on it (gunicorn as
deployed, 2 gthread workers; the verifier; ministack S3; a Redis of its own) and ``METRICS_TOKEN`` set. Both
hold ``bench-users`` users with a normal history (``bench.seed``: 200 audit events, 20 uploads, 12 try-ons
with results each); the seeded one also a busy year (by default 2,000,000 audit events, 400,000 uploads,
200,000 try-ons and their results and fal requests over ~13 months, generated in SQL with
``generate_series``, nothing due for the sweeper; ANALYZEd). Then the same on both, the two taking turns
request by request (who goes first alternates), so a shared machine's load weighs on both alike:

- issuance: ``POST /v1/uploads`` (``requests``, one after another, after 20 warm-up): p50 and p95;
- status poll: ``GET /v1/tryons/{id}`` of a bench user's succeeded try-on: p50;
- ``GET /metrics`` with the token: p50 of ``scrapes``;
- ``tryon sweep`` with nothing due, a process each time as the scheduler starts it: once to warm up (its
  summary is printed: it must find nothing), then the median of three;
- ``tryon audit export --user`` of a bench user: once to warm up, then the median of three processes;
- ``DELETE /v1/me/data``: each bench user erased once; the median.

Targets (issue 15; verdicts, not tests): seeded ``/metrics`` <= 50 ms; the sweep <= 2x the empty database's;
issuance, polls, export and erasure within 1.5x of the empty database's. A missed target still exits 0; it
exits 1 if the stack, the seeding or a request fails, 130 on Ctrl-C or SIGTERM. Everything started is
stopped and both databases are dropped, whichever way the run ends.
"""

from __future__ import annotations

import math
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime

import requests

from bench.cli import Flag, exit_code, failed, interrupted, options_from, options_parser, stop_on_sigterm
from bench.issuance import BODY
from bench.loadgen import nearest_rank
from bench.seed import Volumes, bench_user, bench_user_tryon, seed, user_id
from bench.stack import (
    ROOT,
    WORKDIR,
    Stack,
    drop_postgres_database,
    heartbeat,
    postgres_database,
    progress,
    start_stack,
)

METRICS_TOKEN = "bench-scale-metrics-token"
HTTP_TIMEOUT_SECONDS = 30
CLI_TIMEOUT_SECONDS = 300
CLI_REPEATS = 3
WARMUP = 20
SCRAPE_WARMUP = 2
ISSUING_USERS = 20
TOKEN_TTL_SECONDS = 3600
EMPTY, SEEDED = "empty", "seeded"
JSON = {"Content-Type": "application/json", "Accept": "application/json"}
NOTHING_SWEPT = (
    "sweep: purged 0 upload(s)' objects, expired 0 unfinished upload(s), deleted 0 source selfie(s)"
    " and 0 result(s)"
)
SEEDING_SECONDS_PER_MILLION = 25.0
"""For the heartbeat's estimate only: seconds of seeding per million audit events, roughly."""


@dataclass(frozen=True)
class Options:
    audit_events: int
    uploads: int
    tryons: int
    users: int
    scale: float
    requests: int
    polls: int
    scrapes: int
    bench_users: int
    workers: int

    @property
    def volumes(self) -> Volumes:
        def scaled(n: int) -> int:
            return max(1, round(n * self.scale))

        return Volumes(scaled(self.audit_events), scaled(self.uploads), scaled(self.tryons), self.users)


def parse_options(argv: Sequence[str] | None = None) -> Options:
    flags: list[Flag] = [
        ("--audit-events", "BENCH_SCALE_AUDIT_EVENTS", 2_000_000, "audit events in the busy year"),
        ("--uploads", "BENCH_SCALE_UPLOADS", 400_000, "uploads in the busy year"),
        ("--tryons", "BENCH_SCALE_TRYONS", 200_000, "try-ons in the busy year"),
        ("--users", "BENCH_SCALE_USERS", 3000, "users the busy year's rows belong to"),
        ("--scale", "BENCH_SCALE", 1.0, "multiplies the three volumes (0.01: a smoke run)"),
        ("--requests", "BENCH_SCALE_REQUESTS", 300, "POST /v1/uploads measured, one after another"),
        ("--polls", "BENCH_SCALE_POLLS", 200, "GET /v1/tryons/{id} measured"),
        ("--scrapes", "BENCH_SCALE_SCRAPES", 20, "GET /metrics measured"),
        ("--bench-users", "BENCH_SCALE_BENCH_USERS", 5, "users with a normal history, erased one by one"),
        ("--workers", "BENCH_WORKERS", 2, "gunicorn workers of each service"),
    ]
    parser = options_parser("bench.scale", __doc__ or "", flags)
    args = parser.parse_args(argv)
    if args.database_url:
        parser.error("bench.scale creates (and drops) its own two Postgres databases: no --database-url")
    options = options_from(args, Options)
    volumes = options.volumes
    if not 0 < options.scale <= 10:
        parser.error("scale must be in (0, 10]")
    if not (volumes.uploads >= 1000 and volumes.tryons >= 1 and volumes.audit_events >= 1):
        parser.error("the scaled volumes need at least 1000 uploads and one try-on and audit event")
    if not 1 <= options.users <= 99_999:
        parser.error("users must be 1-99999")
    if not (
        1 <= options.requests <= 10_000 and 1 <= options.polls <= 10_000 and 1 <= options.scrapes <= 1000
    ):
        parser.error("requests and polls must be 1-10000, scrapes 1-1000")
    if not (1 <= options.workers <= 32 and 1 <= options.bench_users <= 100):
        parser.error("workers must be 1-32, bench users 1-100")
    return options


# -- measuring both databases, turn about ------------------------------------------------------------------


class BenchFailed(Exception):
    """A request or command the bench relies on did not do its job; the figures would mean nothing."""


@dataclass(frozen=True)
class Side:
    """One database and the stack serving it."""

    label: str
    stack: Stack
    session: requests.Session

    def token(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.stack.issuer.mint(user, ttl_seconds=TOKEN_TTL_SECONDS)}"}

    def http(
        self, method: str, path: str, expected: int, headers: dict[str, str], body: bytes | None = None
    ) -> float:
        """One request; its ms. Raises BenchFailed unless it answered ``expected``."""
        started = time.perf_counter()
        response = self.session.request(
            method,
            f"{self.stack.service.url}{path}",
            data=body,
            headers=headers,
            timeout=HTTP_TIMEOUT_SECONDS,
        )
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != expected:
            raise BenchFailed(
                f"{self.label}: {method} {path} answered {response.status_code}: {response.text[:200]}"
            )
        return elapsed

    def cli(self, *args: str) -> tuple[float, str, str]:
        """``tryon <args>`` in a process of its own, as the scheduler or an operator starts it:
        (ms, stdout, stderr)."""
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "entrypoints.cli", *args],
            env={**os.environ, **self.stack.env},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_SECONDS,
            check=False,
        )
        elapsed = (time.perf_counter() - started) * 1000
        if done.returncode != 0:
            raise BenchFailed(
                f"{self.label}: tryon {' '.join(args)} exited {done.returncode}: {done.stderr[-500:]}"
            )
        return elapsed, done.stdout, done.stderr


Samples = dict[str, list[float]]
"""Milliseconds by side."""


def turn_about(sides: Sequence[Side], count: int, warmup: int, call: Callable[[Side, int], float]) -> Samples:
    """``call(side, i)`` for ``warmup`` + ``count`` rounds, the sides taking turns (who goes first
    alternates), so a machine that gets busier or quieter meanwhile weighs on both alike."""
    samples: Samples = {side.label: [] for side in sides}
    for index in range(warmup + count):
        for side in sides if index % 2 == 0 else list(reversed(sides)):
            elapsed = call(side, index)
            if index >= warmup:
                samples[side.label].append(elapsed)
    return samples


Figures = dict[str, dict[str, float]]
"""Row name -> side -> ms."""


def own_ms(line: str) -> float:
    """A command's own time, as ``tryon sweep`` and ``tryon audit export`` print it at the end of their
    line ("... in 12 ms"): the work, without the process start-up the command line adds (the worker runs the
    sweep in-process)."""
    found = re.search(r" in (\d+) ms$", line.strip())
    if found is None:
        raise BenchFailed(f"tryon printed no time: {line.strip()!r}")
    return float(found.group(1))


def _each(samples: Samples, pick: Callable[[list[float]], float]) -> dict[str, float]:
    return {label: pick(values) for label, values in samples.items()}


def p50(values: list[float]) -> float:
    return nearest_rank(values, 50)


def p95(values: list[float]) -> float:
    return nearest_rank(values, 95)


def measure(sides: Sequence[Side], options: Options) -> Figures:
    figures: Figures = {}
    issuing = [user_id(n) for n in range(ISSUING_USERS)]
    tokens = {side.label: [{**JSON, **side.token(user)} for user in issuing] for side in sides}

    def issue(side: Side, i: int) -> float:
        return side.http("POST", "/v1/uploads", 201, tokens[side.label][i % ISSUING_USERS], BODY)

    progress(f"POST /v1/uploads x {options.requests} on each (+{WARMUP} warm-up), turn about ...")
    issued = turn_about(sides, options.requests, WARMUP, issue)
    figures["issuance p50"], figures["issuance p95"] = _each(issued, p50), _each(issued, p95)

    owner = bench_user(0)
    mine = {side.label: side.token(owner) for side in sides}

    def poll(side: Side, _: int) -> float:
        return side.http("GET", f"/v1/tryons/{bench_user_tryon(0)}", 200, mine[side.label])

    progress(f"GET /v1/tryons/{{id}} (a try-on of {owner}) x {options.polls} on each (+{WARMUP} warm-up) ...")
    figures["status poll p50"] = _each(turn_about(sides, options.polls, WARMUP, poll), p50)

    scraper = {"Authorization": f"Bearer {METRICS_TOKEN}"}

    def scrape(side: Side, _: int) -> float:
        return side.http("GET", "/metrics", 200, scraper)

    progress(f"GET /metrics x {options.scrapes} on each (+{SCRAPE_WARMUP} warm-up) ...")
    figures["/metrics scrape p50"] = _each(turn_about(sides, options.scrapes, SCRAPE_WARMUP, scrape), p50)

    own: Samples = {side.label: [] for side in sides}

    def sweep(side: Side, index: int) -> float:
        elapsed, summary, _ = side.cli("sweep")
        if index == 0 or not summary.startswith(NOTHING_SWEPT):
            progress(f"  {side.label}, {'warm-up' if index == 0 else 'timed'} {summary.strip()}")
        if index > 0:
            own[side.label].append(own_ms(summary))
        return elapsed

    progress(f"tryon sweep on each: once to warm up, then {CLI_REPEATS} timed (each a process) ...")
    figures["sweep, nothing to delete"] = _each(turn_about(sides, CLI_REPEATS, 1, sweep), statistics.median)
    figures["  of which the sweep itself"] = _each(own, statistics.median)

    exporting: Samples = {side.label: [] for side in sides}

    def export(side: Side, index: int) -> float:
        elapsed, exported, said = side.cli("audit", "export", "--user", owner)
        if index == 0:
            progress(f"  {side.label}: {len(exported.splitlines())} events exported")
        else:
            exporting[side.label].append(own_ms(said))
        return elapsed

    progress(f"tryon audit export --user {owner} on each: once to warm up, then {CLI_REPEATS} timed ...")
    figures["audit export, one user"] = _each(turn_about(sides, CLI_REPEATS, 1, export), statistics.median)
    figures["  of which the export itself"] = _each(exporting, statistics.median)

    def erase(side: Side, k: int) -> float:
        return side.http("DELETE", "/v1/me/data", 202, side.token(bench_user(k)))

    progress(f"DELETE /v1/me/data of each of the {options.bench_users} bench users, on each ...")
    figures["erasure DELETE /v1/me/data"] = _each(
        turn_about(sides, options.bench_users, 0, erase), statistics.median
    )
    return figures


def start_side(
    stack: ExitStack, options: Options, label: str, volumes: Volumes | None, run_id: str
) -> tuple[Side, float]:
    """A database of its own (dropped when ``stack`` closes, after the processes on it have stopped), the
    stack of ``bench.stack`` on it, then the seed."""
    name = f"tryon_scale_{run_id}_{label}"
    database_url = postgres_database(name)
    stack.callback(progress, f"{label}: database {name} dropped")
    stack.callback(drop_postgres_database, name)
    progress(f"{label}: database {name}; starting its stack (logs under {WORKDIR}) ...")
    started = start_stack(
        stack,
        workers=options.workers,
        database_url=database_url,
        with_floor=False,
        private_redis=True,
        extra_env={"METRICS_TOKEN": METRICS_TOKEN},
    )
    what = (
        f"{options.bench_users} bench users' history"
        if volumes is None
        else f"a busy year ({volumes.audit_events:,} audit events, {volumes.uploads:,} uploads,"
        f" {volumes.tryons:,} try-ons, {volumes.users:,} users)"
        f" and {options.bench_users} bench users' history"
    )
    progress(f"{label}: seeding {what}, in SQL ...")
    expected = 5 + (volumes.audit_events / 1e6 * SEEDING_SECONDS_PER_MILLION if volumes else 0)
    with heartbeat(f"{label}: seeding", expected):
        seconds = seed(
            database_url,
            volumes,
            options.bench_users,
            datetime.now(UTC),
            lambda line: progress(f"{label}:{line}"),
        )
    progress(f"{label}: seeded in {seconds:.1f} s")
    session = requests.Session()
    stack.callback(session.close)
    return Side(label, started, session), seconds


# -- the report -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    row: str
    most: float
    relative: bool
    """``most`` bounds seeded / empty if relative, else the seeded figure in ms."""

    def text(self) -> str:
        return f"<= {self.most:g}x empty" if self.relative else f"<= {self.most:g} ms"

    def met(self, empty: float, seeded: float) -> bool:
        return ratio(empty, seeded) <= self.most if self.relative else seeded <= self.most


TARGETS = (
    Target("issuance p50", 1.5, relative=True),
    Target("issuance p95", 1.5, relative=True),
    Target("status poll p50", 1.5, relative=True),
    Target("/metrics scrape p50", 50.0, relative=False),
    Target("sweep, nothing to delete", 2.0, relative=True),
    Target("  of which the sweep itself", 2.0, relative=True),
    Target("audit export, one user", 1.5, relative=True),
    Target("  of which the export itself", 1.5, relative=True),
    Target("erasure DELETE /v1/me/data", 1.5, relative=True),
)


def ratio(empty: float, seeded: float) -> float:
    return seeded / empty if empty > 0 else math.inf


def table(figures: Figures) -> str:
    """Each target's row: empty, seeded, seeded / empty, the target, PASS or FAIL."""
    rows = [("ms", EMPTY, SEEDED, f"{SEEDED}/{EMPTY}", "target", "verdict")]
    for target in TARGETS:
        before, after = figures[target.row][EMPTY], figures[target.row][SEEDED]
        verdict = "PASS" if target.met(before, after) else "FAIL"
        rows.append(
            (
                target.row,
                f"{before:.1f}",
                f"{after:.1f}",
                f"{ratio(before, after):.2f}x",
                target.text(),
                verdict,
            )
        )
    widths = [max(len(row[i]) for row in rows) + 2 for i in range(len(rows[0]))]
    lines = [
        row[0].ljust(widths[0]) + "".join(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))
        for row in rows
    ]
    lines.insert(1, "-" * sum(widths))
    return "\n".join(lines)


def run(options: Options, stack: ExitStack) -> tuple[Figures, float]:
    """Both databases up, seeded, measured turn about: (figures, seconds seeding the busy year)."""
    run_id = f"{os.getpid()}_{int(time.time())}"
    empty, _ = start_side(stack, options, EMPTY, None, run_id)
    seeded, seeding = start_side(stack, options, SEEDED, options.volumes, run_id)
    figures = measure((empty, seeded), options)
    progress("stopping everything started and dropping both databases ...")
    return figures, seeding


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    stop_on_sigterm()
    began = time.monotonic()
    try:
        with ExitStack() as stack:
            try:
                figures, seeding = run(options, stack)
            except Exception as error:
                return failed(error)
    except KeyboardInterrupt:
        return interrupted()
    volumes = options.volumes
    print()
    print(
        f"scale: an empty database beside one seeded with {volumes.audit_events:,} audit events,"
        f" {volumes.uploads:,} uploads, {volumes.tryons:,} try-ons (seeding {seeding:.0f} s;"
        f" whole run {time.monotonic() - began:.0f} s)"
    )
    print(table(figures))
    return exit_code([])


if __name__ == "__main__":
    sys.exit(main())
