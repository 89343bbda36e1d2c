"""Rate limits shared across web processes through Redis, and what each outage looks like to a client."""

from __future__ import annotations

from dataclasses import replace

import pytest

from adapters.peewee_db import UploadRow
from entrypoints.settings import Settings
from tests.inline import inline_client

pytestmark = pytest.mark.e2e

JPEG = {"content_type": "image/jpeg", "content_length": 1000}
NOTHING_LISTENS = "127.0.0.1:9"


def web(settings: Settings):
    return inline_client(settings)


def test_the_per_user_limit_is_shared_by_every_web_process(settings, auth):
    two_per_minute = replace(settings, rate_limit_uploads="2/minute")
    first_dyno, second_dyno = web(two_per_minute), web(two_per_minute)

    assert first_dyno.post("/v1/uploads", json=JPEG, headers=auth).status_code == 201
    assert second_dyno.post("/v1/uploads", json=JPEG, headers=auth).status_code == 201
    refused = first_dyno.post("/v1/uploads", json=JPEG, headers=auth)

    assert refused.status_code == 429
    assert refused.get_json()["code"] == "rate_limited"
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert UploadRow.select().count() == 2


def test_the_try_on_and_mutation_budgets_are_shared_by_every_web_process_too(settings, auth):
    limited = replace(settings, rate_limit_tryons="1/minute", rate_limit_mutations="2/minute")
    first_dyno, second_dyno = web(limited), web(limited)
    order = {"upload_id": "nope", "style_prompt": "a copper bob"}

    assert first_dyno.delete("/v1/uploads/nope", headers=auth).status_code == 404
    assert second_dyno.put("/v1/results/nope/favorite", headers=auth).status_code == 404
    assert first_dyno.post("/v1/tryons", json=order, headers=auth).status_code == 404
    refused = [
        second_dyno.delete("/v1/me/data", headers=auth),
        second_dyno.post("/v1/tryons", json=order, headers=auth),
    ]

    assert [(r.status_code, r.get_json()["code"]) for r in refused] == [(429, "rate_limited")] * 2
    assert all(0 < int(r.headers["Retry-After"]) <= 60 for r in refused)
    assert first_dyno.post("/v1/uploads", json=JPEG, headers=auth).status_code == 201


def test_with_redis_down_uploads_are_still_issued_and_readiness_says_why(settings, auth):
    client = web(replace(settings, redis_url=f"redis://{NOTHING_LISTENS}/0"))

    assert client.post("/v1/uploads", json=JPEG, headers=auth).status_code == 201
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["errors"]["checks"]["redis"] == "unavailable"


def test_with_the_database_down_issuance_is_a_retryable_503_and_no_url_leaks(settings, auth):
    client = web(replace(settings, database_url=f"postgresql://postgres@{NOTHING_LISTENS}/test"))

    response = client.post("/v1/uploads", json=JPEG, headers=auth)

    assert response.status_code == 503
    body = response.get_json()
    assert (body["code"], body["retryable"]) == ("database_unavailable", True)
    assert "X-Amz" not in response.get_data(as_text=True)
    assert client.get("/readyz").get_json()["errors"]["checks"]["database"] == "unavailable"


def test_with_storage_down_readiness_fails_but_nothing_else_pretends(settings, auth):
    client = web(replace(settings, s3_endpoint_url=f"http://{NOTHING_LISTENS}"))

    ready = client.get("/readyz")

    assert ready.status_code == 503
    assert ready.get_json()["errors"]["checks"] == {"database": "ok", "storage": "unavailable", "redis": "ok"}
