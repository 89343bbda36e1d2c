"""Operational endpoints: liveness and readiness. No authentication, no secrets in the answers."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from domain.errors import DependencyUnavailable
from entrypoints.http.context import services
from entrypoints.http.problems import documents_problem, problem

blp = Blueprint("ops", __name__, description="Health and readiness")


@blp.route("/healthz")
class Health(MethodView):
    @blp.doc(security=[])
    @blp.response(200)
    def get(self) -> dict[str, Any]:
        """The process is up."""
        return {"status": "ok"}


@blp.route("/readyz")
class Readiness(MethodView):
    @blp.doc(security=[])
    @blp.response(200)
    @documents_problem(blp, 503, "not_ready: a dependency is unreachable (errors.checks says which)")
    def get(self) -> Any:
        """The database, Redis and object storage all answer."""
        checks: dict[str, str] = {}
        for name, check in services().readiness_checks.items():
            try:
                check()
                checks[name] = "ok"
            except DependencyUnavailable:
                checks[name] = "unavailable"
        if all(state == "ok" for state in checks.values()):
            return {"status": "ready", "checks": checks}
        down = ", ".join(sorted(name for name, state in checks.items() if state != "ok"))
        return problem(
            503,
            "not_ready",
            f"unreachable: {down}",
            retryable=True,
            errors={"checks": checks},
            headers={"Retry-After": "5"},
        )
