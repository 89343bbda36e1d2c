"""The `web` process as the Procfile runs it, threaded (issue 12, item 4): real gunicorn with gthread workers
(2 processes x 4 threads) on the default SQLite database and on Postgres, and a burst of concurrent requests
that touch the database from many client threads. Every one is answered as the contract says, none with a
5xx: connections are safe to hand between threads, and writers (threads and processes) wait for each other.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from adapters.peewee_db import UploadRow, migrate, open_database
from adapters.peewee_db.models import bound_to
from devtools.local_stack import EMULATOR_CREDENTIALS
from tests.builders.databases import migrated_postgres_schema
from tests.builders.stack import threaded_web

pytestmark = pytest.mark.e2e

WEB_WORKERS = 2
WEB_THREADS = 4
CLIENT_THREADS = 16
USERS = 20
ISSUANCES = 200
LOOKUPS = 200
JPEG = {"content_type": "image/jpeg", "content_length": 1000}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'var' / 'tryon.db'}"
        database = open_database(url)
        migrate(database)
        database.close()
        yield url
        return
    with migrated_postgres_schema("tryon_threaded_web") as url:
        yield url


def test_threaded_web_answers_a_burst_of_database_requests_without_a_5xx(
    database_url, buckets, ministack_url, redis_url, dev_issuer, tmp_path
):
    env = {
        **os.environ,
        **EMULATOR_CREDENTIALS,
        "UPLOADS_BUCKET": buckets[0],
        "PROCESSED_BUCKET": buckets[1],
        "BETTER_AUTH_URL": dev_issuer.base_url,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "S3_ENDPOINT_URL": ministack_url,
        "RATE_LIMIT_UPLOADS": "100000/minute",
        "RATE_LIMIT_MUTATIONS": "100000/minute",
    }
    tokens = [dev_issuer.mint(f"user{secrets.token_hex(6)}") for _ in range(USERS)]
    # Issuance writes; a look-up reads; a deletion reads the upload, then writes (on SQLite, the pattern
    # that fails at once when another writer commits in between, unless the write lock is taken first).
    tasks = [("issue", n) for n in range(ISSUANCES)] + [("look up", n) for n in range(LOOKUPS)]
    tasks.sort(key=lambda task: task[1])  # interleaved
    sessions = threading.local()
    log = tmp_path / "web.log"

    with threaded_web(env, log, workers=WEB_WORKERS, threads=WEB_THREADS) as url:
        start = threading.Barrier(CLIENT_THREADS)

        def call(method: str, path: str, n: int) -> tuple[str, dict[str, Any]]:
            if not hasattr(sessions, "http"):
                sessions.http = requests.Session()
                start.wait(60)  # every client thread leaves together
            headers = {"Authorization": f"Bearer {tokens[n % USERS]}"}
            body = JPEG if method == "POST" else None
            try:
                answer = sessions.http.request(method, f"{url}{path}", json=body, headers=headers, timeout=30)
            except requests.RequestException as error:
                return f"{method} {type(error).__name__}", {}
            payload: dict[str, Any] = {}
            with contextlib.suppress(ValueError):
                payload = answer.json()
            code = payload.get("code", "") if answer.status_code >= 400 else ""
            return f"{method} {answer.status_code} {code}".strip(), payload

        def run(task: tuple[str, int]) -> list[str]:
            kind, n = task
            if kind == "look up":
                return [call("GET", f"/v1/tryons/{secrets.token_hex(8)}", n)[0]]
            issued, payload = call("POST", "/v1/uploads", n)
            if n % 2 or "upload_id" not in payload:
                return [issued]
            return [issued, call("DELETE", f"/v1/uploads/{payload['upload_id']}", n)[0]]

        with ThreadPoolExecutor(CLIENT_THREADS) as pool:
            answers = Counter(answer for found in pool.map(run, tasks) for answer in found)
    output = log.read_text(errors="replace")

    print(f"\n{database_url.split(':')[0]}: {sum(answers.values())} requests: {dict(answers)}")
    expected = {"POST 201": ISSUANCES, "DELETE 204": ISSUANCES // 2, "GET 404 tryon_not_found": LOOKUPS}
    assert answers == Counter(expected), output[-3000:]
    assert "Using worker: gthread" in output
    database = open_database(database_url)
    with bound_to(database, UploadRow):
        assert UploadRow.select().count() == ISSUANCES
        assert UploadRow.select().where(UploadRow.status == "deleted").count() == ISSUANCES // 2
    database.close()
