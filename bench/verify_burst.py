"""The burst for ``bench.verification`` (issue 7): N concurrent ``POST /v1/uploads/{id}/complete`` calls.

N uploads are prepared first, untimed and one after another (``POST /v1/uploads`` + the ``PUT`` of the
12 MP photo). Then the N completes are let go at once (``loadgen.all_at_once``: a thread each, released by
a barrier), each on its own connection, like N phones finishing their uploads together. Each call is timed
from its release; anything but 200 ``verified`` (a 5xx, a 4xx, a refusal) or a transport error is an
error, as is an upload that could not be prepared. The figures are printed beside issue 3's, which were
measured one upload at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import requests

from bench.loadgen import Result, all_at_once, nearest_rank
from bench.memory import Memory, children, memory
from bench.report import NOT_MEASURED, Beside, beside_earlier, by_kind
from bench.stack import Stack, progress
from bench.uploader import SampleFailed, Ticket, Uploader, new_request_id, verified

EARLIER_ISSUE = 3
EARLIER_P50_MS = "185-226"
EARLIER_P95_MS = "211-305"
EARLIER_WORKER_RSS_MB = "651-660"
NOT_PREPARED = "not prepared"


@dataclass
class Burst:
    result: Result
    """One entry per upload asked for: the completes' latencies, errors by kind (with ``not prepared``)."""
    request_ids: list[str]
    workers_after: list[Memory]
    """The web workers' memory right after the burst (VmHWM: the most each has held, burst included)."""
    server_ms: list[float] = field(default_factory=list)
    """``duration_ms`` of the burst's completes from the access log: the time inside Flask."""


def _prepare(uploader: Uploader, size: int) -> tuple[list[Ticket], list[str]]:
    tickets, failures = [], []
    for index in range(size):
        try:
            tickets.append(uploader.prepare(index))
        except (SampleFailed, requests.RequestException, ValueError, KeyError) as failure:
            failures.append(f"{NOT_PREPARED}: {type(failure).__name__}: {failure}")
        if (index + 1) % 10 == 0 or index + 1 == size:
            progress(f"  prepared {len(tickets)}/{index + 1} (issue + PUT, untimed)")
    return tickets, failures


def _complete(uploader: Uploader, ticket: Ticket, request_id: str) -> Callable[[], str | None]:
    def call() -> str | None:
        with requests.Session() as session:  # its own connection, as a phone has
            try:
                return verified(uploader.complete(ticket, request_id, session))
            except (requests.RequestException, ValueError) as failure:
                return f"{type(failure).__name__}: {failure}"

    return call


def run_burst(stack: Stack, photo: bytes, users: int, size: int) -> Burst:
    progress(f"burst: preparing {size} uploads for {users} users ...")
    uploader = Uploader(stack, photo, users)
    try:
        tickets, failures = _prepare(uploader, size)
    finally:
        uploader.close()
    request_ids = [new_request_id() for _ in tickets]
    progress(f"burst: letting {len(tickets)} completes go at once ...")
    calls = [_complete(uploader, ticket, rid) for ticket, rid in zip(tickets, request_ids, strict=True)]
    result = all_at_once(calls, label=f"burst of {size} completes")
    for failure in failures:
        result.errors += 1
        result.error_kinds[NOT_PREPARED] += 1
        result.first_error = result.first_error or failure
    workers = [memory(pid) for pid in children(stack.service.process.pid)]
    progress(
        f"  {len(result.latencies_ms)}/{size} verified in {result.seconds:.1f} s,"
        f" errors {by_kind(result.error_kinds)}, p50 {_ms(result.percentile(50))} ms,"
        f" max {_ms(max(result.latencies_ms, default=math.nan))} ms"
    )
    return Burst(result, request_ids, workers)


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.0f}"


def _largest(workers: Sequence[Memory]) -> Memory | None:
    return max(workers, key=lambda worker: worker.rss_kib, default=None)


def beside_issue_3(sequential_ms: Sequence[float], workers: Sequence[Memory], burst: Burst | None) -> str:
    """This run's sequential figures and the burst's, beside issue 3's (sequential) ones."""
    largest = _largest(workers)
    rows: list[Beside] = [
        ("one at a time (as issue 3 measured)", "", ""),
        ("  p50 ms", EARLIER_P50_MS, _ms(nearest_rank(sequential_ms, 50))),
        ("  p95 ms", EARLIER_P95_MS, _ms(nearest_rank(sequential_ms, 95))),
        (
            "  web worker RSS MB (the largest)",
            EARLIER_WORKER_RSS_MB,
            f"{largest.rss_mb:.0f}" if largest else "n/a",
        ),
    ]
    title = "verification, POST /v1/uploads/{id}/complete"
    if burst is None:
        rows.append(("burst of concurrent completes", NOT_MEASURED, "skipped"))
        return beside_earlier(title, EARLIER_ISSUE, rows)
    result = burst.result
    after = _largest(burst.workers_after)
    rows += [
        (f"burst: {result.count} completes let go at once", "", ""),
        ("  answered 200 verified", NOT_MEASURED, f"{len(result.latencies_ms)}/{result.count}"),
        ("  errors (by kind)", NOT_MEASURED, by_kind(result.error_kinds)),
        ("  p50 ms (each call from its release)", NOT_MEASURED, _ms(result.percentile(50))),
        ("  p99 ms", NOT_MEASURED, _ms(result.percentile(99))),
        ("  max ms", NOT_MEASURED, _ms(max(result.latencies_ms, default=math.nan))),
        (
            "  time inside Flask p50 / max ms",
            NOT_MEASURED,
            f"{_ms(nearest_rank(burst.server_ms, 50))} / {_ms(max(burst.server_ms, default=math.nan))}",
        ),
        ("  wall s (release -> last answer)", NOT_MEASURED, f"{result.seconds:.2f}"),
        ("  completes/s", NOT_MEASURED, f"{result.throughput:.1f}"),
        (
            "  web worker RSS MB after (its peak)",
            NOT_MEASURED,
            f"{after.rss_mb:.0f} ({after.hwm_mb:.0f})" if after else "n/a",
        ),
    ]
    return beside_earlier(title, EARLIER_ISSUE, rows)
