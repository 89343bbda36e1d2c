"""PUBLIC_BASE_URL and FAL_WEBHOOK_JWKS_URL: what is accepted, and what the fal adapter submits with it."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import requests
import urllib3

from adapters.fal_queue import FalQueueGenerator
from domain.model import GenerationRequest, SignedUrl
from entrypoints.settings import FAL_JWKS_URL, Settings, SettingsError
from tests.builders.app import build_app
from tests.fakes import FakeStore

KEY = "fal-key-settings-test"


class RecordingSession(requests.Session):
    """Answers every request with one canned JSON response, recording the calls (no I/O)."""

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.body = body
        self.calls: list[tuple[Any, ...]] = []

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        self.calls.append((*args, kwargs))
        response = requests.Response()
        response.status_code = 200
        response.raw = urllib3.HTTPResponse(body=io.BytesIO(self.body), preload_content=False)
        return response


BASE = {"UPLOADS_BUCKET": "u", "PROCESSED_BUCKET": "p", "BETTER_AUTH_URL": "https://auth.example.com"}


def settings(**env: str) -> Settings:
    return Settings.from_env(BASE | env)


def test_webhooks_are_off_by_default_and_fals_jwks_is_the_default_key_set():
    plain = settings()

    assert plain.public_base_url is None
    assert plain.fal_webhook_url is None
    assert plain.fal_webhook_jwks_url == FAL_JWKS_URL == "https://rest.alpha.fal.ai/.well-known/jwks.json"


@pytest.mark.parametrize(
    ("value", "origin"),
    [
        ("https://api.example.com", "https://api.example.com"),
        ("https://api.example.com/", "https://api.example.com"),
        ("https://api.example.com:8443", "https://api.example.com:8443"),
        ("http://127.0.0.1:8123", "http://127.0.0.1:8123"),
        ("http://localhost:5000", "http://localhost:5000"),
        ("http://[::1]:5000", "http://[::1]:5000"),
    ],
)
def test_a_public_origin_is_accepted_and_names_the_webhook(value, origin):
    accepted = settings(PUBLIC_BASE_URL=value)

    assert accepted.public_base_url == origin
    assert accepted.fal_webhook_url == origin + "/v1/webhooks/fal"


@pytest.mark.parametrize(
    "value",
    [
        "http://api.example.com",  # http only for loopback
        "ftp://api.example.com",
        "api.example.com",
        "https://user:secret@api.example.com",
        "https://api.example.com/base",
        "https://api.example.com/?token=x",
        "https://api.example.com#frag",
        "https://api.example.com:99999",
        "https://",
    ],
)
def test_anything_but_a_plain_origin_is_refused(value):
    with pytest.raises(SettingsError) as refused:
        settings(PUBLIC_BASE_URL=value)

    assert "secret" not in str(refused.value)


def test_the_jwks_url_and_the_grace_period_are_checked():
    with pytest.raises(SettingsError):
        settings(FAL_WEBHOOK_JWKS_URL="file:///etc/passwd")
    with pytest.raises(SettingsError):
        settings(FAL_WEBHOOK_GRACE_SECONDS="0")
    assert settings(FAL_WEBHOOK_GRACE_SECONDS="2.5").fal_webhook_grace_seconds == 2.5


def submitted_with(webhook_url: str | None) -> dict[str, object]:
    answer = {"request_id": "r1", "status_url": "s", "response_url": "r", "cancel_url": "c"}
    session = RecordingSession(json.dumps(answer).encode())
    fal = FalQueueGenerator(api_key=KEY, session=session, webhook_url=webhook_url)
    submission = fal.submit(GenerationRequest(prompt="a bob", image_url=SignedUrl("https://s3.example/x")))
    assert submission.request_id == "r1"
    (method, url, kwargs), *_ = session.calls
    assert (method, url) == ("POST", "https://queue.fal.run/fal-ai/nano-banana/edit")
    return dict(kwargs)


def test_with_a_public_url_fal_is_asked_to_call_back_and_to_expire_its_copies_early():
    kwargs = submitted_with("https://api.example.com/v1/webhooks/fal")

    assert kwargs["params"] == {"fal_webhook": "https://api.example.com/v1/webhooks/fal"}
    headers = kwargs["headers"]
    assert isinstance(headers, dict)
    assert json.loads(headers["X-Fal-Object-Lifecycle-Preference"]) == {"expiration_duration_seconds": 3600}
    assert headers["X-Fal-Store-IO"] == "0"


def test_without_a_public_url_no_webhook_is_asked_for():
    assert submitted_with(None)["params"] == {}


def test_bootstrap_gives_the_runner_the_fallback_schedule_only_with_a_public_url():
    def policy(**env: str):
        app = build_app(FakeStore(), settings=settings(**env))
        return app.extensions["tryon"].tryon_runner._policy

    assert policy().webhooks is False
    with_hooks = policy(PUBLIC_BASE_URL="https://api.example.com", FAL_WEBHOOK_GRACE_SECONDS="5")
    assert with_hooks.webhooks is True
    assert with_hooks.webhook_grace_seconds == 5.0
