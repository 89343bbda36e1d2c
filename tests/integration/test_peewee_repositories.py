"""The Peewee adapter against real SQLite and real PostgreSQL (an isolated schema per test)."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import peewee
import pytest

from adapters.peewee_db import (
    MIGRATIONS,
    PeeweeAuditLog,
    PeeweeUnitOfWork,
    PeeweeUploadRepository,
    migrate,
    open_database,
    ping,
)
from domain.errors import PersistenceUnavailable
from domain.model import StoredImage, Upload, UploadStatus
from tests.builders.databases import POSTGRES_URL, T0, Backend, an_event, an_intent, postgres_admin

pytestmark = pytest.mark.integration

NOTHING_LISTENS_URL = "postgresql://postgres@127.0.0.1:1/test"


def test_migrating_applies_every_migration_once_then_nothing(backend: Backend) -> None:
    database = backend.open()

    assert migrate(database) == [migration.name for migration in MIGRATIONS]
    assert migrate(database) == []
    assert migrate(backend.open()) == []


def test_splitting_the_deadlines_gives_verified_rows_their_deletion_deadline(backend: Backend) -> None:
    """Migration 7: verification wrote a selfie's deletion deadline over ``expires_at``; it moves to
    ``source_expires_at``, and an upload never verified keeps only its URL's expiry."""
    database = backend.open()
    older = [m for m in MIGRATIONS if m.version < 7]
    split = next(m for m in MIGRATIONS if m.name == "split_upload_deadlines")
    with database.atomic():
        for migration in older:
            migration.apply(database)
    columns = "upload_id, user_id, object_key, content_type, content_length, status, created_at, expires_at"
    values = ", ".join([database.param] * 8)
    deadline = T0 + timedelta(days=1)
    with database.atomic():
        for upload_id, status, expires_at in (("up_v", "verified", deadline), ("up_i", "issued", T0)):
            row = (
                upload_id,
                "user_1",
                f"uploads/user_1/{upload_id}",
                "image/jpeg",
                10,
                status,
                T0,
                expires_at,
            )
            database.execute_sql(f"INSERT INTO uploads ({columns}) VALUES ({values})", row)
        database.execute_sql(
            "UPDATE uploads SET stored_key = 'sources/user_1/up_v.jpg' WHERE upload_id = 'up_v'"
        )
        split.apply(database)
        for later in (
            m for m in MIGRATIONS if m.version > split.version
        ):  # the rows as today's code reads them
            later.apply(database)

    repository = PeeweeUploadRepository(database)
    verified, issued = repository.get("up_v"), repository.get("up_i")
    assert verified is not None and verified.source_expires_at == deadline
    assert issued is not None and issued.source_expires_at is None and issued.url_expires_at == T0


def test_two_release_processes_migrating_at_once_apply_each_migration_once(backend: Backend) -> None:
    databases = [backend.open(), backend.open()]
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run(database: peewee.Database) -> None:
        try:
            results.append(migrate(database))
        except BaseException as error:
            errors.append(error)
        finally:
            database.close()

    threads = [threading.Thread(target=run, args=(database,)) for database in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert len(results) == 2
    applied = [name for result in results for name in result]
    assert sorted(applied) == sorted(migration.name for migration in MIGRATIONS)


@pytest.mark.parametrize(
    "intent",
    [
        an_intent(),
        an_intent(
            "up_2",
            checksum_sha256="n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=",
            status=UploadStatus.VERIFIED,
            created_at=datetime(2025, 1, 1, tzinfo=UTC),
            url_expires_at=datetime(2025, 1, 1, 0, 5, tzinfo=UTC),
        ),
    ],
    ids=["issued-without-checksum", "verified-with-checksum"],
)
def test_an_added_upload_intent_reads_back_identically(
    backend: Backend, db: peewee.Database, intent: Upload
) -> None:
    with PeeweeUnitOfWork(db) as uow:
        uow.uploads.add(intent)
        uow.commit()

    read_back = PeeweeUploadRepository(backend.open()).get(intent.upload_id)

    assert read_back == intent
    assert read_back is not None
    assert read_back.created_at.tzinfo is UTC
    assert read_back.url_expires_at.tzinfo is UTC


def test_times_in_another_zone_are_stored_as_the_same_instant_in_utc(db: peewee.Database) -> None:
    paris = timezone(timedelta(hours=1))
    with PeeweeUnitOfWork(db) as uow:
        uow.uploads.add(an_intent(created_at=T0.astimezone(paris), url_expires_at=T0.astimezone(paris)))
        uow.commit()

    read_back = PeeweeUploadRepository(db).get("up_1")

    assert read_back is not None
    assert read_back.created_at == T0
    assert read_back.created_at.tzinfo is UTC


def test_naive_datetimes_are_refused(db: peewee.Database) -> None:
    with PeeweeUnitOfWork(db) as uow, pytest.raises(ValueError, match="timezone-aware"):
        uow.uploads.add(an_intent(created_at=datetime(2025, 3, 1, 12, 0)))


def test_getting_an_unknown_upload_returns_none(db: peewee.Database) -> None:
    assert PeeweeUploadRepository(db).get("no_such_upload") is None


def test_adding_the_same_upload_twice_raises_an_integrity_error(db: peewee.Database) -> None:
    with PeeweeUnitOfWork(db) as uow:
        uow.uploads.add(an_intent())
        uow.commit()

    with PeeweeUnitOfWork(db) as uow, pytest.raises(peewee.IntegrityError):
        uow.uploads.add(an_intent())


def test_an_upload_and_its_audit_event_are_committed_together(backend: Backend, db: peewee.Database) -> None:
    with PeeweeUnitOfWork(db) as uow:
        uow.uploads.add(an_intent())
        uow.audit.append(an_event(reason="first upload"))
        uow.commit()

    elsewhere = backend.open()
    assert PeeweeUploadRepository(elsewhere).get("up_1") == an_intent()
    assert PeeweeAuditLog(elsewhere).events() == [an_event(reason="first upload")]


def test_nothing_is_kept_when_the_block_ends_without_commit(backend: Backend, db: peewee.Database) -> None:
    with PeeweeUnitOfWork(db) as uow:
        uow.uploads.add(an_intent())
        uow.audit.append(an_event())

    for database in (db, backend.open()):
        assert PeeweeUploadRepository(database).get("up_1") is None
        assert PeeweeAuditLog(database).events() == []


def test_an_exception_inside_the_block_rolls_everything_back_and_propagates(
    backend: Backend, db: peewee.Database
) -> None:
    with pytest.raises(RuntimeError, match="signing failed"), PeeweeUnitOfWork(db) as uow:
        uow.uploads.add(an_intent())
        uow.audit.append(an_event())
        raise RuntimeError("signing failed")

    for database in (db, backend.open()):
        assert PeeweeUploadRepository(database).get("up_1") is None
        assert PeeweeAuditLog(database).events() == []


def test_an_exception_after_commit_keeps_what_was_committed(db: peewee.Database) -> None:
    with pytest.raises(RuntimeError), PeeweeUnitOfWork(db) as uow:
        uow.uploads.add(an_intent())
        uow.audit.append(an_event())
        uow.commit()
        uow.uploads.add(an_intent("up_2"))
        raise RuntimeError("enqueueing failed")

    assert PeeweeUploadRepository(db).get("up_1") == an_intent()
    assert PeeweeUploadRepository(db).get("up_2") is None
    assert PeeweeAuditLog(db).events() == [an_event()]


def test_writes_after_a_commit_need_another_commit(db: peewee.Database) -> None:
    with PeeweeUnitOfWork(db) as uow:
        uow.uploads.add(an_intent())
        uow.commit()
        uow.uploads.add(an_intent("up_2"))

    assert PeeweeUploadRepository(db).get("up_1") is not None
    assert PeeweeUploadRepository(db).get("up_2") is None


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_events SET outcome = 'failure'", "DELETE FROM audit_events"],
    ids=["update", "delete"],
)
def test_audit_rows_cannot_be_changed_or_removed_by_raw_sql(db: peewee.Database, statement: str) -> None:
    with PeeweeUnitOfWork(db) as uow:
        uow.audit.append(an_event())
        uow.commit()

    with pytest.raises(peewee.IntegrityError, match="append-only"), db.atomic():
        db.execute_sql(statement)

    assert PeeweeAuditLog(db).events() == [an_event()]


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_the_audit_table_cannot_be_truncated_on_postgres(db: peewee.Database) -> None:
    with PeeweeUnitOfWork(db) as uow:
        uow.audit.append(an_event())
        uow.commit()

    with pytest.raises(peewee.IntegrityError, match="append-only"), db.atomic():
        db.execute_sql("TRUNCATE audit_events")

    assert PeeweeAuditLog(db).events() == [an_event()]


def test_events_are_listed_in_append_order_and_filtered_by_time_and_user(db: peewee.Database) -> None:
    early = an_event("up_1", actor_id="alice", occurred_at=T0)
    anonymous = an_event("up_2", actor_id=None, occurred_at=T0 + timedelta(minutes=1), outcome="denied")
    late = an_event("up_3", actor_id="bob", occurred_at=T0 + timedelta(minutes=2))
    later_but_first = an_event("up_4", actor_id="alice", occurred_at=T0 + timedelta(minutes=3))
    with PeeweeUnitOfWork(db) as uow:
        for event in (early, anonymous, late, later_but_first):
            uow.audit.append(event)
        uow.commit()
    log = PeeweeAuditLog(db)

    assert log.events() == [early, anonymous, late, later_but_first]
    assert log.events(since=T0 + timedelta(minutes=1)) == [anonymous, late, later_but_first]
    assert log.events(since=T0 + timedelta(minutes=1, microseconds=1)) == [late, later_but_first]
    assert log.events(user_id="alice") == [early, later_but_first]
    assert log.events(since=T0 + timedelta(seconds=1), user_id="alice") == [later_but_first]
    assert log.events(user_id="nobody") == []


def test_audit_details_are_stored_as_sorted_json(db: peewee.Database) -> None:
    with PeeweeUnitOfWork(db) as uow:
        uow.audit.append(an_event(details={"b": 1, "a": [1, "x"], "nested": {"z": None}}))
        uow.commit()

    (stored,) = db.execute_sql("SELECT details FROM audit_events").fetchall()

    assert stored[0] == '{"a": [1, "x"], "b": 1, "nested": {"z": null}}'


def test_sqlite_opens_in_wal_mode_with_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path}/a/b/tryon.db")
    try:
        pragmas = {
            name: db.execute_sql(f"PRAGMA {name}").fetchone()[0]
            for name in ("journal_mode", "foreign_keys", "busy_timeout")
        }
    finally:
        db.close()

    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 5000}
    assert (tmp_path / "a" / "b" / "tryon.db").is_file()


def test_postgres_connections_time_out_after_a_few_seconds_unless_the_url_says_otherwise() -> None:
    assert open_database("postgresql://u@db.internal/tryon").connect_params["connect_timeout"] == 5
    assert open_database("postgres://u@db/tryon?connect_timeout=2").connect_params["connect_timeout"] == 2


def test_ping_answers_when_the_database_is_up(backend: Backend) -> None:
    ping(backend.open())


def test_a_database_nobody_listens_on_is_unavailable_to_the_unit_of_work() -> None:
    db = open_database(NOTHING_LISTENS_URL)

    with pytest.raises(PersistenceUnavailable) as raised, PeeweeUnitOfWork(db):
        pytest.fail("the block must not run")

    assert isinstance(raised.value.__cause__, peewee.OperationalError)
    assert raised.value.retryable


def test_a_database_nobody_listens_on_is_unavailable_to_ping_and_migrate() -> None:
    db = open_database(NOTHING_LISTENS_URL)

    with pytest.raises(PersistenceUnavailable):
        ping(db)
    with pytest.raises(PersistenceUnavailable):
        migrate(db)


def test_a_sqlite_file_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    db = peewee.SqliteDatabase(str(tmp_path))  # a directory, not a database file

    with pytest.raises(PersistenceUnavailable):
        ping(db)
    with pytest.raises(PersistenceUnavailable), PeeweeUnitOfWork(db):
        pytest.fail("the block must not run")


@pytest.mark.postgres
def test_a_connection_the_server_dropped_is_unavailable_and_ping_then_reconnects() -> None:
    db = open_database(POSTGRES_URL)
    admin = postgres_admin()
    try:
        ping(db)
        backend_pid = db.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
        with admin.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", (backend_pid,))

        with pytest.raises(PersistenceUnavailable), PeeweeUnitOfWork(db):
            pytest.fail("the block must not run")
        db.close()  # what the HTTP layer does at the end of every request

        ping(db)
    finally:
        admin.close()
        if not db.is_closed():
            db.close()


def test_a_verified_upload_with_its_stored_image_reads_back_identically(
    backend: Backend, db: peewee.Database
) -> None:
    repository = PeeweeUploadRepository(db)
    repository.add(an_intent())
    verified = replace(
        an_intent(),
        status=UploadStatus.VERIFIED,
        updated_at=T0 + timedelta(seconds=20),
        source_expires_at=T0 + timedelta(days=1),
        stored=StoredImage("uploads/user_1/up_1.jpg", "image/jpeg", 81234, 1536, 2048, "c2hhMjU2"),
    )

    assert repository.update(verified) is True

    assert PeeweeUploadRepository(backend.open()).get("up_1") == replace(verified, version=1)


def test_a_rejection_reason_is_kept(db: peewee.Database) -> None:
    repository = PeeweeUploadRepository(db)
    repository.add(an_intent())
    rejected = replace(
        an_intent(), status=UploadStatus.REJECTED, rejection_reason="multiple_faces", updated_at=T0
    )

    assert repository.update(rejected) is True

    assert repository.get("up_1") == replace(rejected, version=1)
    assert repository.update(replace(rejected, rejection_reason="no_face_detected")) is False


def test_only_one_of_two_concurrent_claims_wins_and_a_stalled_claim_can_be_taken_over(
    db: peewee.Database,
) -> None:
    repository = PeeweeUploadRepository(db)
    repository.add(an_intent())
    now = T0 + timedelta(seconds=30)

    first = repository.claim_for_verification("up_1", now, stale_before=now - timedelta(seconds=120))
    assert first is not None
    assert repository.claim_for_verification("up_1", now, stale_before=now - timedelta(seconds=120)) is None
    later = now + timedelta(seconds=121)
    claimed = repository.claim_for_verification("up_1", later, stale_before=later - timedelta(seconds=120))
    assert claimed is not None
    assert (claimed.status, claimed.updated_at, claimed.version) == (UploadStatus.VERIFYING, later, 2)
    assert repository.update(replace(first, status=UploadStatus.VERIFIED)) is False  # taken over


@pytest.mark.parametrize("status", [UploadStatus.VERIFIED, UploadStatus.REJECTED, UploadStatus.EXPIRED])
def test_a_settled_upload_cannot_be_claimed(db: peewee.Database, status: UploadStatus) -> None:
    repository = PeeweeUploadRepository(db)
    repository.add(an_intent(status=status, updated_at=T0))

    assert (
        repository.claim_for_verification(
            "up_1", T0 + timedelta(hours=1), stale_before=T0 + timedelta(hours=1)
        )
        is None
    )
    assert repository.claim_for_verification("missing", T0, stale_before=T0) is None
