"""The real composition root with the verifier run inline: `complete` then answers as the web does when a
verifier process gives its verdict in time. For tests that drive the app in-process."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from entrypoints.bootstrap import Services, bootstrap
from entrypoints.http.app import create_app
from entrypoints.settings import Settings
from tests.fakes import FakeChangeBoard, FakeVerificationQueue


def bootstrap_verifying_inline(settings: Settings | None = None, **overrides: Any) -> Services:
    queue = FakeVerificationQueue()
    overrides.setdefault("changes", FakeChangeBoard())
    services = bootstrap(settings, verification_queue=queue, **overrides)
    queue.verifier = services.upload_verifier
    return services


def inline_client(settings: Settings | None = None, **overrides: Any) -> FlaskClient:
    """A test client of the real app on that composition, its logs left as pytest configured them."""
    return create_app(bootstrap_verifying_inline(settings, **overrides), configure_logs=False).test_client()
