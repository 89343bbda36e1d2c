"""Verification on its own process type, end to end: a real gunicorn web (which never loads the face model)
hands uploads to a real `tryon verifier` process through Redis and waits for the verdict."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from adapters.peewee_db import AuditRow, open_database
from adapters.s3_storage import make_s3_client
from devtools.local_stack import LocalProcess, free_port, start_gunicorn, wait_until
from entrypoints.settings import Settings
from entrypoints.verifier import VERIFIER_WARM
from tests import decoding_bombs, hostile, leaks
from tests.builders.stack import environment, put

pytestmark = pytest.mark.e2e


METRICS_TOKEN = secrets.token_urlsafe(24)


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    metrics = {"METRICS_PORT": str(free_port()), "METRICS_TOKEN": METRICS_TOKEN}
    return {**environment(settings), "VERIFY_WAIT_SECONDS": "8", **metrics}


class Verifier:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self._env, self.log_path = env, log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "entrypoints.cli", "verifier"],
            env=self._env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        wait_until(
            lambda: VERIFIER_WARM in self.log(), timeout=120, what="the verifier", process=self.process
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture
def web_server(env: dict[str, str], tmp_path: Path) -> Iterator[LocalProcess]:
    with start_gunicorn(env, log_path=tmp_path / "web.log") as server:
        yield server
    leaks.keep_output("the web's output", (tmp_path / "web.log").read_text(errors="replace"))


@pytest.fixture
def web(web_server: LocalProcess) -> str:
    return web_server.url


@pytest.fixture
def web_pid(web_server: LocalProcess) -> int:
    return int(web_server.process.pid)


@pytest.fixture
def verifier(env: dict[str, str], tmp_path: Path) -> Iterator[Verifier]:
    process = Verifier(env, tmp_path / "verifier.log")
    yield process
    process.kill()
    leaks.keep_output("the verifier's output", process.log())


def uploaded(web: str, auth: dict[str, str], image: str = "one_face.jpg") -> dict[str, Any]:
    data = (hostile.IMAGES / image).read_bytes()
    ticket = requests.post(
        f"{web}/v1/uploads",
        json={"content_type": "image/jpeg", "content_length": len(data)},
        headers=auth,
        timeout=10,
    ).json()
    assert put(ticket, data).status_code == 200
    return dict(ticket)


def complete(web: str, auth: dict[str, str], ticket: dict[str, Any]) -> requests.Response:
    return requests.post(
        f"{web}/v1/uploads/{ticket['upload_id']}/complete",
        json={"object_key": ticket["object_key"]},
        headers=auth,
        timeout=30,
    )


def validated_events(env: dict[str, str], upload_id: str) -> int:
    database = open_database(env["DATABASE_URL"])
    try:
        query = AuditRow.select().where(
            (AuditRow.subject_id == upload_id) & (AuditRow.event == "upload.validated")
        )
        return int(query.count(database))
    finally:
        database.close()


def web_worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def test_a_selfie_is_verified_by_the_verifier_and_a_refusal_deletes_the_object(env, web, verifier, auth):
    verifier.start()
    ticket = uploaded(web, auth)

    verified = complete(web, auth, ticket)

    assert verified.status_code == 200, verified.text
    assert verified.json()["status"] == "verified"
    state = requests.get(f"{web}/v1/uploads/{ticket['upload_id']}", headers=auth, timeout=10).json()
    assert state["status"] == "verified"

    refused = complete(web, auth, uploaded(web, auth, "no_face.jpg"))
    assert refused.status_code == 422
    assert refused.json()["code"] == "no_face_detected"
    # The verifier counted and timed both on its own METRICS_PORT.
    scraped = requests.get(
        f"http://127.0.0.1:{env['METRICS_PORT']}/metrics",
        headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
        timeout=10,
    )
    got = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(scraped.text)
        for sample in family.samples
    }
    assert got[("tryon_uploads_verified_total", ())] == 1
    assert got[("tryon_uploads_rejected_total", (("reason", "no_face_detected"),))] == 1
    assert got[("tryon_verification_duration_seconds_count", (("verdict", "verified"),))] == 1
    assert got[("tryon_verification_duration_seconds_count", (("verdict", "rejected"),))] == 1
    assert got[("tryon_queue_wait_seconds_count", (("queue", "verify"),))] == 2


def test_with_the_verifier_down_complete_answers_202_then_the_verdict_comes_once_it_starts(
    env, web, verifier, auth
):
    ticket = uploaded(web, auth)
    started = time.monotonic()

    pending = complete(web, auth, ticket)

    assert pending.status_code == 202, pending.text
    assert pending.json() == {"upload_id": ticket["upload_id"], "status": "verifying"}
    assert pending.headers["Retry-After"]
    assert 7 <= time.monotonic() - started < 20  # it waited VERIFY_WAIT_SECONDS on Redis, then answered
    again = complete(web, auth, ticket)  # handed off once, however often it is called
    assert again.status_code == 202

    verifier.start()

    def state() -> str:
        body = requests.get(f"{web}/v1/uploads/{ticket['upload_id']}", headers=auth, timeout=10).json()
        return str(body["status"])

    deadline = time.monotonic() + 60
    while state() != "verified":
        assert time.monotonic() < deadline, "no verdict within 60 s of the verifier starting"
        time.sleep(0.2)
    assert complete(web, auth, ticket).status_code == 200
    assert validated_events(env, ticket["upload_id"]) == 1


def test_two_completes_at_once_make_one_verification(env, web, verifier, auth):
    verifier.start()
    ticket = uploaded(web, auth)

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: complete(web, auth, ticket), range(2)))

    assert sorted(a.status_code for a in answers) == [200, 200]
    assert validated_events(env, ticket["upload_id"]) == 1


def test_the_web_never_loads_the_face_model_and_the_verifier_does(env, web, web_pid, verifier, auth):
    verifier.start()
    assert complete(web, auth, uploaded(web, auth)).status_code == 200

    for pid in [web_pid, *web_worker_pids(web_pid)]:
        maps = Path(f"/proc/{pid}/maps").read_text(errors="replace")
        assert "tensorflow" not in maps, f"web process {pid} mapped TensorFlow"
    assert verifier.process is not None
    assert "tensorflow" in Path(f"/proc/{verifier.process.pid}/maps").read_text(errors="replace")


def hostile_uploads() -> list[tuple[str, str, bytes, str]]:
    flat = decoding_bombs.progressive_jpeg(Image.new("RGB", (4000, 4000), (128, 128, 128)))
    return [
        ("20,000-scan JPEG", "image/jpeg", decoding_bombs.with_scans(flat, 20_000), "not_an_image"),
        ("7000x7000 RGBA PNG", "image/png", decoding_bombs.rgba_png(7000, 7000), "image_too_large"),
        ("truncated JPEG", "image/jpeg", hostile.truncated_jpeg(), "not_an_image"),
    ]


def test_hostile_bytes_are_refused_with_their_code_deleted_and_the_web_stays_responsive(
    env, web, verifier, auth
):
    verifier.start()
    s3 = make_s3_client(region="us-east-1", endpoint_url=env["S3_ENDPOINT_URL"])
    for name, content_type, data, code in hostile_uploads():
        ticket = requests.post(
            f"{web}/v1/uploads",
            json={"content_type": content_type, "content_length": len(data)},
            headers=auth,
            timeout=10,
        ).json()
        assert put(ticket, data).status_code == 200, name
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(complete, web, auth, ticket)
            health = []
            while not answer.done():
                started = time.monotonic()
                assert requests.get(f"{web}/healthz", timeout=5).status_code == 200
                health.append(time.monotonic() - started)
                time.sleep(0.05)
            refused = answer.result()

        assert refused.status_code == 422, (name, refused.text)
        assert refused.json()["code"] == code, name
        listed = s3.list_objects_v2(Bucket=env["UPLOADS_BUCKET"], Prefix=ticket["object_key"])
        assert listed.get("KeyCount", 0) == 0, f"{name}: the object was not deleted"
        assert max(health, default=0) < 1, f"{name}: /healthz took {max(health):.2f} s meanwhile"
