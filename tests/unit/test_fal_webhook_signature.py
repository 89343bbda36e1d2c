"""fal's webhook signature check against vectors signed here with real Ed25519 keys, and the JWKS cache
behind it, fed by a fake HTTP session (no network I/O)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from adapters.fal_webhooks import FalWebhookVerifier, HttpJwksFetcher, JwksCache, parse_jwks
from domain.model import FalDelivery
from domain.webhooks import REJECT_REASONS, WebhookKeysUnavailable, WebhookRejected

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
EPOCH = int(NOW.timestamp())
REQUEST_ID = "024ca5b1-45d3-4afd-883e-ad3abe2a1c4d"
USER_ID = "github|4242"
JWKS_URL = "https://keys.example/.well-known/jwks.json"
DAY = 24 * 60 * 60


class Clock:
    def __init__(self) -> None:
        self.current = NOW

    def now(self) -> datetime:
        return self.current


class Monotonic:
    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


def jwk(key: Ed25519PrivateKey, **extra: str) -> dict[str, str]:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return {"kty": "OKP", "crv": "Ed25519", "x": x, **extra}


def body_of(request_id: str = REQUEST_ID, status: str = "OK", **extra: Any) -> bytes:
    document = {"request_id": request_id, "gateway_request_id": request_id, "status": status, **extra}
    document.setdefault("payload", {"images": [{"url": "https://v3.fal.media/files/x.png"}]})
    document.setdefault("error", None)
    return json.dumps(document).encode()


def signed(
    key: Ed25519PrivateKey, body: bytes, *, timestamp: int = EPOCH, request_id: str = REQUEST_ID
) -> dict[str, str]:
    """fal's headers, built independently of the code under test, as its docs describe them."""
    digest = hashlib.sha256(body).hexdigest()
    message = f"{request_id}\n{USER_ID}\n{timestamp}\n{digest}".encode()
    return {
        "X-Fal-Webhook-Request-Id": request_id,
        "X-Fal-Webhook-User-Id": USER_ID,
        "X-Fal-Webhook-Timestamp": str(timestamp),
        "X-Fal-Webhook-Signature": key.sign(message).hex(),
    }


@dataclass
class FakeResponse:
    status_code: int = 200
    content: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    closed: bool = False

    def iter_content(self, chunk_size: int) -> Iterator[bytes]:
        for start in range(0, len(self.content), chunk_size):
            yield self.content[start : start + chunk_size]

    def close(self) -> None:
        self.closed = True


class FakeSession:
    """Answers GETs from a script: a JWKS document, a status, or an exception to raise."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls: list[dict[str, Any]] = []
        self.responses: list[FakeResponse] = []

    def get(self, url: str, **kwargs: Any) -> FakeResponse:
        self.calls.append({"url": url, **kwargs})
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, FakeResponse):
            response = answer
        else:
            response = FakeResponse(200, json.dumps(answer).encode())
        self.responses.append(response)
        return response


def jwks(*keys: Ed25519PrivateKey) -> dict[str, Any]:
    return {"keys": [jwk(key) for key in keys]}


@pytest.fixture
def fal_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@dataclass
class Rig:
    session: FakeSession
    cache: JwksCache
    verifier: FalWebhookVerifier
    clock: Clock
    monotonic: Monotonic


def rig(*answers: Any, min_refetch: float = 60.0) -> Rig:
    session = FakeSession(*answers)
    monotonic = Monotonic()
    cache = JwksCache(
        HttpJwksFetcher(JWKS_URL, session=session), clock=monotonic, min_refetch_seconds=min_refetch
    )
    clock = Clock()
    return Rig(session, cache, FalWebhookVerifier(cache, clock), clock, monotonic)


def reason(verifier: FalWebhookVerifier, headers: dict[str, str], body: bytes) -> str:
    with pytest.raises(WebhookRejected) as caught:
        verifier.verify(headers, body)
    assert caught.value.reason in REJECT_REASONS
    assert caught.value.code == "webhook_rejected"
    return caught.value.reason


# --- the signature check ---------------------------------------------------------------------------


def test_a_delivery_signed_by_a_key_of_the_jwks_is_accepted_and_parsed(fal_key):
    other = Ed25519PrivateKey.generate()
    setup = rig(jwks(other, fal_key))  # any key of the set may have signed it
    body = body_of()

    headers = signed(fal_key, body)
    delivery = setup.verifier.verify(headers, body)

    assert delivery == FalDelivery(
        request_id=REQUEST_ID,
        gateway_request_id=REQUEST_ID,
        status="OK",
        error=None,
        payload_error=None,
        payload={"images": [{"url": "https://v3.fal.media/files/x.png"}]},
        signed_at=EPOCH,
        signature=headers["X-Fal-Webhook-Signature"],
    )
    assert setup.session.calls == [
        {"url": JWKS_URL, "timeout": 5.0, "stream": True, "allow_redirects": False}
    ]
    assert setup.session.responses[0].closed


def test_an_error_delivery_and_lower_case_header_names_are_accepted(fal_key):
    setup = rig(jwks(fal_key))
    body = body_of(status="ERROR", error="Invalid status code: 422", payload={"detail": []})
    headers = {name.lower(): value for name, value in signed(fal_key, body).items()}

    delivery = setup.verifier.verify(headers, body)

    assert (delivery.status, delivery.error, delivery.payload) == (
        "ERROR",
        "Invalid status code: 422",
        {"detail": []},
    )


def test_a_payload_error_delivery_keeps_its_payload_error(fal_key):
    setup = rig(jwks(fal_key))
    body = body_of(payload=None, payload_error="Response payload is not JSON serializable.")

    delivery = setup.verifier.verify(signed(fal_key, body), body)

    assert (delivery.payload, delivery.payload_error) == (None, "Response payload is not JSON serializable.")


@pytest.mark.parametrize("offset", [0, 1, 1000, len(body_of()) - 1])
def test_a_flipped_body_byte_is_a_bad_signature(fal_key, offset):
    setup = rig(jwks(fal_key), min_refetch=0)
    body = body_of()
    headers = signed(fal_key, body)
    offset = min(offset, len(body) - 1)
    tampered = body[:offset] + bytes([body[offset] ^ 0x01]) + body[offset + 1 :]

    assert reason(setup.verifier, headers, tampered) == "bad_signature"


def test_each_signed_header_is_bound_to_the_signature(fal_key):
    setup = rig(jwks(fal_key), min_refetch=0)
    body = body_of()
    genuine = signed(fal_key, body)

    other_user = {**genuine, "X-Fal-Webhook-User-Id": "github|1"}
    other_time = {**genuine, "X-Fal-Webhook-Timestamp": str(EPOCH + 1)}
    reordered = {**genuine, "X-Fal-Webhook-Timestamp": f"0{EPOCH}"}  # same number, other bytes

    assert [reason(setup.verifier, h, body) for h in (other_user, other_time, reordered)] == [
        "bad_signature"
    ] * 3


def test_a_signature_by_a_key_outside_the_jwks_is_refused_after_one_refetch(fal_key):
    setup = rig(jwks(fal_key), min_refetch=0)
    body = body_of()

    assert reason(setup.verifier, signed(Ed25519PrivateKey.generate(), body), body) == "bad_signature"
    assert len(setup.session.calls) == 2  # the first fetch, then one refetch for the unknown key


def test_a_wrong_key_within_the_refetch_interval_is_an_unknown_key_and_fetches_nothing(fal_key):
    setup = rig(jwks(fal_key))
    body = body_of()
    setup.verifier.verify(signed(fal_key, body), body)  # keys fetched just now

    assert reason(setup.verifier, signed(Ed25519PrivateKey.generate(), body), body) == "unknown_key"
    assert len(setup.session.calls) == 1


@pytest.mark.parametrize(
    ("skew", "expected"), [(-301, "stale"), (-3600, "stale"), (301, "future"), (86400, "future")]
)
def test_a_timestamp_more_than_300_s_from_now_is_refused_before_any_key_is_fetched(fal_key, skew, expected):
    setup = rig(jwks(fal_key))
    body = body_of()

    assert reason(setup.verifier, signed(fal_key, body, timestamp=EPOCH + skew), body) == expected
    assert setup.session.calls == []


@pytest.mark.parametrize("skew", [-300, 300])
def test_a_timestamp_exactly_300_s_away_is_still_accepted(fal_key, skew):
    setup = rig(jwks(fal_key))
    body = body_of()

    assert (
        setup.verifier.verify(signed(fal_key, body, timestamp=EPOCH + skew), body).signed_at == EPOCH + skew
    )


@pytest.mark.parametrize(
    "header",
    [
        "X-Fal-Webhook-Request-Id",
        "X-Fal-Webhook-User-Id",
        "X-Fal-Webhook-Timestamp",
        "X-Fal-Webhook-Signature",
    ],
)
def test_each_missing_or_empty_header_is_refused(fal_key, header):
    setup = rig(jwks(fal_key))
    body = body_of()
    headers = signed(fal_key, body)
    missing = {name: value for name, value in headers.items() if name != header}
    empty = {**headers, header: ""}

    assert reason(setup.verifier, missing, body) == "missing_header"
    assert reason(setup.verifier, empty, body) == "missing_header"
    assert setup.session.calls == []


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Fal-Webhook-Signature", "zz" * 64),  # not hex
        ("X-Fal-Webhook-Signature", "ab" * 63),  # hex, but not 64 bytes
        ("X-Fal-Webhook-Signature", "0x" + "ab" * 63),
        ("X-Fal-Webhook-Timestamp", f"{EPOCH}.5"),
        ("X-Fal-Webhook-Timestamp", "-1"),
        ("X-Fal-Webhook-Timestamp", "١٢٣"),  # Unicode digits are not epoch seconds
        ("X-Fal-Webhook-Request-Id", "r" * 257),
    ],
)
def test_malformed_headers_are_refused_before_any_key_is_fetched(fal_key, header, value):
    setup = rig(jwks(fal_key))
    body = body_of()

    assert reason(setup.verifier, {**signed(fal_key, body), header: value}, body) == "malformed_header"
    assert setup.session.calls == []


def test_an_uppercase_hex_signature_is_accepted(fal_key):
    setup = rig(jwks(fal_key))
    body = body_of()
    headers = signed(fal_key, body)
    headers["X-Fal-Webhook-Signature"] = headers["X-Fal-Webhook-Signature"].upper()

    assert setup.verifier.verify(headers, body).request_id == REQUEST_ID


def test_a_body_over_the_cap_is_refused_unread_and_the_cap_is_assertable(fal_key):
    setup = rig(jwks(fal_key))
    verifier = FalWebhookVerifier(setup.cache, setup.clock, max_body_bytes=100)
    body = body_of(payload={"padding": "x" * 200})

    assert verifier.max_body_bytes == 100
    assert reason(verifier, signed(fal_key, body), body) == "body_too_large"
    with pytest.raises(WebhookRejected) as caught:
        verifier.check_length(101)
    assert caught.value.reason == "body_too_large"
    verifier.check_length(100)
    verifier.check_length(None)
    assert setup.session.calls == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        body_of(request_id="another-request"),  # signed, but about another request than the header
        body_of(status="COMPLETED"),
        body_of(error={"nested": True}),
        json.dumps({"status": "OK"}).encode(),
    ],
)
def test_a_genuinely_signed_body_of_the_wrong_shape_is_malformed(fal_key, body):
    setup = rig(jwks(fal_key))

    assert reason(setup.verifier, signed(fal_key, body), body) == "malformed_body"


def test_the_clock_is_injected_and_a_replay_goes_stale_with_it(fal_key):
    setup = rig(jwks(fal_key))
    body = body_of()
    headers = signed(fal_key, body)
    setup.verifier.verify(headers, body)

    setup.clock.current = NOW.replace(minute=6)  # 6 minutes on: the same delivery is a replay

    assert reason(setup.verifier, headers, body) == "stale"


# --- the JWKS cache --------------------------------------------------------------------------------


def test_keys_are_fetched_once_and_served_from_the_cache_within_24_hours(fal_key):
    setup = rig(jwks(fal_key))
    body = body_of()

    setup.verifier.verify(signed(fal_key, body), body)
    setup.monotonic.value += DAY - 1
    setup.clock.current = NOW  # deliveries keep arriving fresh
    setup.verifier.verify(signed(fal_key, body), body)

    assert len(setup.session.calls) == 1
    assert setup.cache.fetches == 1


def test_keys_expire_after_24_hours_and_are_fetched_again(fal_key):
    rotated = Ed25519PrivateKey.generate()
    setup = rig(jwks(fal_key), jwks(rotated))
    body = body_of()
    setup.verifier.verify(signed(fal_key, body), body)

    setup.monotonic.value += DAY

    assert setup.verifier.verify(signed(rotated, body), body).request_id == REQUEST_ID
    assert len(setup.session.calls) == 2


def test_a_rotated_key_is_found_by_a_refetch_and_refetches_are_rate_limited(fal_key):
    rotated = Ed25519PrivateKey.generate()
    setup = rig(jwks(fal_key), jwks(fal_key, rotated))
    body = body_of()
    setup.verifier.verify(signed(fal_key, body), body)

    setup.monotonic.value += 30  # too soon after the first fetch: no refetch, yet
    too_soon = reason(setup.verifier, signed(rotated, body), body)
    setup.monotonic.value += 30
    accepted = setup.verifier.verify(signed(rotated, body), body)
    forged = [reason(setup.verifier, signed(Ed25519PrivateKey.generate(), body), body) for _ in range(5)]

    assert too_soon == "unknown_key"
    assert accepted.request_id == REQUEST_ID
    assert forged == ["unknown_key"] * 5  # a burst of forgeries costs no fetch at all
    assert len(setup.session.calls) == 2


@pytest.mark.parametrize(
    "failure",
    [
        requests.ConnectionError("keys.example unreachable"),
        requests.Timeout("read timed out"),
        FakeResponse(503, b"busy"),
        FakeResponse(302, b"", {"Location": "http://elsewhere"}),
        FakeResponse(200, b"<html>"),
        FakeResponse(200, b'{"keys": "no"}'),
        FakeResponse(200, b'{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}'),
        FakeResponse(200, b" " * (64 * 1024 + 1)),
    ],
)
def test_a_failed_fetch_without_cached_keys_is_keys_unavailable_and_retried_at_a_bounded_rate(
    fal_key, failure
):
    setup = rig(failure, jwks(fal_key))
    body = body_of()

    with pytest.raises(WebhookKeysUnavailable) as first:
        setup.verifier.verify(signed(fal_key, body), body)
    with pytest.raises(WebhookKeysUnavailable):
        setup.verifier.verify(signed(fal_key, body), body)  # within 60 s: not fetched again
    calls_before = len(setup.session.calls)
    setup.monotonic.value += 60
    recovered = setup.verifier.verify(signed(fal_key, body), body)

    assert first.value.retryable
    assert first.value.code == "webhook_keys_unavailable"
    assert "busy" not in str(first.value) and "elsewhere" not in str(first.value)
    assert calls_before == 1
    assert recovered.request_id == REQUEST_ID
    assert len(setup.session.calls) == 2


def test_a_failed_refetch_keeps_the_cached_keys_until_they_expire(fal_key):
    setup = rig(jwks(fal_key), requests.ConnectionError("down"))
    body = body_of()
    setup.verifier.verify(signed(fal_key, body), body)

    setup.monotonic.value += 120
    unknown = reason(setup.verifier, signed(Ed25519PrivateKey.generate(), body), body)
    still_good = setup.verifier.verify(signed(fal_key, body), body)
    setup.monotonic.value += DAY

    assert unknown == "unknown_key"  # the refetch failed: the key may simply be new to us
    assert still_good.request_id == REQUEST_ID
    with pytest.raises(WebhookKeysUnavailable):  # never trust keys older than 24 h, even in an outage
        setup.verifier.verify(signed(fal_key, body), body)
    assert len(setup.session.calls) == 3


def test_the_cache_refuses_to_keep_keys_longer_than_24_hours():
    with pytest.raises(ValueError, match="24 hours"):
        JwksCache(lambda: (), max_age_seconds=DAY + 1)


def test_parse_jwks_keeps_ed25519_signing_keys_only_and_tolerates_padding(fal_key):
    good = jwk(fal_key)
    padded = {**good, "x": good["x"] + "="}
    document = {
        "keys": [
            good,
            padded,
            {"x": good["x"]},  # fal documents only "x"
            {**good, "use": "enc"},
            {**good, "crv": "X25519"},
            {**good, "x": good["x"][:-2]},  # 31 bytes
            {**good, "x": "!!" + good["x"][2:]},
            {**good, "x": 42},
            "not a key",
        ]
    }

    keys = parse_jwks(document)

    raw = fal_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert [key.public_bytes(Encoding.Raw, PublicFormat.Raw) for key in keys] == [raw] * 3
