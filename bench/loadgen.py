"""A small stdlib load generator: threads, one keep-alive ``HTTPConnection`` each, bounded in count and time.

Open loop: requests are *scheduled* at a fixed rate and each latency is measured from its scheduled send
time, so a slow server is charged for the requests it delayed (no coordinated omission).
Closed loop: N connections send back to back for a fixed time; throughput is completions per second.
All at once: N calls, one thread each, let go together by a barrier (a burst); each is timed on its own.
Steady: open loop at a fixed rate until told to stop (a background load beside something else measured).
"""

from __future__ import annotations

import http.client
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

REQUEST_TIMEOUT_SECONDS = 10.0
GRACE_SECONDS = 15.0  # an open loop stops this long after its last scheduled send, answered or not
MAX_REQUESTS_PER_SECOND_PER_CONNECTION = 20_000  # a hard cap on closed-loop iterations


@dataclass(frozen=True)
class Target:
    """Where to send what: ``headers_for(i)`` gives the headers of the i-th request (a POST by default)."""

    host: str
    port: int
    path: str
    body: bytes | None
    headers_for: Callable[[int], dict[str, str]]
    expected_status: int = 201
    method: str = "POST"


@dataclass
class Result:
    label: str
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    error_kinds: Counter[str] = field(default_factory=Counter)
    """Errors by kind: ``HTTP 503``, a transport error's type (``ConnectionResetError``), ``not sent``."""

    @property
    def count(self) -> int:
        return len(self.latencies_ms) + self.errors

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds > 0 else 0.0

    @property
    def error_ratio(self) -> float:
        return self.errors / self.count if self.count else 1.0

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile of the successful requests' latencies, in ms (NaN if none)."""
        return nearest_rank(self.latencies_ms, p)


def nearest_rank(values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile of ``values`` (NaN if there are none)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def error_kind(error: str) -> str:
    """What an error is counted as: the part of its description before the first colon."""
    return error.partition(":")[0]


class _Recorder:
    def __init__(self, result: Result, window: tuple[float, float]) -> None:
        self._result = result
        self._window = window
        self._lock = threading.Lock()

    def record(self, at: float, latency: float, error: str | None) -> None:
        """Keep only requests whose reference time ``at`` falls in the measured window."""
        if not self._window[0] <= at < self._window[1]:
            return
        with self._lock:
            if error is None:
                self._result.latencies_ms.append(latency * 1000)
            else:
                self._result.errors += 1
                self._result.error_kinds[error_kind(error)] += 1
                self._result.first_error = self._result.first_error or error


def _send(connection: http.client.HTTPConnection, target: Target, index: int) -> str | None:
    """One request; None if the answer had the expected status, else what went wrong."""
    try:
        connection.request(target.method, target.path, body=target.body, headers=target.headers_for(index))
        response = connection.getresponse()
        payload = response.read()
    except (OSError, http.client.HTTPException) as error:
        connection.close()  # the next request reconnects
        return f"{type(error).__name__}: {error}"
    if response.status != target.expected_status:
        return f"HTTP {response.status}: {payload[:200]!r}"
    return None


def _connect(target: Target) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(target.host, target.port, timeout=REQUEST_TIMEOUT_SECONDS)


def probe(target: Target) -> str | None:
    """Send one request: None if it got the expected status, else what went wrong."""
    connection = _connect(target)
    try:
        return _send(connection, target, 0)
    finally:
        connection.close()


def _run_threads(count: int, work: Callable[[], None], stop: threading.Event, name: str) -> None:
    threads = [threading.Thread(target=work, name=f"{name}-{n}", daemon=True) for n in range(count)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        stop.set()  # on Ctrl-C the daemon threads stop at their next request


def open_loop(target: Target, *, rate: float, seconds: float, warmup: float, connections: int = 32) -> Result:
    """``rate`` requests/s for ``warmup + seconds``; the warm-up requests are sent but not reported."""
    total = math.ceil(rate * (warmup + seconds))
    start = time.perf_counter() + 0.2
    result = Result(label=f"open loop {rate:g}/s", seconds=seconds)
    recorder = _Recorder(result, (start + warmup, start + warmup + seconds))
    hard_stop = start + warmup + seconds + GRACE_SECONDS
    stop = threading.Event()
    lock = threading.Lock()
    next_index = [0]

    def worker() -> None:
        connection = _connect(target)
        try:
            while not stop.is_set():
                with lock:
                    index = next_index[0]
                    next_index[0] += 1
                if index >= total:
                    return
                scheduled = start + index / rate
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                if time.perf_counter() > hard_stop:
                    recorder.record(scheduled, 0.0, "not sent: the server fell too far behind")
                    continue
                error = _send(connection, target, index)
                recorder.record(scheduled, time.perf_counter() - scheduled, error)
        finally:
            connection.close()

    _run_threads(connections, worker, stop, "open-loop")
    return result


def closed_loop(target: Target, *, connections: int, seconds: float, warmup: float) -> Result:
    """``connections`` clients sending back to back; counts requests completed inside the window."""
    start = time.perf_counter()
    window = (start + warmup, start + warmup + seconds)
    result = Result(label=f"closed loop x{connections}", seconds=seconds)
    recorder = _Recorder(result, window)
    stop = threading.Event()
    cap = int((warmup + seconds) * MAX_REQUESTS_PER_SECOND_PER_CONNECTION)
    counter = [0]
    lock = threading.Lock()

    def worker() -> None:
        connection = _connect(target)
        try:
            for _ in range(cap):
                if stop.is_set() or time.perf_counter() >= window[1]:
                    return
                with lock:
                    index = counter[0]
                    counter[0] += 1
                sent = time.perf_counter()
                error = _send(connection, target, index)
                finished = time.perf_counter()
                recorder.record(finished, finished - sent, error)
        finally:
            connection.close()

    _run_threads(connections, worker, stop, "closed-loop")
    return result


def steady(
    target: Target, *, rate: float, stop: threading.Event, connections: int = 8, label: str = ""
) -> Result:
    """``rate`` requests/s, open loop, from now until ``stop`` is set; each latency from its scheduled send.

    Requests scheduled before ``stop`` is set are all reported (the last ones are waited for); ``seconds``
    is the time from the first scheduled send to ``stop``. Run it on a thread of its own.
    """
    start = time.perf_counter() + 0.05
    result = Result(label=label or f"steady {rate:g}/s", seconds=0.0)
    recorder = _Recorder(result, (-math.inf, math.inf))
    halt = threading.Event()
    lock = threading.Lock()
    next_index = [0]
    stopped_at = [math.inf]

    def worker() -> None:
        connection = _connect(target)
        try:
            while not halt.is_set():
                with lock:
                    index = next_index[0]
                    next_index[0] += 1
                scheduled = start + index / rate
                while (delay := scheduled - time.perf_counter()) > 0 and not stop.is_set():
                    stop.wait(min(delay, 0.05))
                if stop.is_set():
                    with lock:
                        stopped_at[0] = min(stopped_at[0], time.perf_counter())
                    if scheduled >= stopped_at[0]:
                        return
                error = _send(connection, target, index)
                recorder.record(scheduled, time.perf_counter() - scheduled, error)
        finally:
            connection.close()

    _run_threads(connections, worker, halt, "steady")
    result.seconds = max(0.0, min(stopped_at[0], time.perf_counter()) - start)
    return result


def all_at_once(calls: Sequence[Callable[[], str | None]], *, label: str) -> Result:
    """Each call on its own thread, all released together; a call returns None if it succeeded, else what
    went wrong (as ``_send`` does). ``seconds``: from the release to the last answer."""
    result = Result(label=label, seconds=0.0)
    recorder = _Recorder(result, (-math.inf, math.inf))
    barrier = threading.Barrier(len(calls) + 1)
    lock = threading.Lock()
    answered: list[float] = []

    def run(call: Callable[[], str | None]) -> None:
        barrier.wait()
        started = time.perf_counter()
        try:
            error = call()
        except Exception as failure:  # a call that raises counts as failed, not as lost
            error = f"{type(failure).__name__}: {failure}"
        finished = time.perf_counter()
        recorder.record(started, finished - started, error)
        with lock:
            answered.append(finished)

    threads = [threading.Thread(target=run, args=(call,), name="burst", daemon=True) for call in calls]
    for thread in threads:
        thread.start()
    barrier.wait()
    released = time.perf_counter()
    for thread in threads:
        thread.join()
    result.seconds = max(answered, default=released) - released
    return result
