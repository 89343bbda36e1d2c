"""Authentication of every /v1 request before anything else (rate limits, body parsing) runs."""

from __future__ import annotations

from flask import g, request

from domain.errors import Unauthenticated
from domain.model import Credentials
from domain.ports import Authenticator
from entrypoints.http.context import services

BEARER_SCHEME = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
NO_USER_TOKEN = ("/v1/webhooks/",)
"""Callers that are not users (fal's signed webhooks): they authenticate themselves in the view."""


def credentials_from_request() -> Credentials:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    bearer = value.strip() if scheme.lower() == "bearer" and value.strip() else None
    return Credentials(bearer=bearer, cookies=dict(request.cookies))


def authenticate_request() -> None:
    """Sets ``g.user_id`` for protected endpoints; unknown routes fall through to 404/405."""
    if request.endpoint is None or not request.path.startswith("/v1/"):
        return
    if request.path.startswith(NO_USER_TOKEN):
        return
    authenticator: Authenticator = services().authenticator
    credentials = credentials_from_request()
    if credentials.bearer is None and not credentials.cookies:
        raise Unauthenticated("an Authorization: Bearer token is required")
    g.user_id = authenticator.authenticate(credentials)


def current_user_id() -> str:
    user_id: str = g.user_id
    return user_id
