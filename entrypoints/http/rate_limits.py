"""Per-user rate limits (flask-limiter on Redis), checked after authentication."""

from __future__ import annotations

from flask import Flask, g, request
from flask_limiter import Limiter
from flask_smorest import Blueprint


def _user_key() -> str:
    return f"user:{g.get('user_id') or request.remote_addr}"


def install_rate_limits(app: Flask, *, storage_uri: str, uploads: Blueprint, uploads_limit: str) -> Limiter:
    """Must run after authentication is installed: limits are keyed by the authenticated user.

    If Redis is unreachable the limiter falls back to per-process memory rather than refusing uploads.
    A refusal carries Retry-After (see problems.py); other responses carry no rate-limit headers.
    """
    limiter = Limiter(
        key_func=_user_key,
        storage_uri=storage_uri,
        storage_options={"socket_connect_timeout": 2, "socket_timeout": 2}
        if storage_uri.startswith("redis")
        else {},
        # One Redis round trip per request (moving-window and rate-limit headers cost two more).
        strategy="fixed-window",
        headers_enabled=False,
        key_prefix="tryon-rl",
        in_memory_fallback_enabled=True,
        swallow_errors=True,
    )
    limiter.limit(uploads_limit, methods=["POST"])(uploads)
    limiter.init_app(app)
    return limiter
