"""The queue hop of a verification, measured from outside both processes.

Two views, both read by the bench, neither from the service's own timers:

- ``HopWatch``: Redis ``MONITOR`` (one connection, only while the sequential completes run). Redis stamps
  every command it executes with its own clock (microseconds): the web's hand-off is its
  ``RPUSH rq:queue:verify verify-upload-<id>``, the verifier's start is RQ marking the job started
  (``HSET rq:job:verify-upload-<id> ... status started``), the last step before it calls the job. The hop is
  the time between the two: the queue itself, the verifier waking from its blocking pop, fetching the job.
- ``verifier_timeline``: the verifier's own log lines (millisecond timestamps): RQ's line when it takes the
  job, and the domain's ``upload verified`` / ``upload rejected`` line when the verdict is recorded. Beside
  the client's clock at the POST, they split a complete into POST -> job taken (web work before the hand-off
  + the hop), the verification itself, and verdict -> answer at the client.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType

import redis

JOB_PREFIX = "verify-upload-"
VERIFY_QUEUE_KEY = "rq:queue:verify"
STOP_MARK = "bench-hop-watch-stop"
JOB_ID = re.compile(re.escape(JOB_PREFIX) + r"([0-9A-Za-z_-]+)")


@dataclass
class Hops:
    pushed: dict[str, float] = field(default_factory=dict)
    """upload id -> Redis time of the first push of its verification job."""
    started: dict[str, float] = field(default_factory=dict)
    """upload id -> Redis time RQ marked the job started (the first time after its push)."""
    problem: str = ""

    def hop_ms(self, upload_ids: list[str]) -> list[float]:
        return [
            (self.started[u] - self.pushed[u]) * 1000
            for u in upload_ids
            if u in self.pushed and u in self.started
        ]


class HopWatch:
    """``with HopWatch(url) as watch: ...``; then ``watch.hops``. Stops by sending itself a marker command."""

    def __init__(self, redis_url: str) -> None:
        self._url = redis_url
        self.hops = Hops()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="bench-hop-watch", daemon=True)

    def __enter__(self) -> HopWatch:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            with redis.Redis.from_url(self._url, socket_timeout=2) as connection:
                connection.echo(STOP_MARK)
        except redis.RedisError as failure:
            self.hops.problem = self.hops.problem or f"could not stop MONITOR: {failure}"
        self._thread.join(10)

    def _watch(self) -> None:
        try:
            with redis.Redis.from_url(self._url).monitor() as monitor:  # type: ignore[no-untyped-call]
                self._ready.set()
                for entry in monitor.listen():
                    command = str(entry.get("command", ""))
                    if STOP_MARK in command:
                        return
                    self._see(float(entry["time"]), command)
        except (redis.RedisError, ValueError, KeyError) as failure:
            self.hops.problem = f"MONITOR ended: {type(failure).__name__}: {failure}"
        finally:
            self._ready.set()

    def _see(self, at: float, command: str) -> None:
        if JOB_PREFIX not in command:
            return
        words = command.split()
        verb = words[0].upper()
        if verb in ("RPUSH", "LPUSH") and len(words) > 2 and words[1] == VERIFY_QUEUE_KEY:
            for word in words[2:]:
                if word.startswith(JOB_PREFIX):
                    self.hops.pushed.setdefault(word.removeprefix(JOB_PREFIX), at)
        elif verb == "HSET" and len(words) > 1 and words[1].startswith("rq:job:" + JOB_PREFIX):
            pairs = dict(zip(words[2::2], words[3::2], strict=False))
            upload_id = words[1].removeprefix("rq:job:" + JOB_PREFIX)
            if pairs.get("status") == "started" and upload_id in self.hops.pushed:
                self.hops.started.setdefault(upload_id, at)


@dataclass(frozen=True)
class VerifierSteps:
    taken: float
    """Epoch seconds of RQ's "verify: verify-upload-<id>" line: the verifier has taken the job."""
    verdict: float | None
    """Epoch seconds of the "upload verified" / "upload rejected" line, if there was one."""


def verifier_timeline(log: Path, since: int) -> dict[str, VerifierSteps]:
    """upload id -> when the verifier took its job and logged its verdict (first of each), from its log."""
    taken: dict[str, float] = {}
    verdicts: dict[str, float] = {}
    for line in log.read_bytes()[since:].decode(errors="replace").splitlines():
        if JOB_PREFIX not in line and '"upload_id"' not in line:
            continue
        try:
            entry = json.loads(line)
            at = datetime.fromisoformat(str(entry["ts"])).timestamp()
        except (ValueError, KeyError, TypeError):
            continue
        message = str(entry.get("msg", ""))
        job = JOB_ID.search(message)
        if str(entry.get("logger", "")).startswith("rq.") and job is not None:
            taken.setdefault(job.group(1), at)
        elif message in ("upload verified", "upload rejected") and "upload_id" in entry:
            verdicts.setdefault(str(entry["upload_id"]), at)
    return {upload_id: VerifierSteps(at, verdicts.get(upload_id)) for upload_id, at in taken.items()}
