"""Session-token authentication against a local stand-in for Better Auth's get-session endpoint.

The stand-in answers like Better Auth (200 with the session, or 200 with ``null``) and counts calls,
so the tests can show what is decided locally and what is asked of the auth server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import pytest

from adapters.better_auth_session import BetterAuthSessionAuthenticator
from devtools.background_server import serve_in_background, shut_down
from domain.auth import JwtOrSession
from domain.errors import AuthUnavailable, Unauthenticated
from domain.model import Credentials
from tests.fakes import FakeAuthenticator

pytestmark = pytest.mark.integration

SECRET = "better-auth-secret-for-tests-0123456789"


def signed(token: str, secret: str = SECRET) -> str:
    digest = hmac.new(secret.encode(), token.encode(), hashlib.sha256).digest()
    return quote(f"{token}.{base64.b64encode(digest).decode()}", safe="")


class GetSession:
    def __init__(self) -> None:
        self.sessions: dict[str, str] = {}
        self.calls: list[dict[str, str]] = []
        self.status = 200
        self.delay = 0.0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stub.calls.append(dict(self.headers))
                if stub.delay:
                    threading.Event().wait(stub.delay)
                presented = (
                    self.headers.get("Authorization", "").removeprefix("Bearer ")
                    or (self.headers.get("Cookie", "").partition("=")[2])
                )
                token = presented.split("%2E")[0].split(".")[0]
                user = stub.sessions.get(token)
                body: Any = {"session": {"token": token}, "user": {"id": user}} if user else None
                data = json.dumps(body).encode()
                self.send_response(stub.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = serve_in_background(self.server, "get-session stub")

    def stop(self) -> None:
        shut_down(self.server, self.thread)


@pytest.fixture
def auth_server() -> Iterator[GetSession]:
    stub = GetSession()
    yield stub
    stub.stop()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def authenticator(auth_server: GetSession, clock: Clock) -> BetterAuthSessionAuthenticator:
    return BetterAuthSessionAuthenticator(
        base_url=auth_server.url, secret=SECRET, cache_seconds=30, timeout_seconds=0.5, clock=clock
    )


def test_a_valid_session_is_accepted_as_bearer_and_as_either_cookie(auth_server, authenticator):
    auth_server.sessions["tok1"] = "user_ba_1"
    value = signed("tok1")

    assert authenticator.authenticate(Credentials(bearer=value)) == "user_ba_1"
    for cookie in ("better-auth.session_token", "__Secure-better-auth.session_token"):
        assert authenticator.authenticate(Credentials(cookies={cookie: value})) == "user_ba_1"
    assert auth_server.calls[0]["Authorization"] == f"Bearer {value}"


def test_a_forged_signature_is_refused_without_asking_the_auth_server(auth_server, authenticator):
    auth_server.sessions["tok1"] = "user_ba_1"

    for forged in (signed("tok1", secret="another-secret"), "tok1", "tok1.", quote("tok1.AAAA", safe="")):
        with pytest.raises(Unauthenticated):
            authenticator.authenticate(Credentials(cookies={"better-auth.session_token": forged}))
    assert auth_server.calls == []


def test_a_signed_out_session_stops_working_within_the_cache_time(auth_server, authenticator, clock):
    auth_server.sessions["tok1"] = "user_ba_1"
    value = signed("tok1")
    assert authenticator.authenticate(Credentials(bearer=value)) == "user_ba_1"

    del auth_server.sessions["tok1"]
    clock.now += 29
    assert authenticator.authenticate(Credentials(bearer=value)) == "user_ba_1"
    clock.now += 2
    with pytest.raises(Unauthenticated):
        authenticator.authenticate(Credentials(bearer=value))
    assert len(auth_server.calls) == 2


def test_an_auth_server_that_is_down_slow_or_failing_refuses_the_request_as_retryable(
    auth_server, authenticator
):
    auth_server.sessions["tok1"] = "user_ba_1"
    auth_server.status = 503
    with pytest.raises(AuthUnavailable) as failing:
        authenticator.authenticate(Credentials(bearer=signed("tok1")))
    assert failing.value.retryable

    auth_server.status, auth_server.delay = 200, 2.0
    with pytest.raises(AuthUnavailable):
        authenticator.authenticate(Credentials(bearer=signed("tok1")))

    auth_server.stop()
    with pytest.raises(AuthUnavailable):
        authenticator.authenticate(Credentials(bearer=signed("tok1")))


def test_no_token_at_all_is_unauthenticated(authenticator):
    with pytest.raises(Unauthenticated):
        authenticator.authenticate(Credentials(cookies={"other": "x"}))


def test_both_mode_sends_jwt_shaped_bearers_to_the_jwt_check_and_the_rest_to_sessions(
    auth_server, authenticator
):
    auth_server.sessions["tok1"] = "user_ba_1"
    either = JwtOrSession(jwt=FakeAuthenticator(), session=authenticator)

    assert either.authenticate(Credentials(bearer=signed("tok1"))) == "user_ba_1"
    with pytest.raises(Unauthenticated):
        either.authenticate(Credentials(bearer="eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1In0.c2ln"))
    assert len(auth_server.calls) == 1
