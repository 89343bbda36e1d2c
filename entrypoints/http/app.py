"""The Flask application factory."""

from __future__ import annotations

import contextlib
from typing import Any

from flask import Flask, Response
from flask_smorest import Api
from werkzeug.middleware.proxy_fix import ProxyFix

from domain.errors import DomainError
from entrypoints.bootstrap import Services, bootstrap
from entrypoints.http import docs, metrics, ops, tryons, uploads, user_data, webhooks
from entrypoints.http.context import install, services_of
from entrypoints.http.json_bodies import refuse_deeply_nested_json
from entrypoints.http.problems import (
    PROBLEM_MEDIA_TYPE,
    ProblemSchema,
    http_exception_response,
    register_error_handlers,
)
from entrypoints.http.rate_limits import install_rate_limits
from entrypoints.http.request_log import install_request_logging
from entrypoints.http.security import BEARER_SCHEME, authenticate_request
from entrypoints.logs import configure_logging

MAX_JSON_BODY_BYTES = 64 * 1024
WORKER_WARM = "worker warm: pools open"


class ProblemApi(Api):  # type: ignore[misc]
    """flask-smorest's Api, documenting and rendering errors as RFC 9457 problems."""

    ERROR_SCHEMA = ProblemSchema

    def handle_http_exception(self, error: Any) -> Response:
        return http_exception_response(error)

    def _register_responses(self) -> None:
        """Document flask-smorest's status and default error responses as problem+json, as they are served."""
        json_type: str = getattr(self, "DEFAULT_RESPONSE_CONTENT_TYPE", "application/json")
        self.DEFAULT_RESPONSE_CONTENT_TYPE = PROBLEM_MEDIA_TYPE
        try:
            super()._register_responses()
        finally:
            self.DEFAULT_RESPONSE_CONTENT_TYPE = json_type


def create_app(services: Services | None = None, *, configure_logs: bool = True) -> Flask:
    services = services or bootstrap()
    if configure_logs:
        configure_logging(services.scrubber)
    app = Flask("tryon")
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=0)  # type: ignore[method-assign]
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_JSON_BODY_BYTES,
        API_TITLE="Hairfluencer try-on API",
        API_VERSION="1.0.0",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={"security": [{"bearerAuth": []}]},
    )
    install(app, services)

    install_request_logging(app)
    metrics.install_request_metrics(app)
    app.before_request(authenticate_request)
    app.before_request(refuse_deeply_nested_json)
    app.teardown_request(lambda _error: services.end_request())

    api = ProblemApi(app)
    api.spec.components.security_scheme("bearerAuth", BEARER_SCHEME)
    api.register_blueprint(ops.blp)
    api.register_blueprint(uploads.blp)
    api.register_blueprint(tryons.blp)
    api.register_blueprint(user_data.blp)
    api.register_blueprint(webhooks.blp)
    app.register_blueprint(metrics.blp)  # plain Flask: operators' endpoint, not part of the API document
    app.register_blueprint(docs.blp)  # Swagger UI from the pinned package, not from a CDN
    install_rate_limits(app, storage_uri=services.rate_limit_storage_uri, settings=services.settings)
    register_error_handlers(app)
    return app


def warm_up(app: Any) -> bool:
    """Open what the first request would (database pool, Redis, S3 clients) before this process takes
    traffic; False for an app that is not ours. The web never loads the face model: the verifier does."""
    services = services_of(app)
    if services is None:
        return False
    try:
        for check in services.readiness_checks.values():  # opens the pools and clients a request would
            with contextlib.suppress(DomainError):
                check()
    finally:
        services.end_request()  # the main thread's database connection goes back to the pool
    return True
