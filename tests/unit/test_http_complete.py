"""POST /v1/uploads/{id}/complete through the HTTP layer, with every port faked."""

from __future__ import annotations

from typing import Any

import pytest

from domain.model import DetectedFace
from tests.builders.app import AUTH, assert_problem, build_app
from tests.fakes import FakeFaceDetector, FakeObject, FakeStore, FakeUploadStorage

IMAGE = b"IMG" + b"y" * 1997


@pytest.fixture
def storage() -> FakeUploadStorage:
    return FakeUploadStorage()


@pytest.fixture
def detector() -> FakeFaceDetector:
    return FakeFaceDetector()


@pytest.fixture
def client(storage, detector):
    return build_app(FakeStore(), storage=storage, detector=detector).test_client()


def upload(client, storage, *, put: bool = True) -> dict[str, Any]:
    ticket = client.post(
        "/v1/uploads", json={"content_type": "image/jpeg", "content_length": len(IMAGE)}, headers=AUTH
    ).get_json()
    if put:
        storage.objects[ticket["object_key"]] = FakeObject(IMAGE, "image/jpeg")
    return dict(ticket)


def complete(client, ticket: dict[str, Any], key: str | None = None, headers=AUTH):
    return client.post(
        f"/v1/uploads/{ticket['upload_id']}/complete",
        json={"object_key": key or ticket["object_key"]},
        headers=headers,
    )


def test_a_verified_upload_answers_with_the_contracts_fields(client, storage):
    ticket = upload(client, storage)

    response = complete(client, ticket)

    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {
        "upload_id",
        "status",
        "content_type",
        "size",
        "width",
        "height",
        "checksum_sha256",
        "expires_at",
    }
    assert (body["upload_id"], body["status"], body["content_type"]) == (
        ticket["upload_id"],
        "verified",
        "image/jpeg",
    )
    assert (body["width"], body["height"], body["size"]) == (1536, 2048, len(IMAGE) + 2)
    assert body["expires_at"] == "2026-11-29T22:00:00Z"
    assert complete(client, ticket).get_json() == body


def test_another_users_upload_is_404_upload_not_found(client, storage):
    ticket = upload(client, storage)

    response = complete(client, ticket, headers={"Authorization": "Bearer token-mallory"})

    assert_problem(response, 404, "upload_not_found")
    assert ticket["object_key"] in storage.objects


def test_a_key_that_was_not_issued_is_403_key_not_owned(client, storage):
    ticket = upload(client, storage)

    assert_problem(complete(client, ticket, key="uploads/user2/abc"), 403, "key_not_owned")


def test_nothing_uploaded_yet_is_409_upload_missing_and_retryable(client, storage):
    ticket = upload(client, storage, put=False)

    body = assert_problem(complete(client, ticket), 409, "upload_missing")

    assert body["retryable"] is True


def test_a_rejected_selfie_is_422_with_its_reason_and_the_object_is_gone(client, storage, detector):
    ticket = upload(client, storage)
    detector.faces = [DetectedFace(0, 0, 200, 200, 0.99), DetectedFace(300, 0, 200, 200, 0.99)]

    body = assert_problem(complete(client, ticket), 422, "multiple_faces")

    assert body["retryable"] is False
    assert storage.objects == {}


def test_a_storage_outage_is_a_retryable_503(client, storage):
    ticket = upload(client, storage)
    storage.down = True

    body = assert_problem(complete(client, ticket), 503, "storage_unavailable")

    assert body["retryable"] is True


@pytest.mark.parametrize("body", [{}, {"object_key": 5}, {"object_key": "k", "bucket": "x"}])
def test_a_malformed_body_is_a_validation_error(client, storage, body):
    ticket = upload(client, storage)
    response = client.post(f"/v1/uploads/{ticket['upload_id']}/complete", json=body, headers=AUTH)

    assert_problem(response, 422, "validation_error")


def upload_state(client, ticket: dict[str, Any], headers=AUTH):
    return client.get(f"/v1/uploads/{ticket['upload_id']}", headers=headers)


def test_an_uploads_state_follows_it_from_issued_to_verified_with_the_verified_fields(client, storage):
    ticket = upload(client, storage)
    issued = upload_state(client, ticket)
    assert (issued.status_code, issued.get_json()) == (
        200,
        {"upload_id": ticket["upload_id"], "status": "issued", "error": None},
    )

    verified_body = complete(client, ticket).get_json()
    state = upload_state(client, ticket).get_json()

    assert state == {**verified_body, "error": None}


def test_a_rejected_uploads_state_names_the_reason(client, storage, detector):
    detector.faces = []
    ticket = upload(client, storage)
    assert complete(client, ticket).status_code == 422

    state = upload_state(client, ticket).get_json()

    assert state["status"] == "rejected"
    assert state["error"]["code"] == "no_face_detected"
    assert "size" not in state


def test_another_users_upload_state_is_not_found_and_a_deleted_one_says_so(client, storage):
    ticket = upload(client, storage)

    other = upload_state(client, ticket, headers={"Authorization": "Bearer token-mallory"})
    assert_problem(other, 404, "upload_not_found")

    assert client.delete(f"/v1/uploads/{ticket['upload_id']}", headers=AUTH).status_code == 204
    assert upload_state(client, ticket).get_json()["status"] == "deleted"
