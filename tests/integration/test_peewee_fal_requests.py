"""Migration 8 and the webhook lookup on SQLite and Postgres: every request submitted for a try-on is found
by its id (this attempt's and earlier ones'), and a verified webhook marks only the current, unsettled one."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import peewee
import pytest

from adapters.peewee_db import MIGRATIONS, PeeweeTryOnRepository, PeeweeUnitOfWork
from adapters.peewee_db.database import execute_sql
from domain.model import Submission, TryOn, TryOnStatus
from tests.builders.databases import T0, Backend

pytestmark = pytest.mark.integration


def a_tryon(tryon_id: str, **changes: object) -> TryOn:
    tryon = TryOn(
        tryon_id=tryon_id,
        user_id="user_1",
        upload_id="up_1",
        style_prompt="a copper bob",
        num_images=1,
        output_format="jpeg",
        created_at=T0,
        next_action_at=T0,
    )
    return replace(tryon, **changes)  # type: ignore[arg-type]


def submission(request_id: str) -> Submission:
    base = f"https://queue.fal.run/fal-ai/nano-banana/requests/{request_id}"
    return Submission(request_id, f"{base}/status", base, f"{base}/cancel")


def running(repository: PeeweeTryOnRepository, tryon_id: str, request_id: str) -> TryOn:
    """The try-on's row, now submitted as ``request_id`` (as the runner's submit step saves it)."""
    current = repository.get(tryon_id)
    assert current is not None
    tryon = replace(
        current,
        status=TryOnStatus.RUNNING,
        attempts=current.attempts + 1,
        submission=submission(request_id),
        submitted_at=T0,
        next_action_at=T0 + timedelta(seconds=30),
    )
    assert repository.update(tryon)
    repository.record_request(tryon_id, request_id)
    return replace(tryon, version=tryon.version + 1)


def test_a_tryon_is_found_by_each_request_submitted_for_it(db: peewee.Database) -> None:
    repository = PeeweeTryOnRepository(db)
    repository.add(a_tryon("t1"))
    repository.add(a_tryon("t2"))
    first = running(repository, "t1", "req-a")
    retry = replace(first, status=TryOnStatus.QUEUED, submission=None, submitted_at=None)
    assert repository.update(retry)
    running(repository, "t1", "req-b")
    running(repository, "t2", "req-c")
    repository.record_request("t1", "req-b")  # recording twice is harmless

    earlier, current = repository.by_request_id("req-a"), repository.by_request_id("req-b")
    assert earlier is not None and current is not None
    assert earlier.tryon_id == current.tryon_id == "t1"
    assert current.submission == submission("req-b")  # the caller sees req-a is not the current one
    other = repository.by_request_id("req-c")
    assert other is not None and other.tryon_id == "t2"
    assert repository.by_request_id("req-unknown") is None


def test_a_webhook_marks_only_the_current_request_of_an_unsettled_tryon(db: peewee.Database) -> None:
    repository = PeeweeTryOnRepository(db)
    repository.add(a_tryon("t1"))
    tryon = running(repository, "t1", "req-a")
    now = T0 + timedelta(seconds=3)
    assert repository.claim("t1", T0, T0 + timedelta(seconds=60)) is not None  # a step holds it
    held = repository.get("t1")
    assert held is not None

    assert repository.note_finished("t1", "req-old", now) is False
    assert repository.note_finished("t1", "req-a", now) is True
    assert repository.note_finished("t1", "req-a", now) is True  # idempotent: fal's retries

    marked = repository.get("t1")
    assert marked is not None
    assert marked.notified_request_id == "req-a"
    assert marked.next_action_at == now
    assert marked.version == held.version  # a running step's compare-and-set still wins
    polled = replace(held, next_action_at=now + timedelta(seconds=30))
    assert repository.update(polled)
    after = repository.get("t1")
    assert after is not None and after.notified_request_id == "req-a"  # the step did not erase the mark

    assert repository.update(replace(after, status=TryOnStatus.SUCCEEDED, next_action_at=None))
    assert repository.note_finished("t1", "req-a", now) is False  # settled: nothing to mark
    assert tryon.tryon_id == "t1"


def test_erasing_a_user_removes_their_recorded_requests(db: peewee.Database) -> None:
    repository = PeeweeTryOnRepository(db)
    repository.add(a_tryon("t1"))
    repository.add(a_tryon("t2", user_id="user_2"))
    running(repository, "t1", "req-a")
    running(repository, "t2", "req-b")

    with PeeweeUnitOfWork(db) as uow:
        assert uow.tryons.delete_for_user("user_1") == 1
        uow.commit()

    assert repository.by_request_id("req-a") is None
    assert repository.by_request_id("req-b") is not None


def test_migration_8_records_the_requests_of_tryons_already_running(backend: Backend) -> None:
    database = backend.open()
    with database.atomic():
        for migration in (m for m in MIGRATIONS if m.version < 8):
            migration.apply(database)
    columns = (
        "tryon_id, user_id, upload_id, style_prompt, num_images, output_format, status, attempts, "
        "created_at, fal_request_id, status_url, response_url, cancel_url"
    )
    params = ", ".join([database.param] * 13)
    base = "https://queue.fal.run/fal-ai/nano-banana/requests/req-live"
    with database.atomic():
        for tryon_id, request_id in (("t1", "req-live"), ("t2", None)):
            urls = (f"{base}/status", base, f"{base}/cancel") if request_id else (None, None, None)
            row = (tryon_id, "user_1", "up_1", "a bob", 1, "jpeg", "running", 1, T0, request_id, *urls)
            execute_sql(database, f"INSERT INTO tryons ({columns}) VALUES ({params})", row)
    with database.atomic():
        next(m for m in MIGRATIONS if m.version == 8).apply(database)

    repository = PeeweeTryOnRepository(database)
    found = repository.by_request_id("req-live")
    assert found is not None and found.tryon_id == "t1"
    assert found.notified_request_id is None
