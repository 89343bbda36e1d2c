"""Light steady traffic beside something heavier: issuance and ``/healthz``, open loop, on a thread.

``Background`` starts ``loadgen.steady`` runs (each on its own thread) and stops them together, so a
measurement can say how issuance and ``/healthz`` fared *while* a burst of completes or a hostile image
was being verified. Latencies are from each request's scheduled send (no coordinated omission).
"""

from __future__ import annotations

import threading
from types import TracebackType
from urllib.parse import urlparse

from bench.issuance import BODY
from bench.loadgen import Result, Target, steady
from bench.stack import Stack

TOKEN_TTL_SECONDS = 3600
PROBE_USERS = 5


def issuance_target(stack: Stack) -> Target:
    """``POST /v1/uploads`` (201), rotating through users of its own."""
    common = {"Content-Type": "application/json", "Accept": "application/json"}
    headers = [
        {
            **common,
            "Authorization": f"Bearer {stack.issuer.mint(f'benchp{n:03d}', ttl_seconds=TOKEN_TTL_SECONDS)}",
        }
        for n in range(PROBE_USERS)
    ]
    url = urlparse(stack.service.url)
    return Target(
        url.hostname or "127.0.0.1", url.port or 80, "/v1/uploads", BODY, lambda i: headers[i % len(headers)]
    )


def health_target(stack: Stack) -> Target:
    url = urlparse(stack.service.url)
    return Target(
        url.hostname or "127.0.0.1",
        url.port or 80,
        "/healthz",
        None,
        lambda _: {},
        expected_status=200,
        method="GET",
    )


class Background:
    """``with Background({"issuance": (target, 20.0)}) as load: ...``; then ``load.results["issuance"]``."""

    def __init__(self, runs: dict[str, tuple[Target, float]], connections: int = 4) -> None:
        self._runs = runs
        self._connections = connections
        self._stop = threading.Event()
        self.results: dict[str, Result] = {}
        self._threads = [
            threading.Thread(target=self._run, args=(name,), name=f"bench-{name}", daemon=True)
            for name in runs
        ]

    def _run(self, name: str) -> None:
        target, rate = self._runs[name]
        self.results[name] = steady(
            target, rate=rate, stop=self._stop, connections=self._connections, label=f"{name} {rate:g}/s"
        )

    def __enter__(self) -> Background:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
