"""The emulated stack of the e2e and fault tiers: provisioned buckets, the settings and environment of our
processes, a pool of `tryon worker` processes, and the client's steps (PUT a selfie, order, wait)."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import requests
from flask.testing import FlaskClient

from adapters.s3_provisioning import S3BucketProvisioner
from adapters.s3_storage import make_s3_client
from devtools.fal_simulator import DEFAULT_KEY, FalSimulator
from devtools.local_stack import EMULATOR_CREDENTIALS, answers_ok, free_port, wait_until
from entrypoints.settings import Settings
from tests import hostile

SELFIE = b"\xff\xd8\xff\xe0" + secrets.token_bytes(4096)


SETTLED = ("succeeded", "failed")


def new_bucket_name(role: str) -> str:
    return f"hf-{role}-{secrets.token_hex(4)}"


def provisioned_buckets(ministack_url: str) -> tuple[str, str]:
    """A new uploads/processed pair on the emulator, private and encrypted as `tryon provision` makes them."""
    provisioner = S3BucketProvisioner(
        make_s3_client(region="us-east-1", endpoint_url=ministack_url), region="us-east-1"
    )
    pair = (new_bucket_name("uploads"), new_bucket_name("processed"))
    for bucket in pair:
        provisioner.ensure_private_bucket(bucket)
    return pair


def stack_settings(
    buckets: tuple[str, str],
    *,
    better_auth_url: str,
    database_url: str,
    redis_url: str,
    s3_endpoint_url: str,
    **changes: Any,
) -> Settings:
    """Settings for our processes on the emulated stack, with limits no test reaches unless it lowers them."""
    settings = Settings(
        uploads_bucket=buckets[0],
        processed_bucket=buckets[1],
        better_auth_url=better_auth_url,
        database_url=database_url,
        redis_url=redis_url,
        s3_endpoint_url=s3_endpoint_url,
        rate_limit_uploads="1000/minute",
        rate_limit_tryons="1000/minute",
        rate_limit_mutations="1000/minute",
        max_active_tryons=1000,
        daily_image_quota=100_000,
    )
    return replace(settings, **changes)


def on_simulator(settings: Settings, simulator: FalSimulator) -> Settings:
    """The settings with fal's queue and result hosts on the fal simulator, allowing three attempts."""
    return replace(
        settings,
        fal_api_key=DEFAULT_KEY,
        fal_queue_url=simulator.base_url,
        fal_result_hosts=(simulator.base_url,),
        fal_max_attempts=3,
    )


def environment(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        **EMULATOR_CREDENTIALS,
        "UPLOADS_BUCKET": settings.uploads_bucket,
        "PROCESSED_BUCKET": settings.processed_bucket,
        "BETTER_AUTH_URL": settings.better_auth_url,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "S3_ENDPOINT_URL": settings.s3_endpoint_url or "",
        "FAL_API_KEY": settings.fal_api_key or "",
        "FAL_QUEUE_URL": settings.fal_queue_url,
        "FAL_RESULT_HOSTS": ",".join(settings.fal_result_hosts),
        "RATE_LIMIT_UPLOADS": settings.rate_limit_uploads,
        "RATE_LIMIT_TRYONS": settings.rate_limit_tryons,
        "RATE_LIMIT_MUTATIONS": settings.rate_limit_mutations,
        "MAX_ACTIVE_TRYONS": str(settings.max_active_tryons),
        "DAILY_IMAGE_QUOTA": str(settings.daily_image_quota),
    }


@contextlib.contextmanager
def threaded_web(env: dict[str, str], log: Path, *, workers: int, threads: int) -> Iterator[str]:
    """The `web` process as the Procfile runs it: gunicorn with the repository's gunicorn.conf.py, gthread
    workers sized as the platform may set them; its output goes to ``log``. Yields its base URL."""
    port = free_port()
    with log.open("wb") as output:
        web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "wsgi:app", "--bind", f"127.0.0.1:{port}"],
            env={**env, "WEB_CONCURRENCY": str(workers), "WEB_THREADS": str(threads)},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda: answers_ok(f"{url}/healthz"), timeout=120, what="gunicorn", process=web)
            yield url
        finally:
            web.terminate()
            web.wait(timeout=30)


class Workers:
    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self._env = environment(settings)
        self._log_dir = log_dir
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self._log_dir / f"worker-{len(self.processes)}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(  # its own process group: the worker and RQ's scheduler child, as a dyno
            [sys.executable, "-m", "entrypoints.cli", "worker"],
            env={**self._env, **(extra_env or {})},
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def logs(self) -> str:
        return "".join(
            path.read_text(errors="replace") for path in sorted(self._log_dir.glob("worker-*.log"))
        )

    @staticmethod
    def kill(process: subprocess.Popen[bytes]) -> None:
        """SIGKILL the whole dyno: the worker and its scheduler child (a bare SIGKILL would orphan it)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=15)
            self.kill(process)  # whatever of its group is left


def put(
    ticket: dict[str, Any], body: bytes = SELFIE, overrides: dict[str, str | None] | None = None
) -> requests.Response:
    """PUT like a client would, with the issued headers except for ``overrides`` (None drops one)."""
    headers = {**ticket["headers"], **(overrides or {})}
    headers = {name: value for name, value in headers.items() if value is not None}
    return requests.put(ticket["url"], data=body, headers=headers, timeout=10)


def verified_upload(client: FlaskClient, auth: dict[str, str]) -> str:
    data = (hostile.IMAGES / "one_face.jpg").read_bytes()
    ticket = client.post(
        "/v1/uploads", json={"content_type": "image/jpeg", "content_length": len(data)}, headers=auth
    ).get_json()
    assert put(ticket, data).status_code == 200
    done = client.post(
        f"/v1/uploads/{ticket['upload_id']}/complete", json={"object_key": ticket["object_key"]}, headers=auth
    )
    assert done.status_code == 200, done.get_data(as_text=True)
    return str(ticket["upload_id"])


def order(client: FlaskClient, auth: dict[str, str], upload_id: str) -> str:
    response = client.post(
        "/v1/tryons", json={"upload_id": upload_id, "style_prompt": "a sleek copper bob"}, headers=auth
    )
    assert response.status_code == 202, response.get_data(as_text=True)
    return str(response.get_json()["tryon_id"])


def settled(client: FlaskClient, auth: dict[str, str], tryon_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(f"/v1/tryons/{tryon_id}", headers=auth).get_json()
        if body["status"] in SETTLED:
            return body
        time.sleep(0.25)
    raise AssertionError(f"try-on {tryon_id} did not settle in {timeout} s: {body}")
