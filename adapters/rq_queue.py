"""RQ on Redis behind the TryOnQueue port. Jobs carry ids only; the database holds the state."""

from __future__ import annotations

from datetime import datetime, timedelta

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from domain.errors import QueueUnavailable
from domain.ports import TryOnQueue, VerificationQueue

ADVANCE_TRYON = "entrypoints.jobs.advance_tryon"
VERIFY_UPLOAD = "entrypoints.jobs.verify_upload"
VERIFY_QUEUE = "verify"
VERIFY_JOB_TIMEOUT_SECONDS = 60
"""RQ's own timeout on one verification: beyond the sanitiser's decoding budget and the face model's
few hundred milliseconds, it stops a verification stuck anywhere else (the attempt is counted)."""
EXPIRE_UPLOAD = "entrypoints.jobs.expire_upload"
JOB_OPTIONS = {"job_timeout": 120, "result_ttl": 0, "failure_ttl": 7 * 86400}


def expiry_job_id(upload_id: str) -> str:
    return f"expire-upload-{upload_id}"


class RqTryOnQueue(TryOnQueue):
    def __init__(self, connection: redis.Redis, queue_name: str = "tryons") -> None:
        self._queue = Queue(queue_name, connection=connection, serializer=JSONSerializer)

    def advance_soon(self, tryon_id: str) -> None:
        try:
            self._queue.enqueue(ADVANCE_TRYON, tryon_id, **JOB_OPTIONS)
        except redis.RedisError as error:
            raise QueueUnavailable("could not queue the try-on") from error

    def advance_in(self, tryon_id: str, seconds: float) -> None:
        try:
            self._queue.enqueue_in(timedelta(seconds=seconds), ADVANCE_TRYON, tryon_id, **JOB_OPTIONS)
        except redis.RedisError as error:
            raise QueueUnavailable("could not schedule the try-on") from error

    def depth(self) -> dict[str, int]:
        """Jobs waiting now and jobs scheduled for later, for /metrics."""
        try:
            return {"queued": len(self._queue), "scheduled": self._queue.scheduled_job_registry.count}
        except redis.RedisError as error:
            raise QueueUnavailable("could not read the queue") from error

    def expire_upload_at(self, upload_id: str, when: datetime) -> None:
        """One job per upload: its id is stable, so scheduling again moves the job rather than adding one."""
        try:
            self._queue.enqueue_at(
                when, EXPIRE_UPLOAD, upload_id, job_id=expiry_job_id(upload_id), **JOB_OPTIONS
            )
        except redis.RedisError as error:
            raise QueueUnavailable("could not schedule the deletion") from error


def verification_job_id(upload_id: str) -> str:
    return f"verify-upload-{upload_id}"


class RqVerificationQueue(VerificationQueue):
    """The ``verify`` queue that ``tryon verifier`` works on."""

    def __init__(self, connection: redis.Redis) -> None:
        self._queue = Queue(VERIFY_QUEUE, connection=connection, serializer=JSONSerializer)

    def verify_soon(self, upload_id: str) -> None:
        try:
            self._queue.enqueue(
                VERIFY_UPLOAD,
                upload_id,
                job_id=verification_job_id(upload_id),
                job_timeout=VERIFY_JOB_TIMEOUT_SECONDS,
                result_ttl=0,
                failure_ttl=7 * 86400,
            )
        except redis.RedisError as error:
            raise QueueUnavailable("could not queue the verification") from error

    def depth(self) -> int:
        try:
            return len(self._queue)
        except redis.RedisError as error:
            raise QueueUnavailable("could not read the queue") from error
