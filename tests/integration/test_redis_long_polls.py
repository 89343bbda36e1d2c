"""Long polls on the real Redis (the session's `redis_url`): the domain's waiting look-ups on the real
change board, woken by a publish from another connection (as a worker's would come), capped per process,
and answering at once when Redis is unreachable."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from adapters.redis_store import RedisChangeBoard, connect_redis
from devtools.local_stack import free_port
from domain.changes import announce
from domain.model import TryOn, TryOnStatus
from domain.ports import Topic
from domain.tryons import TryOnDesk
from tests.builders.records import a_tryon
from tests.fakes import (
    FakeResultStorage,
    FakeStore,
    FakeTryOnQueue,
    FakeUnitOfWork,
    FixedClock,
    SequentialIds,
)

pytestmark = pytest.mark.integration


class World:
    def __init__(self, board: RedisChangeBoard) -> None:
        self.board = board
        self.store = FakeStore()
        self.clock = FixedClock()
        self.desk = TryOnDesk(
            unit_of_work=lambda: FakeUnitOfWork(self.store),
            queue=FakeTryOnQueue(),
            results=FakeResultStorage(),
            clock=self.clock,
            ids=SequentialIds(),
            changes=board,
        )

    def tryon(self, status: TryOnStatus = TryOnStatus.QUEUED) -> TryOn:
        now = self.clock.now()
        tryon = a_tryon(
            secrets.token_hex(8), now=now, status=status, next_action_at=now + timedelta(seconds=2)
        )
        self.store.tryons[tryon.tryon_id] = tryon
        return tryon

    def look_up(self, tryon_id: str, wait: float) -> tuple[TryOn, float]:
        started = time.monotonic()
        tryon, _ = self.desk.look_up("alice", tryon_id, wait)
        return tryon, time.monotonic() - started


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    answers: list[Any] = []
    thread = threading.Thread(target=lambda: answers.append((call(), time.monotonic())))
    thread.start()
    return thread, answers


@pytest.fixture
def board(redis_url: str) -> RedisChangeBoard:
    return RedisChangeBoard(connect_redis(redis_url), max_waiters=2)


@pytest.fixture
def worker_board(redis_url: str) -> RedisChangeBoard:
    """Another connection, as a worker process announces on."""
    return RedisChangeBoard(connect_redis(redis_url))


def test_a_waiting_look_up_is_woken_by_a_publish_in_well_under_a_second(board, worker_board):
    world = World(board)
    tryon = world.tryon()
    thread, answers = in_thread(lambda: world.desk.look_up("alice", tryon.tryon_id, 20))
    time.sleep(0.5)  # it has subscribed, read "queued" and waits

    world.store.tryons[tryon.tryon_id] = replace(tryon, status=TryOnStatus.RUNNING, attempts=1)  # committed
    announced_at = time.monotonic()
    announce(worker_board, Topic.TRYON, tryon.tryon_id, "running")
    thread.join(timeout=25)

    [((answered, _results), answered_at)] = answers
    assert (answered.status, answered.attempts) == (TryOnStatus.RUNNING, 1)
    assert answered_at - announced_at < 0.5


def test_a_change_announced_right_after_listening_began_is_heard(board, worker_board):
    """Redis has confirmed the subscription when ``listen`` returns: a change committed after the
    waiter's read, announced at once, is not lost in between."""
    key = secrets.token_hex(8)
    with board.listen(Topic.TRYON, key) as listener:
        worker_board.announce(Topic.TRYON, key, "running")
        started = time.monotonic()
        assert listener.wait(5) == "running"
        assert time.monotonic() - started < 0.5


def test_a_change_of_another_topic_or_key_does_not_wake_a_waiter(board, worker_board):
    world = World(board)
    tryon = world.tryon()
    thread, answers = in_thread(lambda: world.look_up(tryon.tryon_id, 1))
    time.sleep(0.3)

    worker_board.announce(Topic.UPLOAD, tryon.tryon_id, "settled")
    worker_board.announce(Topic.TRYON, secrets.token_hex(8), "running")
    thread.join(timeout=10)

    [((answered, took), _)] = answers
    assert answered.status is TryOnStatus.QUEUED
    assert took >= 1  # it ran out its time


def test_a_settled_tryon_answers_at_once(board):
    world = World(board)
    tryon = world.tryon(TryOnStatus.SUCCEEDED)

    answered, took = world.look_up(tryon.tryon_id, 25)

    assert answered.status is TryOnStatus.SUCCEEDED
    assert took < 0.5


def test_completes_and_long_polls_share_the_waiting_places_of_a_process(board):
    """Two places: a complete waiting for a verdict and one long poll take them; the next long poll
    answers at once with the state as it is, and a place given back is taken again."""
    world = World(board)
    first, second = world.tryon(), world.tryon()
    with board.listen(Topic.UPLOAD, secrets.token_hex(8)):  # a complete waiting for its verdict
        thread, answers = in_thread(lambda: world.look_up(first.tryon_id, 3))
        time.sleep(0.3)

        answered, took = world.look_up(second.tryon_id, 25)

        assert answered.status is TryOnStatus.QUEUED
        assert took < 0.5
        thread.join(timeout=10)
    [((_, first_took), _)] = answers
    assert first_took >= 3  # it had a place and waited its time
    _, took = world.look_up(second.tryon_id, 1)
    assert took >= 1  # places are given back


def test_with_redis_unreachable_a_wait_answers_at_once_and_announcing_never_raises():
    down = RedisChangeBoard(connect_redis(f"redis://127.0.0.1:{free_port()}/0"))
    world = World(down)
    tryon = world.tryon()

    answered, took = world.look_up(tryon.tryon_id, 25)
    announce(down, Topic.TRYON, tryon.tryon_id, "running")  # logged, not raised

    assert answered.status is TryOnStatus.QUEUED
    assert took < 3
