"""The change board (an upload's verdicts, a try-on's changes) and the verify queue against the real Redis
(the session's `redis_url`)."""

from __future__ import annotations

import secrets
import threading
import time

import pytest
from rq import Queue
from rq.serializers import JSONSerializer

from adapters.redis_store import RedisChangeBoard, connect_redis
from adapters.rq_queue import VERIFY_QUEUE, RqVerificationQueue, verification_job_id
from domain.ports import Topic
from entrypoints import jobs

pytestmark = pytest.mark.integration


@pytest.fixture
def board(redis_url: str) -> RedisChangeBoard:
    return RedisChangeBoard(connect_redis(redis_url), max_waiters=2)


def test_a_listener_hears_the_verdict_announced_after_it_began(board: RedisChangeBoard) -> None:
    upload_id = secrets.token_hex(8)
    with board.listen(Topic.UPLOAD, upload_id) as listener:
        announcer = threading.Timer(0.2, board.announce, (Topic.UPLOAD, upload_id, "settled"))
        announcer.start()
        started = time.monotonic()
        verdict = listener.wait(5)
        took = time.monotonic() - started
        announcer.join()

    assert verdict == "settled"
    assert took < 4  # woken by the message, not by the deadline


def test_no_verdict_in_time_is_none_and_another_uploads_verdict_is_not_heard(
    board: RedisChangeBoard,
) -> None:
    upload_id = secrets.token_hex(8)
    with board.listen(Topic.UPLOAD, upload_id) as listener:
        board.announce(Topic.UPLOAD, secrets.token_hex(8), "settled")
        assert listener.wait(0.3) is None


def test_waiters_beyond_the_cap_are_answered_at_once(board: RedisChangeBoard) -> None:
    with (
        board.listen(Topic.UPLOAD, "a") as first,
        board.listen(Topic.TRYON, "b") as second,
        board.listen(Topic.UPLOAD, "c") as third,
    ):
        started = time.monotonic()
        assert third.wait(5) is None
        assert time.monotonic() - started < 1
        assert first is not third and second is not third
    with board.listen(Topic.UPLOAD, "d") as freed:  # places are given back
        board.announce(Topic.UPLOAD, "d", "upload_missing")
        assert freed.wait(5) == "upload_missing"


def test_handing_the_same_upload_off_twice_keeps_one_job_record(redis_url: str) -> None:
    connection = connect_redis(redis_url)
    queue = RqVerificationQueue(connection, jobs.verify_upload)
    upload_id = secrets.token_hex(8)

    queue.verify_soon(upload_id)
    queue.verify_soon(upload_id)

    rq = Queue(VERIFY_QUEUE, connection=connection, serializer=JSONSerializer)
    job = rq.fetch_job(verification_job_id(upload_id))
    assert job is not None and job.args == [upload_id]
    assert job.func_name == "entrypoints.jobs.verify_upload"
    rq.empty()
