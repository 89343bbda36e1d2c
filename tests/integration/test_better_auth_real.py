"""Our BetterAuthJwtAuthenticator against a real Better Auth server (better-auth 1.7.25 under Node)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import jwt
import pytest

from adapters.better_auth_jwt import BetterAuthJwtAuthenticator
from domain.errors import Unauthenticated
from domain.model import Credentials
from tests.better_auth_server import (
    SESSION_COOKIE,
    BetterAuthServer,
    Session,
    better_auth_server,
    cookie_value,
    running_better_auth,
)

pytestmark = pytest.mark.integration

__all__ = ["better_auth_server"]

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def other_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BetterAuthServer]:
    """A second, independent Better Auth instance: its own secret and its own signing keys."""
    with running_better_auth(tmp_path_factory, "better-auth-other") as server:
        yield server


def authenticator_for(server: BetterAuthServer, *, audience: str | None = None) -> BetterAuthJwtAuthenticator:
    return BetterAuthJwtAuthenticator(
        jwks_url=server.jwks_url,
        issuer=server.url,
        audience=audience or server.url,
        refetch_min_interval_seconds=0.0,
    )


def new_user(server: BetterAuthServer) -> Session:
    return server.sign_up(f"user-{secrets.token_hex(6)}@example.com", PASSWORD)


def test_a_better_auth_jwt_is_accepted_and_names_the_better_auth_user(
    better_auth_server: BetterAuthServer,
) -> None:
    session = new_user(better_auth_server)
    token = better_auth_server.jwt(session)

    assert authenticator_for(better_auth_server).authenticate(Credentials(bearer=token)) == session.user_id
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert header["alg"] == "EdDSA"
    assert header["kid"]
    assert claims["sub"] == session.user_id
    assert claims["iss"] == claims["aud"] == better_auth_server.url
    assert claims["exp"] - claims["iat"] == 15 * 60


def test_the_get_session_jwt_header_is_accepted_too(better_auth_server: BetterAuthServer) -> None:
    session = new_user(better_auth_server)
    token = better_auth_server.get_session(session.bearer_value).headers["set-auth-jwt"]

    assert authenticator_for(better_auth_server).authenticate(Credentials(bearer=token)) == session.user_id


def test_a_jwt_still_verifies_after_sign_out_until_it_expires(better_auth_server: BetterAuthServer) -> None:
    """Better Auth's documented behaviour: sign-out ends the session, not the JWTs already issued (they are
    stateless and live 15 minutes). Revocation-sensitive checks must ask get-session instead."""
    session = new_user(better_auth_server)
    token = better_auth_server.jwt(session)

    better_auth_server.sign_out(session)

    assert better_auth_server.get_session(session.bearer_value).json() is None
    assert authenticator_for(better_auth_server).authenticate(Credentials(bearer=token)) == session.user_id


def test_a_jwt_from_another_better_auth_instance_is_refused(
    better_auth_server: BetterAuthServer, other_server: BetterAuthServer
) -> None:
    foreign = other_server.jwt(new_user(other_server))
    ours = authenticator_for(better_auth_server)
    ours.authenticate(Credentials(bearer=better_auth_server.jwt(new_user(better_auth_server))))  # keys cached

    with pytest.raises(Unauthenticated):
        ours.authenticate(Credentials(bearer=foreign))


def test_a_jwt_checked_against_another_audience_is_refused(better_auth_server: BetterAuthServer) -> None:
    token = better_auth_server.jwt(new_user(better_auth_server))
    authenticator = authenticator_for(better_auth_server, audience="https://api.example.com")

    with pytest.raises(Unauthenticated):
        authenticator.authenticate(Credentials(bearer=token))


def test_a_jwt_checked_against_another_issuer_is_refused(
    better_auth_server: BetterAuthServer, other_server: BetterAuthServer
) -> None:
    token = better_auth_server.jwt(new_user(better_auth_server))
    authenticator = BetterAuthJwtAuthenticator(
        jwks_url=better_auth_server.jwks_url, issuer=other_server.url, audience=better_auth_server.url
    )

    with pytest.raises(Unauthenticated):
        authenticator.authenticate(Credentials(bearer=token))


def test_a_key_rotation_is_picked_up_without_a_new_authenticator(
    better_auth_server: BetterAuthServer,
) -> None:
    session = new_user(better_auth_server)
    authenticator = authenticator_for(better_auth_server)
    before = better_auth_server.jwt(session)
    assert authenticator.authenticate(Credentials(bearer=before)) == session.user_id

    assert better_auth_server.rotate_jwks() >= 1
    after = better_auth_server.jwt(session)

    assert jwt.get_unverified_header(after)["kid"] != jwt.get_unverified_header(before)["kid"]
    assert authenticator.authenticate(Credentials(bearer=after)) == session.user_id
    # The retired key stays published for the grace period, so tokens it signed still verify.
    assert authenticator.authenticate(Credentials(bearer=before)) == session.user_id


def test_session_token_formats_and_get_session_answers(better_auth_server: BetterAuthServer) -> None:
    """What the session-token authenticator has to work with (better-auth 1.7.25 defaults)."""
    session = new_user(better_auth_server)
    token, _, signature = session.bearer_value.partition(".")

    assert token == session.token
    assert len(token) == 32 and token.isalnum()
    assert len(signature) == 44 and signature.endswith("=")  # base64(HMAC-SHA256), standard alphabet
    assert session.session_token_cookie_value == cookie_value(session.bearer_value)
    assert SESSION_COOKIE == "better-auth.session_token"

    valid = better_auth_server.get_session(session.bearer_value)
    assert valid.status_code == 200
    body = valid.json()
    assert set(body) == {"session", "user"}
    assert body["session"]["token"] == token
    assert body["session"]["userId"] == body["user"]["id"] == session.user_id
    assert {"id", "expiresAt", "createdAt", "updatedAt", "ipAddress", "userAgent"} <= set(body["session"])
    assert {"id", "email", "name", "emailVerified", "createdAt", "updatedAt"} <= set(body["user"])
    assert valid.headers["set-auth-jwt"].count(".") == 2

    # The URL-encoded (cookie) form is accepted as a bearer too.
    assert better_auth_server.get_session(session.session_token_cookie_value).json() is not None
    tampered = f"{token}.{'A' * 43}="
    for invalid in (tampered, "not-a-session-token", f"{secrets.token_hex(16)}.{signature}"):
        response = better_auth_server.get_session(invalid)
        assert response.status_code == 200
        assert response.json() is None


def test_the_bearer_plugin_also_accepts_the_bare_unsigned_token(better_auth_server: BetterAuthServer) -> None:
    """With bearer()'s default ``requireSignature: false`` the bare token works as a bearer: the
    signature adds nothing against a leaked ``session.token``."""
    session = new_user(better_auth_server)

    answer = better_auth_server.get_session(session.token).json()

    assert answer is not None
    assert answer["user"]["id"] == session.user_id
