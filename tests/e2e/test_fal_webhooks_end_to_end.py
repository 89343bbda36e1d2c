"""fal's webhooks end to end: a real gunicorn serves POST /v1/webhooks/fal on loopback (PUBLIC_BASE_URL), a
real `tryon worker` process submits with ?fal_webhook= to the fal simulator, which signs and sends its
deliveries (with each of its faults) and publishes its JWKS (FAL_WEBHOOK_JWKS_URL).

Whatever the fault, every try-on ends succeeded with exactly one stored result and one `falai.succeeded` and
one `result.stored`; when a genuine delivery arrives, fal sees two calls per try-on (submit and result), and
when none does, the polling fallback settles it after the (short, in tests) grace period.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from flask.testing import FlaskClient

from adapters.mtcnn_faces import MtcnnFaceDetector
from adapters.peewee_db import AuditRow, ResultRow
from devtools.fal_simulator import FalSimulator
from devtools.local_stack import answers_ok, free_port, wait_until
from entrypoints.settings import Settings
from tests import leaks
from tests.builders.stack import Workers, environment, on_simulator, order, settled, verified_upload
from tests.inline import inline_client

pytestmark = pytest.mark.e2e

GRACE_SECONDS = 8  # longer than the simulator's late (1 s) and out-of-order (5 s) holds
ARRIVES = ("genuine", "late", "duplicated", "out_of_order", "error_after_ok")
REJECTED = ("forged_signature", "wrong_key", "stale_timestamp")


class Stack:
    """gunicorn (the webhook's receiver) and one worker, both with webhooks on."""

    def __init__(self, settings: Settings, simulator: FalSimulator, log_dir: Path) -> None:
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        self.env = {
            **environment(settings),
            "PUBLIC_BASE_URL": self.base_url,
            "FAL_WEBHOOK_JWKS_URL": simulator.jwks_url,
            "FAL_WEBHOOK_GRACE_SECONDS": str(GRACE_SECONDS),
            "WEB_CONCURRENCY": "1",
            "WEB_THREADS": "4",
        }
        self.web_log = log_dir / "web.log"
        with open(self.web_log, "wb") as log:
            self.web = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "wsgi:app", "--bind", f"127.0.0.1:{port}"],
                env=self.env,
                stdout=log,
                stderr=log,
            )
        self.workers = Workers(settings, log_dir)
        self.workers._env = self.env  # the same environment as the web's
        self.workers.start()
        wait_until(
            lambda: answers_ok(f"{self.base_url}/healthz"), timeout=30, what="gunicorn", process=self.web
        )

    def logs(self) -> str:
        return self.workers.logs() + self.web_log.read_text(errors="replace")

    def stop(self) -> None:
        self.workers.stop_all()
        self.web.terminate()
        try:
            self.web.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.web.kill()
            self.web.wait(timeout=10)
        leaks.keep_output("the webhook stack's output", self.logs())


@pytest.fixture(scope="module")
def simulator() -> Iterator[FalSimulator]:
    with FalSimulator() as sim:
        yield sim


@pytest.fixture
def tryon_settings(settings: Settings, simulator: FalSimulator) -> Settings:
    simulator.reset()
    leaks.keep_redis(settings.redis_url)
    redis.Redis.from_url(settings.redis_url).flushdb()
    return on_simulator(settings, simulator)


@pytest.fixture
def client(tryon_settings: Settings, detector: MtcnnFaceDetector) -> FlaskClient:
    """In-process, for the app's own calls (uploads, orders, reads); fal calls the gunicorn below."""
    return inline_client(tryon_settings, detector=detector)


@pytest.fixture
def stack(tryon_settings: Settings, simulator: FalSimulator, tmp_path: Path) -> Iterator[Stack]:
    running = Stack(tryon_settings, simulator, tmp_path)
    yield running
    running.stop()


def queue_calls(simulator: FalSimulator, request_id: str) -> dict[str, int]:
    """fal queue API calls about one request: submit, status, result (CDN downloads are not calls)."""
    calls = {"submit": 0, "status": 0, "result": 0}
    for seen in simulator.requests_seen():
        path = seen.path.split("?")[0]
        if seen.method == "POST" and path.endswith("/edit"):
            calls["submit"] += 1
        elif seen.method == "GET" and path.endswith(f"/requests/{request_id}/status"):
            calls["status"] += 1
        elif seen.method == "GET" and path.endswith(f"/requests/{request_id}"):
            calls["result"] += 1
    return calls


def run_one(
    client: FlaskClient, auth: dict[str, str], simulator: FalSimulator, stack: Stack, fault: str
) -> tuple[str, dict[str, object]]:
    simulator.reset()
    simulator.set_work_seconds(0.5)  # the submit step has recorded the request id before fal calls back
    if fault != "genuine":
        simulator.fail_next_webhooks(fault)  # type: ignore[arg-type]
    tryon_id = order(client, auth, verified_upload(client, auth))
    body = settled(client, auth, tryon_id, timeout=GRACE_SECONDS + 30)
    assert body["status"] == "succeeded", (fault, body, stack.logs())
    [submitted] = [r for r in simulator.requests_seen() if r.method == "POST"]
    assert re.search(r"[?&]fal_webhook=http%3A%2F%2F127\.0\.0\.1%3A\d+%2Fv1%2Fwebhooks%2Ffal", submitted.path)
    return tryon_id, body


def assert_one_result(tryon_id: str, fault: str) -> None:
    events = [e.event for e in AuditRow.select().where(AuditRow.subject_id == tryon_id)]
    assert events.count("falai.succeeded") == 1, (fault, events)
    assert events.count("result.stored") == 1, (fault, events)
    assert ResultRow.select().where(ResultRow.tryon_id == tryon_id).count() == 1, fault


def request_id_of(simulator: FalSimulator) -> str:
    deliveries = simulator.webhook_deliveries()
    return deliveries[0].request_id


def wait_for_deliveries(simulator: FalSimulator, count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while len([d for d in simulator.webhook_deliveries() if d.answered is not None]) < count:
        assert time.monotonic() < deadline, simulator.webhook_deliveries()
        time.sleep(0.1)


def test_when_a_webhook_arrives_fal_sees_two_calls_and_the_result_is_stored_once(
    client, auth, simulator, stack
):
    for fault in ARRIVES:
        started = time.monotonic()
        tryon_id, _ = run_one(client, auth, simulator, stack, fault)
        took = time.monotonic() - started

        assert took < GRACE_SECONDS, (fault, took)  # settled by the webhook, not by the fallback poll
        wait_for_deliveries(simulator, 2 if fault in ("duplicated", "error_after_ok") else 1)
        request_id = request_id_of(simulator)
        assert queue_calls(simulator, request_id) == {"submit": 1, "status": 0, "result": 1}, fault
        deliveries = simulator.webhook_deliveries()
        # A copy sent within the same second carries the same signature: a replay, refused (the original was
        # acted on); one a second later is a new delivery, answered like the first.
        copies = {d.answered for d in deliveries if d.kind == "duplicate"}
        assert copies <= {200, 202, 401}, (fault, deliveries)
        assert {d.answered for d in deliveries if d.kind != "duplicate"} <= {200, 202}, (fault, deliveries)
        assert_one_result(tryon_id, fault)


def test_forged_stale_or_missing_webhooks_change_nothing_and_polling_settles_the_tryon(
    client, auth, simulator, stack
):
    for fault in (*REJECTED, "never"):
        tryon_id, _ = run_one(client, auth, simulator, stack, fault)

        assert_one_result(tryon_id, fault)
        deliveries = simulator.webhook_deliveries()
        if fault == "never":
            assert deliveries == []
            continue
        assert deliveries, fault
        assert {d.answered for d in deliveries} == {401}, (fault, deliveries)
        request_id = deliveries[0].request_id
        calls = queue_calls(simulator, request_id)
        assert calls["submit"] == 1 and calls["result"] == 1 and calls["status"] >= 1, (fault, calls)
    assert "fal webhook rejected" in stack.logs()


def test_unsigned_or_oversized_deliveries_are_refused_and_change_nothing(client, auth, simulator, stack):
    tryon_id, _ = run_one(client, auth, simulator, stack, "genuine")
    assert_one_result(tryon_id, "genuine")

    garbage = requests.post(f"{stack.base_url}/v1/webhooks/fal", data=b"{}", timeout=10)
    huge = requests.post(f"{stack.base_url}/v1/webhooks/fal", data=b"x" * (65 * 1024), timeout=10)

    assert garbage.status_code == 401
    assert garbage.headers["Content-Type"] == "application/problem+json"
    assert garbage.json()["code"] == "webhook_rejected"
    assert huge.status_code == 413
    assert_one_result(tryon_id, "after the junk")
