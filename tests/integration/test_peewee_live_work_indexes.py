"""Issue 15: every periodic query (the sweep's three, the reconciler's, the verifier's stalled claims) costs
what the work due costs, not what history costs. Proven on SQLite and Postgres holding 50,000 settled rows per
table (purged uploads, settled try-ons, favourites kept for years) and 5,000 selfies favourites keep past
their deadline (verified for years: every sweep read each one and probed its holds before ``source_kept``,
about 70,000 rows and 41,000 pages), beside a handful due: each query returns exactly the due rows, its plan
reads the partial index of migration 9 meant for it (never a sequential scan of the table), and on Postgres
``EXPLAIN (ANALYZE, BUFFERS)`` counts the rows and pages it touched, which stay a few dozen however much
history there is (a scan of the history touches tens of thousands of rows).

The query text is the repositories' own: each method runs once with its SQL captured, then that SQL is
explained with the same parameters."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import peewee
import pytest

from adapters.peewee_db import MIGRATIONS, PeeweeResultRepository, PeeweeTryOnRepository, migrate
from adapters.peewee_db.database import execute_sql, is_postgres
from adapters.peewee_db.models import UNSETTLED_TRYON_STATUSES
from adapters.peewee_db.repositories import PeeweeUploadRepository
from adapters.peewee_db.schema import UNSETTLED_TRYONS
from tests.builders.databases import Backend, postgres_schema

pytestmark = pytest.mark.integration

HISTORY = 50_000
KEPT = 5_000
"""Selfies favourites keep, verified and long past their deadline, marked kept as their expiry left them;
the overdue query read every one of them (and probed its try-ons and results) before ``source_kept``."""
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LIVE_SELFIES = 40
MAX_ROWS_TOUCHED = 30
"""Rows a periodic query may read (index entries and heap rows, kept or filtered out) with a dozen due or
live rows beside 50,000 of history; a scan of that history reads 50,000."""
MAX_PAGES_TOUCHED = 40
"""Shared buffers (hit or read) a periodic query may touch; the history alone fills about a thousand."""


@dataclass(frozen=True)
class Periodic:
    name: str
    run: Callable[[peewee.Database], list[str]]
    table: str
    index: str
    due: list[str]


def _to_purge(db: peewee.Database) -> list[str]:
    found = PeeweeUploadRepository(db).to_purge(NOW - timedelta(seconds=900), 200)
    return [upload.upload_id for upload in found]


def _expired_results(db: peewee.Database) -> list[str]:
    return [result.result_id for result in PeeweeResultRepository(db).expired(NOW - timedelta(days=30), 200)]


PERIODIC = [
    Periodic("sweep: uploads to purge", _to_purge, "uploads", "uploads_unpurged_created_at",
             ["dead_1", "dead_2", "dead_3", "deleted_1"]),
    Periodic("sweep: overdue selfies", lambda db: PeeweeUploadRepository(db).overdue_sources(NOW, 200),
             "uploads", "uploads_overdue_sources", ["overdue_2", "overdue_1"]),
    Periodic("sweep: kept marks to re-check",
             lambda db: PeeweeUploadRepository(db).recheck_kept(NOW - timedelta(days=1), NOW, 200),
             "uploads", "uploads_kept_sources", ["stale_kept"]),
    Periodic("sweep: expired results", _expired_results, "tryon_results", "tryon_results_unkept_created_at",
             ["due_r1", "due_r2", "due_r3"]),
    Periodic("reconciler: overdue try-ons",
             lambda db: PeeweeTryOnRepository(db).due(NOW - timedelta(seconds=10), 200),
             "tryons", "tryons_unsettled_next_action_at", ["due_t1", "due_t2", "due_t3"]),
    Periodic("verifier: stalled verifications",
             lambda db: PeeweeUploadRepository(db).stalled_verifications(NOW - timedelta(seconds=120), 100),
             "uploads", "uploads_verifying_updated_at", ["stalled_1", "stalled_2"]),
]  # fmt: skip


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def seeded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[peewee.Database]:
    """One database per backend for the whole module: migrated, 50,000 rows of history per table, the due
    and live rows, then ANALYZE (as autovacuum would), so the planner knows how much history there is."""
    if request.param == "sqlite":
        backend = Backend("sqlite", f"sqlite:///{tmp_path_factory.mktemp('live_work')}/tryon.db")
        yield _seed(backend)
        backend.close_all()
        return
    with postgres_schema("tryon_live_work") as url:
        backend = Backend("postgres", url)
        try:
            yield _seed(backend)
        finally:
            backend.close_all()


def _seed(backend: Backend) -> peewee.Database:
    db = backend.open()
    migrate(db)
    with db.atomic():
        for statement in [*history_sql(is_postgres(db), HISTORY), *kept_sql(is_postgres(db), KEPT)]:
            execute_sql(db, statement)
        _add_due_and_live_rows(db)
        # Its expiry ran a month ago: due for a re-check, still justified (confirmed, not cleared).
        execute_sql(
            db,
            f"UPDATE uploads SET source_kept = TRUE, source_kept_at = {db.param} WHERE upload_id = 'held_fav'",  # noqa: E501
            (NOW - timedelta(days=30),),
        )
        _add_stale_mark(db)
    execute_sql(db, "ANALYZE")
    return db


def _add_stale_mark(db: peewee.Database) -> None:
    """A mark migration 9's backfill set and the old code's unfavourite left (its new deadline ahead, so it
    is not overdue until the re-check clears the mark): due for a re-check, no favourite justifies it."""
    columns = f"{UPLOAD_COLUMNS}, stored_key, source_kept, source_kept_at"
    at = NOW - timedelta(minutes=90)
    never = datetime(1970, 1, 1, tzinfo=UTC)  # as the backfill writes it
    row = ("stale_kept", "user_1", "uploads/user_1/stale_kept", "image/jpeg", 1, "verified", at, at, at,
           NOW + timedelta(days=1), at, "sources/user_1/stale_kept", True, never)  # fmt: skip
    _insert(db, "uploads", columns, row)


def _series(postgres: bool, rows: int) -> tuple[str, str, str]:
    """SQL for rows numbered ``i`` from 1: a prefix to the INSERT, the FROM source, and ``i``'s instant (every
    10 minutes from 2024-01-01)."""
    if postgres:
        at = "(TIMESTAMPTZ '2024-01-01 00:00:00+00' + i * INTERVAL '10 minutes')"
        return "", f"generate_series(1, {rows}) AS n(i)", at
    numbers = f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) "
    return numbers, "n", "strftime('%Y-%m-%d %H:%M:%S+00:00', '2024-01-01', '+' || (i * 10) || ' minutes')"


def history_sql(postgres: bool, rows: int) -> list[str]:
    """Years of settled rows, generated in SQL: uploads deleted, rejected or expired and purged long ago,
    try-ons settled, and each try-on's result kept as a favourite (so never expired)."""
    numbers, source, at = _series(postgres, rows)
    mod = "%%" if postgres else "%"  # psycopg2 formats every statement it is given parameters for
    status = f"CASE i {mod} 3 WHEN 0 THEN 'deleted' WHEN 1 THEN 'rejected' ELSE 'expired' END"
    user = f"'user_' || (i {mod} 997)"
    return [
        f"""{numbers}INSERT INTO uploads (upload_id, user_id, object_key, content_type,
            content_length, status, created_at, expires_at, updated_at, source_expires_at, purged_at)
            SELECT 'old_' || i, {user}, 'uploads/old/' || i, 'image/jpeg', 1000, {status},
            {at}, {at}, {at}, {at}, {at} FROM {source}""",
        f"""{numbers}INSERT INTO tryons (tryon_id, user_id, upload_id, style_prompt, num_images,
            output_format, status, attempts, created_at, completed_at, next_action_at)
            SELECT 'old_t' || i, {user}, 'old_' || i, 'a bob', 1, 'jpeg',
            CASE i {mod} 2 WHEN 0 THEN 'succeeded' ELSE 'failed' END, 1, {at}, {at}, {at} FROM {source}""",
        f"""{numbers}INSERT INTO tryon_results (result_id, tryon_id, user_id, position, object_key,
            content_type, size, created_at, favorite)
            SELECT 'old_r' || i, 'old_t' || i, {user}, 0, 'processed/old/' || i, 'image/jpeg',
            1000, {at}, TRUE FROM {source}""",
    ]


def kept_sql(postgres: bool, rows: int, *, marked: bool = True) -> list[str]:
    """Selfies kept by a favourite: verified, deadline long past, a settled try-on whose result is a
    favourite; ``marked``: with ``source_kept`` set, confirmed an hour ago (False: as a database at version
    8 holds them)."""
    numbers, source, at = _series(postgres, rows)
    confirmed = "'2026-06-01 11:00:00+00:00'"  # NOW less an hour, as SQLite and Postgres both read it
    kept = (", source_kept, source_kept_at", f", TRUE, {confirmed}") if marked else ("", "")
    return [
        f"""{numbers}INSERT INTO uploads (upload_id, user_id, object_key, content_type, content_length,
            status, created_at, expires_at, updated_at, source_expires_at, purged_at, stored_key{kept[0]})
            SELECT 'favkept_' || i, 'user_kept', 'uploads/kept/' || i, 'image/jpeg', 1000, 'verified',
            {at}, {at}, {at}, {at}, {at}, 'sources/kept/' || i{kept[1]} FROM {source}""",
        f"""{numbers}INSERT INTO tryons (tryon_id, user_id, upload_id, style_prompt, num_images,
            output_format, status, attempts, created_at, completed_at, next_action_at)
            SELECT 'favkept_t' || i, 'user_kept', 'favkept_' || i, 'a bob', 1, 'jpeg', 'succeeded', 1,
            {at}, {at}, {at} FROM {source}""",
        f"""{numbers}INSERT INTO tryon_results (result_id, tryon_id, user_id, position, object_key,
            content_type, size, created_at, favorite)
            SELECT 'favkept_r' || i, 'favkept_t' || i, 'user_kept', 0, 'processed/kept/' || i, 'image/jpeg',
            1000, {at}, TRUE FROM {source}""",
    ]


UPLOAD_COLUMNS = (
    "upload_id, user_id, object_key, content_type, content_length, status, created_at, expires_at, "
    "updated_at, source_expires_at, purged_at"
)
TRYON_COLUMNS = (
    "tryon_id, user_id, upload_id, style_prompt, num_images, output_format, status, attempts, "
    "created_at, next_action_at, lease_until"
)
RESULT_COLUMNS = (
    "result_id, tryon_id, user_id, position, object_key, content_type, size, created_at, favorite"
)


def _add_due_and_live_rows(db: peewee.Database) -> None:
    """Due: 3 dead intents and a deletion left unfinished, 2 overdue selfies, 2 stalled verifications, 3
    try-ons overdue, 3 results past retention. Live, not due: intents still in flight, a fresh verification,
    selfies with time left (as many as a quiet hour holds: SQLite sorts an index range it expects to hold a
    handful of rows rather than read it in order, a sort of the work due, not of history), 2 past their
    deadline but kept (by a favourite, by a running try-on; the first is marked ``source_kept`` once
    migrated, by migration 9 or by the caller as its expiry would), a leased try-on and one not yet due,
    results a day old."""

    def at(minutes: int) -> datetime:
        return NOW + timedelta(minutes=minutes)

    uploads = [  # upload_id, status, created_at, expires_at, updated_at, source_expires_at, purged_at
        *[(f"dead_{i}", "rejected", at(-120 + i), at(-100), at(-100), None, None) for i in (1, 2, 3)],
        ("deleted_1", "deleted", at(-90), at(-85), at(-1), None, None),
        *[(f"issuing_{i}", "issued", at(-1), at(4), None, None, None) for i in (1, 2)],
        *[(f"stalled_{i}", "verifying", at(-11), at(-6), at(-10 + i), None, None) for i in (1, 2)],
        ("verifying_1", "verifying", at(-1), at(4), at(0), None, None),
        *[(f"overdue_{i}", "verified", at(-90), at(-85), at(-80), at(-i), at(-60)) for i in (1, 2)],
        ("kept_1", "verified", at(-90), at(-85), at(-80), at(60), at(-60)),
        *[
            (f"fresh_{i}", "verified", at(-90), at(-85), at(-80), at(i), at(-60))
            for i in range(1, LIVE_SELFIES)
        ],
        *[(f"held_{i}", "verified", at(-90), at(-85), at(-80), at(-30), at(-60)) for i in ("fav", "tryon")],
    ]
    for upload_id, status, *times in uploads:
        key = f"uploads/user_1/{upload_id}"
        _insert(db, "uploads", UPLOAD_COLUMNS, (upload_id, "user_1", key, "image/jpeg", 1, status, *times))
    tryons = [  # tryon_id, upload_id, status, next_action_at, lease_until
        *[(f"due_t{i}", "kept_1", "queued" if i == 1 else "running", at(-10 + i), None) for i in (1, 2, 3)],
        ("leased_t", "held_tryon", "running", at(-5), at(1)),
        ("later_t", "kept_1", "queued", at(1), None),
        ("fav_t", "held_fav", "succeeded", None, None),
    ]
    for tryon_id, upload_id, status, *times in tryons:
        row = (tryon_id, "user_1", upload_id, "a bob", 1, "jpeg", status, 0, at(-15), *times)
        _insert(db, "tryons", TRYON_COLUMNS, row)
    results = [(f"due_r{i}", NOW - timedelta(days=40, minutes=-i)) for i in (1, 2, 3)]
    results += [(f"recent_r{i}", NOW - timedelta(days=1, minutes=i)) for i in range(20)]
    results += [("fav_r", NOW - timedelta(days=40))]
    for result_id, created in results:
        key, favorite = f"processed/user_1/{result_id}", result_id == "fav_r"
        tryon_id = "fav_t" if favorite else result_id
        row = (result_id, tryon_id, "user_1", 0, key, "image/jpeg", 10, created, favorite)
        _insert(db, "tryon_results", RESULT_COLUMNS, row)


def _insert(db: peewee.Database, table: str, columns: str, row: tuple[Any, ...]) -> None:
    values = ", ".join([db.param] * len(row))
    execute_sql(db, f"INSERT INTO {table} ({columns}) VALUES ({values})", row)


def captured(db: peewee.Database, run: Callable[[peewee.Database], list[str]]) -> tuple[list[str], str, Any]:
    """``run``'s answer, and the one SELECT it sent (its SQL and parameters)."""
    sent: list[tuple[str, Any]] = []
    original = db.execute_sql

    def spy(sql: str, params: Any = None) -> Any:
        sent.append((sql, params))
        return original(sql, params)

    db.execute_sql = spy  # type: ignore[method-assign]
    try:
        answer = run(db)
    finally:
        del db.execute_sql
    selects = [(sql, params) for sql, params in sent if sql.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 1, sent  # and any writes: a conditional UPDATE of a row it read, by primary key
    assert all(sql.lstrip().upper().startswith("UPDATE") for sql, _ in sent if (sql, _) not in selects), sent
    return answer, *selects[0]


@pytest.mark.parametrize("periodic", PERIODIC, ids=lambda periodic: periodic.name)
def test_a_periodic_query_reads_only_its_partial_index_whatever_the_history(
    seeded: peewee.Database, periodic: Periodic
) -> None:
    answer, sql, params = captured(seeded, periodic.run)

    assert answer == periodic.due
    if is_postgres(seeded):
        plan = explain_analyze(seeded, sql, params)
        scans = list(scan_nodes(plan))
        assert {node["Node Type"] for node in scans} <= {"Index Scan", "Index Only Scan"}, scans
        on_table = [node.get("Index Name") for node in scans if node.get("Relation Name") == periodic.table]
        assert on_table == [periodic.index], scans
        assert rows_touched(plan) <= MAX_ROWS_TOUCHED, plan
        assert pages_touched(plan) <= MAX_PAGES_TOUCHED, plan
    else:
        steps = explain_query_plan(seeded, sql, params)
        # The table (peewee calls it t1) by its index, first; any subquery by an index too; nothing sorted.
        assert re.fullmatch(rf"(SCAN|SEARCH) t1 USING INDEX {periodic.index}( \(.*\))?", steps[0]), steps
        lookups = [step for step in steps if step.startswith(("SCAN", "SEARCH"))]
        assert all(" USING " in step for step in lookups), steps
        assert not [step for step in steps if "TEMP B-TREE" in step], steps


def explain_analyze(db: peewee.Database, sql: str, params: Any) -> dict[str, Any]:
    cursor = execute_sql(db, f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", params)
    document = cursor.fetchone()[0]
    plan = (json.loads(document) if isinstance(document, str) else document)[0]["Plan"]
    assert isinstance(plan, dict)
    return plan


def scan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if "Relation Name" in plan or "Index Name" in plan:
        yield plan
    for child in plan.get("Plans", []):
        yield from scan_nodes(child)


def rows_touched(plan: dict[str, Any]) -> int:
    """Rows every scan produced or read and threw away (by its filter or an index recheck), over all loops."""
    total = 0
    for node in scan_nodes(plan):
        per_loop = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
        total += (per_loop + node.get("Rows Removed by Index Recheck", 0)) * node["Actual Loops"]
    return int(total)


def pages_touched(plan: dict[str, Any]) -> int:
    return int(plan["Shared Hit Blocks"] + plan["Shared Read Blocks"])


def explain_query_plan(db: peewee.Database, sql: str, params: Any) -> list[str]:
    """SQLite's plan, one line per step ("SEARCH t USING INDEX i (...)", "SCAN t", "USE TEMP B-TREE ...")."""
    return [str(row[3]) for row in execute_sql(db, f"EXPLAIN QUERY PLAN {sql}", params).fetchall()]


def test_the_unsettled_predicate_of_the_indexes_names_exactly_the_unsettled_statuses() -> None:
    """Migration 9 wrote the predicate down; the queries build theirs from the enum. A status added later
    must come with a migration that redefines the indexes, and this fails until it does."""
    quoted = ", ".join(f"'{status}'" for status in UNSETTLED_TRYON_STATUSES)
    assert f"status IN ({quoted})" == UNSETTLED_TRYONS


MIGRATION_9_INDEXES = {
    "uploads_overdue_sources",
    "uploads_kept_sources",
    "uploads_unpurged_created_at",
    "uploads_verifying_updated_at",
    "tryon_results_unkept_created_at",
    "tryons_unsettled_created_at",
    "tryons_unsettled_next_action_at",
}
DROPPED_BY_9 = {
    "uploads_status_expires_at",
    "uploads_status_source_expires_at",
    "tryons_status_next_action_at",
    "tryon_results_created_at",
}


def test_migration_9_indexes_a_database_at_version_8_that_holds_rows(backend: Backend) -> None:
    database = backend.open()
    with database.atomic():
        for migration in (m for m in MIGRATIONS if m.version < 9):
            migration.apply(database)
        for statement in [
            *history_sql(is_postgres(database), 100),
            *kept_sql(is_postgres(database), 5, marked=False),
        ]:
            execute_sql(database, statement)
        _add_due_and_live_rows(database)
    before = index_names(database)
    with database.atomic():
        next(m for m in MIGRATIONS if m.version == 9).apply(database)

    after = index_names(database)
    assert before >= DROPPED_BY_9
    assert not MIGRATION_9_INDEXES & before
    assert after == (before - DROPPED_BY_9) | MIGRATION_9_INDEXES
    backfilled = [*sorted(f"favkept_{i}" for i in range(1, 6)), "held_fav"]
    assert unconfirmed_marks(database) == backfilled  # no expiry confirmed them: the first to re-check
    for periodic in PERIODIC:  # no stale mark here: the backfill marked only what a favourite keeps
        due = [] if periodic.index == "uploads_kept_sources" else periodic.due
        assert periodic.run(database) == due, periodic.name
    kept = execute_sql(database, "SELECT upload_id FROM uploads WHERE source_kept ORDER BY upload_id")
    assert [row[0] for row in kept.fetchall()] == backfilled
    assert unconfirmed_marks(database) == []  # all confirmed by that re-check


def unconfirmed_marks(db: peewee.Database) -> list[str]:
    sql = (
        f"SELECT upload_id FROM uploads WHERE source_kept AND source_kept_at < {db.param} ORDER BY upload_id"
    )
    return [row[0] for row in execute_sql(db, sql, (NOW - timedelta(days=1),)).fetchall()]


def index_names(db: peewee.Database) -> set[str]:
    if is_postgres(db):
        sql = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex%'"
    return {str(row[0]) for row in execute_sql(db, sql).fetchall()}
