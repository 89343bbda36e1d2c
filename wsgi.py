"""Gunicorn's entry point: ``gunicorn wsgi:app`` (settings come from the environment)."""

from entrypoints.http.app import create_app

app = create_app()
