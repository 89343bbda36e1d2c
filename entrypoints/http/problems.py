"""RFC 9457 problem details: the one error envelope for every error the API returns."""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, TypeVar

import marshmallow as ma
from flask import Flask, Response, jsonify
from flask_limiter.errors import RateLimitExceeded
from flask_smorest import Blueprint
from werkzeug.exceptions import HTTPException, InternalServerError

from domain.errors import (
    Conflict,
    DependencyUnavailable,
    DomainError,
    Forbidden,
    Gone,
    InvalidRequest,
    LimitExceeded,
    NotFound,
    Unauthenticated,
)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://docs.hairfluencer.app/problems/"
RETRY_AFTER_SECONDS_ON_UNAVAILABLE = "5"

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

_HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


_STATUS_BY_ERROR: tuple[tuple[type[DomainError], int], ...] = (
    (NotFound, 404),
    (Forbidden, 403),
    (Conflict, 409),
    (Gone, 410),
    (InvalidRequest, 422),
)


class ProblemSchema(ma.Schema):
    """An RFC 9457 problem; ``code`` is stable and safe to switch on."""

    type = ma.fields.String(required=True)
    title = ma.fields.String(required=True)
    status = ma.fields.Integer(required=True)
    detail = ma.fields.String(required=True)
    code = ma.fields.String(required=True)
    retryable = ma.fields.Boolean(required=True)
    errors = ma.fields.Dict(metadata={"description": "Field errors, keyed by location then field"})


def documents_problem(blp: Blueprint, status: int, description: str) -> Callable[[F], F]:
    """OpenAPI: this operation may answer ``status`` with a problem+json body."""
    decorator: Callable[[F], F] = blp.alt_response(
        status, schema=ProblemSchema, content_type=PROBLEM_MEDIA_TYPE, description=description
    )
    return decorator


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    retryable: bool = False,
    errors: Any = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        "retryable": retryable,
    }
    if errors:
        body["errors"] = errors
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM_MEDIA_TYPE
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _cause_name(cause: BaseException | None) -> str | None:
    """What failed underneath, by its error code or type only: its message can name a bucket, an object key
    or a URL (botocore's "Could not connect to the endpoint URL: http://host/<bucket>/<key>")."""
    if cause is None:
        return None
    response = getattr(cause, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return str(code) if code else type(cause).__name__


def domain_error_response(error: DomainError) -> Response:
    if isinstance(error, Unauthenticated):
        return problem(
            401, error.code, error.detail, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        )
    if isinstance(error, DependencyUnavailable):
        log.warning(
            "dependency unavailable", extra={"code": error.code, "cause": _cause_name(error.__cause__)}
        )
        return problem(
            503,
            error.code,
            error.detail,
            retryable=True,
            headers={"Retry-After": RETRY_AFTER_SECONDS_ON_UNAVAILABLE},
        )
    if isinstance(error, LimitExceeded):
        return problem(
            429,
            error.code,
            error.detail,
            retryable=True,
            headers={"Retry-After": str(error.retry_after_seconds)},
        )
    for kind, status in _STATUS_BY_ERROR:
        if isinstance(error, kind):
            return problem(status, error.code, error.detail, retryable=error.retryable)
    log.error("unmapped domain error", extra={"code": error.code})
    return problem(500, "internal_error", "The server could not complete the request.")


def http_exception_response(error: HTTPException) -> Response:
    status = error.code or 500
    if isinstance(error, RateLimitExceeded):
        window_seconds = str(error.limit.limit.get_expiry())  # the longest a fixed window can still run
        return problem(
            429,
            "rate_limited",
            "Too many requests; retry after the Retry-After delay.",
            retryable=True,
            headers={"Retry-After": window_seconds},
        )
    if status >= 500:
        return unexpected_error_response(error)
    data = getattr(error, "data", None) or {}
    errors = data.get("errors") or data.get("messages")
    headers = dict(data.get("headers") or {})
    if status == 405 and error.get_response().headers.get("Allow"):
        headers["Allow"] = error.get_response().headers["Allow"]
    detail = "The request body or parameters are invalid." if errors else (error.description or "")
    return problem(status, _HTTP_CODES.get(status, "http_error"), detail, errors=errors, headers=headers)


def unexpected_error_response(error: BaseException) -> Response:
    original = getattr(error, "original_exception", None) or error
    if not isinstance(error, HTTPException) or isinstance(error, InternalServerError):
        log.error("unhandled error", exc_info=(type(original), original, original.__traceback__))
    return problem(500, "internal_error", "The server could not complete the request.")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(DomainError, domain_error_response)
    app.register_error_handler(HTTPException, http_exception_response)
    app.register_error_handler(Exception, unexpected_error_response)
