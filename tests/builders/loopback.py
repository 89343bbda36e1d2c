"""A loopback HTTP server on a free port, for the tests that play the other side of a call: a photo fal
downloads, fal's queue, a webhook receiver, a JWKS.

``Loopback(Handler)`` serves ``Handler`` (a ``QuietHandler``: a test's output stays its own) from a daemon
thread until ``close()`` or the end of its ``with`` block; ``serve_files`` answers GETs from a fixed table.
"""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from devtools.background_server import serve_in_background, shut_down

Answer = tuple[int, str, bytes]
"""Status, Content-Type and body."""


class QuietHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Logs nothing."""

    def answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Loopback:
    def __init__(self, handler: type[BaseHTTPRequestHandler], name: str = "loopback test server") -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = serve_in_background(self.server, name)

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        """Stop serving: connections to the port are refused from now on."""
        shut_down(self.server, self.thread)

    def __enter__(self) -> Loopback:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_files(routes: dict[str, Answer]) -> Loopback:
    """GET ``path`` answers ``routes[path]``; any other path 404."""

    class Files(QuietHandler):
        def do_GET(self) -> None:
            self.answer(*routes.get(self.path, (404, "text/plain", b"missing")))

    return Loopback(Files, "files")
