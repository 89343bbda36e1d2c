"""GET /v1/tryons/{id}?wait=N and GET /v1/uploads/{id}?wait=N through the HTTP layer, every port faked: the
board blocks as Redis would, so a waiting request is woken by the announcement or runs out its time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest

from domain.model import JobState
from domain.ports import Topic
from tests.builders.app import AUTH, assert_problem, build_app
from tests.fakes import (
    FakeChangeBoard,
    FakeImageGenerator,
    FakeObject,
    FakeStore,
    FakeTryOnQueue,
    FakeUploadStorage,
)

IMAGE = b"IMG" + b"z" * 997
OTHER = {"Authorization": "Bearer token-mallory"}
PROMPT = "a copper bob"


class World:
    def __init__(self, board: FakeChangeBoard) -> None:
        self.board = board
        self.store = FakeStore()
        self.storage = FakeUploadStorage()
        self.queue = FakeTryOnQueue()
        self.generator = FakeImageGenerator()
        self.app = build_app(
            self.store, storage=self.storage, generator=self.generator, queue=self.queue, changes=board
        )
        self.client = self.app.test_client()

    def ticket(self) -> dict[str, Any]:
        body = {"content_type": "image/jpeg", "content_length": len(IMAGE)}
        ticket: dict[str, Any] = self.client.post("/v1/uploads", json=body, headers=AUTH).get_json()
        self.storage.objects[ticket["object_key"]] = FakeObject(IMAGE, "image/jpeg")
        return ticket

    def complete(self, ticket: dict[str, Any]) -> int:
        response = self.client.post(
            f"/v1/uploads/{ticket['upload_id']}/complete",
            json={"object_key": ticket["object_key"]},
            headers=AUTH,
        )
        return int(response.status_code)

    def queued_tryon(self) -> str:
        ticket = self.ticket()
        assert self.complete(ticket) == 200
        accepted = self.client.post(
            "/v1/tryons", json={"upload_id": ticket["upload_id"], "style_prompt": PROMPT}, headers=AUTH
        )
        assert accepted.get_json()["status"] == "queued"
        self.board.waited.clear()  # what complete waited for its verdict
        return str(accepted.get_json()["tryon_id"])

    def step(self) -> None:
        """One queued runner step, as a worker would run it."""
        runner = self.app.extensions["tryon"].runner()
        tryon_id, _ = self.queue.advances.pop(0)
        runner.advance(tryon_id)
        runner._clock.advance(5)

    def get(self, path: str, headers: dict[str, str] = AUTH) -> tuple[Any, float]:
        started = time.monotonic()
        response = self.app.test_client().get(path, headers=headers)
        return response, time.monotonic() - started

    def get_while(self, path: str, action: Callable[[], None]) -> tuple[Any, float]:
        """GET ``path`` in a thread (as a web thread would hold it), run ``action`` once it is waiting."""
        answered: list[tuple[Any, float]] = []
        thread = threading.Thread(target=lambda: answered.append(self.get(path)))
        waits_before = len(self.board.waited)
        thread.start()
        deadline = time.monotonic() + 5
        while len(self.board.waited) == waits_before:  # the request has read the state and waits
            assert time.monotonic() < deadline, "the request never waited"
            time.sleep(0.01)
        action()
        thread.join(timeout=10)
        assert answered, "the request never answered"
        return answered[0]


@pytest.fixture
def world() -> World:
    return World(FakeChangeBoard(blocking=True))


def test_a_waiting_tryon_answers_as_soon_as_the_runner_announces_a_change(world):
    tryon_id = world.queued_tryon()
    world.generator.states = [JobState.RUNNING]

    running, took = world.get_while(f"/v1/tryons/{tryon_id}?wait=20", world.step)

    assert running.status_code == 200
    assert (running.get_json()["status"], running.get_json()["attempts"]) == ("running", 1)
    assert took < 5  # woken by the announcement, not by the 20 s


def test_a_poll_that_changes_nothing_wakes_nobody_and_the_settled_state_does(world):
    tryon_id = world.queued_tryon()
    world.generator.states = [JobState.RUNNING]
    world.step()  # submitted: running
    world.step()  # fal still working: nothing the app sees changed
    assert [m for t, k, m in world.board.announced if t is Topic.TRYON] == ["running"]

    done, took = world.get_while(f"/v1/tryons/{tryon_id}?wait=20", world.step)

    assert done.get_json()["status"] == "succeeded"
    assert len(done.get_json()["results"]) == 1
    assert took < 5
    assert [m for t, k, m in world.board.announced if t is Topic.TRYON] == ["running", "succeeded"]


def test_a_wait_that_runs_out_answers_the_unchanged_state(world):
    tryon_id = world.queued_tryon()

    response, took = world.get(f"/v1/tryons/{tryon_id}?wait=1")

    assert response.status_code == 200
    assert response.get_json()["status"] == "queued"
    assert 1 <= took < 4
    assert world.board.waited == [1]


def test_a_waiting_tryon_whose_user_is_erased_answers_404_at_once(world):
    tryon_id = world.queued_tryon()

    def erase() -> None:
        assert world.client.delete("/v1/me/data", headers=AUTH).status_code == 202

    gone, took = world.get_while(f"/v1/tryons/{tryon_id}?wait=20", erase)

    assert gone.status_code == 404
    assert took < 5  # woken by the erasure, not by the 20 s


def test_a_settled_tryon_answers_at_once_however_long_the_wait(world):
    tryon_id = world.queued_tryon()
    world.step()
    world.step()

    response, took = world.get(f"/v1/tryons/{tryon_id}?wait=25")

    assert response.get_json()["status"] == "succeeded"
    assert took < 1
    assert world.board.waited == []


def test_no_wait_asked_answers_now_without_listening(world):
    tryon_id = world.queued_tryon()

    for path in (f"/v1/tryons/{tryon_id}", f"/v1/tryons/{tryon_id}?wait=0"):
        response, took = world.get(path)
        assert (response.status_code, response.get_json()["status"]) == (200, "queued")
        assert took < 1
    assert world.board.waited == []


def test_another_users_tryon_or_upload_is_404_before_any_waiting(world):
    tryon_id = world.queued_tryon()
    upload_id = world.ticket()["upload_id"]

    tryon, took_tryon = world.get(f"/v1/tryons/{tryon_id}?wait=25", headers=OTHER)
    upload, took_upload = world.get(f"/v1/uploads/{upload_id}?wait=25", headers=OTHER)

    assert_problem(tryon, 404, "tryon_not_found")
    assert_problem(upload, 404, "upload_not_found")
    assert max(took_tryon, took_upload) < 1
    assert world.board.waited == []


@pytest.mark.parametrize(
    "board", [FakeChangeBoard(blocking=True, places=0), FakeChangeBoard(blocking=True, down=True)]
)
def test_with_no_waiting_place_free_or_the_board_down_a_wait_answers_at_once(board):
    world = World(board)
    tryon_id = world.queued_tryon()
    upload_id = world.ticket()["upload_id"]

    tryon, took_tryon = world.get(f"/v1/tryons/{tryon_id}?wait=25")
    upload, took_upload = world.get(f"/v1/uploads/{upload_id}?wait=25")

    assert (tryon.status_code, tryon.get_json()["status"]) == (200, "queued")
    assert (upload.status_code, upload.get_json()["status"]) == (200, "issued")
    assert max(took_tryon, took_upload) < 1


def test_with_the_board_down_the_runner_still_settles_the_tryon():
    world = World(FakeChangeBoard(down=True))
    tryon_id = world.queued_tryon()

    world.step()
    world.step()

    body = world.client.get(f"/v1/tryons/{tryon_id}", headers=AUTH).get_json()
    assert (body["status"], len(body["results"])) == ("succeeded", 1)
    assert world.board.announced == []


def test_a_waiting_upload_answers_as_soon_as_its_verdict_is_announced(world):
    ticket = world.ticket()

    verified, took = world.get_while(
        f"/v1/uploads/{ticket['upload_id']}?wait=20", lambda: world.complete(ticket)
    )

    assert verified.status_code == 200
    assert verified.get_json()["status"] == "verified"
    assert verified.get_json()["checksum_sha256"]
    assert took < 5


def test_a_settled_upload_answers_at_once(world):
    ticket = world.ticket()
    assert world.complete(ticket) == 200
    waits = len(world.board.waited)  # complete waited for its verdict

    response, took = world.get(f"/v1/uploads/{ticket['upload_id']}?wait=25")

    assert response.get_json()["status"] == "verified"
    assert took < 1
    assert len(world.board.waited) == waits


@pytest.mark.parametrize("wait", ["-1", "26", "100", "abc", "1.5", "", "+5", " 5", "1e1", "\u0663", "9" * 40])
def test_a_bad_wait_is_a_422_validation_problem_and_nothing_waits(world, wait):
    tryon_id = world.queued_tryon()
    upload_id = world.ticket()["upload_id"]

    for path in (f"/v1/tryons/{tryon_id}", f"/v1/uploads/{upload_id}"):
        response, took = world.get(f"{path}?{urlencode({'wait': wait})}")
        body = assert_problem(response, 422, "validation_error")
        assert "wait" in body["errors"]["query"]
        assert took < 1
    assert world.board.waited == []


def test_the_openapi_document_describes_the_wait(world):
    spec = world.client.get("/openapi.json").get_json()

    for path in ("/v1/tryons/{tryon_id}", "/v1/uploads/{upload_id}"):
        operation = spec["paths"][path]["get"]
        [wait] = [p for p in operation["parameters"] if p["name"] == "wait"]
        assert wait["in"] == "query"
        assert wait["required"] is False
        assert (wait["schema"]["minimum"], wait["schema"]["maximum"]) == (0, 25)
        assert "422" in operation["responses"]
