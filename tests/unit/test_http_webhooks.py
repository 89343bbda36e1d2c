"""POST /v1/webhooks/fal through the HTTP layer: the real Ed25519 check with a key of our own, every other
port faked. No user token; one identical answer for every rejection; nothing downloaded in the request."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.fal_webhooks import FalWebhookVerifier, JwksCache
from adapters.prometheus_metrics import FAL_WEBHOOKS
from domain.model import Submission, TryOnStatus
from entrypoints.bootstrap import WEBHOOK_MAX_BODY_BYTES
from tests.builders.app import assert_problem, build_app
from tests.builders.records import a_tryon
from tests.fakes import FakeImageGenerator, FakeReplayGuard, FakeStore, FakeTryOnQueue, FixedClock

PATH = "/v1/webhooks/fal"
REQUEST_ID = "0f3c1f7e-8b0a-4f7e-9b1e-2f1d3c4b5a69"


class Rig:
    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.clock = FixedClock()
        self.store = FakeStore()
        self.queue = FakeTryOnQueue()
        self.replays = FakeReplayGuard()
        self.generator = FakeImageGenerator()
        public = self.key.public_key()
        verifier = FalWebhookVerifier(
            JwksCache(lambda: (public,)), self.clock, max_body_bytes=WEBHOOK_MAX_BODY_BYTES
        )
        self.client = build_app(
            self.store,
            generator=self.generator,
            queue=self.queue,
            clock=self.clock,
            webhook_verifier=verifier,
            replays=self.replays,
        ).test_client()
        base = f"https://queue.fal.run/fal-ai/nano-banana/requests/{REQUEST_ID}"
        now = self.clock.now()
        self.tryon = a_tryon(
            "t1",
            now=now,
            status=TryOnStatus.RUNNING,
            attempts=1,
            submission=Submission(REQUEST_ID, f"{base}/status", base, f"{base}/cancel"),
            submitted_at=now,
            next_action_at=now + timedelta(seconds=30),
        )
        self.store.tryons["t1"] = self.tryon
        self.store.fal_requests[REQUEST_ID] = "t1"

    def body(self, request_id: str = REQUEST_ID) -> bytes:
        payload = {"images": [{"url": "https://v3.fal.media/files/out.jpg"}]}
        document = {"request_id": request_id, "gateway_request_id": request_id, "status": "OK"}
        return json.dumps({**document, "payload": payload}).encode()

    def headers(
        self,
        body: bytes,
        *,
        key: Ed25519PrivateKey | None = None,
        request_id: str = REQUEST_ID,
        skew: int = 0,
    ) -> dict[str, str]:
        timestamp = str(int(self.clock.now().timestamp()) + skew)
        message = f"{request_id}\nfal-user\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()
        return {
            "Content-Type": "application/json",
            "X-Fal-Webhook-Request-Id": request_id,
            "X-Fal-Webhook-User-Id": "fal-user",
            "X-Fal-Webhook-Timestamp": timestamp,
            "X-Fal-Webhook-Signature": (key or self.key).sign(message).hex(),
        }

    def post(self, body: bytes, headers: dict[str, str]):
        return self.client.post(PATH, data=body, headers=headers)


@pytest.fixture
def rig() -> Rig:
    return Rig()


def counted(outcome: str, reason: str) -> float:
    value = FAL_WEBHOOKS.labels(outcome=outcome, reason=reason)._value.get()
    return float(value)


def test_a_valid_delivery_needs_no_user_token_and_queues_the_result_fetch(rig):
    body = rig.body()
    before = counted("queued", "")

    answer = rig.post(body, rig.headers(body))

    assert answer.status_code == 202, answer.get_data(as_text=True)
    assert answer.get_json() == {"outcome": "queued"}
    assert rig.queue.advances == [("t1", 0)]
    assert rig.store.tryons["t1"].notified_request_id == REQUEST_ID
    assert rig.generator.submitted == []  # nothing asked of fal, nothing downloaded, in the web request
    assert counted("queued", "") == before + 1


def test_fals_retry_of_a_delivery_is_answered_alike_and_queues_nothing_more(rig):
    body = rig.body()
    assert rig.post(body, rig.headers(body)).status_code == 202
    rig.clock.advance(1)  # a retry is signed again

    again = rig.post(body, rig.headers(body))

    assert again.status_code == 202
    assert rig.queue.advances == [("t1", 0)]


def test_a_delivery_for_a_settled_tryon_is_200_so_that_fal_stops(rig):
    rig.store.tryons["t1"] = replace(rig.tryon, status=TryOnStatus.SUCCEEDED)
    body = rig.body()

    answer = rig.post(body, rig.headers(body))

    assert answer.status_code == 200
    assert answer.get_json() == {"outcome": "settled"}
    assert rig.queue.advances == []


def rejections(rig: Rig) -> dict[str, tuple[bytes, dict[str, str]]]:
    body = rig.body()
    signed = rig.headers(body)
    unknown = rig.body("9a1b2c3d-0000-4000-8000-000000000000")
    tampered = body.replace(b"out.jpg", b"evil.jpg")
    return {
        "tampered": (tampered, signed),
        "other_key": (body, rig.headers(body, key=Ed25519PrivateKey.generate())),
        "stale": (body, rig.headers(body, skew=-301)),
        "future": (body, rig.headers(body, skew=301)),
        "missing_header": (body, {k: v for k, v in signed.items() if not k.endswith("Signature")}),
        "unknown_request": (unknown, rig.headers(unknown, request_id="9a1b2c3d-0000-4000-8000-000000000000")),
    }


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("tampered", "unknown_key"),  # no key verifies; the key set was fetched moments ago: not again
        ("other_key", "unknown_key"),
        ("stale", "stale"),
        ("future", "future"),
        ("missing_header", "missing_header"),
        ("unknown_request", "unknown_request"),
    ],
)
def test_forged_stale_unknown_deliveries_get_one_identical_answer_and_change_nothing(rig, case, reason):
    body, headers = rejections(rig)[case]
    before = counted("rejected", reason)

    answer = rig.post(body, headers)

    problem = assert_problem(answer, 401, "webhook_rejected")
    assert problem == {
        "type": "https://docs.hairfluencer.app/problems/webhook_rejected",
        "title": "Unauthorized",
        "status": 401,
        "detail": "The delivery was not accepted.",
        "code": "webhook_rejected",
        "retryable": False,
    }
    assert "WWW-Authenticate" not in answer.headers
    assert rig.store.tryons["t1"] == rig.tryon
    assert rig.queue.advances == []
    assert counted("rejected", reason) == before + 1


def test_a_replayed_delivery_gets_the_same_answer_as_a_forged_one(rig):
    body = rig.body()
    headers = rig.headers(body)
    assert rig.post(body, headers).status_code == 202
    forged = rig.post(*rejections(rig)["tampered"])

    replayed = rig.post(body, headers)

    assert replayed.status_code == 401
    assert replayed.get_data() == forged.get_data()
    assert rig.queue.advances == [("t1", 0)]


def test_a_body_over_the_cap_is_413_before_it_is_read(rig):
    body = b'{"pad": "' + b"x" * WEBHOOK_MAX_BODY_BYTES + b'"}'
    before = counted("rejected", "body_too_large")

    answer = rig.post(body, rig.headers(body))

    assert_problem(answer, 413, "payload_too_large")
    assert rig.queue.advances == []
    assert counted("rejected", "body_too_large") == before + 1


def test_fals_keys_out_of_reach_is_503_so_that_fal_retries(rig):
    def unreachable():
        from domain.webhooks import WebhookKeysUnavailable  # noqa: PLC0415

        raise WebhookKeysUnavailable("fal webhook keys unavailable: ConnectTimeout")

    rig.client.application.extensions["tryon"].fal_webhooks.verifier._keys = JwksCache(unreachable)
    body = rig.body()

    answer = rig.post(body, rig.headers(body))

    problem = assert_problem(answer, 503, "webhook_keys_unavailable")
    assert problem["retryable"] is True
    assert rig.queue.advances == []


def test_the_openapi_document_describes_the_webhook_without_a_user_token(rig):
    spec = rig.client.get("/openapi.json").get_json()

    operation = spec["paths"][PATH]["post"]

    assert operation["security"] == []
    assert {"200", "202", "401", "413", "503"} <= operation["responses"].keys()
    headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    assert "X-Fal-Webhook-Signature" in headers
