"""The tryons queue against the real Redis: the jobs bootstrap hands the adapter are stored under the same
dotted paths and ids as ever, so jobs queued before a deploy still run after it."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest
from rq import Queue
from rq.serializers import JSONSerializer

from adapters.redis_store import connect_redis
from adapters.rq_queue import RqTryOnQueue, expiry_job_id
from entrypoints.bootstrap import TRYON_JOBS

pytestmark = pytest.mark.integration


def test_try_on_steps_and_selfie_expiry_are_queued_by_their_historic_paths_and_ids(redis_url: str) -> None:
    connection = connect_redis(redis_url)
    name = f"tryons-test-{secrets.token_hex(4)}"
    queue = RqTryOnQueue(connection, TRYON_JOBS, queue_name=name)
    rq = Queue(name, connection=connection, serializer=JSONSerializer)
    try:
        queue.advance_soon("t1")
        queue.advance_in("t2", 60)
        queue.expire_upload_at("u1", datetime.now(UTC) + timedelta(hours=1))
        queue.expire_upload_at("u1", datetime.now(UTC) + timedelta(hours=2))  # moves, does not add

        [now] = rq.get_jobs()
        later = [rq.fetch_job(job_id) for job_id in rq.scheduled_job_registry.get_job_ids()]
        assert None not in later
        assert (now.func_name, now.args) == ("entrypoints.jobs.advance_tryon", ["t1"])
        assert sorted((job.func_name, job.args, job.id == expiry_job_id("u1")) for job in later if job) == [
            ("entrypoints.jobs.advance_tryon", ["t2"], False),
            ("entrypoints.jobs.expire_upload", ["u1"], True),
        ]
    finally:
        rq.empty()
        for job_id in rq.scheduled_job_registry.get_job_ids():
            rq.scheduled_job_registry.remove(job_id, delete_job=True)
