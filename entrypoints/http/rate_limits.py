"""Per-user rate limits (flask-limiter on Redis), checked after authentication.

Every authenticated mutation under /v1 counts against exactly one per-user budget (scope):

- ``uploads``: ``POST /v1/uploads`` (issuing a URL), ``RATE_LIMIT_UPLOADS``;
- ``tryons``: ``POST /v1/tryons``, ``RATE_LIMIT_TRYONS``;
- ``mutations``: every other one (complete, favourite on/off, deleting an upload, erasure), one budget
  shared by them all, ``RATE_LIMIT_MUTATIONS``.

A request is never counted twice, and completing an upload does not eat into the issuing budget. Reads are not
limited here. fal's webhook is not a user's mutation (it carries fal's signature, not a user's token) and is
left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, g, request
from flask_limiter import Limiter

from entrypoints.settings import Settings

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
NOT_A_USERS_MUTATION = ("/v1/webhooks/",)


def _user_key() -> str:
    return f"user:{g.get('user_id') or request.remote_addr}"


def limit_scopes(settings: Settings) -> dict[tuple[str, str], tuple[str, str]]:
    """(method, route) -> (scope, limit) for the routes with a budget of their own."""
    return {
        ("POST", "/v1/uploads"): ("uploads", settings.rate_limit_uploads),
        ("POST", "/v1/tryons"): ("tryons", settings.rate_limit_tryons),
    }


def install_rate_limits(app: Flask, *, storage_uri: str, settings: Settings) -> Limiter:
    """Must run after authentication is installed (limits are keyed by the authenticated user) and after every
    blueprint is registered (the limits are attached to the registered views).

    If Redis is unreachable the limiter falls back to per-process memory rather than refusing requests.
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
    own = limit_scopes(settings)
    budgets: dict[str, dict[tuple[str, str], list[str]]] = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/v1/") or rule.rule.startswith(NOT_A_USERS_MUTATION):
            continue
        for method in sorted(MUTATING_METHODS & (rule.methods or set())):
            scope, limit = own.get((method, rule.rule), ("mutations", settings.rate_limit_mutations))
            budgets.setdefault(rule.endpoint, {}).setdefault((scope, limit), []).append(method)
    for endpoint, scopes in budgets.items():
        view: Callable[..., Any] = app.view_functions[endpoint]
        for (scope, limit), methods in scopes.items():
            view = limiter.shared_limit(limit, scope=scope, methods=methods)(view)
        app.view_functions[endpoint] = view
    limiter.init_app(app)
    return limiter
