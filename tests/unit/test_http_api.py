"""The HTTP layer with fakes behind bootstrap: envelopes, status codes, headers. No network."""

from __future__ import annotations

import json
import logging

import pytest
from botocore.exceptions import ClientError
from flask.testing import FlaskClient

from domain.errors import StorageUnavailable
from entrypoints.bootstrap import scrubber_for
from entrypoints.http.problems import domain_error_response
from entrypoints.logs import JsonFormatter
from tests.builders.app import AUTH, JPEG, SETTINGS, assert_problem, build_app
from tests.fakes import (
    FakeStore,
)


def _down() -> None:
    raise StorageUnavailable("down")


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def client(store: FakeStore) -> FlaskClient:
    return build_app(store).test_client()


def test_issuing_returns_the_contracts_shape(client, store):
    response = client.post("/v1/uploads", json=JPEG, headers=AUTH)

    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"upload_id", "object_key", "method", "url", "expires_at", "headers"}
    assert body["object_key"] == f"uploads/user1/{body['upload_id']}"
    assert body["method"] == "PUT"
    assert body["expires_at"] == "2026-11-28T22:05:00Z"
    assert body["headers"]["Content-Type"] == "image/jpeg"
    assert response.headers["Cache-Control"] == "no-store"
    assert body["upload_id"] in store.uploads


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer "},
    ],
)
def test_requests_without_a_valid_token_get_401_with_www_authenticate(client, store, headers):
    response = client.post("/v1/uploads", json=JPEG, headers=headers)

    assert_problem(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert store.uploads == {}


def test_authentication_comes_before_body_validation(client):
    assert_problem(client.post("/v1/uploads", data="not json"), 401, "unauthenticated")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"content_type": "image/svg+xml", "content_length": 100}, "unsupported_content_type"),
        ({"content_type": "text/html", "content_length": 100}, "unsupported_content_type"),
        ({"content_type": "image/jpeg", "content_length": 16 * 1024 * 1024 + 1}, "too_large"),
        ({"content_type": "image/jpeg", "content_length": 0}, "invalid_content_length"),
        ({**JPEG, "checksum_sha256": "abc"}, "invalid_checksum"),
    ],
)
def test_refused_values_get_422_with_a_stable_code_and_no_url(client, store, body, code):
    response = client.post("/v1/uploads", json=body, headers=AUTH)

    problem = assert_problem(response, 422, code)
    assert "url" not in problem
    assert store.uploads == {}


@pytest.mark.parametrize(
    "body",
    [
        {"content_type": "image/jpeg"},
        {"content_type": "image/jpeg", "content_length": "100"},
        {"content_type": "image/jpeg", "content_length": 1.5},
        {**JPEG, "bucket": "someone-elses"},
        {**JPEG, "object_key": "uploads/other/x"},
        [],
    ],
)
def test_malformed_bodies_get_422_validation_error_with_field_errors(client, store, body):
    problem = assert_problem(client.post("/v1/uploads", json=body, headers=AUTH), 422, "validation_error")

    assert problem["errors"]
    assert store.uploads == {}


def test_a_non_json_body_is_a_validation_error(client):
    response = client.post("/v1/uploads", data="content_type=image/jpeg", headers=AUTH)
    assert_problem(response, 422, "validation_error")


def test_an_oversized_body_is_refused_before_parsing(client):
    response = client.post(
        "/v1/uploads", data="x" * 70_000, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert_problem(response, 413, "payload_too_large")


def test_unknown_routes_and_methods_use_the_problem_envelope(client):
    assert_problem(client.get("/v1/nothing-here", headers=AUTH), 404, "not_found")
    response = client.get("/v1/uploads", headers=AUTH)
    assert_problem(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_the_per_user_rate_limit_answers_429_with_retry_after(store):
    client = build_app(store).test_client()
    for _ in range(3):
        assert client.post("/v1/uploads", json=JPEG, headers=AUTH).status_code == 201

    response = client.post("/v1/uploads", json=JPEG, headers=AUTH)

    body = assert_problem(response, 429, "rate_limited")
    assert body["retryable"] is True
    assert 0 < int(response.headers["Retry-After"]) <= 60
    other_user = client.post("/v1/uploads", json=JPEG, headers={"Authorization": "Bearer token-user2"})
    assert other_user.status_code == 201
    assert len(store.uploads) == 4


def test_a_database_outage_is_a_retryable_503(store):
    store.fail_commit = True
    response = build_app(store).test_client().post("/v1/uploads", json=JPEG, headers=AUTH)

    body = assert_problem(response, 503, "database_unavailable")
    assert body["retryable"] is True
    assert response.headers["Retry-After"]


@pytest.mark.parametrize(
    ("cause", "logged"),
    [
        (
            ConnectionError('Could not connect to the endpoint URL: "http://s3.test/hf-uploads-0a1b2c3d/k"'),
            "ConnectionError",
        ),
        (
            ClientError(
                {"Error": {"Code": "NoSuchBucket", "Message": "no hf-uploads-0a1b2c3d"}}, "HeadObject"
            ),
            "NoSuchBucket",
        ),
    ],
)
def test_an_outage_is_logged_with_its_causes_code_or_type_never_its_message(store, caplog, cause, logged):
    outage = StorageUnavailable("could not read the object")
    outage.__cause__ = cause
    with build_app(store).app_context(), caplog.at_level(logging.WARNING, logger="entrypoints.http.problems"):
        domain_error_response(outage)

    assert [(record.getMessage(), record.cause) for record in caplog.records] == [
        ("dependency unavailable", logged)
    ]


def test_an_unexpected_error_is_a_500_problem_without_internals(store, monkeypatch):
    app = build_app(store)

    def explode(*_args, **_kwargs):
        raise RuntimeError("secret internals at /srv/app.py")

    monkeypatch.setattr(app.extensions["tryon"].upload_issuer, "issue", explode)
    response = app.test_client().post("/v1/uploads", json=JPEG, headers=AUTH)

    body = assert_problem(response, 500, "internal_error")
    assert "secret internals" not in json.dumps(body)


def test_health_is_public_and_readiness_reports_each_dependency(store):
    client = build_app(store, readiness_checks={"database": lambda: None, "storage": _down}).test_client()

    assert client.get("/healthz").get_json() == {"status": "ok"}
    response = client.get("/readyz")
    body = assert_problem(response, 503, "not_ready")
    assert body["errors"] == {"checks": {"database": "ok", "storage": "unavailable"}}


def test_readiness_is_200_when_everything_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "checks": {"database": "ok"}}


def test_every_response_carries_a_request_id_and_honours_a_sane_incoming_one(client):
    assert (
        client.get("/healthz", headers={"X-Request-ID": "abcdef123456"}).headers["X-Request-ID"]
        == "abcdef123456"
    )
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces and {braces}"}).headers[
        "X-Request-ID"
    ]
    assert len(generated) == 16


def test_the_openapi_document_describes_the_contract(client):
    spec = client.get("/openapi.json").get_json()

    post = spec["paths"]["/v1/uploads"]["post"]
    assert set(post["responses"]) >= {"201", "401", "422", "429", "503"}
    assert "application/problem+json" in post["responses"]["429"]["content"]
    request_schema = spec["components"]["schemas"]["UploadRequest"]
    assert request_schema["properties"]["content_type"]["enum"] == [
        "image/jpeg",
        "image/png",
        "image/webp",
        "image/heic",
        "image/heif",
    ]
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert spec["paths"]["/healthz"]["get"]["security"] == []
    assert client.get("/docs").status_code == 200


def test_log_lines_are_json_with_the_request_id_and_never_the_signed_url(store, caplog):
    client = build_app(store).test_client()
    with caplog.at_level(logging.INFO):
        response = client.post("/v1/uploads", json=JPEG, headers={**AUTH, "X-Request-ID": "req-12345678"})

    formatter = JsonFormatter(scrubber_for(SETTINGS))
    lines = [json.loads(formatter.format(record)) for record in caplog.records]
    access = [line for line in lines if line["logger"] == "tryon.access"]
    assert access[-1]["request_id"] == "req-12345678"
    assert access[-1]["status"] == 201
    assert access[-1]["user_id"] == "user1"
    url = response.get_json()["url"]
    assert all(url not in json.dumps(line) and "X-Amz-Signature" not in json.dumps(line) for line in lines)
