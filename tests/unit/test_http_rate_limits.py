"""Per-user rate limits on every authenticated mutation: one budget per kind, never counted twice."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
from flask.testing import FlaskClient

from domain.errors import LimitExceeded
from tests.builders.app import AUTH, JPEG, SETTINGS, assert_problem, build_app
from tests.fakes import FakeObject, FakeStore, FakeUploadStorage

ALICE = AUTH
BOB = {"Authorization": "Bearer token-bob"}
TWO_A_MINUTE = replace(
    SETTINGS, rate_limit_uploads="2/minute", rate_limit_tryons="2/minute", rate_limit_mutations="2/minute"
)
IMAGE = b"IMG" + b"q" * 997

MUTATIONS = [
    ("POST", "/v1/uploads/u1/complete", {"object_key": "uploads/user1/u1"}),
    ("PUT", "/v1/results/r1/favorite", None),
    ("DELETE", "/v1/results/r1/favorite", None),
    ("DELETE", "/v1/uploads/u1", None),
    ("DELETE", "/v1/me/data", None),
]


@pytest.fixture
def client() -> FlaskClient:
    return build_app(FakeStore(), settings=TWO_A_MINUTE).test_client()


def send(client: FlaskClient, method: str, path: str, body: object, headers: dict[str, str]):
    return client.open(path, method=method, json=body, headers=headers)


def assert_rate_limited(response) -> None:
    body = assert_problem(response, 429, "rate_limited")
    assert body["retryable"] is True
    assert 0 < int(response.headers["Retry-After"]) <= 60


def test_a_user_bursting_try_ons_gets_429_while_another_user_is_still_served():
    storage = FakeUploadStorage()
    client = build_app(
        FakeStore(), storage=storage, settings=replace(SETTINGS, rate_limit_tryons="2/minute")
    ).test_client()
    uploads = {}
    for user, auth in (("user1", ALICE), ("bob", BOB)):
        ticket = client.post(
            "/v1/uploads", json={**JPEG, "content_length": len(IMAGE)}, headers=auth
        ).get_json()
        storage.objects[ticket["object_key"]] = FakeObject(IMAGE, "image/jpeg")
        done = client.post(
            f"/v1/uploads/{ticket['upload_id']}/complete",
            json={"object_key": ticket["object_key"]},
            headers=auth,
        )
        assert done.status_code == 200, done.get_json()
        uploads[user] = ticket["upload_id"]

    def order(auth: dict[str, str], upload_id: str, key: str):
        body = {"upload_id": upload_id, "style_prompt": "a copper bob"}
        return client.post("/v1/tryons", json=body, headers={**auth, "Idempotency-Key": key})

    assert [order(ALICE, uploads["user1"], f"k{n}").status_code for n in range(2)] == [202, 202]
    assert_rate_limited(order(ALICE, uploads["user1"], "k3"))
    assert order(BOB, uploads["bob"], "b1").status_code == 202


@pytest.mark.parametrize(("method", "path", "body"), MUTATIONS)
def test_every_other_mutation_is_limited_per_user(client, method, path, body):
    for _ in range(2):
        assert send(client, method, path, body, ALICE).status_code != 429

    assert_rate_limited(send(client, method, path, body, ALICE))
    assert send(client, method, path, body, BOB).status_code != 429


def test_the_other_mutations_share_one_budget(client):
    (m1, p1, b1), (m2, p2, b2), (m3, p3, b3) = MUTATIONS[0], MUTATIONS[1], MUTATIONS[4]
    assert send(client, m1, p1, b1, ALICE).status_code != 429
    assert send(client, m2, p2, b2, ALICE).status_code != 429

    assert_rate_limited(send(client, m3, p3, b3, ALICE))


def test_completing_uploads_does_not_spend_the_issuing_budget_nor_ordering_try_ons(client):
    m, p, b = MUTATIONS[0]
    for _ in range(2):
        send(client, m, p, b, ALICE)
    assert_rate_limited(send(client, m, p, b, ALICE))

    assert [client.post("/v1/uploads", json=JPEG, headers=ALICE).status_code for _ in range(2)] == [201, 201]
    assert (
        client.post("/v1/tryons", json={"upload_id": "u1", "style_prompt": "x"}, headers=ALICE).status_code
        != 429
    )


def test_issuing_does_not_spend_the_mutation_budget(client):
    for _ in range(2):
        assert client.post("/v1/uploads", json=JPEG, headers=ALICE).status_code == 201
    assert_rate_limited(client.post("/v1/uploads", json=JPEG, headers=ALICE))

    m, p, b = MUTATIONS[3]
    assert [send(client, m, p, b, ALICE).status_code for _ in range(2)] == [404, 404]


def test_reads_are_not_limited_here(client):
    statuses = {client.get("/v1/tryons/t1", headers=ALICE).status_code for _ in range(5)}
    assert statuses == {404}


def test_every_limited_operation_documents_its_429(client):
    spec = client.get("/openapi.json").get_json()
    limited = [("post", "/v1/uploads"), ("post", "/v1/tryons")] + [
        (method.lower(), path)
        for method, path in (
            ("POST", "/v1/uploads/{upload_id}/complete"),
            ("PUT", "/v1/results/{result_id}/favorite"),
            ("DELETE", "/v1/results/{result_id}/favorite"),
            ("DELETE", "/v1/uploads/{upload_id}"),
            ("DELETE", "/v1/me/data"),
        )
    ]
    mutations = {
        (method, path)
        for path, operations in spec["paths"].items()
        for method in operations
        if method in {"post", "put", "patch", "delete"}
        and path.startswith("/v1/")
        and not path.startswith("/v1/webhooks/")  # fal's signed callbacks, not a user's mutation
    }

    assert mutations == set(limited)
    for method, path in limited:
        response = spec["paths"][path][method]["responses"]["429"]
        assert "rate_limited" in response["description"]
        assert "application/problem+json" in response["content"]


@pytest.mark.parametrize("code", ["too_many_active_tryons", "quota_exceeded"])
def test_a_limit_the_domain_enforces_is_a_429_with_its_own_code_and_retry_after(monkeypatch, caplog, code):
    app = build_app(FakeStore())

    def refuse(*_args, **_kwargs):
        raise LimitExceeded("you are over your limit", code=code, retry_after_seconds=37)

    monkeypatch.setattr(app.extensions["tryon"].tryon_desk, "order", refuse)
    with caplog.at_level(logging.WARNING):
        response = app.test_client().post(
            "/v1/tryons", json={"upload_id": "u1", "style_prompt": "a copper bob"}, headers=ALICE
        )

    body = assert_problem(response, 429, code)
    assert (body["retryable"], body["detail"]) == (True, "you are over your limit")
    assert response.headers["Retry-After"] == "37"
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_ordering_a_try_on_documents_all_three_429_codes(client):
    spec = client.get("/openapi.json").get_json()

    description = spec["paths"]["/v1/tryons"]["post"]["responses"]["429"]["description"]

    assert all(code in description for code in ("rate_limited", "too_many_active_tryons", "quota_exceeded"))
