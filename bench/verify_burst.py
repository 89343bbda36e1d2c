"""The burst for ``bench.verification`` (issue 7, issue 12): N concurrent completes, and issuance meanwhile.

N uploads are prepared first, untimed and one after another (``POST /v1/uploads`` + the ``PUT`` of the
12 MP photo). Then the N completes are let go at once (``loadgen.all_at_once``: a thread each, released by
a barrier), each on its own connection, like N phones finishing their uploads together. Each is followed as
the app follows it (``Uploader.settle``): a 202 (no verdict within ``VERIFY_WAIT_SECONDS``, or every waiting
place of its web process taken) is followed by ``GET /v1/uploads/{id}`` every 0.2 s (``--poll-seconds``)
until settled, and its time is end to end, from the release to the verdict known. A 202 is not an error; an
upload that does not end ``verified`` (a 5xx or 4xx answer, a refusal, a transport error of the POST, never
settled) is, as is an upload that could not be prepared.

While the burst runs, a steady issuance load (``POST /v1/uploads``, open loop, 20/s by default) is sent from
another thread: its p99 is what a user asking for an upload URL saw meanwhile. The figures are printed
beside the earlier ones (issue 3 one at a time; issue 7's burst), measured when the web verified in the
request on 2 sync workers that each carried the face model.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import requests

from bench.loadgen import Result, all_at_once, nearest_rank
from bench.memory import Memory, children, memory
from bench.probes import Background, issuance_target
from bench.report import NOT_MEASURED, Beside, beside_earlier, by_kind
from bench.stack import Stack, progress
from bench.uploader import SampleFailed, Settled, Ticket, Uploader, new_request_id

EARLIER_ISSUES = "3, 7"
EARLIER_P50_MS = "185-226"
EARLIER_P95_MS = "211-408"
EARLIER_WORKER_RSS_MB = "651-671"
EARLIER_BURST = {
    "verified": "50/50",
    "errors": "0",
    "p50": "3600-4600",
    "p99": "8100-9300",
    "flask_p50": "276-370",
    "completes_s": "5.3-6.1",
    "rss": "666-671",
}
"""Issue 7's two runs (README, Benchmarks): 50 completes at once through 2 sync web workers."""
NOT_PREPARED = "not prepared"


@dataclass(frozen=True)
class Processes:
    """Resident memory of the web (gunicorn master + its workers) and of the verifier (+ its children: the
    sanitiser's sandbox)."""

    master: Memory
    workers: list[Memory]
    verifier: Memory | None
    verifier_children: list[Memory]

    @property
    def largest_worker(self) -> Memory | None:
        return max(self.workers, key=lambda worker: worker.rss_kib, default=None)


def processes(stack: Stack) -> Processes:
    master = stack.service.process.pid
    verifier = stack.verifier.process.pid if stack.verifier is not None else None
    return Processes(
        master=memory(master),
        workers=[memory(pid) for pid in children(master)],
        verifier=memory(verifier) if verifier is not None else None,
        verifier_children=[memory(pid) for pid in children(verifier)] if verifier is not None else [],
    )


@dataclass
class Burst:
    result: Result
    """One entry per upload asked for: end-to-end latencies of the verified, errors by kind (with ``not
    prepared``)."""
    request_ids: list[str]
    upload_ids: list[str]
    settled: list[Settled]
    issuance: Result | None
    """The steady issuance load sent while the burst ran (None if skipped)."""
    after: Processes
    """Memory right after the burst (VmHWM: the most each has held, burst included)."""
    poll_seconds: float = 0.2
    server_ms: list[float] = field(default_factory=list)
    """``duration_ms`` of the burst's POST completes from the access log: the time inside Flask."""


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


def _settle(
    uploader: Uploader, ticket: Ticket, request_id: str, into: list[Settled], lock: threading.Lock
) -> Callable[[], str | None]:
    def call() -> str | None:
        with requests.Session() as session:  # its own connection, as a phone has
            settled = uploader.settle(ticket, request_id, session)
        with lock:
            into.append(settled)
        return settled.error

    return call


def run_burst(
    stack: Stack, photo: bytes, users: int, size: int, issuance_rate: float, poll_seconds: float
) -> Burst:
    progress(f"burst: preparing {size} uploads for {users} users ...")
    uploader = Uploader(stack, photo, users, poll_seconds)
    try:
        tickets, failures = _prepare(uploader, size)
    finally:
        uploader.close()
    request_ids = [new_request_id() for _ in tickets]
    settled: list[Settled] = []
    lock = threading.Lock()
    calls = [
        _settle(uploader, ticket, rid, settled, lock)
        for ticket, rid in zip(tickets, request_ids, strict=True)
    ]
    progress(
        f"burst: letting {len(tickets)} completes go at once (202s followed every {poll_seconds:g} s),"
        f" issuance at {issuance_rate:g}/s meanwhile ..."
    )
    issuance: Result | None = None
    if issuance_rate > 0:
        with Background({"issuance": (issuance_target(stack), issuance_rate)}) as load:
            result = all_at_once(calls, label=f"burst of {size} completes")
        issuance = load.results.get("issuance")
    else:
        result = all_at_once(calls, label=f"burst of {size} completes")
    for failure in failures:
        result.errors += 1
        result.error_kinds[NOT_PREPARED] += 1
        result.first_error = result.first_error or failure
    after = processes(stack)
    answered_202 = sum(1 for s in settled if s.answered == 202)
    progress(
        f"  {len(result.latencies_ms)}/{size} verified in {result.seconds:.1f} s"
        f" ({answered_202} via 202 + polls),"
        f" errors {by_kind(result.error_kinds)}, p50 {_ms(result.percentile(50))} ms,"
        f" max {_ms(max(result.latencies_ms, default=math.nan))} ms"
    )
    if issuance is not None:
        progress(
            f"  issuance meanwhile: {issuance.count} sent, p50 {issuance.percentile(50):.1f} ms,"
            f" p99 {issuance.percentile(99):.1f} ms, errors {by_kind(issuance.error_kinds)}"
        )
    upload_ids = [ticket.upload_id for ticket in tickets]
    return Burst(result, request_ids, upload_ids, settled, issuance, after, poll_seconds)


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.0f}"


def _ms1(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1f}"


def _mb(found: Memory | None, peak: bool = False) -> str:
    if found is None:
        return "n/a"
    return f"{found.rss_mb:.0f} ({found.hwm_mb:.0f})" if peak else f"{found.rss_mb:.0f}"


def memory_rows(
    label: str, seen: Processes | None, earlier_worker: str = EARLIER_WORKER_RSS_MB
) -> list[Beside]:
    """RSS now (peak VmHWM) of the web master, each web worker, the verifier and its children."""
    if seen is None:
        return [(f"{label}: not measured", NOT_MEASURED, "n/a")]
    rows: list[Beside] = [
        (f"{label}, RSS MB now (peak)", "", ""),
        ("  web master", NOT_MEASURED, _mb(seen.master, peak=True)),
    ]
    for worker in seen.workers:
        rows.append((f"  web worker pid {worker.pid}", earlier_worker, _mb(worker, peak=True)))
    web_total = seen.master.rss_mb + sum(worker.rss_mb for worker in seen.workers)
    rows.append(("  web total (master + workers)", "2 x 651-671 + master", f"{web_total:.0f}"))
    rows.append(("  verifier (face model)", "- (in each web worker)", _mb(seen.verifier, peak=True)))
    for child in seen.verifier_children:
        rows.append((f"  verifier's child pid {child.pid} (sandbox)", NOT_MEASURED, _mb(child, peak=True)))
    return rows


def beside_earlier_figures(
    sequential: Sequence[float], sequential_202: int, seen: Processes | None, burst: Burst | None
) -> str:
    """This run's sequential figures and the burst's, beside the earlier ones (issues 3 and 7)."""
    rows: list[Beside] = [
        ("one at a time, end to end (POST -> verdict known)", "", ""),
        ("  p50 ms", EARLIER_P50_MS, _ms(nearest_rank(sequential, 50))),
        ("  p95 ms", EARLIER_P95_MS, _ms(nearest_rank(sequential, 95))),
        ("  answered 202 (then followed)", "0 (no 202 then)", str(sequential_202)),
    ]
    rows += memory_rows("after the one-at-a-time completes", seen)
    title = "verification, POST /v1/uploads/{id}/complete"
    if burst is None:
        rows.append(("burst of concurrent completes", NOT_MEASURED, "skipped"))
        return beside_earlier(title, EARLIER_ISSUES, rows)
    result = burst.result
    answered_202 = [s for s in burst.settled if s.answered == 202]
    issuance = burst.issuance
    rows += [
        (
            f"burst: {result.count} completes at once, end to end (202: poll each {burst.poll_seconds:g} s)",
            "",
            "",
        ),
        ("  ended verified", EARLIER_BURST["verified"], f"{len(result.latencies_ms)}/{result.count}"),
        ("  errors (by kind)", EARLIER_BURST["errors"], by_kind(result.error_kinds)),
        ("  POST answered 200 / 202", "50 / 0", f"{result.count - len(answered_202)} / {len(answered_202)}"),
        (
            "  polls after the 202s (retried)",
            NOT_MEASURED,
            f"{sum(s.polls for s in burst.settled)} ({sum(s.poll_retries for s in burst.settled)})",
        ),
        ("  p50 ms (each from its release)", EARLIER_BURST["p50"], _ms(result.percentile(50))),
        ("  p99 ms", EARLIER_BURST["p99"], _ms(result.percentile(99))),
        ("  max ms", NOT_MEASURED, _ms(max(result.latencies_ms, default=math.nan))),
        (
            "  time inside Flask of the POSTs p50 / max ms",
            EARLIER_BURST["flask_p50"] + " / -",
            f"{_ms(nearest_rank(burst.server_ms, 50))} / {_ms(max(burst.server_ms, default=math.nan))}",
        ),
        ("  wall s (release -> last verdict)", NOT_MEASURED, f"{result.seconds:.2f}"),
        ("  completes/s", EARLIER_BURST["completes_s"], f"{result.throughput:.1f}"),
    ]
    if issuance is None:
        rows.append(("  issuance meanwhile", NOT_MEASURED, "skipped"))
    else:
        rows += [
            (f"  issuance meanwhile ({issuance.label}, open loop)", "", ""),
            ("    sent / errors", NOT_MEASURED, f"{issuance.count} / {by_kind(issuance.error_kinds)}"),
            ("    p50 ms", NOT_MEASURED, _ms1(issuance.percentile(50))),
            ("    p99 ms", NOT_MEASURED, _ms1(issuance.percentile(99))),
            ("    max ms", NOT_MEASURED, _ms1(max(issuance.latencies_ms, default=math.nan))),
        ]
    rows += memory_rows("right after the burst", burst.after, EARLIER_BURST["rss"])
    return beside_earlier(title, EARLIER_ISSUES, rows)
