"""Audit retention on real databases: migration 10 turning Postgres' audit table into monthly partitions,
the sweep's partition rotation (made ahead, whole old months dropped, two runs at once, lock timeouts), the
append-only rules on every partition, the export on the partitioned table, and SQLite's prune."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import peewee
import pytest

from adapters.peewee_db import PeeweeAuditLog, PeeweeAuditRetention, migrate, migrations
from adapters.peewee_db.audit_partitions import (
    RETENTION_LOCK_ID,
    add_months,
    create_month_partition,
    month_label,
    month_start,
    partition_name,
)
from domain.audit_retention import AuditRetainer, AuditRetentionPolicy
from domain.errors import DomainError
from domain.model import AuditEvent
from domain.ports import AuditRetentionReport
from entrypoints import cli
from tests.builders.databases import Backend, an_event, postgres_schema
from tests.fakes import FixedClock

pytestmark = pytest.mark.integration

DAYS = 400
# A year past today's month, so none of its partitions exist yet (the migration makes today's and 3 more);
# 12:34 so that the cutoff is never a month's first instant.
NOW = add_months(month_start(datetime.now(UTC)), 12) + timedelta(days=1, hours=12, minutes=34)
KEEP_FROM = NOW - timedelta(days=DAYS)
KEPT_MONTH = month_start(KEEP_FROM)  # ends after the cutoff: stays, even its rows older than the cutoff
OLD_MONTH = add_months(KEPT_MONTH, -1)  # ends at or before the cutoff: dropped whole
OLDER_MONTH = add_months(KEPT_MONTH, -2)
IN_DEFAULT = add_months(KEPT_MONTH, -9)  # no partition: its rows sit in the default partition


@pytest.fixture
def pg() -> Iterator[Backend]:
    with postgres_schema("tryon_audit") as url:
        backend = Backend("postgres", url)
        try:
            yield backend
        finally:
            backend.close_all()


def retainer(db: peewee.Database, **options: int) -> AuditRetainer:
    return AuditRetainer(
        policy=AuditRetentionPolicy(retention_days=DAYS),
        retention=PeeweeAuditRetention(db, **options),
        clock=FixedClock(NOW),
    )


def append(db: peewee.Database, *events: AuditEvent) -> None:
    log = PeeweeAuditLog(db)
    with db.atomic():
        for event in events:
            log.append(event)


def rows(db: peewee.Database, table: str = "audit_events") -> list[tuple[object, ...]]:
    return list(
        db.execute_sql(f"SELECT id, occurred_at, event, subject_id FROM {table} ORDER BY id").fetchall()
    )


def partitions(db: peewee.Database) -> set[str]:
    found = db.execute_sql(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'audit_events'::regclass"
    ).fetchall()
    return {name for (name,) in found}


def refused(db: peewee.Database, statement: str) -> None:
    with pytest.raises(peewee.IntegrityError, match="append-only"), db.atomic():
        db.execute_sql(statement)


def migrated_up_to_9(db: peewee.Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """The schema just before migration 10."""
    older = tuple(m for m in migrations.MIGRATIONS if m.version <= 9)
    with monkeypatch.context() as patch:
        patch.setattr(migrations, "MIGRATIONS", older)
        migrate(db)


# Migration 10


@pytest.mark.postgres
def test_the_migration_partitions_the_table_keeping_every_row_and_id(
    pg: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = pg.open()
    migrated_up_to_9(db, monkeypatch)
    append(
        db,
        an_event("a", occurred_at=datetime(2024, 11, 30, 23, 59, 59, 999999, tzinfo=UTC)),
        an_event("b", occurred_at=datetime(2024, 12, 1, tzinfo=UTC)),
        an_event("c", occurred_at=datetime(2025, 3, 1, 12, tzinfo=UTC)),
    )
    with pytest.raises(RuntimeError), db.atomic():  # an id taken then rolled back: never handed out again
        PeeweeAuditLog(db).append(an_event("rolled_back"))
        raise RuntimeError
    before = rows(db)

    assert migrate(db) == ["partition_audit_events_by_month"]

    assert rows(db) == before
    (kind,) = db.execute_sql("SELECT relkind FROM pg_class WHERE oid = 'audit_events'::regclass").fetchone()
    assert kind == "p"
    now = month_start(datetime.now(UTC))
    ahead = {partition_name(add_months(now, n)) for n in range(4)}
    assert partitions(db) == {
        "audit_events_2024_11",
        "audit_events_2024_12",
        "audit_events_2025_03",
        "audit_events_default",
        *ahead,
    }
    assert rows(db, "audit_events_2024_11") == before[:1]
    assert rows(db, "audit_events_default") == []
    append(db, an_event("d", occurred_at=datetime.now(UTC)))
    (new_id,) = db.execute_sql("SELECT max(id) FROM audit_events").fetchone()
    assert new_id == int(str(before[-1][0])) + 2  # after the rolled-back id too
    indexes = {
        name
        for (name,) in db.execute_sql(
            "SELECT indexname FROM pg_indexes"
            " WHERE tablename = 'audit_events' AND schemaname = current_schema()"
        ).fetchall()
    }
    assert indexes == {
        "audit_events_pkey",
        "audit_events_occurred_at",
        "audit_events_event",
        "audit_events_actor_id",
    }
    assert db.execute_sql("SELECT to_regclass('audit_events_unpartitioned')").fetchone() == (None,)


@pytest.mark.postgres
@pytest.mark.parametrize(
    "table",
    ["audit_events", "audit_events_2025_03", "audit_events_default"],
    ids=["parent", "month", "default"],
)
def test_every_partition_stays_append_only(pg: Backend, monkeypatch: pytest.MonkeyPatch, table: str) -> None:
    db = pg.open()
    migrated_up_to_9(db, monkeypatch)
    append(db, an_event("m", occurred_at=datetime(2025, 3, 2, tzinfo=UTC)))
    migrate(db)
    append(db, an_event("d", occurred_at=datetime(1999, 1, 1, tzinfo=UTC)))  # lands in the default partition

    refused(db, f"UPDATE {table} SET outcome = 'failure'")
    refused(db, f"DELETE FROM {table}")
    refused(db, f"TRUNCATE {table}")

    assert len(rows(db)) == 2


@pytest.mark.postgres
def test_a_migrated_empty_table_starts_its_ids_at_one(pg: Backend) -> None:
    db = pg.open()
    migrate(db)
    append(db, an_event("first"))

    assert db.execute_sql("SELECT id FROM audit_events").fetchall() == [(1,)]


# The sweep's rotation


@pytest.fixture
def seeded(pg: Backend) -> peewee.Database:
    """A migrated schema with partitions for three old months and rows in them and in the default one."""
    db = pg.open()
    migrate(db)
    with db.atomic():
        for month in (OLDER_MONTH, OLD_MONTH, KEPT_MONTH):
            create_month_partition(db, month)
    append(
        db,
        an_event("older", occurred_at=OLDER_MONTH + timedelta(days=3)),
        an_event("old_1", occurred_at=OLD_MONTH),
        an_event("old_2", occurred_at=KEPT_MONTH - timedelta(microseconds=1)),
        an_event("kept_before_cutoff", occurred_at=KEPT_MONTH),
        an_event("at_cutoff", occurred_at=KEEP_FROM),
        an_event("in_default", occurred_at=IN_DEFAULT + timedelta(days=1)),
        an_event("next_month", occurred_at=add_months(month_start(NOW), 1) + timedelta(days=2)),
    )
    return db


def subjects(db: peewee.Database) -> list[str]:
    return [str(subject) for (_, _, _, subject) in rows(db)]


@pytest.mark.postgres
def test_the_sweep_drops_whole_old_months_only_and_makes_the_coming_ones(seeded: peewee.Database) -> None:
    report = retainer(seeded).rotate()

    assert [(r.month, r.rows) for r in report.removed] == [
        (month_label(OLDER_MONTH), 1),
        (month_label(OLD_MONTH), 2),
    ]
    assert subjects(seeded) == [
        "kept_before_cutoff",
        "at_cutoff",
        "in_default",
        "next_month",
        month_label(OLDER_MONTH),  # the events recording the drops
        month_label(OLD_MONTH),
    ]
    assert partition_name(OLD_MONTH) not in partitions(seeded)
    assert seeded.execute_sql(f"SELECT to_regclass('{partition_name(OLD_MONTH)}')").fetchone() == (None,)
    coming = [month_label(add_months(month_start(NOW), n)) for n in range(4)]
    # Next month's row went to the default partition before its partition existed: that month is skipped.
    assert report.skipped == [coming[1]]
    assert report.created == [coming[0], *coming[2:]]
    assert report.default_has_rows
    dropped = [e for e in PeeweeAuditLog(seeded).events() if e.event == "audit.partition_dropped"]
    assert [(e.subject_id, e.details["rows"], e.occurred_at) for e in dropped] == [
        (month_label(OLDER_MONTH), 1, NOW),
        (month_label(OLD_MONTH), 2, NOW),
    ]

    again = retainer(seeded).rotate()

    assert (again.removed, again.created, again.skipped) == ([], [], [coming[1]])


@pytest.mark.postgres
def test_partitions_the_sweep_makes_refuse_updates_deletes_and_truncation(seeded: peewee.Database) -> None:
    retainer(seeded).rotate()
    made = partition_name(month_start(NOW))
    append(seeded, an_event("now", occurred_at=NOW))

    refused(seeded, f"UPDATE {made} SET outcome = 'failure'")
    refused(seeded, f"DELETE FROM {made}")
    refused(seeded, f"TRUNCATE {made}")

    assert "now" in [subject for (_, _, _, subject) in rows(seeded, made)]


@pytest.mark.postgres
def test_a_sweep_that_finds_the_lock_held_skips_and_a_later_one_finishes(
    pg: Backend, seeded: peewee.Database
) -> None:
    other = pg.open()
    with other.atomic():
        other.execute_sql("SELECT pg_advisory_xact_lock(%s)", (RETENTION_LOCK_ID,))

        held = retainer(seeded).rotate()

    assert (held.removed, held.created) == ([], [])
    assert held.held == 4 + 2  # four months to make, two to drop
    assert partition_name(OLD_MONTH) in partitions(seeded)
    assert len(retainer(seeded).rotate().removed) == 2


@pytest.mark.postgres
def test_two_sweeps_at_once_drop_each_month_once(pg: Backend, seeded: peewee.Database) -> None:
    reports: list[AuditRetentionReport] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def sweep() -> None:
        db = pg.open()
        try:
            start.wait(timeout=10)
            reports.append(retainer(db).rotate())
        except BaseException as error:  # reported below
            errors.append(error)
        finally:
            db.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sorted(r.month or "" for report in reports for r in report.removed) == [
        month_label(OLDER_MONTH),
        month_label(OLD_MONTH),
    ]
    assert sum(len(report.created) for report in reports) == 3
    dropped = [e for e in PeeweeAuditLog(seeded).events() if e.event == "audit.partition_dropped"]
    assert len(dropped) == 2


@pytest.mark.postgres
def test_a_sweep_waits_for_a_table_lock_only_briefly_then_leaves_the_month(
    pg: Backend, seeded: peewee.Database
) -> None:
    reader = pg.open()
    with reader.atomic():
        reader.execute_sql("LOCK TABLE audit_events IN ACCESS SHARE MODE")  # a long export, say

        report = retainer(seeded, lock_timeout_ms=200).rotate()

    assert report.removed == []
    assert report.held >= 2
    assert partition_name(OLD_MONTH) in partitions(seeded)
    assert len(retainer(seeded).rotate().removed) == 2


@pytest.mark.postgres
def test_prune_on_postgres_is_the_sweeps_rotation(seeded: peewee.Database) -> None:
    report = retainer(seeded).prune()

    assert report.partitioned
    assert [r.month for r in report.removed] == [month_label(OLDER_MONTH), month_label(OLD_MONTH)]


# The export on the partitioned table


@pytest.mark.postgres
def test_the_export_answers_per_user_and_period_in_batches(seeded: peewee.Database) -> None:
    jan, feb = add_months(month_start(NOW), 1), add_months(month_start(NOW), 2)
    retainer(seeded).rotate()
    append(
        seeded,
        *(an_event(f"a{i}", actor_id="alice", occurred_at=feb + timedelta(hours=i)) for i in range(5)),
        an_event("b0", actor_id="bob", occurred_at=feb),
        an_event("a_late", actor_id="alice", occurred_at=add_months(feb, 1)),
    )
    log = PeeweeAuditLog(seeded)

    alice = [e.subject_id for e in log.stream(user_id="alice", batch_size=2)]
    february = [e.subject_id for e in log.stream(since=feb, until=add_months(feb, 1), batch_size=2)]
    from_jan = [e.subject_id for e in log.stream(since=jan, user_id="alice", batch_size=3)]

    assert alice == ["a0", "a1", "a2", "a3", "a4", "a_late"]
    assert february == ["a0", "a1", "a2", "a3", "a4", "b0"]
    assert from_jan == alice


@pytest.mark.postgres
def test_a_period_export_reads_only_the_partitions_of_that_period(seeded: peewee.Database) -> None:
    start = KEPT_MONTH
    plan = "\n".join(
        line
        for (line,) in seeded.execute_sql(
            "EXPLAIN SELECT * FROM audit_events WHERE id > 0 AND occurred_at >= %s AND occurred_at < %s "
            "ORDER BY id LIMIT 1000",
            (start, add_months(start, 1)),
        ).fetchall()
    )

    assert partition_name(KEPT_MONTH) in plan
    assert partition_name(OLD_MONTH) not in plan
    assert "audit_events_default" not in plan


# SQLite: `tryon audit prune`


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[peewee.Database]:
    backend = Backend("sqlite", f"sqlite:///{tmp_path}/tryon.db")
    db = backend.open()
    migrate(db)
    append(
        db,
        an_event("old_1", occurred_at=KEEP_FROM - timedelta(days=30)),
        an_event("old_2", occurred_at=KEEP_FROM - timedelta(microseconds=1)),
        an_event("old_3", occurred_at=KEEP_FROM - timedelta(days=1)),
        an_event("at_cutoff", occurred_at=KEEP_FROM),
        an_event("recent", occurred_at=NOW),
    )
    yield db
    backend.close_all()


def trigger(db: peewee.Database) -> str | None:
    found = db.execute_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'audit_events_no_delete'"
    )
    row = found.fetchone()
    return None if row is None else str(row[0])


def test_sqlite_prune_deletes_older_rows_in_batches_and_puts_the_trigger_back(lite: peewee.Database) -> None:
    original = trigger(lite)
    heard: list[int] = []

    report = retainer(lite, batch_size=2).prune(heard.append)

    assert heard == [2, 3]
    assert [r.rows for r in report.removed] == [2, 1]
    assert [s for s in subjects(lite) if s != "None"] == ["at_cutoff", "recent"]
    assert trigger(lite) == original
    refused(lite, "DELETE FROM audit_events")
    refused(lite, "UPDATE audit_events SET outcome = 'failure'")
    pruned = [e for e in PeeweeAuditLog(lite).events() if e.event == "audit.rows_pruned"]
    assert [e.details["rows"] for e in pruned] == [2, 1]
    assert retainer(lite).prune().removed == []


def test_the_sweep_leaves_sqlites_audit_rows_alone(lite: peewee.Database) -> None:
    report = retainer(lite).rotate()

    assert not report.partitioned
    assert len(rows(lite)) == 5


def test_a_prune_failing_half_way_leaves_the_trigger_and_every_row(lite: peewee.Database) -> None:
    lite.execute_sql(
        "CREATE TRIGGER test_fails_mid_delete BEFORE DELETE ON audit_events WHEN old.subject_id = 'old_3' "
        "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
    )
    original, before = trigger(lite), rows(lite)

    with pytest.raises(peewee.IntegrityError, match="disk on fire"):
        retainer(lite).prune()

    assert trigger(lite) == original
    assert rows(lite) == before
    refused(lite, "DELETE FROM audit_events")


def test_prune_refuses_a_table_that_has_lost_its_trigger(lite: peewee.Database) -> None:
    lite.execute_sql("DROP TRIGGER audit_events_no_delete")

    with pytest.raises(DomainError, match="audit_events_no_delete is missing"):
        retainer(lite).prune()

    assert len(rows(lite)) == 5


def test_the_prune_command_prints_what_it_removed(
    lite: peewee.Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in {
        "UPLOADS_BUCKET": "u",
        "PROCESSED_BUCKET": "p",
        "BETTER_AUTH_URL": "https://auth.example.com",
        "DATABASE_URL": f"sqlite:///{tmp_path}/tryon.db",
        # A cutoff about ten days before KEEP_FROM: only old_1 (30 days before it) is older.
        "AUDIT_RETENTION_DAYS": str((datetime.now(UTC) - KEEP_FROM).days + 10),
    }.items():
        monkeypatch.setenv(name, value)

    assert cli.main(["audit", "prune"]) == 0

    out = capsys.readouterr()
    assert out.out.startswith("audit prune: deleted 1 audit event(s) (older than ")
    assert "audit prune: 1 event(s) deleted so far" in out.err
    assert [s for s in subjects(lite) if s != "None"] == ["old_2", "old_3", "at_cutoff", "recent"]
