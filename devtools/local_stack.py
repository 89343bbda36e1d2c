"""Loopback stand-ins for the cloud, for `tryon demo` and the test suite: ministack S3 and Redis.

Each is a child process on a free 127.0.0.1 port, started only when asked and stopped by ``stop()``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis
import requests

MINISTACK_PYTHON_ENV = "MINISTACK_PYTHON"
DEFAULT_MINISTACK_PYTHON = Path(".tools/ministack/bin/python")
EMULATOR_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


class LocalServiceError(RuntimeError):
    """A local stand-in could not be started; the message says what to install or run."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    ready: Callable[[], bool], *, timeout: float, what: str, process: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LocalServiceError(f"{what} exited with code {process.returncode} while starting")
        if ready():
            return
        time.sleep(0.1)
    process.kill()
    raise LocalServiceError(f"{what} did not become ready within {timeout:.0f} s")


class LocalProcess:
    def __init__(self, name: str, process: subprocess.Popen[bytes], url: str) -> None:
        self.name = name
        self.process = process
        self.url = url

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def __enter__(self) -> LocalProcess:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def ministack_python() -> Path:
    path = Path(os.environ.get(MINISTACK_PYTHON_ENV, DEFAULT_MINISTACK_PYTHON))
    if not path.exists():
        raise LocalServiceError(
            f"ministack is not installed at {path}; run `make tools` (it creates .tools/ministack)"
        )
    return path


def start_ministack(log_path: Path | None = None) -> LocalProcess:
    """An S3 emulator that enforces SigV4 signatures, expiry, signed headers and checksums."""
    port = free_port()
    env = {**os.environ, "SERVICES": "s3", "GATEWAY_PORT": str(port), "LOG_LEVEL": "WARNING"}
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(  # noqa: S603
        [str(ministack_python()), "-m", "ministack"], env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return requests.get(url, timeout=0.5).status_code < 500
        except requests.RequestException:
            return False

    wait_until(answers, timeout=30, what="ministack", process=process)
    return LocalProcess("ministack", process, url)


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


def start_redis() -> LocalProcess:
    binary = shutil.which("redis-server")
    if binary is None:
        raise LocalServiceError("redis-server is not installed and no Redis answers at REDIS_URL")
    port = free_port()
    process = subprocess.Popen(  # noqa: S603
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    wait_until(lambda: redis_answers(url), timeout=10, what="redis-server", process=process)
    return LocalProcess("redis", process, url)


def start_gunicorn(
    env: dict[str, str], *, app: str = "wsgi:app", workers: int = 2, log_path: Path | None = None
) -> LocalProcess:
    """`gunicorn <app>` (by default the real web process) on a free loopback port, once /healthz is 200."""
    port = free_port()
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        app,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
    ]
    process = subprocess.Popen(command, env={**os.environ, **env}, stdout=log, stderr=log)  # noqa: S603
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: answers_ok(f"{url}/healthz"), timeout=60, what=f"gunicorn {app}", process=process)
    return LocalProcess(app, process, url)


def start_verifier(env: dict[str, str], *, log_path: Path) -> LocalProcess:
    """`tryon verifier` (its own process group, as a dyno), once it has loaded the face model."""
    log = open(log_path, "ab")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "entrypoints.cli", "verifier"],
        env={**os.environ, **env},
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    from entrypoints.verifier import VERIFIER_WARM  # noqa: PLC0415 - only callers of this import rq's worker

    wait_until(
        lambda: VERIFIER_WARM in log_path.read_text(errors="replace"),
        timeout=120,
        what="tryon verifier",
        process=process,
    )
    return LocalProcess("verifier", process, "")


def answers_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=0.5).status_code == 200
    except requests.RequestException:
        return False
