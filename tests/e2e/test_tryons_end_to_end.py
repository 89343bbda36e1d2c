"""US3 end to end: HTTP in, a real `tryon worker` process, Redis, ministack and the fal simulator out."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from adapters.peewee_db import AuditRow, ResultRow, open_database
from adapters.peewee_db.database import execute_sql
from adapters.s3_storage import make_s3_client
from devtools.fal_simulator import DEFAULT_KEY
from devtools.local_stack import start_gunicorn
from entrypoints.logs import JsonFormatter
from entrypoints.settings import Settings
from tests import leaks
from tests.builders.stack import (
    SETTLED,
    Workers,
    environment,
    order,
    settled,
    verified_upload,
)
from tests.inline import bootstrap_verifying_inline

pytestmark = pytest.mark.e2e


@pytest.fixture
def workers(tryon_settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(tryon_settings, tmp_path)
    yield pool
    pool.stop_all()


def test_a_tryon_runs_on_a_worker_and_its_result_is_stored_privately(
    client, auth, workers, tryon_settings, simulator
):
    workers.start()
    tryon_id = order(client, auth, verified_upload(client, auth))

    body = settled(client, auth, tryon_id)

    assert (body["status"], body["attempts"], body["error"]) == ("succeeded", 1, None), workers.logs()
    [result] = body["results"]
    image = client.get(f"/v1/results/{result['result_id']}/image", headers=auth)
    assert image.status_code == 200
    assert image.headers["Cache-Control"] == "no-store"
    assert (
        image.data[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xdb") or image.data[:4] == b"RIFF"
    )
    row = ResultRow.get_by_id(result["result_id"])
    assert row.object_key.startswith(f"processed/{row.user_id}/{tryon_id}/0.")
    s3 = make_s3_client(region="us-east-1", endpoint_url=tryon_settings.s3_endpoint_url)
    head = s3.head_object(Bucket=tryon_settings.processed_bucket, Key=row.object_key)
    assert head["ServerSideEncryption"] == "AES256"
    counts = simulator.counts()
    assert (counts.submissions, counts.input_downloads) == (1, 1)
    [seen] = [r for r in simulator.requests_seen() if r.method == "POST"]
    assert seen.key_matched is True
    assert seen.headers["x-fal-store-io"] == "0"
    assert 0 < int(seen.headers["x-fal-request-timeout"]) < 300
    events = [e.event for e in AuditRow.select().where(AuditRow.subject_id == tryon_id).order_by(AuditRow.id)]
    assert events == ["tryon.requested", "falai.invoked", "falai.succeeded", "result.stored"]


def test_a_busy_fal_is_retried_and_the_tryon_still_succeeds(client, auth, workers, simulator):
    simulator.fail_next_submits(503, count=1)
    workers.start()
    tryon_id = order(client, auth, verified_upload(client, auth))

    body = settled(client, auth, tryon_id)

    assert (body["status"], body["attempts"]) == ("succeeded", 2), workers.logs()


def test_a_content_policy_violation_fails_with_its_code(client, auth, workers, simulator):
    simulator.fail_next_jobs("content_policy_violation", count=1)
    workers.start()
    tryon_id = order(client, auth, verified_upload(client, auth))

    body = settled(client, auth, tryon_id)

    assert body["status"] == "failed"
    assert body["error"]["code"] == "content_policy_violation"
    assert body["results"] == []


def test_an_expired_source_url_is_resigned_and_resubmitted(client, auth, workers, simulator):
    simulator.fail_next_jobs("file_download_error", count=1)
    workers.start()
    tryon_id = order(client, auth, verified_upload(client, auth))

    body = settled(client, auth, tryon_id)

    assert (body["status"], body["attempts"]) == ("succeeded", 2)
    assert simulator.counts().submissions == 2


def test_a_worker_killed_mid_job_is_replaced_and_the_tryon_finishes_once(client, auth, workers, simulator):
    simulator.set_work_seconds(3)
    first = workers.start()
    tryon_id = order(client, auth, verified_upload(client, auth))
    deadline = time.monotonic() + 30
    while client.get(f"/v1/tryons/{tryon_id}", headers=auth).get_json()["status"] != "running":
        assert time.monotonic() < deadline, workers.logs()
        time.sleep(0.1)

    workers.kill(first)
    workers.start()
    body = settled(client, auth, tryon_id, timeout=90)

    assert body["status"] == "succeeded", workers.logs()
    assert len(body["results"]) == 1
    assert ResultRow.select().where(ResultRow.tryon_id == tryon_id).count() == 1
    assert simulator.counts().submissions == 1


def test_a_long_poll_learns_each_change_at_once_with_a_few_gets(
    client, auth, workers, tryon_settings, simulator, tmp_path
):
    """A real gunicorn web holds ``?wait=25`` in a thread until the worker announces a change on Redis."""
    work_seconds = 4
    simulator.set_work_seconds(work_seconds)
    workers.start()
    upload_id = verified_upload(client, auth)
    with start_gunicorn(environment(tryon_settings), log_path=tmp_path / "web.log") as web:
        accepted = requests.post(
            f"{web.url}/v1/tryons",
            json={"upload_id": upload_id, "style_prompt": "a sleek copper bob"},
            headers=auth,
            timeout=10,
        )
        assert accepted.status_code == 202, accepted.text
        tryon_id = accepted.json()["tryon_id"]
        started = time.monotonic()
        answers: list[tuple[str, float]] = []
        while not answers or answers[-1][0] not in SETTLED:
            assert len(answers) < 4, (answers, workers.logs())
            asked = time.monotonic()
            response = requests.get(f"{web.url}/v1/tryons/{tryon_id}?wait=25", headers=auth, timeout=35)
            assert response.status_code == 200, response.text
            answers.append((response.json()["status"], time.monotonic() - asked))
        took = time.monotonic() - started
    leaks.keep_output("the web's output", (tmp_path / "web.log").read_text(errors="replace"))

    assert answers[0][0] != "queued"  # the first GET, right after the POST, answered the change
    assert answers[-1][0] == "succeeded", workers.logs()
    assert all(seconds < 20 for _, seconds in answers)  # each woken by a change, none ran out its 25 s
    assert took >= work_seconds  # a 1 s poll would have asked at least work_seconds + 1 times
    assert len(answers) <= 4 < work_seconds + 1


def redis_dump(url: str) -> str:
    connection = redis.Redis.from_url(url)
    chunks: list[str] = []
    for key in connection.scan_iter():
        raw_kind = connection.type(key)
        kind = raw_kind.decode() if isinstance(raw_kind, bytes) else str(raw_kind)
        if kind == "string":
            value: Any = connection.get(key)
        elif kind == "hash":
            value = connection.hgetall(key)
        elif kind == "list":
            value = connection.lrange(key, 0, -1)
        elif kind == "set":
            value = connection.smembers(key)
        elif kind == "zset":
            value = connection.zrange(key, 0, -1)
        else:
            value = kind
        chunks.append(f"{key!r}={value!r}")
    return "\n".join(chunks)


def database_dump(settings: Settings) -> str:
    database = open_database(settings.database_url)
    tables = ("uploads", "audit_events", "tryons", "tryon_results")
    rows = [
        repr(row) for table in tables for row in execute_sql(database, f"SELECT * FROM {table}").fetchall()
    ]
    database.close()
    return "\n".join(rows)


def test_no_signed_url_token_key_or_bucket_name_is_left_in_logs_rows_or_redis(
    client, auth, workers, tryon_settings, simulator, caplog
):
    simulator.fail_next_submits(503, count=1)
    simulator.fail_next_jobs("file_download_error", count=1)
    workers.start()
    with caplog.at_level("INFO"):
        tryon_id = order(client, auth, verified_upload(client, auth))
        body = settled(client, auth, tryon_id)
    assert (body["status"], body["attempts"]) == ("succeeded", 3), workers.logs()
    workers.stop_all()

    formatter = JsonFormatter(bootstrap_verifying_inline(tryon_settings).scrubber)
    haystacks = {
        "worker logs": workers.logs(),
        "web logs": "\n".join(formatter.format(record) for record in caplog.records),
        "database": database_dump(tryon_settings),
        "redis": redis_dump(tryon_settings.redis_url),
    }
    needles = {
        "a signature": "X-Amz-Signature",
        "a credential": "X-Amz-Credential",
        "the fal key": DEFAULT_KEY,
        "the uploads bucket": tryon_settings.uploads_bucket,
        "the processed bucket": tryon_settings.processed_bucket,
        "a bearer token": auth["Authorization"].split()[1],
    }
    assert haystacks["worker logs"] and haystacks["database"] and haystacks["redis"]
    leaks = [
        f"{what} in {where}"
        for where, text in haystacks.items()
        for what, needle in needles.items()
        if needle in text
    ]
    assert leaks == []


def every_key(settings: Settings) -> list[str]:
    s3 = make_s3_client(region="us-east-1", endpoint_url=settings.s3_endpoint_url)
    keys = []
    for bucket in (settings.uploads_bucket, settings.processed_bucket):
        keys += [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return sorted(keys)


def test_favourites_are_tagged_and_erasure_leaves_nothing_of_the_user_but_audit_events(
    client, auth, workers, tryon_settings
):
    workers.start()
    tryon_id = order(client, auth, verified_upload(client, auth))
    [result] = settled(client, auth, tryon_id)["results"]
    row = ResultRow.get_by_id(result["result_id"])
    s3 = make_s3_client(region="us-east-1", endpoint_url=tryon_settings.s3_endpoint_url)

    def tags() -> dict[str, str]:
        got = s3.get_object_tagging(Bucket=tryon_settings.processed_bucket, Key=row.object_key)["TagSet"]
        return {tag["Key"]: tag["Value"] for tag in got}

    assert tags() == {"retention": "expiring"}
    assert client.put(f"/v1/results/{result['result_id']}/favorite", headers=auth).status_code == 204
    assert tags() == {"retention": "favorite"}
    user_id = row.user_id
    assert any(user_id in key for key in every_key(tryon_settings))

    erased = client.delete("/v1/me/data", headers=auth)

    assert erased.status_code == 202
    assert [key for key in every_key(tryon_settings) if user_id in key] == []
    rows = database_dump(tryon_settings)
    audit_rows = [e for e in AuditRow.select() if e.actor_id == user_id]
    assert audit_rows and audit_rows[-1].event == "user.erased"
    non_audit = "\n".join(
        repr(r)
        for table in ("uploads", "tryons", "tryon_results")
        for r in execute_sql(open_database(tryon_settings.database_url), f"SELECT * FROM {table}").fetchall()
    )
    assert user_id not in non_audit
    assert rows
    assert client.get(f"/v1/tryons/{tryon_id}", headers=auth).status_code == 404
