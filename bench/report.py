"""The side-by-side table and the issue's two targets; the "beside earlier figures" table all three use."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from bench.loadgen import Result

P99_TARGET_MS = 25.0
THROUGHPUT_TARGET_RATIO = 0.5
MAX_ERROR_RATIO = 0.01


@dataclass(frozen=True)
class Measured:
    """One system's figures: the fixed-rate run and the max-throughput run."""

    name: str
    fixed_rate: Result
    max_load: Result


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1f}"


Figure = Callable[[Result], str]


def _percentile(p: float) -> Figure:
    return lambda result: _ms(result.percentile(p))


FIXED_RATE_ROWS: list[tuple[str, Figure]] = [
    ("  requests", lambda result: str(result.count)),
    ("  achieved req/s", lambda result: f"{result.throughput:.1f}"),
    ("  p50 ms (from scheduled send)", _percentile(50)),
    ("  p90 ms", _percentile(90)),
    ("  p99 ms", _percentile(99)),
    ("  max ms", lambda result: _ms(max(result.latencies_ms, default=math.nan))),
    ("  errors", lambda result: str(result.errors)),
]
MAX_LOAD_ROWS: list[tuple[str, Figure]] = [
    ("  max throughput req/s", lambda result: f"{result.throughput:.1f}"),
    ("  p50 ms under max load", _percentile(50)),
    ("  p99 ms under max load", _percentile(99)),
    ("  errors", lambda result: str(result.errors)),
]


def table(service: Measured, floor: Measured, *, rate: float, connections: int) -> str:
    rows: list[tuple[str, str, str]] = [("", service.name, floor.name)]
    rows.append((f"open loop {rate:g} req/s, {service.fixed_rate.seconds:g} s", "", ""))
    rows += [(label, f(service.fixed_rate), f(floor.fixed_rate)) for label, f in FIXED_RATE_ROWS]
    rows.append((f"closed loop, {connections} connections, {service.max_load.seconds:g} s", "", ""))
    rows += [(label, f(service.max_load), f(floor.max_load)) for label, f in MAX_LOAD_ROWS]
    width = max(len(label) for label, _, _ in rows) + 2
    lines = [f"{label:<{width}}{a:>12}{b:>12}" for label, a, b in rows]
    lines.insert(1, "-" * (width + 24))
    return "\n".join(lines)


def verdicts(service: Measured, floor: Measured, *, rate: float) -> list[str]:
    p99 = service.fixed_rate.percentile(99)
    p99_ok = not math.isnan(p99) and p99 < P99_TARGET_MS
    ratio = service.max_load.throughput / floor.max_load.throughput if floor.max_load.throughput else 0.0
    ratio_ok = ratio >= THROUGHPUT_TARGET_RATIO
    return [
        f"p99 at {rate:g} req/s < {P99_TARGET_MS:g} ms: {'PASS' if p99_ok else 'FAIL'} ({_ms(p99)} ms)",
        f"throughput >= {THROUGHPUT_TARGET_RATIO:.0%} of floor: {'PASS' if ratio_ok else 'FAIL'} "
        f"({ratio:.0%}: {service.max_load.throughput:.1f} vs {floor.max_load.throughput:.1f} req/s)",
    ]


def error_problem(name: str, result: Result) -> str | None:
    """What to say if more than 1 % of a run's requests failed (its figures are then not worth reading)."""
    if result.error_ratio <= MAX_ERROR_RATIO:
        return None
    failed = f"{result.errors}/{result.count} requests failed"
    return f"{name} {result.label}: {failed} (first: {result.first_error})"


def error_problems(*systems: Measured) -> list[str]:
    """Runs where more than 1 % of requests failed: the figures are then not worth reading."""
    found = (error_problem(s.name, result) for s in systems for result in (s.fixed_rate, s.max_load))
    return [problem for problem in found if problem is not None]


# -- this run beside the figures an earlier issue recorded ----------------------------------------------

NOT_MEASURED = "-"
"""The earlier cell of a figure no earlier run measured."""

EARLIER = "earlier (web verified, 2 sync workers)"
"""The earlier figures' column: measured before verification moved to the verifier process, when each of
2 sync gunicorn workers carried the face model and verified in the request."""

Beside = tuple[str, str, str]
"""(label, the earlier figure as text, this run's figure); a row with both figures empty is a heading."""


def by_kind(kinds: Mapping[str, int]) -> str:
    """``0``, or the total and each kind: ``3 (HTTP 503 x2, ConnectionResetError x1)``."""
    total = sum(kinds.values())
    if not total:
        return "0"
    ranked = sorted(kinds.items(), key=lambda item: (-item[1], item[0]))
    return f"{total} (" + ", ".join(f"{kind} x{count}" for kind, count in ranked) + ")"


def beside_earlier(title: str, issue: int | str, rows: Sequence[Beside]) -> str:
    """A three-column table: what, the earlier figure (as issue ``issue`` recorded it, text), this run's."""
    issues = f"issues {issue}" if isinstance(issue, str) else f"issue {issue}"
    header: Beside = (f"{title} (earlier: {issues})", EARLIER, "this run")
    widths = [max(len(row[column]) for row in (header, *rows)) + 2 for column in range(3)]
    widths[1], widths[2] = max(widths[1], 20), max(widths[2], 14)

    def line(row: Beside) -> str:
        label, earlier, now = row
        return f"{label:<{widths[0]}}{earlier:>{widths[1]}}{now:>{widths[2]}}"

    return "\n".join([line(header), "-" * sum(widths), *(line(row) for row in rows)])
