"""`make bench`: `POST /v1/uploads` latency and throughput through gunicorn on loopback, beside the floor.

The floor (``bench.floor_app``) is a bare Flask view around boto3's ``generate_presigned_url``: the least
a user would build by hand. Targets (from the issue): p99 < 25 ms at 100 requests/s, and at least 50 % of
the floor's throughput. Then a load run (issue 7): the service alone, open loop at ``load-rate`` (200)
requests/s for ``load-seconds`` (60); its figures are printed beside issue 2's, with no target.
It is a measurement: missing a target still exits 0. It exits 1 if the stack
does not start or more than 1 % of any run's requests fail, 130 on Ctrl-C. Everything started is stopped.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from urllib.parse import urlparse

from bench.cli import Flag, exit_code, failed, interrupted, options_from, options_parser, stop_on_sigterm
from bench.loadgen import Result, Target, closed_loop, open_loop, probe
from bench.report import (
    NOT_MEASURED,
    Beside,
    Measured,
    beside_earlier,
    by_kind,
    error_problem,
    error_problems,
    table,
    verdicts,
)
from bench.stack import WORKDIR, Stack, heartbeat, progress, start_stack

BODY = json.dumps(
    {
        "content_type": "image/jpeg",
        "content_length": 2481733,
        "checksum_sha256": base64.b64encode(hashlib.sha256(b"bench selfie").digest()).decode(),
    }
).encode()
TOKEN_TTL_SECONDS = 3600
EARLIER_ISSUE = 2
"""Issue 2's figures (README, Benchmarks), over several runs: 100 req/s for 20 s, 8 connections for 10 s."""
EARLIER_P99_MS = {"service": "8.1-10.7", "floor": "3.4-3.8"}
EARLIER_MAX_REQ_S = {"service": "341-370", "floor": "945-1677"}
EARLIER_RATIO = "22-38 %"


@dataclass(frozen=True)
class Options:
    rate: float
    seconds: float
    warmup: float
    max_seconds: float
    max_warmup: float
    connections: int
    workers: int
    users: int
    load_rate: float
    load_seconds: float
    database_url: str | None

    @property
    def load(self) -> bool:
        return self.load_rate > 0 and self.load_seconds > 0


def parse_options(argv: Sequence[str] | None = None) -> Options:
    flags: list[Flag] = [
        ("--rate", "BENCH_RATE", 100, "open-loop requests per second"),
        ("--seconds", "BENCH_SECONDS", 20, "open-loop measured duration"),
        ("--warmup", "BENCH_WARMUP_SECONDS", 2, "open-loop warm-up, sent but not reported"),
        ("--max-seconds", "BENCH_MAX_SECONDS", 10, "closed-loop measured duration"),
        ("--max-warmup", "BENCH_MAX_WARMUP_SECONDS", 1, "closed-loop warm-up, not reported"),
        ("--connections", "BENCH_CONNECTIONS", 8, "closed-loop concurrent connections"),
        ("--workers", "BENCH_WORKERS", 2, "gunicorn workers, for both systems"),
        ("--users", "BENCH_USERS", 200, "distinct users whose tokens the service requests rotate through"),
        ("--load-rate", "BENCH_LOAD_RATE", 200, "load run (service only): open-loop req/s; 0 skips"),
        ("--load-seconds", "BENCH_LOAD_SECONDS", 60, "load run: measured duration (+ warm-up); 0 skips"),
    ]
    parser = options_parser("bench.issuance", __doc__, flags)
    args = parser.parse_args(argv)
    options = options_from(args, Options)
    durations = (options.seconds, options.warmup, options.max_seconds, options.max_warmup)
    if not (0 < options.rate <= 10_000 and all(0 <= d <= 600 for d in durations)):
        parser.error("rate must be 0-10000 req/s and durations 0-600 s")
    if not (0 <= options.load_rate <= 10_000 and 0 <= options.load_seconds <= 600):
        parser.error("load rate must be 0-10000 req/s and load seconds 0-600 (0 skips the load run)")
    if min(options.seconds, options.max_seconds) <= 0:
        parser.error("measured durations must be positive")
    if not (1 <= options.connections <= 256 and 1 <= options.workers <= 32 and options.users >= 1):
        parser.error("connections must be 1-256, workers 1-32, users at least 1")
    return options


def targets(stack: Stack, users: int) -> dict[str, Target]:
    """The same body for both systems; the service's requests rotate through ``users`` users' tokens."""
    if stack.floor is None:
        raise RuntimeError("the issuance benchmark needs the floor: start_stack(..., with_floor=True)")
    floor_url = stack.floor.url
    common = {"Content-Type": "application/json", "Accept": "application/json"}
    tokens = [stack.issuer.mint(f"bench{n:04d}", ttl_seconds=TOKEN_TTL_SECONDS) for n in range(users)]
    service_headers = [{**common, "Authorization": f"Bearer {token}"} for token in tokens]

    def build(url: str, headers_for: Callable[[int], dict[str, str]]) -> Target:
        parsed = urlparse(url)
        return Target(parsed.hostname or "127.0.0.1", parsed.port or 80, "/v1/uploads", BODY, headers_for)

    return {
        "service": build(stack.service.url, lambda i: service_headers[i % users]),
        "floor": build(floor_url, lambda _: common),
    }


def smoke_test(name: str, target: Target) -> None:
    """One request each before measuring, so a broken set-up fails loudly instead of as 100 % errors."""
    failure = probe(target)
    if failure is not None:
        raise RuntimeError(f"{name}: POST /v1/uploads failed before measuring: {failure}")


@dataclass(frozen=True)
class Figures:
    service: Measured
    floor: Measured
    load: Result | None
    """The service at ``load-rate`` for ``load-seconds``; None if skipped."""


def measure(stack: Stack, options: Options) -> Figures:
    systems = targets(stack, options.users)
    for name, target in systems.items():
        smoke_test(name, target)
    fixed: dict[str, Result] = {}
    for name, target in systems.items():
        progress(
            f"{name}: open-loop {options.rate:g} req/s for {options.seconds:g} s "
            f"(+{options.warmup:g} s warm-up) ..."
        )
        fixed[name] = open_loop(target, rate=options.rate, seconds=options.seconds, warmup=options.warmup)
        progress(f"  {_summary(fixed[name])}")
    measured = []
    for name, target in systems.items():
        progress(
            f"{name}: closed-loop, {options.connections} connections for {options.max_seconds:g} s "
            f"(+{options.max_warmup:g} s warm-up) ..."
        )
        max_load = closed_loop(
            target, connections=options.connections, seconds=options.max_seconds, warmup=options.max_warmup
        )
        progress(f"  {_summary(max_load)}")
        measured.append(Measured(name=name, fixed_rate=fixed[name], max_load=max_load))
    service, floor = measured
    return Figures(service, floor, load_run(systems["service"], options) if options.load else None)


def load_run(target: Target, options: Options) -> Result:
    """Issue 7's load: the service alone, open loop (latency from each request's scheduled send)."""
    rate, seconds = options.load_rate, options.load_seconds
    progress(f"service: load run, {rate:g} req/s for {seconds:g} s (+{options.warmup:g} s warm-up) ...")
    with heartbeat("load run", seconds + options.warmup):
        result = open_loop(target, rate=rate, seconds=seconds, warmup=options.warmup)
    progress(f"  {_summary(result)}")
    return result


def beside_issue_2(figures: Figures, options: Options) -> str:
    service, floor, load = figures.service, figures.floor, figures.load
    ratio = service.max_load.throughput / floor.max_load.throughput if floor.max_load.throughput else math.nan
    rows: list[Beside] = [(f"open loop {options.rate:g} req/s, {options.seconds:g} s", "", "")]
    for system in (service, floor):
        rows.append(
            (f"  p99 ms, {system.name}", EARLIER_P99_MS[system.name], _ms(system.fixed_rate.percentile(99)))
        )
    rows.append((f"closed loop, {options.connections} connections, {options.max_seconds:g} s", "", ""))
    for system in (service, floor):
        rows.append(
            (f"  max throughput req/s, {system.name}", EARLIER_MAX_REQ_S[system.name], _rate(system.max_load))
        )
    rows.append(("  service / floor", EARLIER_RATIO, "n/a" if math.isnan(ratio) else f"{ratio:.0%}"))
    if load is None:
        rows.append(("load run (service only)", NOT_MEASURED, "skipped"))
        return beside_earlier("issuance, POST /v1/uploads", EARLIER_ISSUE, rows)
    rows += [
        (f"load run: service only, open loop {options.load_rate:g} req/s, {load.seconds:g} s", "", ""),
        ("  sent (scheduled in the window)", NOT_MEASURED, str(load.count)),
        ("  errors (non-201 + transport, by kind)", NOT_MEASURED, by_kind(load.error_kinds)),
        ("  p50 ms (from scheduled send)", NOT_MEASURED, _ms(load.percentile(50))),
        ("  p99 ms", NOT_MEASURED, _ms(load.percentile(99))),
        ("  max ms", NOT_MEASURED, _ms(max(load.latencies_ms, default=math.nan))),
        ("  achieved req/s (answered 201)", NOT_MEASURED, _rate(load)),
    ]
    return beside_earlier("issuance, POST /v1/uploads", EARLIER_ISSUE, rows)


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1f}"


def _rate(result: Result) -> str:
    return f"{result.throughput:.1f}"


def _summary(result: Result) -> str:
    return (
        f"{result.count} requests, {result.errors} errors, {result.throughput:.1f} req/s, "
        f"p50 {result.percentile(50):.1f} ms, p99 {result.percentile(99):.1f} ms"
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    stop_on_sigterm()
    try:
        with ExitStack() as stack:
            progress(f"starting the stack on loopback (logs under {WORKDIR}) ...")
            try:
                started = start_stack(stack, workers=options.workers, database_url=options.database_url)
                figures = measure(stack=started, options=options)
            except Exception as error:
                return failed(error)
            progress("stopping everything started ...")
    except KeyboardInterrupt:
        return interrupted()
    service, floor = figures.service, figures.floor
    print()
    print(table(service, floor, rate=options.rate, connections=options.connections))
    print()
    print(beside_issue_2(figures, options))
    print()
    for line in verdicts(service, floor, rate=options.rate):
        print(line)
    problems = error_problems(service, floor)
    if figures.load is not None and (problem := error_problem("service", figures.load)) is not None:
        problems.append(problem)
    return exit_code(problems)


if __name__ == "__main__":
    sys.exit(main())
