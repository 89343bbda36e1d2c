"""A request id on every request and response, and one access log line per request."""

from __future__ import annotations

import logging
import re
import secrets
import time

from flask import Flask, Response, g, request

from entrypoints.logs import request_id_var

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

log = logging.getLogger("tryon.access")


def _begin() -> None:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = incoming if _VALID_REQUEST_ID.fullmatch(incoming) else secrets.token_hex(8)
    g.started = time.perf_counter()
    request_id_var.set(g.request_id)


def _finish(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
    response.headers.setdefault("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if request.path.startswith("/v1/"):
        response.headers.setdefault("Cache-Control", "no-store")
    log.info(
        "request",
        extra={
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 2),
            "user_id": g.get("user_id"),
        },
    )
    return response


def install_request_logging(app: Flask) -> None:
    """Must be installed first so the request id exists before authentication or rate limiting run."""
    app.before_request(_begin)
    app.after_request(_finish)
