"""/v1/tryons and /v1/results through the HTTP layer, with every port faked (the runner included)."""

from __future__ import annotations

from typing import Any

import pytest

from domain.errors import GenerationFailed
from tests.builders.app import AUTH, assert_problem, build_app
from tests.fakes import FakeImageGenerator, FakeObject, FakeStore, FakeTryOnQueue, FakeUploadStorage

IMAGE = b"IMG" + b"z" * 997
OTHER = {"Authorization": "Bearer token-mallory"}


@pytest.fixture
def world():
    class World:
        store = FakeStore()
        storage = FakeUploadStorage()
        queue = FakeTryOnQueue()
        generator = FakeImageGenerator()
        app = build_app(store, storage=storage, generator=generator, queue=queue)
        client = app.test_client()

    return World()


def verified_upload(world) -> str:
    ticket = world.client.post(
        "/v1/uploads", json={"content_type": "image/jpeg", "content_length": len(IMAGE)}, headers=AUTH
    ).get_json()
    world.storage.objects[ticket["object_key"]] = FakeObject(IMAGE, "image/jpeg")
    done = world.client.post(
        f"/v1/uploads/{ticket['upload_id']}/complete", json={"object_key": ticket["object_key"]}, headers=AUTH
    )
    assert done.status_code == 200
    return str(ticket["upload_id"])


def order(world, upload_id: str, headers: dict[str, str] = AUTH, **body: Any):
    return world.client.post(
        "/v1/tryons", json={"upload_id": upload_id, "style_prompt": "a copper bob", **body}, headers=headers
    )


def run_queued(world) -> None:
    runner = world.app.extensions["tryon"].tryon_runner
    while world.queue.advances:
        tryon_id, _ = world.queue.advances.pop(0)
        runner.advance(tryon_id)
        runner._clock.advance(5)


def test_an_order_is_accepted_and_followed_to_its_result(world):
    upload_id = verified_upload(world)

    accepted = order(world, upload_id)

    assert accepted.status_code == 202
    assert accepted.get_json()["status"] == "queued"
    tryon_id = accepted.get_json()["tryon_id"]
    run_queued(world)
    body = world.client.get(f"/v1/tryons/{tryon_id}", headers=AUTH).get_json()
    assert (body["status"], body["attempts"], body["error"], body["upload_id"]) == (
        "succeeded",
        1,
        None,
        upload_id,
    )
    assert set(body) == {
        "tryon_id",
        "upload_id",
        "status",
        "attempts",
        "created_at",
        "completed_at",
        "error",
        "results",
    }
    [result] = body["results"]
    assert set(result) == {"result_id", "content_type", "width", "height", "favorite"}
    image = world.client.get(f"/v1/results/{result['result_id']}/image", headers=AUTH)
    assert image.status_code == 200
    assert image.headers["Cache-Control"] == "no-store"
    assert image.mimetype == "image/jpeg"
    assert image.data.startswith(b"\xff\xd8\xff")
    assert_problem(
        world.client.get(f"/v1/results/{result['result_id']}/image", headers=OTHER), 404, "result_not_found"
    )
    assert_problem(world.client.get(f"/v1/tryons/{tryon_id}", headers=OTHER), 404, "tryon_not_found")


def test_a_failed_tryon_shows_an_actionable_error(world):
    world.generator.result_failures = [GenerationFailed("no", code="content_policy_violation")]
    tryon_id = order(world, verified_upload(world)).get_json()["tryon_id"]

    run_queued(world)

    body = world.client.get(f"/v1/tryons/{tryon_id}", headers=AUTH).get_json()
    assert body["status"] == "failed"
    assert body["error"]["code"] == "content_policy_violation"
    assert body["error"]["retryable"] is False
    assert body["results"] == []


def test_an_idempotency_key_returns_the_same_tryon_and_refuses_a_different_body(world):
    upload_id = verified_upload(world)
    first = order(world, upload_id, headers={**AUTH, "Idempotency-Key": "abc"}).get_json()

    again = order(world, upload_id, headers={**AUTH, "Idempotency-Key": "abc"})
    changed = order(world, upload_id, headers={**AUTH, "Idempotency-Key": "abc"}, style_prompt="a mohawk")

    assert again.status_code == 202
    assert again.get_json()["tryon_id"] == first["tryon_id"]
    assert_problem(changed, 422, "idempotency_key_reused")


def test_only_a_verified_upload_of_the_caller_can_be_ordered(world):
    upload_id = verified_upload(world)

    assert_problem(order(world, upload_id, headers=OTHER), 404, "upload_not_found")
    assert_problem(order(world, "nope"), 404, "upload_not_found")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"style_prompt": ""}, "invalid_prompt"),
        ({"style_prompt": "x" * 1001}, "invalid_prompt"),
        ({"num_images": 9}, "invalid_num_images"),
        ({"output_format": "gif"}, "invalid_format"),
        ({"num_images": "2"}, "validation_error"),
        ({"extra": 1}, "validation_error"),
    ],
)
def test_bad_orders_get_422_and_nothing_is_queued(world, body, code):
    upload_id = verified_upload(world)

    assert_problem(order(world, upload_id, **body), 422, code)
    assert world.queue.advances == []


def test_the_openapi_document_lists_the_tryon_paths(world):
    spec = world.client.get("/openapi.json").get_json()

    assert {"/v1/tryons", "/v1/tryons/{tryon_id}", "/v1/results/{result_id}/image"} <= set(spec["paths"])
    assert "202" in spec["paths"]["/v1/tryons"]["post"]["responses"]


def finished_tryon(world) -> tuple[str, str]:
    upload_id = verified_upload(world)
    tryon_id = order(world, upload_id).get_json()["tryon_id"]
    run_queued(world)
    [result] = world.client.get(f"/v1/tryons/{tryon_id}", headers=AUTH).get_json()["results"]
    return upload_id, result["result_id"]


def test_favouriting_is_204_reflected_in_the_tryon_and_only_for_the_owner(world):
    _, result_id = finished_tryon(world)

    assert world.client.put(f"/v1/results/{result_id}/favorite", headers=AUTH).status_code == 204
    assert world.store.results[result_id].favorite is True
    assert_problem(
        world.client.put(f"/v1/results/{result_id}/favorite", headers=OTHER), 404, "result_not_found"
    )
    assert world.client.delete(f"/v1/results/{result_id}/favorite", headers=AUTH).status_code == 204
    assert world.store.results[result_id].favorite is False


def test_deleting_an_upload_is_204_and_its_results_go(world):
    upload_id, result_id = finished_tryon(world)

    assert_problem(world.client.delete(f"/v1/uploads/{upload_id}", headers=OTHER), 404, "upload_not_found")
    assert world.client.delete(f"/v1/uploads/{upload_id}", headers=AUTH).status_code == 204

    assert world.storage.objects == {}
    assert_problem(world.client.get(f"/v1/results/{result_id}/image", headers=AUTH), 404, "result_not_found")


def test_erasing_my_data_is_202_and_leaves_only_audit_events(world):
    finished_tryon(world)

    response = world.client.delete("/v1/me/data", headers=AUTH)

    assert response.status_code == 202
    assert response.get_json() == {"status": "erased", "uploads": 1, "results": 1, "tryons": 1}
    assert world.store.uploads == {} and world.store.results == {} and world.store.tryons == {}
    assert world.store.audit[-1].event == "user.erased"
