"""A loopback stand-in for fal.ai's queue API (``queue.fal.run``) and its CDN, for demos and tests only.

Submissions become jobs that wait ``queue_seconds``, then really download their ``image_urls`` (an expired
pre-signed URL fails exactly as on fal), "edit" them with Pillow and publish the outputs at ``/files/...``.
Like fal, a failed job still ends ``COMPLETED``; its error is what GET ``response_url`` answers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from devtools.background_server import serve_in_background, shut_down
from devtools.fal_simulator.engine import Counts, Engine
from devtools.fal_simulator.faults import JobFault
from devtools.fal_simulator.jobs import Reply

from .webhooks import JWKS_PATH, WebhookDelivery, WebhookFault  # relative: survives the move to devtools/

DEFAULT_KEY = "fal-simulator-key"
MAX_BODY_BYTES = 1024 * 1024
MAX_SEEN_REQUESTS = 1000


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str  # with its query string
    headers: dict[str, str]  # names lower-cased; the Authorization header is never kept
    key_matched: bool | None  # None when no Authorization header was sent


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _send(request: BaseHTTPRequestHandler, reply: Reply, content_type: str = "application/json") -> None:
    data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
    request.send_response(reply.status)
    request.send_header("Content-Type", content_type)
    request.send_header("Content-Length", str(len(data)))
    for name, value in reply.headers.items():
        request.send_header(name, value)
    request.end_headers()
    request.wfile.write(data)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that hung up is no news
            super().handle_error(request, client_address)


class FalSimulator:
    """fal's queue on 127.0.0.1; ``base_url`` is the queue host (what ``FAL_QUEUE_URL`` is set to).

    ``validate_on_submit=False`` is fal's behaviour: the queue accepts any JSON object and a schema error
    is the job's result (COMPLETED, then 422). ``True`` answers the 422 to the submission instead.
    """

    def __init__(
        self,
        key: str = DEFAULT_KEY,
        *,
        queue_seconds: float = 0.0,
        work_seconds: float = 0.0,
        validate_on_submit: bool = False,
        max_jobs: int = 500,
    ) -> None:
        self._key_digest = _digest(key)  # only a digest: the key itself is never kept
        self._engine = Engine(queue_seconds, work_seconds, validate_on_submit, max_jobs)
        self._seen: deque[SeenRequest] = deque(maxlen=MAX_SEEN_REQUESTS)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._base_url: str | None = None

    # -- controls for tests -----------------------------------------------------------------------------

    def fail_next_submits(self, status: int, count: int = 1, error_type: str | None = None) -> None:
        """The next ``count`` submissions answer ``status``: 429 (concurrency limit) or a typed 5xx."""
        self._engine.faults.fail_next_submits(status, count, error_type)

    def fail_next_jobs(self, kind: JobFault, count: int = 1) -> None:
        """The next ``count`` accepted jobs complete with this error instead of doing any work."""
        self._engine.faults.fail_next_jobs(kind, count)

    def stall_next_submits(self, seconds: float, count: int = 1) -> None:
        """The next ``count`` submissions are answered only after ``seconds`` (clients should time out)."""
        self._engine.faults.stall_next_submits(seconds, count)

    def fail_next_webhooks(self, kind: WebhookFault, count: int = 1) -> None:
        """The next ``count`` jobs submitted with ``?fal_webhook=`` get this delivery fault."""
        self._engine.webhooks.fail_next(kind, count)

    def set_webhook_late_seconds(self, seconds: float) -> None:
        """How long a "late" delivery waits after its job completed."""
        self._engine.webhooks.late_seconds = seconds

    def webhook_deliveries(self) -> list[WebhookDelivery]:
        """Every webhook POST attempt so far, in the order they were answered."""
        return self._engine.webhooks.deliveries()

    @property
    def jwks_url(self) -> str:
        """Where the public key that signs the simulator's webhooks is published (no key needed)."""
        return self.base_url + JWKS_PATH

    def set_queue_seconds(self, seconds: float) -> None:
        """How long jobs submitted from now on wait IN_QUEUE."""
        with self._engine.lock:
            self._engine.queue_seconds = seconds

    def set_work_seconds(self, seconds: float) -> None:
        """How long jobs submitted from now on stay IN_PROGRESS after fetching their inputs."""
        with self._engine.lock:
            self._engine.work_seconds = seconds

    def reset(self) -> None:
        """Forget jobs, files, faults, counters and seen requests; restore the constructor's delays."""
        self._engine.reset()
        with self._engine.lock:
            self._seen.clear()

    def counts(self) -> Counts:
        with self._engine.lock:
            return Counts(**self._engine.counters)

    def jobs_in_flight(self) -> int:
        """Accepted jobs not yet COMPLETED (IN_QUEUE or IN_PROGRESS): what fal is holding right now."""
        with self._engine.lock:
            return len(self._engine.threads)

    def requests_seen(self) -> list[SeenRequest]:
        with self._engine.lock:
            return list(self._seen)

    def submitted_headers(self, request_id: str) -> dict[str, str]:
        """The ``X-Fal-*`` headers a job was submitted with (names lower-cased). KeyError if unknown."""
        with self._engine.lock:
            return dict(self._engine.jobs[request_id].platform_headers)

    def job_times(self, request_id: str) -> tuple[float, float | None]:
        """When a job was submitted and when it became COMPLETED (None until then), on this process's
        ``time.monotonic()`` clock: how long fal held it. KeyError if unknown (or evicted)."""
        with self._engine.lock:
            job = self._engine.jobs[request_id]
            return job.submitted_at, job.completed_at

    # -- lifecycle --------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the fal simulator has not been started")
        return self._base_url

    def start(self) -> FalSimulator:
        if self._server is not None:
            return self
        simulator = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                simulator._dispatch(self, "GET")

            def do_POST(self) -> None:
                simulator._dispatch(self, "POST")

            def do_PUT(self) -> None:
                simulator._dispatch(self, "PUT")

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests and demos do not want an access log."""

        self._engine.stopping.clear()
        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._base_url = self._engine.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = serve_in_background(self._server, f"fal-simulator {self._base_url}")
        return self

    def stop(self) -> None:
        """Refuse connections from now on and end the job threads; unfinished jobs stay unfinished."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        shut_down(server, thread)
        self._engine.stop()

    def __enter__(self) -> FalSimulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- routing ----------------------------------------------------------------------------------------

    def _dispatch(self, request: BaseHTTPRequestHandler, method: str) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            _send(request, Reply(413, {"detail": "Request body too large"}))
            return
        body = request.rfile.read(length) if length > 0 else b""  # read first: never reset the client
        url = urlsplit(request.path)
        parts = [part for part in url.path.split("/") if part]
        headers = {name.lower(): value for name, value in request.headers.items()}
        authorization = headers.pop("authorization", None)
        matched = None if authorization is None else self._key_matches(authorization)
        with self._engine.lock:
            self._seen.append(SeenRequest(method, request.path, headers, matched))
        if method == "GET" and len(parts) == 2 and parts[0] == "files":
            stored = self._engine.file(parts[1])
            if stored is None:
                _send(request, Reply(404, {"detail": "File not found"}))
            else:
                _send(request, Reply(200, stored.data), stored.content_type)
        elif method == "GET" and url.path == JWKS_PATH:
            _send(request, Reply(200, self._engine.webhooks.signer.jwks()))
        elif not matched:
            detail = "No authorization header" if matched is None else "Invalid Key authorization"
            _send(request, Reply(401, {"detail": detail}))
        elif len(parts) >= 4 and parts[2] == "requests":
            _send(request, self._request_route(method, "/".join(parts[:2]), parts[3], parts[4:], url.query))
        elif method == "POST" and len(parts) >= 2:
            webhook = parse_qs(url.query).get("fal_webhook", [None])[0]
            _send(request, self._engine.submit("/".join(parts[:2]), headers, body, webhook))
        else:
            _send(request, Reply(404, {"detail": "Not Found"}))

    def _key_matches(self, authorization: str) -> bool:
        scheme, _, token = authorization.partition(" ")
        return scheme.lower() == "key" and hmac.compare_digest(_digest(token.strip()), self._key_digest)

    def _request_route(self, method: str, app: str, request_id: str, rest: list[str], query: str) -> Reply:
        if (method, rest) == ("GET", []):
            return self._engine.result(app, request_id)
        if (method, rest) == ("GET", ["status"]):
            with_logs = parse_qs(query).get("logs", ["0"])[0].lower() in ("1", "true")
            return self._engine.status(app, request_id, with_logs)
        if (method, rest) == ("PUT", ["cancel"]):
            return self._engine.cancel(app, request_id)
        return Reply(404, {"detail": "Not Found"})
