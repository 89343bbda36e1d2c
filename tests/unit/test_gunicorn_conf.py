"""gunicorn.conf.py: the `web` process runs threaded workers, sized by WEB_CONCURRENCY and WEB_THREADS, in
prometheus_client's multi-process mode."""

from __future__ import annotations

import ast
import os
import runpy
import tempfile
from pathlib import Path
from typing import Any

import pytest

from adapters.peewee_db.database import POOL_OPTIONS
from domain.changes import MAX_WAIT_SECONDS

CONF = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"


MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
OPERATORS_DIR = "/var/run/operators-metrics"


HEROKU_SIGKILL_AFTER_SECONDS = 30
"""A dyno told to stop (SIGTERM) is killed this long after."""


def gunicorn_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    """Runs the file with the operator's metrics directory set unless told otherwise (restored afterwards)."""
    for name in ("WEB_CONCURRENCY", "WEB_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(MULTIPROC_DIR, OPERATORS_DIR)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(CONF))


def test_by_default_two_processes_of_eight_threads(monkeypatch):
    conf = gunicorn_settings(monkeypatch)

    assert (conf["worker_class"], conf["workers"], conf["threads"]) == ("gthread", 2, 8)
    assert (conf["timeout"], conf["accesslog"]) == (30, None)


def test_a_deploy_lets_the_longest_long_poll_finish_before_the_platform_kills_the_dyno(monkeypatch):
    conf = gunicorn_settings(monkeypatch)

    assert MAX_WAIT_SECONDS < conf["graceful_timeout"] < HEROKU_SIGKILL_AFTER_SECONDS


def test_the_platform_sizes_processes_and_threads(monkeypatch):
    conf = gunicorn_settings(monkeypatch, WEB_CONCURRENCY="3", WEB_THREADS="4")

    assert (conf["worker_class"], conf["workers"], conf["threads"]) == ("gthread", 3, 4)


def test_every_default_thread_gets_a_pooled_connection_without_waiting(monkeypatch):
    assert POOL_OPTIONS["max_connections"] >= gunicorn_settings(monkeypatch)["threads"]


def test_without_a_metrics_directory_a_fresh_one_is_made_and_set_for_every_worker(monkeypatch):
    made: list[str] = []

    def mkdtemp(prefix: str) -> str:
        made.append(prefix)
        return "/tmp/tryon-metrics-x"

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    conf = gunicorn_settings(monkeypatch, PROMETHEUS_MULTIPROC_DIR="")

    assert made == ["tryon-metrics-"]
    assert os.environ[MULTIPROC_DIR] == conf["_OWN_METRICS_DIR"] == "/tmp/tryon-metrics-x"


def test_an_operators_metrics_directory_is_kept(monkeypatch):
    conf = gunicorn_settings(monkeypatch)

    assert os.environ[MULTIPROC_DIR] == OPERATORS_DIR
    assert conf["_OWN_METRICS_DIR"] is None  # nor removed on exit: it is the operator's


def test_nothing_imports_prometheus_client_before_the_directory_is_set():
    """prometheus_client picks its value store when first imported: the file's top level imports neither it
    nor the app (which imports it); the hooks do, later."""
    tree = ast.parse(CONF.read_text())
    top_level = {
        alias.name.split(".")[0]
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
    }

    assert top_level <= {"__future__", "os", "shutil", "tempfile", "typing"}, top_level
