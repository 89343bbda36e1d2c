"""BetterAuthJwtAuthenticator against real Ed25519 keys and a real JWKS served over HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from adapters.better_auth_jwt import BetterAuthJwtAuthenticator
from devtools.dev_issuer import DevJwtIssuer, public_jwk
from domain.errors import AuthUnavailable, Unauthenticated
from domain.model import Credentials
from tests.builders.loopback import Loopback, QuietHandler

pytestmark = pytest.mark.integration

INTERVAL = 5.0
TTL = 600.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def issuer() -> Iterator[DevJwtIssuer]:
    with DevJwtIssuer() as running:
        yield running


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def authenticator_for(issuer: DevJwtIssuer, clock: FakeClock, **overrides: Any) -> BetterAuthJwtAuthenticator:
    settings: dict[str, Any] = {
        "jwks_url": issuer.jwks_url,
        "issuer": issuer.base_url,
        "audience": issuer.base_url,
        "refetch_min_interval_seconds": INTERVAL,
        "cache_ttl_seconds": TTL,
        "clock": clock,
    }
    return BetterAuthJwtAuthenticator(**(settings | overrides))


@pytest.fixture
def auth(issuer: DevJwtIssuer, clock: FakeClock) -> BetterAuthJwtAuthenticator:
    return authenticator_for(issuer, clock)


def bearer(token: str | None) -> Credentials:
    return Credentials(bearer=token)


def assert_refused(auth: BetterAuthJwtAuthenticator, token: str | None) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as caught:
        auth.authenticate(bearer(token))
    if token:
        assert token not in str(caught.value)
    return caught.value


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def claims_for(issuer: DevJwtIssuer, sub: str = "user1") -> dict[str, Any]:
    now = int(time.time())
    return {"iat": now, "exp": now + 900, "iss": issuer.base_url, "aud": issuer.base_url, "sub": sub}


def hs256_token(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


# -- accepted ------------------------------------------------------------------------------------------


def test_a_valid_token_yields_its_subject(issuer: DevJwtIssuer, auth: BetterAuthJwtAuthenticator) -> None:
    assert auth.authenticate(bearer(issuer.mint("user_42-A"))) == "user_42-A"


def test_a_token_expired_within_the_leeway_is_still_accepted(
    issuer: DevJwtIssuer, auth: BetterAuthJwtAuthenticator
) -> None:
    now = int(time.time())
    assert auth.authenticate(bearer(issuer.mint("user1", iat=now - 900, exp=now - 10))) == "user1"


# -- refused: claims -----------------------------------------------------------------------------------


def test_an_expired_token_is_refused(issuer: DevJwtIssuer, auth: BetterAuthJwtAuthenticator) -> None:
    now = int(time.time())
    error = assert_refused(auth, issuer.mint("user1", iat=now - 1000, exp=now - 60))
    assert "ExpiredSignature" in error.detail


def test_a_token_from_another_issuer_is_refused(
    issuer: DevJwtIssuer, auth: BetterAuthJwtAuthenticator
) -> None:
    assert "InvalidIssuer" in assert_refused(auth, issuer.mint("user1", iss="https://evil.example")).detail


def test_a_token_for_another_audience_is_refused(
    issuer: DevJwtIssuer, auth: BetterAuthJwtAuthenticator
) -> None:
    assert "InvalidAudience" in assert_refused(auth, issuer.mint("user1", aud="https://other.example")).detail


@pytest.mark.parametrize("claim", ["exp", "iat", "iss", "aud", "sub"])
def test_a_token_missing_a_required_claim_is_refused(
    issuer: DevJwtIssuer, auth: BetterAuthJwtAuthenticator, claim: str
) -> None:
    removed: dict[str, Any] = {claim: None}
    assert_refused(auth, issuer.mint("user1", **removed))


@pytest.mark.parametrize("subject", ["a/b", "..", "../other", "user.1", "", 123])
def test_a_subject_that_is_not_a_safe_user_id_is_refused(
    issuer: DevJwtIssuer, auth: BetterAuthJwtAuthenticator, subject: object
) -> None:
    assert_refused(auth, issuer.mint("user1", sub=subject))


# -- refused: shape, keys and algorithms ---------------------------------------------------------------


@pytest.mark.parametrize("token", [None, ""])
def test_a_request_without_a_bearer_token_is_refused(
    auth: BetterAuthJwtAuthenticator, token: str | None
) -> None:
    assert_refused(auth, token)


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "Bearer x.y.z"])
def test_a_malformed_token_is_refused_without_asking_the_auth_server(
    issuer: DevJwtIssuer, auth: BetterAuthJwtAuthenticator, token: str
) -> None:
    assert_refused(auth, token)
    assert issuer.jwks_requests == 0


def test_a_token_signed_by_an_unpublished_key_is_refused(
    issuer: DevJwtIssuer, auth: BetterAuthJwtAuthenticator
) -> None:
    stranger = Ed25519PrivateKey.generate()
    token = jwt.encode(claims_for(issuer), stranger, algorithm="EdDSA", headers={"kid": "not-published"})
    assert "unknown key" in assert_refused(auth, token).detail


def test_a_token_signed_by_another_key_under_a_published_kid_is_refused(
    issuer: DevJwtIssuer, auth: BetterAuthJwtAuthenticator
) -> None:
    stranger = Ed25519PrivateKey.generate()
    token = jwt.encode(claims_for(issuer), stranger, algorithm="EdDSA", headers={"kid": issuer.kid})
    assert "InvalidSignature" in assert_refused(auth, token).detail


def test_an_unsigned_alg_none_token_is_refused_without_asking_the_auth_server(
    issuer: DevJwtIssuer, auth: BetterAuthJwtAuthenticator
) -> None:
    header = b64url(json.dumps({"alg": "none", "kid": issuer.kid}).encode())
    payload = b64url(json.dumps(claims_for(issuer)).encode())
    assert_refused(auth, f"{header}.{payload}.")
    assert issuer.jwks_requests == 0


@pytest.mark.parametrize("secret_form", ["pem", "raw", "jwk"])
def test_an_hs256_token_keyed_with_the_public_key_is_refused(
    issuer: DevJwtIssuer, auth: BetterAuthJwtAuthenticator, secret_form: str
) -> None:
    auth.authenticate(bearer(issuer.mint("user1")))  # the key is cached, so the forgery meets it
    public = issuer.private_key.public_key()
    secret = {
        "pem": public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
        "raw": public.public_bytes(Encoding.Raw, PublicFormat.Raw),
        "jwk": json.dumps(public_jwk(issuer.private_key, issuer.kid)).encode(),
    }[secret_form]
    token = hs256_token({"alg": "HS256", "kid": issuer.kid}, claims_for(issuer, "admin"), secret)
    assert "algorithm is not accepted" in assert_refused(auth, token).detail


def test_a_token_whose_algorithm_differs_from_its_keys_is_refused(
    issuer: DevJwtIssuer, auth: BetterAuthJwtAuthenticator
) -> None:
    ec_key = generate_private_key(SECP256R1())
    token = jwt.encode(claims_for(issuer), ec_key, algorithm="ES256", headers={"kid": issuer.kid})
    assert "does not match its signing key" in assert_refused(auth, token).detail


def test_a_token_with_a_tampered_payload_is_refused(
    issuer: DevJwtIssuer, auth: BetterAuthJwtAuthenticator
) -> None:
    header, _, signature = issuer.mint("user1").split(".")
    forged_payload = b64url(json.dumps(claims_for(issuer, "victim")).encode())
    assert "InvalidSignature" in assert_refused(auth, f"{header}.{forged_payload}.{signature}").detail


# -- key rotation and refetch throttling ---------------------------------------------------------------


def test_a_rotated_key_is_accepted_by_the_same_authenticator(
    issuer: DevJwtIssuer, auth: BetterAuthJwtAuthenticator, clock: FakeClock
) -> None:
    old_token = issuer.mint("user1")
    assert auth.authenticate(bearer(old_token)) == "user1"
    new_kid = issuer.rotate()
    clock.advance(INTERVAL)
    new_token = issuer.mint("user2")
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid
    assert auth.authenticate(bearer(new_token)) == "user2"
    assert auth.authenticate(bearer(old_token)) == "user1"
    assert issuer.jwks_requests == 2


def test_unknown_kids_cause_at_most_one_refetch_per_interval(
    issuer: DevJwtIssuer, auth: BetterAuthJwtAuthenticator, clock: FakeClock
) -> None:
    stranger = Ed25519PrivateKey.generate()

    def flood() -> None:
        for _ in range(25):
            kid = uuid.uuid4().hex
            assert_refused(
                auth, jwt.encode(claims_for(issuer), stranger, algorithm="EdDSA", headers={"kid": kid})
            )

    auth.authenticate(bearer(issuer.mint("user1")))
    assert issuer.jwks_requests == 1
    flood()
    assert issuer.jwks_requests == 1, "a refetch within the interval of the last fetch"
    clock.advance(INTERVAL)
    flood()
    assert issuer.jwks_requests == 2
    clock.advance(INTERVAL - 0.1)
    flood()
    assert issuer.jwks_requests == 2
    clock.advance(0.1)
    flood()
    assert issuer.jwks_requests == 3


def test_the_key_set_is_refreshed_once_the_cache_expires(
    issuer: DevJwtIssuer, auth: BetterAuthJwtAuthenticator, clock: FakeClock
) -> None:
    token = issuer.mint("user1")
    auth.authenticate(bearer(token))
    clock.advance(TTL - 1)
    auth.authenticate(bearer(token))
    assert issuer.jwks_requests == 1
    clock.advance(1)
    auth.authenticate(bearer(token))
    assert issuer.jwks_requests == 2


# -- the auth server is unavailable --------------------------------------------------------------------


def test_a_stopped_jwks_server_with_nothing_cached_is_auth_unavailable(
    issuer: DevJwtIssuer, auth: BetterAuthJwtAuthenticator, clock: FakeClock
) -> None:
    token = issuer.mint("user1")
    issuer.stop()
    with pytest.raises(AuthUnavailable) as caught:
        auth.authenticate(bearer(token))
    assert caught.value.retryable
    with pytest.raises(AuthUnavailable):  # throttled: no second attempt, still unavailable
        auth.authenticate(bearer(token))
    clock.advance(INTERVAL)
    with pytest.raises(AuthUnavailable):
        auth.authenticate(bearer(token))


def test_a_stopped_jwks_server_does_not_stop_cached_keys_from_working(
    issuer: DevJwtIssuer, auth: BetterAuthJwtAuthenticator, clock: FakeClock
) -> None:
    token = issuer.mint("user1")
    auth.authenticate(bearer(token))
    issuer.stop()
    assert auth.authenticate(bearer(token)) == "user1"
    clock.advance(TTL + INTERVAL)  # the cache is stale and the refresh fails: the stale key still serves
    assert auth.authenticate(bearer(token)) == "user1"


def test_an_unknown_kid_while_the_jwks_server_is_down_is_auth_unavailable(
    issuer: DevJwtIssuer, auth: BetterAuthJwtAuthenticator, clock: FakeClock
) -> None:
    auth.authenticate(bearer(issuer.mint("user1")))
    issuer.rotate()
    token = issuer.mint("user1")
    issuer.stop()
    clock.advance(INTERVAL)
    with pytest.raises(AuthUnavailable):
        auth.authenticate(bearer(token))


def test_a_jwks_endpoint_answering_404_is_auth_unavailable(issuer: DevJwtIssuer, clock: FakeClock) -> None:
    auth = authenticator_for(issuer, clock, jwks_url=issuer.base_url + "/api/auth/nope")
    with pytest.raises(AuthUnavailable):
        auth.authenticate(bearer(issuer.mint("user1")))


class CannedServer:
    """An HTTP server answering every GET with ``status`` and ``body``."""

    def __init__(self) -> None:
        self.status, self.body = 200, b""
        canned = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                self.send_response(canned.status)
                self.send_header("Content-Length", str(len(canned.body)))
                self.end_headers()
                self.wfile.write(canned.body)

        self.server = Loopback(Handler, "canned JWKS")
        self.url = self.server.url("/api/auth/jwks")

    def stop(self) -> None:
        self.server.close()


@pytest.fixture
def canned_server() -> Iterator[CannedServer]:
    server = CannedServer()
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, b"not json"),
        (200, b"[]"),
        (200, b'{"keys": []}'),
        (200, b'{"keys": "nope"}'),
        (200, b'{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "k1"}]}'),
        (500, b"{}"),
        (302, b""),
    ],
)
def test_a_jwks_endpoint_answering_garbage_is_auth_unavailable(
    issuer: DevJwtIssuer, clock: FakeClock, canned_server: CannedServer, status: int, body: bytes
) -> None:
    canned_server.status, canned_server.body = status, body
    auth = authenticator_for(issuer, clock, jwks_url=canned_server.url)
    with pytest.raises(AuthUnavailable):
        auth.authenticate(bearer(issuer.mint("user1")))


def test_a_jwks_endpoint_that_never_answers_times_out_as_auth_unavailable(
    issuer: DevJwtIssuer, clock: FakeClock
) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/api/auth/jwks"
        auth = authenticator_for(issuer, clock, jwks_url=url, timeout_seconds=0.2)
        started = time.monotonic()
        with pytest.raises(AuthUnavailable):
            auth.authenticate(bearer(issuer.mint("user1")))
        assert time.monotonic() - started < 2


def test_concurrent_first_requests_share_a_single_jwks_fetch(
    issuer: DevJwtIssuer, auth: BetterAuthJwtAuthenticator
) -> None:
    token = issuer.mint("user1")
    start = threading.Barrier(16)
    results: list[str] = []

    def call() -> None:
        start.wait()
        results.append(auth.authenticate(bearer(token)))

    threads = [threading.Thread(target=call) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["user1"] * 16
    assert issuer.jwks_requests == 1
