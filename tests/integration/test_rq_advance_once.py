"""A webhook's step on the real Redis and RQ: asked for again while pending, it is queued once; once it has
run, the next ask queues it again. The replay guard remembers a key for its window, and forgets on demand."""

from __future__ import annotations

import secrets

import pytest
from rq import Queue
from rq.serializers import JSONSerializer

from adapters.redis_store import REPLAY_PREFIX, RedisReplayGuard, connect_redis
from adapters.rq_queue import RqTryOnQueue, advance_once_job_id
from entrypoints.bootstrap import TRYON_JOBS

pytestmark = pytest.mark.integration


def test_a_pending_step_is_queued_once_however_often_asked(redis_url: str) -> None:
    connection = connect_redis(redis_url)
    name = f"tryons-test-{secrets.token_hex(4)}"
    queue = RqTryOnQueue(connection, TRYON_JOBS, queue_name=name)
    rq = Queue(name, connection=connection, serializer=JSONSerializer)
    try:
        for _ in range(3):
            queue.advance_once("t1", "k1")
        queue.advance_once("t1", "k2")  # another request of the same try-on: its own step

        jobs = rq.get_jobs()
        assert sorted(job.id for job in jobs) == sorted(
            [advance_once_job_id("t1", "k1"), advance_once_job_id("t1", "k2")]
        )
        assert {(job.func_name, tuple(job.args)) for job in jobs} == {
            ("entrypoints.jobs.advance_tryon", ("t1",))
        }

        for job in jobs:  # run (result_ttl 0 deletes a finished job): the next ask queues it again
            job.delete()
        queue.advance_once("t1", "k1")
        assert [job.id for job in rq.get_jobs()] == [advance_once_job_id("t1", "k1")]
    finally:
        for job in rq.get_jobs():
            job.delete()
        rq.empty()


def test_the_replay_guard_remembers_a_key_for_its_window_only(redis_url: str) -> None:
    connection = connect_redis(redis_url)
    guard = RedisReplayGuard(connection)
    key = secrets.token_hex(32)
    try:
        assert guard.first_sighting(key, 600) is True
        assert guard.first_sighting(key, 600) is False
        ttl = connection.ttl(REPLAY_PREFIX + key)
        assert isinstance(ttl, int) and 590 <= ttl <= 600

        guard.forget(key)
        assert guard.first_sighting(key, 600) is True
    finally:
        connection.delete(REPLAY_PREFIX + key)
