"""The simulator's signed webhooks, received over real sockets by a tiny HTTP receiver that checks every
delivery with the service's own verifier against the simulator's published JWKS."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import fal_client
import fal_client.client
import pytest
import requests

from adapters.fal_webhooks import FalWebhookVerifier, HttpJwksFetcher, JwksCache
from devtools.fal_simulator import FalSimulator
from devtools.fal_simulator.webhooks import WEBHOOK_FAULTS, WebhookDelivery
from domain.model import FalDelivery
from domain.webhooks import WebhookKeysUnavailable, WebhookRejected

pytestmark = pytest.mark.integration

KEY = "sim-test-key-5b1e"  # the key of test_fal_simulator.py: already a leak-scan needle
AUTH = {"Authorization": f"Key {KEY}"}
ENDPOINT = "fal-ai/nano-banana/edit"
CAT = (Path(__file__).resolve().parents[1] / "fixtures" / "images" / "cat.jpg").read_bytes()


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True)
class Received:
    at: float
    delivery: FalDelivery | None
    reason: str | None  # why the verifier refused it


class Receiver:
    """Our side of the webhook: verifies each POST, records the outcome, answers 200, 401 or 503 — or
    whatever ``answer`` says first (to make the simulator retry)."""

    def __init__(self, jwks_url: str) -> None:
        cache = JwksCache(HttpJwksFetcher(jwks_url), min_refetch_seconds=0)
        self.verifier = FalWebhookVerifier(cache, SystemClock())
        self.received: list[Received] = []
        self.answers: list[int] = []  # statuses to answer first, whatever the verdict
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status = receiver.handle(dict(self.headers.items()), body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/webhooks/fal"

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        try:
            self.verifier.check_length(len(body))
            outcome, status = Received(time.monotonic(), self.verifier.verify(headers, body), None), 200
        except WebhookRejected as rejected:
            outcome, status = Received(time.monotonic(), None, rejected.reason), 401
        except WebhookKeysUnavailable:
            outcome, status = Received(time.monotonic(), None, "keys_unavailable"), 503
        with self.changed:
            self.received.append(outcome)
            if self.answers:
                status = self.answers.pop(0)
            self.changed.notify_all()
        return status

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.received) >= count, timeout), self.received
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class InputServer:
    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(CAT)))
                self.end_headers()
                self.wfile.write(CAT)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/cat.jpg"


@pytest.fixture(scope="module")
def cat_url() -> Iterator[str]:
    server = InputServer()
    yield server.url
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def sim() -> Iterator[FalSimulator]:
    with FalSimulator(KEY) as running:
        yield running


@pytest.fixture
def receiver(sim: FalSimulator) -> Iterator[Receiver]:
    running = Receiver(sim.jwks_url)
    yield running
    running.close()


def submit(sim: FalSimulator, cat_url: str, webhook: str | None) -> str:
    params = {"fal_webhook": webhook} if webhook else None
    answer = requests.post(
        f"{sim.base_url}/{ENDPOINT}",
        params=params,
        json={"prompt": "a bob cut", "image_urls": [cat_url]},
        headers=AUTH,
        timeout=5,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["request_id"])


def result_of(sim: FalSimulator, request_id: str) -> requests.Response:
    return requests.get(f"{sim.base_url}/fal-ai/nano-banana/requests/{request_id}", headers=AUTH, timeout=5)


def settle(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def attempts(sim: FalSimulator, count: int) -> list[WebhookDelivery]:
    """The simulator's record of its POSTs, once it holds ``count`` (it records after the answer came)."""
    settle(lambda: len(sim.webhook_deliveries()) >= count)
    return sim.webhook_deliveries()


# --- genuine deliveries -----------------------------------------------------------------------------


def test_a_completed_job_is_delivered_once_signed_and_verifiable_with_the_published_jwks(
    sim, receiver, cat_url
):
    request_id = submit(sim, cat_url, receiver.url)

    [received] = receiver.wait_for(1)

    assert received.reason is None and received.delivery is not None
    delivery = received.delivery
    assert (delivery.request_id, delivery.gateway_request_id, delivery.status) == (
        request_id,
        request_id,
        "OK",
    )
    assert delivery.error is None and delivery.payload_error is None
    assert delivery.payload == result_of(sim, request_id).json()  # the same images the queue answers
    assert abs(delivery.signed_at - time.time()) < 5
    [attempt] = attempts(sim, 1)
    assert (attempt.request_id, attempt.kind, attempt.status, attempt.attempt, attempt.answered) == (
        request_id,
        "genuine",
        "OK",
        1,
        200,
    )
    time.sleep(0.3)
    assert len(receiver.received) == 1


def test_the_jwks_is_public_and_holds_one_ed25519_signing_key(sim):
    answer = requests.get(sim.jwks_url, timeout=5)  # no Authorization, like fal's

    [key] = answer.json()["keys"]
    assert answer.status_code == 200
    assert (key["kty"], key["crv"], key["use"], key["alg"]) == ("OKP", "Ed25519", "sig", "EdDSA")
    assert len(key["x"]) == 43 and key["kid"]
    assert "d" not in key  # the private half never leaves the simulator


def test_a_failed_job_is_delivered_as_an_error_with_fals_details(sim, receiver, cat_url):
    sim.fail_next_jobs("content_policy_violation")
    request_id = submit(sim, cat_url, receiver.url)

    [received] = receiver.wait_for(1)

    delivery = received.delivery
    assert delivery is not None
    assert (delivery.request_id, delivery.status, delivery.error) == (
        request_id,
        "ERROR",
        "Invalid status code: 422",
    )
    assert delivery.payload["detail"][0]["type"] == "content_policy_violation"


def test_a_job_without_fal_webhook_sends_nothing(sim, receiver, cat_url):
    request_id = submit(sim, cat_url, None)
    settle(lambda: result_of(sim, request_id).status_code == 200)

    time.sleep(0.3)
    assert receiver.received == []
    assert sim.webhook_deliveries() == []


def test_fal_client_webhook_url_is_delivered(sim, receiver, cat_url, monkeypatch):
    monkeypatch.setenv("FAL_KEY", KEY)
    monkeypatch.setattr(fal_client.client, "QUEUE_URL_FORMAT", f"{sim.base_url}/")
    client = fal_client.SyncClient()
    try:
        handle = client.submit(
            ENDPOINT, {"prompt": "curls", "image_urls": [cat_url]}, webhook_url=receiver.url
        )
    finally:
        client._client.close()

    [received] = receiver.wait_for(1)

    assert received.delivery is not None
    assert received.delivery.request_id == handle.request_id


def test_a_delivery_the_receiver_refuses_is_retried_until_it_is_accepted(sim, receiver, cat_url):
    receiver.answers = [503, 500]
    request_id = submit(sim, cat_url, receiver.url)

    received = receiver.wait_for(3)

    assert [r.delivery.request_id for r in received if r.delivery] == [request_id] * 3
    assert [(d.attempt, d.answered) for d in attempts(sim, 3)] == [(1, 503), (2, 500), (3, 200)]


def test_an_unreachable_receiver_is_retried_a_bounded_number_of_times(sim, cat_url):
    with RefusingUrl() as url:
        submit(sim, cat_url, url)
        settle(lambda: len(sim.webhook_deliveries()) == 4, timeout=5)

    time.sleep(1.2)
    assert [(d.attempt, d.answered) for d in sim.webhook_deliveries()] == [(n, None) for n in range(1, 5)]


class RefusingUrl:
    """A URL on a port nothing listens on (bound, then closed)."""

    def __enter__(self) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
        port = server.server_address[1]
        server.server_close()
        return f"http://127.0.0.1:{port}/hook"

    def __exit__(self, *exc: object) -> None:
        return None


# --- faults -----------------------------------------------------------------------------------------


def test_every_documented_fault_is_armable():
    assert set(WEBHOOK_FAULTS) == {
        "late",
        "duplicated",
        "out_of_order",
        "error_after_ok",
        "forged_signature",
        "wrong_key",
        "stale_timestamp",
        "never",
    }
    with FalSimulator(KEY) as simulator, pytest.raises(ValueError, match="unknown webhook fault"):
        simulator.fail_next_webhooks("lost")  # type: ignore[arg-type]


def test_late_delivers_only_after_the_delay(sim, receiver, cat_url):
    sim.set_webhook_late_seconds(0.8)
    sim.fail_next_webhooks("late")
    request_id = submit(sim, cat_url, receiver.url)
    settle(lambda: result_of(sim, request_id).status_code == 200)
    completed = time.monotonic()

    [received] = receiver.wait_for(1)

    assert received.delivery is not None and received.delivery.request_id == request_id
    assert received.at - completed >= 0.7


def test_duplicated_delivers_the_same_verified_outcome_twice(sim, receiver, cat_url):
    sim.fail_next_webhooks("duplicated")
    request_id = submit(sim, cat_url, receiver.url)

    first, second = receiver.wait_for(2)

    assert first.delivery is not None and second.delivery is not None
    assert first.delivery.request_id == second.delivery.request_id == request_id
    assert first.delivery.payload == second.delivery.payload
    assert [d.kind for d in attempts(sim, 2)] == ["genuine", "duplicate"]


def test_out_of_order_holds_a_delivery_until_a_later_job_was_delivered(sim, receiver, cat_url):
    sim.fail_next_webhooks("out_of_order")
    held = submit(sim, cat_url, receiver.url)
    settle(lambda: result_of(sim, held).status_code == 200)
    time.sleep(0.2)
    assert receiver.received == []
    later = submit(sim, cat_url, receiver.url)

    received = receiver.wait_for(2)

    assert [r.delivery.request_id for r in received if r.delivery] == [later, held]


def test_error_after_ok_sends_an_older_signed_error_after_the_ok(sim, receiver, cat_url):
    sim.fail_next_webhooks("error_after_ok")
    request_id = submit(sim, cat_url, receiver.url)

    ok, error = receiver.wait_for(2)

    assert ok.delivery is not None and error.delivery is not None
    assert (ok.delivery.status, error.delivery.status) == ("OK", "ERROR")
    assert ok.delivery.request_id == error.delivery.request_id == request_id
    assert (
        error.delivery.signed_at < ok.delivery.signed_at
    )  # claims to be older: the receiver must not regress


@pytest.mark.parametrize(
    ("fault", "reason"),
    [("forged_signature", "bad_signature"), ("wrong_key", "bad_signature"), ("stale_timestamp", "stale")],
)
def test_bad_deliveries_are_refused_by_the_verifier_and_not_retried(sim, receiver, cat_url, fault, reason):
    sim.fail_next_webhooks(fault)
    request_id = submit(sim, cat_url, receiver.url)

    [received] = receiver.wait_for(1)

    assert (received.delivery, received.reason) == (None, reason)
    time.sleep(0.5)
    assert [(d.request_id, d.kind, d.answered) for d in attempts(sim, 1)] == [(request_id, fault, 401)]
    assert result_of(sim, request_id).status_code == 200  # the job itself succeeded: polling finds it


def test_never_sends_nothing_and_the_next_job_is_delivered_normally(sim, receiver, cat_url):
    sim.fail_next_webhooks("never")
    silent = submit(sim, cat_url, receiver.url)
    settle(lambda: result_of(sim, silent).status_code == 200)
    delivered = submit(sim, cat_url, receiver.url)

    [received] = receiver.wait_for(1)

    time.sleep(0.3)
    assert received.delivery is not None and received.delivery.request_id == delivered
    assert len(receiver.received) == 1


def test_faults_go_to_webhook_jobs_only_in_order(sim, receiver, cat_url):
    sim.fail_next_webhooks("never")
    sim.fail_next_webhooks("stale_timestamp")
    submit(sim, cat_url, None)  # asks for no webhook: uses up no fault
    first = submit(sim, cat_url, receiver.url)
    settle(lambda: result_of(sim, first).status_code == 200)
    second = submit(sim, cat_url, receiver.url)

    [received] = receiver.wait_for(1)

    assert received.reason == "stale"
    assert [d.request_id for d in attempts(sim, 1)] == [second]


def test_reset_drops_pending_deliveries_and_armed_faults(sim, receiver, cat_url):
    sim.set_webhook_late_seconds(0.5)
    sim.fail_next_webhooks("late")
    sim.fail_next_webhooks("forged_signature")
    request_id = submit(sim, cat_url, receiver.url)
    settle(lambda: result_of(sim, request_id).status_code == 200)

    sim.reset()
    time.sleep(0.8)
    assert receiver.received == []
    fresh = submit(sim, cat_url, receiver.url)

    [received] = receiver.wait_for(1)
    assert received.delivery is not None and received.delivery.request_id == fresh


def test_stop_ends_a_late_delivery_at_once(cat_url):
    simulator = FalSimulator(KEY).start()
    receiver = Receiver(simulator.jwks_url)
    try:
        simulator.set_webhook_late_seconds(30)
        simulator.fail_next_webhooks("late")
        request_id = submit(simulator, cat_url, receiver.url)
        settle(lambda: result_of(simulator, request_id).status_code == 200)
        started = time.monotonic()
        simulator.stop()
        assert time.monotonic() - started < 1.0
        time.sleep(0.2)
        assert receiver.received == []
        assert simulator.webhook_deliveries() == []
    finally:
        receiver.close()
