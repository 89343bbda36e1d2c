"""`tryon demo`: the end-to-end walk-through on loopback, printing each step.

Starts what it needs (ministack, Redis unless one answers, a dev JWT issuer, the real `web` process),
runs the flow a mobile client runs, stops everything it started, and exits 0 only if every step did
what it should.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests

from adapters.s3_storage import make_s3_client
from devtools.dev_issuer import DevJwtIssuer
from devtools.fal_simulator import DEFAULT_KEY, FalSimulator
from devtools.local_stack import (
    EMULATOR_CREDENTIALS,
    LocalServiceError,
    redis_answers,
    start_gunicorn,
    start_ministack,
    start_redis,
    start_verifier,
)
from domain.scrubbing import Scrubber

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_SELFIE = ROOT / "samples" / "selfie.jpg"
SAMPLE_NO_FACE = ROOT / "tests" / "fixtures" / "images" / "no_face.jpg"
WORKDIR = ROOT / "var" / "demo"
HTTP_TIMEOUT = 10


class StepFailed(Exception):
    pass


class Walkthrough:
    def __init__(self) -> None:
        self.number = 0
        self.failures = 0

    def step(self, title: str, action: Callable[[], str]) -> None:
        self.number += 1
        print(f"[{self.number:>2}] {title} ...", flush=True)
        started = time.perf_counter()
        try:
            outcome = action()
        except Exception as error:  # a demo reports every failure and carries on to clean up
            self.failures += 1
            print(f"     FAILED: {error}", flush=True)
            raise
        print(f"     ok ({(time.perf_counter() - started) * 1000:.0f} ms) {outcome}", flush=True)


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise StepFailed(message)


def run_cli(command: str, env: dict[str, str]) -> str:
    """Run ``tryon <command>`` (the CLI, in a process of its own) with ``env`` over this one's environment;
    its output. Raises LocalServiceError if it fails. Shared with ``bench.stack``."""
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "entrypoints.cli", command],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise LocalServiceError(f"tryon {command} exited {done.returncode}: {done.stderr[-500:]}")
    return done.stdout.strip()


def find_or_start_redis(stack: ExitStack, *, private: bool = False) -> tuple[str, str]:
    """The Redis at ``REDIS_URL`` if one answers there, else a redis-server of our own (always one of our
    own if ``private``): its URL, and which it was. Shared with ``bench.stack``."""
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if not private and redis_answers(url):
        return url, f"using the Redis already running at {url}"
    started = stack.enter_context(start_redis())
    return started.url, f"started redis-server at {started.url}"


def run_demo() -> int:
    walk = Walkthrough()
    try:
        with ExitStack() as stack:
            _run(walk, stack)
    except Exception:  # reported by the step that failed; everything started has been stopped
        print(f"\ndemo FAILED at step {walk.number}; logs are under {WORKDIR}", flush=True)
        return 1
    print(f"\ndemo passed: {walk.number} steps, everything started has been stopped", flush=True)
    return 0


def _run(walk: Walkthrough, stack: ExitStack) -> None:  # noqa: PLR0915 - a linear script reads best
    WORKDIR.mkdir(parents=True, exist_ok=True)
    (WORKDIR / "tryon.db").unlink(missing_ok=True)
    os.environ.update(EMULATOR_CREDENTIALS)
    state: dict[str, Any] = {}
    scrub = Scrubber()

    def s3_emulator() -> str:
        state["s3"] = stack.enter_context(start_ministack(log_path=WORKDIR / "ministack.log"))
        return f"ministack S3 emulator at {state['s3'].url}"

    def redis_server() -> str:
        state["redis"], found = find_or_start_redis(stack)
        return found

    def auth_server() -> str:
        state["issuer"] = stack.enter_context(DevJwtIssuer())
        return f"dev JWT issuer (Ed25519 JWKS, like Better Auth) at {state['issuer'].jwks_url}"

    walk.step("Start the S3 emulator", s3_emulator)
    walk.step("Find or start Redis", redis_server)
    walk.step("Start a local Better Auth-style JWKS issuer", auth_server)
    env = {
        **EMULATOR_CREDENTIALS,
        "DATABASE_URL": f"sqlite:///{WORKDIR / 'tryon.db'}",
        "REDIS_URL": state["redis"],
        "S3_ENDPOINT_URL": state["s3"].url,
        "UPLOADS_BUCKET": "hairfluencer-demo-uploads",
        "PROCESSED_BUCKET": "hairfluencer-demo-processed",
        "BETTER_AUTH_URL": state["issuer"].base_url,
        "RATE_LIMIT_UPLOADS": "100/minute",
        "RATE_LIMIT_TRYONS": "100/minute",
        "RATE_LIMIT_MUTATIONS": "100/minute",
        "MAX_ACTIVE_TRYONS": "10",
        "DAILY_IMAGE_QUOTA": "1000",
    }

    def release(command: str) -> Callable[[], str]:
        return lambda: " / ".join(run_cli(command, env).splitlines())

    walk.step("tryon migrate (the release process)", release("migrate"))
    walk.step("tryon migrate again (idempotent)", release("migrate"))
    walk.step("tryon provision (private, encrypted buckets)", release("provision"))

    def web() -> str:
        state["web"] = stack.enter_context(start_gunicorn(env, log_path=WORKDIR / "web.log"))
        ready = requests.get(f"{state['web'].url}/readyz", timeout=HTTP_TIMEOUT)
        expect(ready.status_code == 200, f"/readyz answered {ready.status_code}: {ready.text}")
        return f"gunicorn wsgi:app at {state['web'].url}; /readyz {ready.json()['checks']}"

    walk.step("Start the web process", web)

    def verifier() -> str:
        state["verifier"] = stack.enter_context(start_verifier(env, log_path=WORKDIR / "verifier.log"))
        return f"tryon verifier (face model loaded, on the verify queue), pid {state['verifier'].process.pid}"

    walk.step("Start the verifier process", verifier)
    api = state["web"].url
    user_id = f"demo{secrets.token_hex(4)}"
    auth = {"Authorization": f"Bearer {state['issuer'].mint(user_id)}"}
    selfie = SAMPLE_SELFIE.read_bytes()
    checksum = base64.b64encode(hashlib.sha256(selfie).digest()).decode()

    def refused_without_token() -> str:
        response = requests.post(f"{api}/v1/uploads", json={}, timeout=HTTP_TIMEOUT)
        expect(response.status_code == 401, f"expected 401, got {response.status_code}")
        return f"401 {response.json()['code']}, WWW-Authenticate: {response.headers['WWW-Authenticate']}"

    def refused_svg() -> str:
        body = {"content_type": "image/svg+xml", "content_length": 1000}
        response = requests.post(f"{api}/v1/uploads", json=body, headers=auth, timeout=HTTP_TIMEOUT)
        expect(response.status_code == 422 and "url" not in response.json(), response.text)
        return f"422 {response.json()['code']}, no URL issued"

    def issue() -> str:
        body = {"content_type": "image/jpeg", "content_length": len(selfie), "checksum_sha256": checksum}
        response = requests.post(f"{api}/v1/uploads", json=body, headers=auth, timeout=HTTP_TIMEOUT)
        expect(response.status_code == 201, f"expected 201, got {response.status_code}: {response.text}")
        state["ticket"] = ticket = response.json()
        expect(ticket["object_key"].startswith(f"uploads/{user_id}/"), "key outside the caller's prefix")
        return (
            f"\n       upload_id  {ticket['upload_id']}\n       object_key {ticket['object_key']}"
            f"\n       expires_at {ticket['expires_at']}\n       url        {scrub(ticket['url'])}"
            f"\n       headers    {ticket['headers']}"
        )

    def upload() -> str:
        ticket = state["ticket"]
        response = requests.put(ticket["url"], data=selfie, headers=ticket["headers"], timeout=HTTP_TIMEOUT)
        expect(response.status_code == 200, f"S3 answered {response.status_code}: {response.text[:200]}")
        return f"S3 answered 200 for {len(selfie)} bytes"

    def replay() -> str:
        ticket = state["ticket"]
        response = requests.put(ticket["url"], data=selfie, headers=ticket["headers"], timeout=HTTP_TIMEOUT)
        expect(response.status_code == 412, f"expected 412 on replay, got {response.status_code}")
        return "S3 answered 412 Precondition Failed: the URL is single-use"

    def tampered() -> str:
        ticket = state["ticket"]
        forged_url = ticket["url"].replace("X-Amz-Signature=", "X-Amz-Signature=0")
        response = requests.put(forged_url, data=selfie, headers=ticket["headers"], timeout=HTTP_TIMEOUT)
        expect(response.status_code == 403, f"expected 403, got {response.status_code}")
        return "S3 answered 403: the signature covers the URL"

    def stored_encrypted() -> str:
        s3 = make_s3_client(region="us-east-1", endpoint_url=state["s3"].url)
        head = s3.head_object(Bucket=env["UPLOADS_BUCKET"], Key=state["ticket"]["object_key"])
        expect(head["ServerSideEncryption"] == "AES256", f"not encrypted: {head.get('ServerSideEncryption')}")
        expect(head["ContentLength"] == len(selfie), "stored size differs")
        return f"{head['ContentLength']} bytes, {head['ContentType']}, SSE {head['ServerSideEncryption']}"

    walk.step("POST /v1/uploads without a token", refused_without_token)
    walk.step("POST /v1/uploads declaring image/svg+xml", refused_svg)
    walk.step(f"POST /v1/uploads for {SAMPLE_SELFIE.name} as {user_id}", issue)
    walk.step("PUT the selfie to the URL with exactly the issued headers", upload)
    walk.step("PUT it again (replay)", replay)
    walk.step("PUT with a tampered signature", tampered)
    walk.step("HEAD the stored object", stored_encrypted)

    s3 = make_s3_client(region="us-east-1", endpoint_url=state["s3"].url)

    def keys_under(prefix: str) -> list[str]:
        listing = s3.list_objects_v2(Bucket=env["UPLOADS_BUCKET"], Prefix=prefix)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def complete(ticket: dict[str, Any]) -> requests.Response:
        return requests.post(
            f"{api}/v1/uploads/{ticket['upload_id']}/complete",
            json={"object_key": ticket["object_key"]},
            headers=auth,
            timeout=60,
        )

    def verify() -> str:
        ticket = state["ticket"]
        response = complete(ticket)
        expect(response.status_code == 200, f"expected 200, got {response.status_code}: {response.text}")
        body = response.json()
        kept = keys_under(ticket["object_key"]) + keys_under(f"sources/{user_id}/{ticket['upload_id']}")
        sanitised = f"sources/{user_id}/{ticket['upload_id']}.jpg"
        expect(kept == [sanitised], f"expected only the sanitised copy, found {kept}")
        cleaned = s3.get_object(Bucket=env["UPLOADS_BUCKET"], Key=kept[0])["Body"].read()
        expect(b"Exif" not in cleaned and b"GPS" not in cleaned, "metadata survived sanitising")
        return (
            f"{body['status']}: {body['width']}x{body['height']} {body['content_type']},"
            f" {body['size']} bytes,"
            f" sha256 {body['checksum_sha256'][:12]}..., no EXIF; the original is deleted; kept until"
            f" {body['expires_at']} unless used"
        )

    def reject_no_face() -> str:
        photo = SAMPLE_NO_FACE.read_bytes()
        body = {"content_type": "image/jpeg", "content_length": len(photo)}
        ticket = requests.post(f"{api}/v1/uploads", json=body, headers=auth, timeout=HTTP_TIMEOUT).json()
        sent = requests.put(ticket["url"], data=photo, headers=ticket["headers"], timeout=HTTP_TIMEOUT)
        expect(sent.status_code == 200, f"PUT answered {sent.status_code}")
        expect(keys_under(ticket["object_key"]) == [ticket["object_key"]], "the PUT did not land")
        response = complete(ticket)
        expect(response.status_code == 422, f"expected 422, got {response.status_code}: {response.text}")
        left = keys_under(ticket["object_key"])
        expect(left == [], f"rejected object still stored: {left}")
        return f"422 {response.json()['code']}; the photo was deleted from the bucket"

    walk.step("POST /v1/uploads/{id}/complete (sanitise + face gate)", verify)
    walk.step(f"Upload and complete {SAMPLE_NO_FACE.name} (a rocket, no face)", reject_no_face)
    _tryon(walk, stack, env, api=api, auth=auth, upload_id=state["ticket"]["upload_id"])


def _tryon(
    walk: Walkthrough,
    stack: ExitStack,
    env: dict[str, str],
    *,
    api: str,
    auth: dict[str, str],
    upload_id: str,
) -> None:
    state: dict[str, Any] = {}

    def fal() -> str:
        state["fal"] = stack.enter_context(FalSimulator(work_seconds=2))
        return f"fal.ai queue simulator at {state['fal'].base_url} (fal itself is unreachable from here)"

    def worker() -> str:
        worker_env = {
            **os.environ,
            **env,
            "FAL_API_KEY": DEFAULT_KEY,
            "FAL_QUEUE_URL": state["fal"].base_url,
            "FAL_RESULT_HOSTS": state["fal"].base_url,
        }
        log = stack.enter_context(open(WORKDIR / "worker.log", "ab"))  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "entrypoints.cli", "worker"], env=worker_env, stdout=log, stderr=log
        )
        stack.callback(_stop, process)
        return f"tryon worker (RQ + scheduler), pid {process.pid}"

    def order() -> str:
        body = {"upload_id": upload_id, "style_prompt": "a sleek copper bob with soft waves"}
        headers = {**auth, "Idempotency-Key": secrets.token_hex(8)}
        response = requests.post(f"{api}/v1/tryons", json=body, headers=headers, timeout=HTTP_TIMEOUT)
        expect(response.status_code == 202, f"expected 202, got {response.status_code}: {response.text}")
        state["tryon_id"] = response.json()["tryon_id"]
        return f"202 {response.json()}"

    def follow() -> str:
        deadline, seen = time.monotonic() + 90, ""
        while time.monotonic() < deadline:
            body = requests.get(
                f"{api}/v1/tryons/{state['tryon_id']}", headers=auth, timeout=HTTP_TIMEOUT
            ).json()
            if body["status"] != seen:
                seen = body["status"]
                print(f"       ... {seen} (attempts {body['attempts']})", flush=True)
            if seen in ("succeeded", "failed"):
                expect(seen == "succeeded", f"try-on failed: {body['error']}")
                state["results"] = body["results"]
                return f"succeeded with {len(body['results'])} result(s)"
            time.sleep(0.5)
        raise StepFailed("the try-on did not finish within 90 s; see var/demo/worker.log")

    def save() -> str:
        [result] = state["results"]
        response = requests.get(
            f"{api}/v1/results/{result['result_id']}/image", headers=auth, timeout=HTTP_TIMEOUT
        )
        expect(response.status_code == 200, f"expected 200, got {response.status_code}")
        extension = response.headers["Content-Type"].split("/")[-1].replace("jpeg", "jpg")
        path = WORKDIR / f"tryon-result.{extension}"
        path.write_bytes(response.content)
        return f"{len(response.content)} bytes ({response.headers['Content-Type']}) saved to {path}"

    def favourite() -> str:
        [result] = state["results"]
        url = f"{api}/v1/results/{result['result_id']}/favorite"
        response = requests.put(url, headers=auth, timeout=HTTP_TIMEOUT)
        expect(response.status_code == 204, f"expected 204, got {response.status_code}")
        return "204: the result, and the selfie it was made from, are kept past their retention"

    def sweep() -> str:
        return run_cli("sweep", env)

    walk.step("Start the fal.ai simulator", fal)
    walk.step("Start the worker process", worker)
    walk.step("POST /v1/tryons", order)
    walk.step("Poll GET /v1/tryons/{id} until it settles", follow)
    walk.step("GET /v1/results/{id}/image and save it", save)
    walk.step("PUT /v1/results/{id}/favorite", favourite)
    walk.step("tryon sweep (one retention pass)", sweep)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
