"""Issue 7's fault matrix: each test breaks a real dependency while the flow runs, then checks that the API
answered a clear retryable error, that no try-on was lost, and that after `tryon sweep` nothing is orphaned.

The table of what each fault did is printed at the end of the run (tests/faults/conftest.py).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from devtools.local_stack import start_gunicorn
from domain.model import DetectedFace, Pixels
from tests import hostile
from tests.builders.stack import Workers, order, put, settled, verified_upload
from tests.faults.matrix import Row, record
from tests.faults.proxy import ChaosProxy
from tests.faults.stack import FaultStack

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.faults]

SELFIE = (hostile.IMAGES / "one_face.jpg").read_bytes()
JPEG = {"content_type": "image/jpeg", "content_length": len(SELFIE)}
OUTAGE_SECONDS = 4


def retryable(response: TestResponse, code: str) -> str:
    """The answer an outage must give: 503 problem+json, a stable code, retryable, a Retry-After."""
    text = response.get_data(as_text=True)
    assert response.status_code == 503, text
    assert response.content_type == "application/problem+json"
    body = response.get_json()
    assert (body["code"], body["retryable"]) == (code, True), body
    assert int(response.headers["Retry-After"]) > 0
    assert "Traceback" not in text and "X-Amz" not in text
    return f"503 {code}"


def issued(client: FlaskClient, auth: dict[str, str]) -> dict[str, Any]:
    response = client.post("/v1/uploads", json=JPEG, headers=auth)
    assert response.status_code == 201, response.get_data(as_text=True)
    ticket: dict[str, Any] = response.get_json()
    return ticket


def complete(client: FlaskClient, auth: dict[str, str], ticket: dict[str, Any]) -> TestResponse:
    return client.post(
        f"/v1/uploads/{ticket['upload_id']}/complete", json={"object_key": ticket["object_key"]}, headers=auth
    )


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def status_of(client: FlaskClient, auth: dict[str, str], tryon_id: str) -> str:
    return str(client.get(f"/v1/tryons/{tryon_id}", headers=auth).get_json()["status"])


def clean_after_sweep(faults: FaultStack) -> str:
    faults.sweep()
    assert faults.orphans() == []
    assert faults.unsettled() == []
    return "nothing orphaned"


@dataclass(frozen=True)
class Outage:
    during: TestResponse
    """What `GET /v1/tryons/{id}` answered while the dependency was down."""
    ended: dict[str, Any]
    """The try-on once it settled."""
    workers_exited: int
    """Worker processes that exited during the outage (a platform restarts them: so does the test)."""


def outage_mid_tryon(
    faults: FaultStack,
    workers: Workers,
    auth: dict[str, str],
    proxy: ChaosProxy,
    while_down: Callable[[], object] = lambda: None,
) -> Outage:
    """A try-on is running at fal when ``proxy`` goes down for OUTAGE_SECONDS."""
    faults.simulator.set_work_seconds(OUTAGE_SECONDS + 1)
    workers.start()
    client = faults.client()
    tryon_id = order(client, auth, verified_upload(client, auth))
    wait_for(lambda: faults.simulator.counts().input_downloads >= 1, "fal to fetch the selfie")
    # ...and the worker to have recorded the submission: an outage between fal's accept and that record is
    # another fault (the submission is lost and made again), not the one this case is about.
    running = lambda: client.get(f"/v1/tryons/{tryon_id}", headers=auth).get_json()["status"] == "running"  # noqa: E731
    wait_for(running, "the worker to record the submission")
    proxy.down()
    while_down()
    time.sleep(OUTAGE_SECONDS / 2)
    during = client.get(f"/v1/tryons/{tryon_id}", headers=auth)
    time.sleep(OUTAGE_SECONDS / 2)
    proxy.up()
    exited = [process for process in workers.processes if process.poll() is not None]
    for _ in exited:
        workers.start()
    return Outage(during, settled(client, auth, tryon_id, timeout=120), len(exited))


# -- S3 --------------------------------------------------------------------------------------------------


def test_s3_down_while_a_url_is_issued_and_used(faults, auth):
    client = faults.client()
    faults.s3.down()

    ticket = issued(client, auth)
    with pytest.raises(requests.ConnectionError):
        put(ticket, SELFIE)

    faults.s3.up()
    assert put(ticket, SELFIE).status_code == 200
    assert complete(client, auth, ticket).status_code == 200
    record(
        Row(
            "S3",
            "down while a URL is issued and PUT to",
            "201 (signing needs no S3); the PUT fails at the client",
            "the same URL works once S3 is back; verified",
            clean_after_sweep(faults),
        )
    )


def test_s3_down_when_an_upload_is_completed(faults, auth):
    client = faults.client()
    ticket = issued(client, auth)
    assert put(ticket, SELFIE).status_code == 200
    faults.s3.down()

    answer = retryable(complete(client, auth, ticket), "storage_unavailable")

    assert faults.rows(f"SELECT status FROM uploads WHERE upload_id = '{ticket['upload_id']}'") == [
        ("issued",)
    ]
    faults.s3.up()
    assert complete(client, auth, ticket).status_code == 200
    record(
        Row(
            "S3",
            "down when `complete` starts",
            answer,
            "upload left `issued`; the retried complete verifies it",
            clean_after_sweep(faults),
        )
    )


class CutsStorageWhileDetecting:
    """The real detector, except that S3 goes down the moment face detection starts: after the upload
    was read, before the sanitised copy is written and the original deleted."""

    def __init__(self, faults: FaultStack) -> None:
        self._faults = faults

    def detect(self, image: Pixels) -> list[DetectedFace]:
        self._faults.s3.down()
        return self._faults.detector.detect(image)

    def warm_up(self) -> None:
        self._faults.detector.warm_up()


def test_s3_lost_in_the_middle_of_a_complete(faults, auth):
    client = faults.client(detector=CutsStorageWhileDetecting(faults))
    ticket = issued(client, auth)
    assert put(ticket, SELFIE).status_code == 200

    answer = retryable(complete(client, auth, ticket), "storage_unavailable")

    faults.s3.up()
    retried = complete(faults.client(), auth, ticket)
    assert retried.status_code == 200, retried.get_data(as_text=True)
    record(
        Row(
            "S3",
            "lost mid-`complete` (after the read, before the copy is stored)",
            answer,
            "the retried complete verifies it: the copy stored, the original gone",
            clean_after_sweep(faults),
        )
    )


def test_s3_down_when_the_worker_stores_the_result(faults, workers, auth):
    outage = outage_mid_tryon(faults, workers, auth, faults.s3)

    body = outage.ended
    assert outage.during.get_json()["status"] == "running"
    assert (body["status"], body["attempts"]) == ("succeeded", 1), workers.logs()
    assert len(body["results"]) == 1
    assert faults.simulator.counts().submissions == 1
    record(
        Row(
            "S3",
            f"down {OUTAGE_SECONDS} s while fal works and the worker stores the result",
            "status reads answer `running`",
            "succeeded, 1 attempt: the storing step is retried every 5 s",
            clean_after_sweep(faults),
        )
    )


# -- Redis -----------------------------------------------------------------------------------------------


def test_redis_down_when_the_worker_starts_and_a_tryon_is_ordered(faults, workers, auth):
    client = faults.client()
    upload_id = verified_upload(client, auth)
    faults.redis.down()
    worker = workers.start()

    tryon_id = order(client, auth, upload_id)
    time.sleep(OUTAGE_SECONDS)
    assert status_of(client, auth, tryon_id) == "queued"
    faults.redis.up()
    body = settled(client, auth, tryon_id, timeout=120)

    assert body["status"] == "succeeded", workers.logs()
    assert worker.poll() is None, workers.logs()
    record(
        Row(
            "Redis",
            "down when the worker starts and when `POST /v1/tryons` queues the job",
            "202: the try-on is recorded first",
            "succeeded: the worker waited for Redis, the reconciler queued the try-on",
            clean_after_sweep(faults),
        )
    )


def test_redis_down_inside_the_worker(faults, workers, auth):
    outage = outage_mid_tryon(faults, workers, auth, faults.redis)

    body = outage.ended
    assert outage.during.get_json()["status"] == "running"
    assert body["status"] == "succeeded", workers.logs()
    assert faults.simulator.counts().submissions == 1
    assert outage.workers_exited == 0, workers.logs()
    record(
        Row(
            "Redis",
            f"down {OUTAGE_SECONDS} s inside the worker while the try-on runs",
            "status reads answer `running` (they need only the database)",
            "succeeded, 1 submission; the worker process stayed up",
            clean_after_sweep(faults),
        )
    )


def test_redis_back_empty_after_the_outage(faults, workers, auth):
    emptied = redis.Redis.from_url(faults.direct_redis_url)

    outage = outage_mid_tryon(faults, workers, auth, faults.redis, while_down=emptied.flushall)

    body = outage.ended
    assert body["status"] == "succeeded", workers.logs()
    assert faults.simulator.counts().submissions == 1
    assert outage.workers_exited == 0, workers.logs()
    chains = sorted(key.decode().split("-")[1] for key in emptied.scan_iter("rq:job:tryon-*"))
    assert chains == ["reconciler", "sweep"]
    record(
        Row(
            "Redis",
            f"down {OUTAGE_SECONDS} s and back EMPTY (queued jobs, schedules, chains lost)",
            "status reads answer `running`",
            "succeeded, 1 submission: the worker re-seeds its periodic chains",
            clean_after_sweep(faults),
        )
    )


# -- Postgres --------------------------------------------------------------------------------------------


def test_postgres_down_during_requests(faults, auth):
    client = faults.client()
    upload_id = verified_upload(client, auth)
    ticket = issued(client, auth)
    assert put(ticket, SELFIE).status_code == 200
    tryon = {"upload_id": upload_id, "style_prompt": "a pixie cut"}
    key = {"Idempotency-Key": secrets.token_hex(8)}
    faults.postgres.down()

    answers = {
        "issue": client.post("/v1/uploads", json=JPEG, headers=auth),
        "complete": complete(client, auth, ticket),
        "order": client.post("/v1/tryons", json=tryon, headers={**auth, **key}),
        "status": client.get(f"/v1/tryons/{secrets.token_hex(8)}", headers=auth),
    }

    codes = {what: retryable(answer, "database_unavailable") for what, answer in answers.items()}
    faults.postgres.up()
    assert complete(client, auth, ticket).status_code == 200
    first = client.post("/v1/tryons", json=tryon, headers={**auth, **key})
    again = client.post("/v1/tryons", json=tryon, headers={**auth, **key})
    assert first.status_code == again.status_code == 202
    assert first.get_json()["tryon_id"] == again.get_json()["tryon_id"]
    faults.rows("UPDATE tryons SET status = 'failed' WHERE status = 'queued'")  # no worker in this test
    record(
        Row(
            "Postgres",
            "down during issue, complete, order and status",
            f"503 database_unavailable to all {len(codes)}",
            "retries succeed; an order retried with its Idempotency-Key is recorded once",
            clean_after_sweep(faults),
        )
    )


def test_postgres_down_mid_tryon(faults, workers, auth):
    outage = outage_mid_tryon(faults, workers, auth, faults.postgres)

    body, restarted = outage.ended, outage.workers_exited
    during = retryable(outage.during, "database_unavailable")
    assert (body["status"], body["attempts"]) == ("succeeded", 1), workers.logs()
    assert faults.simulator.counts().submissions == 1
    record(
        Row(
            "Postgres",
            f"down {OUTAGE_SECONDS} s inside the worker while the try-on runs",
            f"status reads: {during} meanwhile",
            f"succeeded, 1 submission; worker processes that exited: {restarted}",
            clean_after_sweep(faults),
        )
    )


# -- fal -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "arm", "expected"),
    [
        ("429 (concurrency limit) once", lambda sim: sim.fail_next_submits(429), ("succeeded", 2, None)),
        ("503 once", lambda sim: sim.fail_next_submits(503), ("succeeded", 2, None)),
        (
            "500 on every attempt",
            lambda sim: sim.fail_next_submits(500, count=3),
            ("failed", 3, "upstream_unavailable"),
        ),
        (
            "no answer to a submission for 12 s",
            lambda sim: sim.stall_next_submits(12),
            ("succeeded", 2, None),
        ),
        ("a slow queue (8 s in IN_QUEUE)", lambda sim: sim.set_queue_seconds(8), ("succeeded", 1, None)),
    ],
    ids=["429", "503", "500-always", "timeout", "slow-queue"],
)
def test_fal_faults(faults, workers, auth, fault, arm, expected):
    arm(faults.simulator)
    workers.start()
    client = faults.client()

    body = settled(client, auth, order(client, auth, verified_upload(client, auth)), timeout=120)

    error = body["error"]["code"] if body["error"] else None
    assert (body["status"], body["attempts"], error) == expected, workers.logs()
    if error:
        assert body["error"]["retryable"] is True and body["error"]["message"]
    outcome = f"{body['status']} after {body['attempts']} attempt(s)" + (
        f", error `{error}`" if error else ""
    )
    record(Row("fal", fault, "202, then the try-on's status", outcome, clean_after_sweep(faults)))


# -- processes -------------------------------------------------------------------------------------------


def test_worker_killed_mid_job(faults, workers, auth):
    faults.simulator.set_work_seconds(3)
    first = workers.start()
    client = faults.client()
    tryon_id = order(client, auth, verified_upload(client, auth))
    wait_for(lambda: status_of(client, auth, tryon_id) == "running", "the try-on to run")

    workers.kill(first)
    workers.start()
    body = settled(client, auth, tryon_id, timeout=120)

    assert body["status"] == "succeeded", workers.logs()
    assert len(body["results"]) == 1 and faults.simulator.counts().submissions == 1
    record(
        Row(
            "worker",
            "SIGKILL while the try-on runs at fal",
            "202; status stays `running`",
            "succeeded once on the replacement worker (lease + reconciler)",
            clean_after_sweep(faults),
        )
    )


def test_web_killed_between_the_s3_delete_and_the_row_update(faults, workers, auth, tmp_path: Path):
    workers.start()
    client = faults.client()
    upload_id = verified_upload(client, auth)
    settled(client, auth, order(client, auth, upload_id))
    trigger = tmp_path / "crash-after-delete"
    trigger.touch()
    env = {**faults.env(), "CRASH_AFTER_DELETE": str(trigger)}
    web = start_gunicorn(env, app="tests.faults.crashing_web:app", workers=1, log_path=tmp_path / "web.log")
    try:
        with pytest.raises(requests.ConnectionError):
            requests.delete(f"{web.url}/v1/uploads/{upload_id}", headers=auth, timeout=30)
    finally:
        web.stop()

    assert not trigger.exists(), "the web process did not reach the delete"
    assert any("purge never finished" in orphan for orphan in faults.orphans())
    reorder = client.post("/v1/tryons", json={"upload_id": upload_id, "style_prompt": "a bob"}, headers=auth)
    assert reorder.status_code == 410
    record(
        Row(
            "web",
            "killed (SIGKILL) between the S3 delete and the row update of `DELETE /v1/uploads/{id}`",
            "connection dropped; the selfie is already unusable (410)",
            "the row said `deleted` before any object went",
            clean_after_sweep(faults),
        )
    )
