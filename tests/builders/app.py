"""The real HTTP app and domain with every port faked (tests/fakes.py): no network, no database, no model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

from domain.ports import WebhookVerifier
from entrypoints.http.app import create_app
from entrypoints.settings import Settings
from tests import fakes
from tests.inline import bootstrap_verifying_inline

SETTINGS = Settings.from_env(
    {
        "UPLOADS_BUCKET": "hf-uploads-test",
        "PROCESSED_BUCKET": "hf-processed-test",
        "BETTER_AUTH_URL": "https://auth.example.com",
        "RATE_LIMIT_UPLOADS": "3/minute",
    }
)
AUTH = {"Authorization": "Bearer token-user1"}
JPEG = {"content_type": "image/jpeg", "content_length": 2481733}


def build_app(
    store: fakes.FakeStore,
    readiness_checks: dict[str, Callable[[], None]] | None = None,
    storage: fakes.FakeUploadStorage | None = None,
    detector: fakes.FakeFaceDetector | None = None,
    generator: fakes.FakeImageGenerator | None = None,
    queue: fakes.FakeTryOnQueue | None = None,
    settings: Settings = SETTINGS,
    changes: fakes.FakeChangeBoard | None = None,
    clock: fakes.FixedClock | None = None,
    webhook_verifier: WebhookVerifier | None = None,
    replays: fakes.FakeReplayGuard | None = None,
) -> Flask:
    """The real app and domain with every port faked: no network, no database, no model; the verifier
    runs inline, as a verifier process answering in time."""
    services = bootstrap_verifying_inline(
        settings,
        authenticator=fakes.FakeAuthenticator(),
        signer=fakes.FakeUploadUrlSigner(),
        storage=storage or fakes.FakeUploadStorage(),
        sanitizer=fakes.FakeImageSanitizer(),
        detector=detector or fakes.FakeFaceDetector(),
        generator=generator or fakes.FakeImageGenerator(),
        queue=queue or fakes.FakeTryOnQueue(),
        results=fakes.FakeResultStorage(),
        source_signer=fakes.FakeSourceUrlSigner(),
        unit_of_work=lambda: fakes.FakeUnitOfWork(store),
        clock=clock or fakes.FixedClock(),
        webhook_verifier=webhook_verifier,
        replays=replays,
        readiness_checks=readiness_checks or {"database": lambda: None},
        rate_limit_storage_uri="memory://",
        changes=changes or fakes.FakeChangeBoard(),
    )
    return create_app(services, configure_logs=False)


def assert_problem(response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert {"type", "title", "status", "detail", "code", "retryable"} <= body.keys()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"].endswith("/" + code)
    return dict(body)
