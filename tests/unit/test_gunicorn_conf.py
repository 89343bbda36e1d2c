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
MADE_DIR = "TRYON_MADE_METRICS_DIR"
OPERATORS_DIR = "/var/run/operators-metrics"


HEROKU_SIGKILL_AFTER_SECONDS = 30
"""A dyno told to stop (SIGTERM) is killed this long after."""


def gunicorn_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    """Runs the file with the operator's metrics directory set unless told otherwise (restored afterwards)."""
    for name in ("WEB_CONCURRENCY", "WEB_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WEB_METRICS_DIR", OPERATORS_DIR)
    for name in (MULTIPROC_DIR, MADE_DIR):  # the file sets them: put back as they were afterwards
        monkeypatch.setenv(name, "")
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
    conf = gunicorn_settings(monkeypatch, WEB_METRICS_DIR="")

    assert made == ["tryon-metrics-"]
    assert os.environ[MULTIPROC_DIR] == conf["METRICS_DIR"] == "/tmp/tryon-metrics-x"


def test_a_reload_keeps_the_directory_it_made_and_removes_it_on_exit(monkeypatch, tmp_path):
    """gunicorn runs the file again on SIGHUP: no second directory, and the one made is still removed."""
    made = tmp_path / "tryon-metrics-first"
    made.mkdir()
    calls: list[str] = []

    def mkdtemp(prefix: str) -> str:
        calls.append(prefix)
        return str(made)

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    gunicorn_settings(monkeypatch, WEB_METRICS_DIR="")
    reloaded = runpy.run_path(str(CONF))

    reloaded["on_exit"](None)

    assert calls == ["tryon-metrics-"]
    assert reloaded["METRICS_DIR"] == str(made)
    assert not made.exists()


def test_an_inherited_prometheus_directory_is_not_the_webs(monkeypatch):
    """A PROMETHEUS_MULTIPROC_DIR set for every process type is not taken: the web's is WEB_METRICS_DIR or
    its own (the worker and verifier drop the inherited one, entrypoints.cli)."""
    conf = gunicorn_settings(monkeypatch, PROMETHEUS_MULTIPROC_DIR="/var/run/everyones")

    assert os.environ[MULTIPROC_DIR] == conf["METRICS_DIR"] == OPERATORS_DIR


def test_an_operators_metrics_directory_is_emptied_at_start_and_kept_on_exit(monkeypatch, tmp_path):
    (tmp_path / "counter_4242.db").write_bytes(b"an earlier run's values")
    (tmp_path / "notes.txt").write_text("not ours")
    conf = gunicorn_settings(monkeypatch, WEB_METRICS_DIR=str(tmp_path))

    conf["on_starting"](None)
    conf["on_exit"](None)

    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]


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

    assert top_level <= {"__future__", "os", "pathlib", "shutil", "tempfile", "typing"}, top_level
