"""Faults a test arms ahead of time: the next submissions fail, or the next jobs end in a fal error."""

from __future__ import annotations

import threading
from collections import deque
from typing import Literal, get_args

from devtools.fal_simulator.jobs import Reply, infrastructure_error

JobFault = Literal["content_policy_violation", "file_download_error", "completed_with_error"]
JOB_FAULTS: tuple[str, ...] = get_args(JobFault)

#: The default error type of an injected submit failure; 503s are one of fal's ``runner_*`` types.
SUBMIT_ERROR_TYPES = {503: "runner_scheduling_failure", 504: "request_timeout"}


def submit_failure(status: int, error_type: str | None = None) -> Reply:
    """429 is the concurrency limit (fal-client retries it); 5xx are infrastructure errors with a type."""
    if status == 429:
        return Reply(429, {"detail": "concurrency limit"})
    error_type = error_type or SUBMIT_ERROR_TYPES.get(status, "internal_error")
    detail = {503: "Runner unavailable", 504: "Request timed out"}.get(status, "Internal error")
    return infrastructure_error(status, error_type, detail)


class Faults:
    """Thread-safe FIFO queues of armed faults; each one is used up by a single submission."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._submits: deque[Reply] = deque()
        self._jobs: deque[str] = deque()
        self._stalls: deque[float] = deque()

    def fail_next_submits(self, status: int, count: int = 1, error_type: str | None = None) -> None:
        if status not in (429, 500, 502, 503, 504):
            raise ValueError(f"unsupported submit fault status {status}")
        failure = submit_failure(status, error_type)
        with self._lock:
            self._submits.extend([failure] * count)

    def fail_next_jobs(self, kind: JobFault, count: int = 1) -> None:
        if kind not in JOB_FAULTS:
            raise ValueError(f"unknown job fault {kind!r}; expected one of {JOB_FAULTS}")
        with self._lock:
            self._jobs.extend([kind] * count)

    def stall_next_submits(self, seconds: float, count: int = 1) -> None:
        if seconds <= 0:
            raise ValueError("a stall must last a positive number of seconds")
        with self._lock:
            self._stalls.extend([seconds] * count)

    def next_stall(self) -> float:
        with self._lock:
            return self._stalls.popleft() if self._stalls else 0.0

    def next_submit(self) -> Reply | None:
        with self._lock:
            return self._submits.popleft() if self._submits else None

    def next_job(self) -> str | None:
        with self._lock:
            return self._jobs.popleft() if self._jobs else None

    def clear(self) -> None:
        with self._lock:
            self._submits.clear()
            self._jobs.clear()
            self._stalls.clear()
