"""The Procfile's processes, run as a platform would run them: web, worker, release (and provision)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import requests

from adapters.peewee_db import MIGRATIONS, PeeweeAuditLog, open_database
from devtools.local_stack import answers_ok, free_port, wait_until
from domain.model import AuditEvent
from entrypoints.settings import Settings
from tests import leaks
from tests.builders.stack import environment

pytestmark = pytest.mark.e2e


@pytest.fixture
def env(unmigrated_settings: Settings) -> dict[str, str]:
    return environment(replace(unmigrated_settings, fal_api_key="fal-test-key"))


def tryon(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "entrypoints.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    leaks.keep_output(f"the output of `tryon {' '.join(args)}`", done.stdout, done.stderr)
    return done


def test_release_migrates_once_and_is_idempotent(env):
    first, second = tryon(env, "migrate"), tryon(env, "migrate")

    assert first.returncode == 0, first.stderr
    names = ", ".join(migration.name for migration in MIGRATIONS)
    assert first.stdout.strip() == f"migrations applied: {len(MIGRATIONS)} ({names})"
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "migrations applied: 0 (up to date)"


def test_provision_hardens_existing_buckets_once_and_then_changes_nothing(env):
    first, second = tryon(env, "provision"), tryon(env, "provision")

    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        "uploads bucket: applied policy, lifecycle",
        "processed bucket: applied policy, lifecycle",
    ]
    assert second.stdout.splitlines() == ["uploads bucket: unchanged", "processed bucket: unchanged"]
    assert env["UPLOADS_BUCKET"] not in first.stdout + second.stdout


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("UPLOAD_URL_TTL_SECONDS", "301", "UPLOAD_URL_TTL_SECONDS=301 is refused"),
        ("MAX_UPLOAD_BYTES", "16777217", "MAX_UPLOAD_BYTES=16777217 is refused"),
        ("UPLOADS_BUCKET", "", "UPLOADS_BUCKET is required"),
    ],
)
def test_every_process_refuses_to_start_with_unsafe_settings(env, name, value, message):
    done = tryon({**env, name: value}, "migrate")

    assert done.returncode == 2
    assert message in done.stderr


def test_the_worker_runs_a_burst_with_its_scheduler_and_exits(env):
    done = tryon(env, "worker", "--burst")

    assert done.returncode == 0, done.stderr
    assert '"msg": "worker starting"' in done.stderr


def test_the_worker_refuses_to_start_without_a_fal_key(env):
    done = tryon({**env, "FAL_API_KEY": ""}, "worker", "--burst")

    assert done.returncode == 2
    assert "FAL_API_KEY is required by the worker" in done.stderr


def test_the_worker_never_imports_tensorflow(env):
    probe = (
        "import sys, entrypoints.cli, entrypoints.worker;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'mtcnn', 'keras'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_web_binds_port_from_the_environment_and_is_ready(env):
    assert tryon(env, "migrate").returncode == 0
    port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "wsgi:app"],
        env={**env, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: answers_ok(f"{url}/healthz"), timeout=30, what="gunicorn", process=web)
        ready = requests.get(f"{url}/readyz", timeout=10)
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "ready",
            "checks": {"database": "ok", "storage": "ok", "redis": "ok"},
        }
    finally:
        web.terminate()
        leaks.keep_output("gunicorn's output", web.communicate(timeout=10)[1])


def test_web_refuses_to_boot_with_unsafe_settings(env):
    web = subprocess.run(
        [sys.executable, "-m", "gunicorn", "wsgi:app", "--bind", f"127.0.0.1:{free_port()}"],
        env={**env, "UPLOAD_URL_TTL_SECONDS": "3600"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    leaks.keep_output("gunicorn's output", web.stdout, web.stderr)

    assert web.returncode != 0
    assert "UPLOAD_URL_TTL_SECONDS=3600 is refused" in web.stderr


def test_sweep_prints_its_counts_and_audit_export_prints_json_lines_per_user(env, dev_issuer):
    assert tryon(env, "migrate").returncode == 0
    sweep = tryon(env, "sweep")
    assert sweep.returncode == 0, sweep.stderr
    assert sweep.stdout.startswith("sweep: purged 0 upload(s)' objects")
    assert "dropped 0 audit partition(s)" in sweep.stdout
    # ... and ends with its own time (for operators and bench.scale)
    assert re.search(r" in \d+ ms$", sweep.stdout.strip()), sweep.stdout

    database = open_database(env["DATABASE_URL"])
    log = PeeweeAuditLog(database)
    moment = datetime(2026, 11, 28, 22, 0, tzinfo=UTC)
    log.append(AuditEvent("upload.issued", "alice", "u1", "success", moment, details={"content_length": 5}))
    log.append(AuditEvent("upload.issued", "bob", "u2", "success", moment + timedelta(hours=1)))
    database.close()

    everyone = tryon(env, "audit", "export")
    alice = tryon(env, "audit", "export", "--user", "alice")
    later = tryon(env, "audit", "export", "--since", "2026-11-28T22:30:00Z")
    earlier = tryon(env, "audit", "export", "--until", "2026-11-28T22:30:00Z")
    pruned = tryon(env, "audit", "prune")
    refused = tryon(env, "audit", "export", "--since", "yesterday")

    assert [json.loads(line)["actor_id"] for line in everyone.stdout.splitlines()] == ["alice", "bob"]
    assert json.loads(alice.stdout) == {
        "actor_id": "alice",
        "details": {"content_length": 5},
        "event": "upload.issued",
        "occurred_at": "2026-11-28T22:00:00Z",
        "outcome": "success",
        "reason": None,
        "subject_id": "u1",
    }
    assert re.fullmatch(r"audit export: 1 event\(s\) in \d+ ms\n", alice.stderr), alice.stderr  # not stdout
    assert [json.loads(line)["actor_id"] for line in later.stdout.splitlines()] == ["bob"]
    assert [json.loads(line)["actor_id"] for line in earlier.stdout.splitlines()] == ["alice"]
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout == "audit prune: deleted 0 audit event(s) (older than 400 days)\n"
    assert (refused.returncode, refused.stdout) == (2, "")
    assert "--since must be an ISO 8601 time" in refused.stderr
