"""The API against a real Better Auth server: JWTs and session tokens as the Expo app sends them."""

from __future__ import annotations

import secrets
from dataclasses import replace

import pytest
from flask.testing import FlaskClient

from adapters.better_auth_session import BetterAuthSessionAuthenticator
from domain.errors import Unauthenticated
from domain.model import Credentials
from entrypoints.settings import Settings
from tests.better_auth_server import (
    SESSION_COOKIE,
    BetterAuthServer,
    Session,
    better_auth_server,
    cookie_value,
)
from tests.inline import inline_client

pytestmark = pytest.mark.e2e

__all__ = ["better_auth_server"]

BODY = {"content_type": "image/jpeg", "content_length": 1000}


def client_for(settings: Settings, server: BetterAuthServer, mode: str) -> FlaskClient:
    configured = replace(
        settings,
        better_auth_url=server.url,
        better_auth_jwks_url=f"{server.url}/api/auth/jwks",
        better_auth_issuer=server.url,
        better_auth_audience=server.url,
        better_auth_secret=server.secret,
        auth_mode=mode,
    )
    return inline_client(configured)


def new_user(server: BetterAuthServer) -> Session:
    return server.sign_up(f"user-{secrets.token_hex(6)}@example.com", "correct horse battery staple")


def test_sign_up_then_a_jwt_from_the_token_endpoint_gets_an_upload_url(settings, better_auth_server):
    session = new_user(better_auth_server)
    client = client_for(settings, better_auth_server, "jwt")

    response = client.post(
        "/v1/uploads", json=BODY, headers={"Authorization": f"Bearer {better_auth_server.jwt(session)}"}
    )

    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["object_key"].startswith(f"uploads/{session.user_id}/")


def test_in_session_mode_the_bearer_token_and_the_cookie_are_accepted_and_a_jwt_is_not(
    settings, better_auth_server
):
    session = new_user(better_auth_server)
    client = client_for(settings, better_auth_server, "session")

    by_bearer = client.post(
        "/v1/uploads", json=BODY, headers={"Authorization": f"Bearer {session.bearer_value}"}
    )
    client.set_cookie(SESSION_COOKIE, session.session_token_cookie_value)
    by_cookie = client.post("/v1/uploads", json=BODY)
    client.delete_cookie(SESSION_COOKIE)
    by_jwt = client.post(
        "/v1/uploads", json=BODY, headers={"Authorization": f"Bearer {better_auth_server.jwt(session)}"}
    )

    assert (by_bearer.status_code, by_cookie.status_code, by_jwt.status_code) == (201, 201, 401)


def test_both_mode_accepts_either_and_refuses_a_forged_cookie_or_the_bare_token(settings, better_auth_server):
    session = new_user(better_auth_server)
    client = client_for(settings, better_auth_server, "both")
    forged = cookie_value(session.token + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")

    jwt_ok = client.post(
        "/v1/uploads", json=BODY, headers={"Authorization": f"Bearer {better_auth_server.jwt(session)}"}
    )
    session_ok = client.post(
        "/v1/uploads", json=BODY, headers={"Authorization": f"Bearer {session.bearer_value}"}
    )
    bare = client.post("/v1/uploads", json=BODY, headers={"Authorization": f"Bearer {session.token}"})
    client.set_cookie(SESSION_COOKIE, forged)
    forged_cookie = client.post("/v1/uploads", json=BODY)

    assert (jwt_ok.status_code, session_ok.status_code) == (201, 201)
    assert (bare.status_code, forged_cookie.status_code) == (401, 401)
    assert forged_cookie.headers["WWW-Authenticate"].startswith("Bearer")


def test_after_sign_out_the_session_is_refused_once_the_cache_time_passes_but_the_jwt_still_works(
    better_auth_server,
):
    session = new_user(better_auth_server)
    token = better_auth_server.jwt(session)
    now = [0.0]
    sessions = BetterAuthSessionAuthenticator(
        base_url=better_auth_server.url,
        secret=better_auth_server.secret,
        cache_seconds=30,
        clock=lambda: now[0],
    )
    cookie = Credentials(cookies={SESSION_COOKIE: session.session_token_cookie_value})
    assert sessions.authenticate(cookie) == session.user_id

    better_auth_server.sign_out(session)
    assert sessions.authenticate(cookie) == session.user_id  # within the 30 s cache
    now[0] += 31
    with pytest.raises(Unauthenticated):
        sessions.authenticate(cookie)
    assert (
        better_auth_server.get_session(token).status_code == 200
    )  # the JWT itself is not revoked by sign-out
