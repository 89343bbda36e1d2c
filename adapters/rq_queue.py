"""RQ on Redis behind the TryOnQueue port. Jobs carry ids only; the database holds the state.

The job functions are handed in by the composition root: this adapter never names the entrypoints that run
them. RQ stores each function's dotted path (``module.qualname``), which the worker imports to run it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis
from rq import Queue
from rq.exceptions import DuplicateJobError
from rq.serializers import JSONSerializer

from domain.errors import QueueUnavailable
from domain.ports import TryOnQueue, VerificationQueue

VERIFY_QUEUE = "verify"
VERIFY_JOB_TIMEOUT_SECONDS = 60
"""RQ's own timeout on one verification: beyond the sanitiser's decoding budget and the face model's
few hundred milliseconds, it stops a verification stuck anywhere else (the attempt is counted)."""
JOB_OPTIONS = {"job_timeout": 120, "result_ttl": 0, "failure_ttl": 7 * 86400}

Job = Callable[[str], object]
"""A job function: module-level (RQ enqueues it by its dotted path), taking one id."""


def module_level(job: Job) -> Job:
    """Refuses what RQ cannot find again by name (a lambda, a nested function, a bound method)."""
    if not inspect.isfunction(job) or "<" in job.__qualname__:
        raise TypeError(f"an RQ job must be a module-level function, got {job!r}")
    return job


@dataclass(frozen=True)
class TryOnJobs:
    """The jobs the ``tryons`` queue runs."""

    advance_tryon: Job
    expire_upload: Job

    def __post_init__(self) -> None:
        module_level(self.advance_tryon)
        module_level(self.expire_upload)


def advance_once_job_id(tryon_id: str, key: str) -> str:
    return f"advance-{tryon_id}-{key}"


def expiry_job_id(upload_id: str) -> str:
    return f"expire-upload-{upload_id}"


class RqTryOnQueue(TryOnQueue):
    def __init__(self, connection: redis.Redis, jobs: TryOnJobs, queue_name: str = "tryons") -> None:
        self._queue = Queue(queue_name, connection=connection, serializer=JSONSerializer)
        self._jobs = jobs

    def advance_soon(self, tryon_id: str) -> None:
        try:
            self._queue.enqueue(self._jobs.advance_tryon, tryon_id, **JOB_OPTIONS)
        except redis.RedisError as error:
            raise QueueUnavailable("could not queue the try-on") from error

    def advance_in(self, tryon_id: str, seconds: float) -> None:
        try:
            self._queue.enqueue_in(
                timedelta(seconds=seconds), self._jobs.advance_tryon, tryon_id, **JOB_OPTIONS
            )
        except redis.RedisError as error:
            raise QueueUnavailable("could not schedule the try-on") from error

    def advance_once(self, tryon_id: str, key: str) -> None:
        """A stable job id per (try-on, key): while that job is queued or running, asking again adds
        nothing (RQ's atomic unique enqueue); once it has run (result_ttl 0 removes it), a new one may."""
        try:
            self._queue.enqueue(
                self._jobs.advance_tryon,
                tryon_id,
                job_id=advance_once_job_id(tryon_id, key),
                unique=True,
                **JOB_OPTIONS,
            )
        except DuplicateJobError:
            return
        except redis.RedisError as error:
            raise QueueUnavailable("could not queue the try-on") from error

    def expire_upload_at(self, upload_id: str, when: datetime) -> None:
        """One job per upload: its id is stable, so scheduling again moves the job rather than adding one."""
        try:
            self._queue.enqueue_at(
                when, self._jobs.expire_upload, upload_id, job_id=expiry_job_id(upload_id), **JOB_OPTIONS
            )
        except redis.RedisError as error:
            raise QueueUnavailable("could not schedule the deletion") from error


def verification_job_id(upload_id: str) -> str:
    return f"verify-upload-{upload_id}"


class RqVerificationQueue(VerificationQueue):
    """The ``verify`` queue that ``tryon verifier`` works on."""

    def __init__(self, connection: redis.Redis, verify_upload: Job) -> None:
        self._queue = Queue(VERIFY_QUEUE, connection=connection, serializer=JSONSerializer)
        self._verify_upload = module_level(verify_upload)

    def verify_soon(self, upload_id: str) -> None:
        try:
            self._queue.enqueue(
                self._verify_upload,
                upload_id,
                job_id=verification_job_id(upload_id),
                job_timeout=VERIFY_JOB_TIMEOUT_SECONDS,
                result_ttl=0,
                failure_ttl=7 * 86400,
            )
        except redis.RedisError as error:
            raise QueueUnavailable("could not queue the verification") from error


def queue_depths(connection: redis.Redis, names: tuple[str, ...]) -> dict[tuple[str, str], int]:
    """(queue, state) -> jobs, for /metrics: ``queued`` (LLEN) and ``scheduled`` (ZCARD) per queue;
    constant time whatever the history."""
    try:
        depths: dict[tuple[str, str], int] = {}
        for name in names:
            queue = Queue(name, connection=connection, serializer=JSONSerializer)
            depths[(name, "queued")] = len(queue)
            depths[(name, "scheduled")] = queue.scheduled_job_registry.get_job_count(cleanup=False)
    except redis.RedisError as error:
        raise QueueUnavailable("could not read the queues") from error
    return depths
