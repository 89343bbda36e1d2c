"""FalQueueGenerator over real HTTP, against a small fake fal queue served from this module."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import requests

from adapters.fal_queue import FalQueueGenerator
from domain.errors import GenerationFailed
from domain.model import GeneratedImage, GenerationRequest, JobState, SignedUrl, Submission
from tests.builders.loopback import Loopback, QuietHandler

pytestmark = pytest.mark.integration

KEY = "k"
MODEL = "fal-ai/nano-banana/edit"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 200
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
WEBP = b"RIFF\x00\x01\x00\x00WEBPVP8 " + b"\x00" * 200
SIGNED = SignedUrl("http://127.0.0.1:9/uploads/u1/a1?X-Amz-Signature=abc123def456")

Reply = tuple[int, dict[str, str], bytes]
Route = Callable[[BaseHTTPRequestHandler], Reply | None]


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes


class FakeServer:
    """A loopback HTTP/1.0 server: canned routes, every request recorded. A route returning None has
    written (or withheld) its answer itself."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.routes: dict[tuple[str, str], Route] = {}
        self.release = threading.Event()
        fake = self

        class Handler(QuietHandler):
            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                headers = {name.lower(): value for name, value in self.headers.items()}
                fake.seen.append(Seen(self.command, self.path, headers, self.rfile.read(length)))
                route = fake.routes.get((self.command, self.path))
                reply = route(self) if route else (404, {}, b'{"detail": "Not Found"}')
                if reply is None:
                    return
                status, extra, data = reply
                self.send_response(status)
                for name, value in ({"Content-Length": str(len(data))} | extra).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self.handle_one()

            def do_POST(self) -> None:
                self.handle_one()

            def do_PUT(self) -> None:
                self.handle_one()

        self.server = Loopback(Handler, "fake fal")
        self.base = self.server.url()

    def json(
        self, method: str, path: str, status: int, body: object, headers: dict[str, str] | None = None
    ) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.routes[method, path] = lambda _: (
            status,
            {"Content-Type": "application/json", **(headers or {})},
            data,
        )

    def raw(self, path: str, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.routes["GET", path] = lambda _: (status, headers or {}, data)

    def close(self) -> None:
        self.release.set()
        self.server.close()


@pytest.fixture
def fal() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.close()


@pytest.fixture
def other() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.close()


def generator_for(server: FakeServer, **overrides: Any) -> FalQueueGenerator:
    settings: dict[str, Any] = {
        "api_key": KEY,
        "queue_url": server.base,
        "result_hosts": (server.base,),
        "timeout_seconds": 2.0,
        "result_lifetime_seconds": 600,
    }
    return FalQueueGenerator(**(settings | overrides))


def submission_on(server: FakeServer, request_id: str = "r1") -> Submission:
    prefix = f"{server.base}/fal-ai/nano-banana/requests/{request_id}"
    return Submission(request_id, f"{prefix}/status", prefix, f"{prefix}/cancel")


def failure(call: Callable[[], object]) -> GenerationFailed:
    with pytest.raises(GenerationFailed) as caught:
        call()
    assert KEY not in caught.value.detail.split() and "abc123def456" not in caught.value.detail
    return caught.value


def test_submit_sends_exactly_the_documented_body_and_headers(fal):
    expected = submission_on(fal, "req-42")
    fal.json(
        "POST",
        f"/{MODEL}",
        200,
        {
            "request_id": "req-42",
            "status_url": expected.status_url,
            "response_url": expected.response_url,
            "cancel_url": expected.cancel_url,
            "queue_position": 0,
        },
    )
    request = GenerationRequest(
        prompt="a short bob", image_url=SIGNED, num_images=2, output_format="png", start_deadline_seconds=200
    )

    submission = generator_for(fal).submit(request)

    assert submission == expected
    [seen] = fal.seen
    assert (seen.method, seen.path) == ("POST", f"/{MODEL}")
    assert json.loads(seen.body) == {
        "prompt": "a short bob",
        "image_urls": [str(SIGNED)],
        "num_images": 2,
        "output_format": "png",
    }
    assert seen.headers["authorization"] == "Key k"
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["x-fal-request-timeout"] == "200"
    assert seen.headers["x-fal-store-io"] == "0"
    assert json.loads(seen.headers["x-fal-object-lifecycle-preference"]) == {
        "expiration_duration_seconds": 600
    }


def test_the_key_wins_over_a_shared_sessions_own_authorization(fal):
    fal.json("GET", "/fal-ai/nano-banana/requests/r1/status", 200, {"status": "COMPLETED"})
    session = requests.Session()
    session.headers["Authorization"] = "Bearer something-else"

    generator_for(fal, session=session).state(submission_on(fal))

    assert fal.seen[0].headers["authorization"] == "Key k"


def test_a_submit_answer_without_the_urls_is_retryable(fal):
    fal.json("POST", f"/{MODEL}", 200, {"request_id": "r1"})

    error = failure(lambda: generator_for(fal).submit(GenerationRequest(prompt="p", image_url=SIGNED)))

    assert (error.code, error.retryable) == ("upstream_unavailable", True)


@pytest.mark.parametrize(
    ("http_status", "fal_status", "state"),
    [
        (202, "IN_QUEUE", JobState.QUEUED),
        (202, "IN_PROGRESS", JobState.RUNNING),
        (200, "COMPLETED", JobState.COMPLETED),
    ],
)
def test_states_map_to_job_states(fal, http_status, fal_status, state):
    fal.json(
        "GET",
        "/fal-ai/nano-banana/requests/r1/status",
        http_status,
        {"status": fal_status, "queue_position": 1},
    )

    assert generator_for(fal).state(submission_on(fal)) == state
    assert fal.seen[0].headers["authorization"] == "Key k"


@pytest.mark.parametrize(
    ("http_status", "body", "code", "retryable"),
    [
        (200, {"status": "FAILED"}, "generation_failed", False),
        (200, {"queue_position": 1}, "upstream_unavailable", True),
        (200, b"<html>", "upstream_unavailable", True),
        (429, {"detail": "too many requests"}, "upstream_unavailable", True),
        (401, {"detail": "Unauthorized"}, "generation_failed", False),
        (503, {"detail": "down"}, "upstream_unavailable", True),
    ],
)
def test_state_failures(fal, http_status, body, code, retryable):
    fal.json("GET", "/fal-ai/nano-banana/requests/r1/status", http_status, body)

    error = failure(lambda: generator_for(fal).state(submission_on(fal)))

    assert (error.code, error.retryable) == (code, retryable)


def test_result_lists_the_generated_images(fal):
    images = [
        {
            "url": "https://v3.fal.media/files/a.jpeg",
            "content_type": "image/jpeg",
            "width": 1024,
            "height": 768,
        },
        {"url": "https://v3.fal.media/files/b.png", "file_name": "b.png"},
    ]
    fal.json("GET", "/fal-ai/nano-banana/requests/r1", 200, {"images": images, "description": ""})

    assert generator_for(fal).result(submission_on(fal)) == [
        GeneratedImage("https://v3.fal.media/files/a.jpeg", "image/jpeg", 1024, 768),
        GeneratedImage("https://v3.fal.media/files/b.png", None, None, None),
    ]


def file_error(kind: str) -> dict[str, Any]:
    return {"detail": [{"loc": ["body", "image_urls", 0], "msg": f"could not read {SIGNED}", "type": kind}]}


@pytest.mark.parametrize(
    ("http_status", "body", "headers", "code", "retryable"),
    [
        (422, file_error("file_download_error"), {}, "source_expired", True),
        (422, file_error("content_policy_violation"), {}, "content_policy_violation", False),
        (422, file_error("image_too_large"), {}, "invalid_request", False),
        (500, {"detail": "oops", "error_type": "internal_server_error"}, {}, "generation_failed", True),
        (504, {"detail": "timeout"}, {"X-Fal-Error-Type": "request_timeout"}, "upstream_timeout", True),
        (400, {"detail": "bad"}, {}, "generation_failed", False),
        (200, {"images": []}, {}, "generation_failed", True),
        (200, {"images": [{"content_type": "image/png"}]}, {}, "upstream_unavailable", True),
        (200, b'{"images": [', {}, "upstream_unavailable", True),
    ],
)
def test_a_failed_job_shows_its_error_in_the_result(fal, http_status, body, headers, code, retryable):
    fal.json("GET", "/fal-ai/nano-banana/requests/r1", http_status, body, headers)

    error = failure(lambda: generator_for(fal).result(submission_on(fal)))

    assert (error.code, error.retryable) == (code, retryable)
    assert "127.0.0.1:9" not in error.detail


@pytest.mark.parametrize("method", ["state", "result", "cancel"])
def test_a_url_on_another_host_is_refused_without_calling_it(fal, other, method):
    other.json("GET", "/fal-ai/nano-banana/requests/r1/status", 200, {"status": "COMPLETED"})
    foreign = submission_on(other)
    same_host_other_scheme = Submission(
        "r1",
        fal.base.replace("http:", "https:"),
        fal.base.replace("http:", "https:"),
        fal.base.replace("http:", "https:"),
    )

    for submission in (foreign, same_host_other_scheme):
        error = failure(partial(getattr(generator_for(fal), method), submission))
        assert (error.code, error.retryable) == ("generation_failed", False)
    assert other.seen == []
    assert fal.seen == []


@pytest.mark.parametrize(
    ("status", "body"),
    [(202, {"status": "CANCELLATION_REQUESTED"}), (200, {}), (400, {"status": "ALREADY_COMPLETED"})],
)
def test_cancel_accepts_what_fal_answers(fal, caplog, status, body):
    fal.json("PUT", "/fal-ai/nano-banana/requests/r1/cancel", status, body)

    with caplog.at_level(logging.WARNING, logger="adapters.fal_queue"):
        generator_for(fal).cancel(submission_on(fal))

    assert [(seen.method, seen.headers["authorization"]) for seen in fal.seen] == [("PUT", "Key k")]
    assert caplog.records == []


def test_cancel_is_best_effort(fal, caplog):
    fal.json("PUT", "/fal-ai/nano-banana/requests/r1/cancel", 500, {"detail": "oops"})
    dead = FakeServer()
    dead_submission = submission_on(dead)
    dead.close()

    with caplog.at_level(logging.WARNING, logger="adapters.fal_queue"):
        generator_for(fal).cancel(submission_on(fal))
        generator_for(dead).cancel(dead_submission)

    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert "HTTP 500" in messages[0]
    assert "could not reach fal" in messages[1]
    assert all("Key k" not in message for message in messages)


def test_every_queue_call_is_timed_under_its_name_failed_ones_too(fal):
    observed: list[tuple[str, float]] = []
    generator = generator_for(fal, observe=lambda call, seconds: observed.append((call, seconds)))
    submission = submission_on(fal)
    fal.json("POST", f"/{MODEL}", 200, {"request_id": "r1", **submission_urls(submission)})
    fal.json("GET", "/fal-ai/nano-banana/requests/r1/status", 200, {"status": "COMPLETED"})
    fal.json("GET", "/fal-ai/nano-banana/requests/r1", 503, {"detail": "down"})
    fal.json("PUT", "/fal-ai/nano-banana/requests/r1/cancel", 202, {"status": "CANCELLATION_REQUESTED"})

    generator.submit(GenerationRequest(prompt="p", image_url=SIGNED))
    generator.state(submission)
    failure(lambda: generator.result(submission))
    generator.cancel(submission)

    assert [call for call, _ in observed] == ["submit", "status", "result", "cancel"]
    assert all(0 <= seconds < 2 for _, seconds in observed)


def submission_urls(submission: Submission) -> dict[str, str]:
    return {
        "status_url": submission.status_url,
        "response_url": submission.response_url,
        "cancel_url": submission.cancel_url,
    }


@pytest.mark.parametrize(
    ("data", "content_type"), [(JPEG, "image/jpeg"), (PNG, "image/png"), (WEBP, "image/webp")]
)
def test_download_sniffs_the_type_and_ignores_the_header(fal, data, content_type):
    fal.raw("/files/out", 200, data, {"Content-Type": "text/plain"})

    image = generator_for(fal).download(GeneratedImage(f"{fal.base}/files/out", "image/gif"), 10_000)

    assert (image.data, image.content_type) == (data, content_type)


def test_download_sends_no_credential_even_with_netrc_or_a_session_header(fal, tmp_path: Path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    fal.raw("/files/out.jpg", 200, JPEG)
    requests.get(
        f"{fal.base}/files/out.jpg", timeout=5
    )  # proves the netrc file is honoured by plain requests
    session = requests.Session()
    session.headers["Authorization"] = "Key k"

    generator_for(fal).download(GeneratedImage(f"{fal.base}/files/out.jpg"), 10_000)
    generator_for(fal, session=session).download(GeneratedImage(f"{fal.base}/files/out.jpg"), 10_000)

    assert fal.seen[0].headers["authorization"].startswith("Basic ")
    assert [seen.headers.get("authorization") for seen in fal.seen[1:]] == [None, None]


def test_download_refuses_hosts_that_are_not_result_hosts(fal, other):
    other.raw("/files/out.jpg", 200, JPEG)
    fal_generator = generator_for(fal)

    for url in (f"{other.base}/files/out.jpg", f"{fal.base}@{other.base[7:]}/files/out.jpg"):
        error = failure(partial(fal_generator.download, GeneratedImage(url), 10_000))
        assert (error.code, error.retryable) == ("generation_failed", False)
    default_hosts = FalQueueGenerator(api_key=KEY, queue_url=fal.base)
    failure(lambda: default_hosts.download(GeneratedImage(f"{other.base}/files/out.jpg"), 10_000))
    assert other.seen == []


def test_download_does_not_follow_redirects(fal):
    fal.raw("/files/out.jpg", 302, b"", {"Location": f"{fal.base}/files/real.jpg"})
    fal.raw("/files/real.jpg", 200, JPEG)

    error = failure(lambda: generator_for(fal).download(GeneratedImage(f"{fal.base}/files/out.jpg"), 10_000))

    assert (error.code, error.retryable) == ("generation_failed", False)
    assert [seen.path for seen in fal.seen] == ["/files/out.jpg"]


def test_download_refuses_oversize_bodies_with_or_without_a_length(fal):
    fal.raw("/files/declared.jpg", 200, JPEG + b"\x00" * 1000)

    def undeclared(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.end_headers()
        handler.wfile.write(JPEG + b"\x00" * 200_000)  # HTTP/1.0: the body ends when the connection closes

    fal.routes["GET", "/files/undeclared.jpg"] = undeclared
    generator = generator_for(fal)

    for name in ("declared", "undeclared"):
        error = failure(partial(generator.download, GeneratedImage(f"{fal.base}/files/{name}.jpg"), 1000))
        assert (error.code, error.retryable) == ("generation_failed", False)
        assert "larger than 1000 bytes" in error.detail


def test_download_refuses_what_is_not_an_image(fal):
    fal.raw("/files/out.jpg", 200, b"<html>not an image</html>", {"Content-Type": "image/jpeg"})

    error = failure(lambda: generator_for(fal).download(GeneratedImage(f"{fal.base}/files/out.jpg"), 10_000))

    assert (error.code, error.retryable) == ("generation_failed", False)


def test_a_missing_result_is_final_and_a_cdn_outage_retryable(fal):
    fal.raw("/files/gone.jpg", 404, b"")
    fal.raw("/files/busy.jpg", 503, b"")
    generator = generator_for(fal)

    gone = failure(lambda: generator.download(GeneratedImage(f"{fal.base}/files/gone.jpg"), 10_000))
    busy = failure(lambda: generator.download(GeneratedImage(f"{fal.base}/files/busy.jpg"), 10_000))

    assert (gone.code, gone.retryable) == ("generation_failed", False)
    assert (busy.code, busy.retryable) == ("upstream_unavailable", True)


def hang(fake: FakeServer) -> Route:
    def route(_: BaseHTTPRequestHandler) -> None:
        fake.release.wait(30)

    return route


def drip(fake: FakeServer) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        try:
            handler.wfile.write(JPEG[:3])
            while not fake.release.wait(0.05):
                handler.wfile.write(b"\x00" * 10)
                handler.wfile.flush()
        except OSError:
            pass

    return route


def test_a_server_that_never_answers_times_out(fal):
    fal.routes["GET", "/fal-ai/nano-banana/requests/r1/status"] = hang(fal)
    fal.routes["POST", f"/{MODEL}"] = hang(fal)
    generator = generator_for(fal, timeout_seconds=0.5)

    for call in (
        lambda: generator.state(submission_on(fal)),
        lambda: generator.submit(GenerationRequest(prompt="p", image_url=SIGNED)),
    ):
        started = time.monotonic()
        error = failure(call)
        assert (error.code, error.retryable) == ("upstream_timeout", True)
        assert time.monotonic() - started < 2.0


def test_a_slow_drip_cannot_stretch_a_download_past_the_timeout(fal):
    fal.routes["GET", "/files/slow.jpg"] = drip(fal)
    generator = generator_for(fal, timeout_seconds=0.5)

    started = time.monotonic()
    error = failure(lambda: generator.download(GeneratedImage(f"{fal.base}/files/slow.jpg"), 1_000_000))

    assert (error.code, error.retryable) == ("upstream_timeout", True)
    assert time.monotonic() - started < 2.0


def test_a_refused_connection_is_retryable_and_unavailable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    generator = FalQueueGenerator(api_key=KEY, queue_url=f"http://127.0.0.1:{port}", timeout_seconds=1.0)

    error = failure(lambda: generator.submit(GenerationRequest(prompt="p", image_url=SIGNED)))

    assert (error.code, error.retryable) == ("upstream_unavailable", True)
