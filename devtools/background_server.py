"""Serving a stdlib HTTP server from a daemon thread, for the project's own loopback stand-ins."""

from __future__ import annotations

import threading
from http.server import HTTPServer

POLL_SECONDS = 0.05  # serve_forever's default 0.5 s poll made every stop() wait that long


def serve_in_background(server: HTTPServer, name: str) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, args=(POLL_SECONDS,), name=name, daemon=True)
    thread.start()
    return thread


def shut_down(server: HTTPServer | None, thread: threading.Thread | None) -> None:
    """Stop serving: connections to the port are refused from now on."""
    if server is not None:
        server.shutdown()
        server.server_close()
    if thread is not None:
        thread.join()
