"""The one way the HTTP layer reaches the composition root's services: create_app installs them on the app,
views ask for them with ``services()``."""

from __future__ import annotations

from flask import Flask, current_app

from entrypoints.bootstrap import Services

EXTENSION = "tryon"


def install(app: Flask, services: Services) -> None:
    app.extensions[EXTENSION] = services


def services() -> Services:
    """The services of the app handling the current request."""
    found: Services = current_app.extensions[EXTENSION]
    return found


def services_of(app: object) -> Services | None:
    """The services of ``app``, or None for an app that is not ours (gunicorn's hooks see any app)."""
    found: Services | None = getattr(app, "extensions", {}).get(EXTENSION)
    return found
