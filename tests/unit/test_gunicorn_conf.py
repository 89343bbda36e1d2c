"""gunicorn.conf.py: the `web` process runs threaded workers, sized by WEB_CONCURRENCY and WEB_THREADS."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pytest

from adapters.peewee_db.database import POOL_OPTIONS

CONF = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"


def gunicorn_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    for name in ("WEB_CONCURRENCY", "WEB_THREADS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(CONF))


def test_by_default_two_processes_of_eight_threads(monkeypatch):
    conf = gunicorn_settings(monkeypatch)

    assert (conf["worker_class"], conf["workers"], conf["threads"]) == ("gthread", 2, 8)
    assert (conf["timeout"], conf["graceful_timeout"], conf["accesslog"]) == (30, 20, None)


def test_the_platform_sizes_processes_and_threads(monkeypatch):
    conf = gunicorn_settings(monkeypatch, WEB_CONCURRENCY="3", WEB_THREADS="4")

    assert (conf["worker_class"], conf["workers"], conf["threads"]) == ("gthread", 3, 4)


def test_every_default_thread_gets_a_pooled_connection_without_waiting(monkeypatch):
    assert POOL_OPTIONS["max_connections"] >= gunicorn_settings(monkeypatch)["threads"]
