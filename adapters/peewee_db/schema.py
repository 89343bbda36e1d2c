"""The schema, one function per version. Applied in order by ``migrations.migrate``; never edit a
shipped version: add the next one."""

from __future__ import annotations

from datetime import UTC

import peewee

from adapters.peewee_db.audit_partitions import (
    add_months,
    create_default_partition,
    create_month_partition,
    month_start,
    protect_from_truncate,
)
from adapters.peewee_db.database import execute_sql, is_postgres


def _create_uploads_and_audit_events(db: peewee.Database) -> None:
    pg = is_postgres(db)
    timestamp = "TIMESTAMPTZ" if pg else "DATETIME"
    audit_id = (
        "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY" if pg else "INTEGER PRIMARY KEY AUTOINCREMENT"
    )
    statements = [
        f"""CREATE TABLE uploads (
            upload_id VARCHAR(64) NOT NULL PRIMARY KEY,
            user_id VARCHAR(128) NOT NULL,
            object_key VARCHAR(512) NOT NULL UNIQUE,
            content_type VARCHAR(128) NOT NULL,
            content_length BIGINT NOT NULL,
            checksum_sha256 VARCHAR(64),
            status VARCHAR(32) NOT NULL,
            created_at {timestamp} NOT NULL,
            expires_at {timestamp} NOT NULL)""",
        "CREATE INDEX uploads_user_id ON uploads (user_id)",
        f"""CREATE TABLE audit_events (
            id {audit_id},
            occurred_at {timestamp} NOT NULL,
            event VARCHAR(64) NOT NULL,
            actor_id VARCHAR(128),
            subject_id VARCHAR(128),
            outcome VARCHAR(32) NOT NULL,
            reason TEXT,
            details TEXT NOT NULL)""",
        "CREATE INDEX audit_events_occurred_at ON audit_events (occurred_at)",
        "CREATE INDEX audit_events_event ON audit_events (event)",
        "CREATE INDEX audit_events_actor_id ON audit_events (actor_id)",
        *(_POSTGRES_APPEND_ONLY if pg else _SQLITE_APPEND_ONLY),
    ]
    for statement in statements:
        execute_sql(db, statement)


_SQLITE_APPEND_ONLY = [
    f"""CREATE TRIGGER audit_events_no_{action.lower()} BEFORE {action} ON audit_events
        BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END"""
    for action in ("UPDATE", "DELETE")
]

# restrict_violation is an integrity error class, as SQLite's RAISE(ABORT) is.
_POSTGRES_APPEND_ONLY = [
    """CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $fn$
        BEGIN
            RAISE EXCEPTION USING ERRCODE = 'restrict_violation',
                MESSAGE = 'audit_events is append-only (' || TG_OP || ' refused)';
        END
    $fn$""",
    """CREATE TRIGGER audit_events_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_events
        FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()""",
    """CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
        FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()""",
]


def _add_verification_columns(db: peewee.Database) -> None:
    """US2: what verification stored (the sanitised image), why it refused, and a claim timestamp."""
    timestamp = "TIMESTAMPTZ" if is_postgres(db) else "DATETIME"
    columns = [
        f"updated_at {timestamp}",
        "stored_key VARCHAR(600)",
        "stored_content_type VARCHAR(128)",
        "stored_size BIGINT",
        "width INTEGER",
        "height INTEGER",
        "stored_checksum_sha256 VARCHAR(64)",
        "rejection_reason VARCHAR(64)",
    ]
    for column in columns:
        execute_sql(db, f"ALTER TABLE uploads ADD COLUMN {column}")
    execute_sql(db, "CREATE INDEX uploads_status_expires_at ON uploads (status, expires_at)")


def _create_tryons_and_results(db: peewee.Database) -> None:
    """US3: try-ons (with where the generator got to, and a step lease) and their stored results."""
    timestamp = "TIMESTAMPTZ" if is_postgres(db) else "DATETIME"
    statements = [
        f"""CREATE TABLE tryons (
            tryon_id VARCHAR(64) NOT NULL PRIMARY KEY,
            user_id VARCHAR(128) NOT NULL,
            upload_id VARCHAR(64) NOT NULL,
            style_prompt TEXT NOT NULL,
            num_images INTEGER NOT NULL,
            output_format VARCHAR(8) NOT NULL,
            status VARCHAR(16) NOT NULL,
            attempts INTEGER NOT NULL,
            created_at {timestamp} NOT NULL,
            completed_at {timestamp},
            error_code VARCHAR(64),
            error_message TEXT,
            error_retryable BOOLEAN,
            idempotency_key VARCHAR(255),
            request_fingerprint VARCHAR(64),
            fal_request_id VARCHAR(255),
            status_url TEXT,
            response_url TEXT,
            cancel_url TEXT,
            submitted_at {timestamp},
            next_action_at {timestamp},
            lease_until {timestamp})""",
        "CREATE INDEX tryons_user_id ON tryons (user_id)",
        "CREATE INDEX tryons_upload_id ON tryons (upload_id)",
        "CREATE INDEX tryons_status_next_action_at ON tryons (status, next_action_at)",
        "CREATE UNIQUE INDEX tryons_user_idempotency_key ON tryons (user_id, idempotency_key)",
        f"""CREATE TABLE tryon_results (
            result_id VARCHAR(80) NOT NULL PRIMARY KEY,
            tryon_id VARCHAR(64) NOT NULL,
            user_id VARCHAR(128) NOT NULL,
            position INTEGER NOT NULL,
            object_key VARCHAR(600) NOT NULL,
            content_type VARCHAR(64) NOT NULL,
            size BIGINT NOT NULL,
            width INTEGER,
            height INTEGER,
            created_at {timestamp} NOT NULL,
            favorite BOOLEAN NOT NULL DEFAULT FALSE)""",
        "CREATE UNIQUE INDEX tryon_results_tryon_position ON tryon_results (tryon_id, position)",
        "CREATE INDEX tryon_results_user_id ON tryon_results (user_id)",
    ]
    for statement in statements:
        execute_sql(db, statement)


def _add_sweep_columns(db: peewee.Database) -> None:
    """US4: the sweeper's marks: when an upload's objects were purged, and per-row sweep leases."""
    timestamp = "TIMESTAMPTZ" if is_postgres(db) else "DATETIME"
    for statement in (
        f"ALTER TABLE uploads ADD COLUMN purged_at {timestamp}",
        f"ALTER TABLE uploads ADD COLUMN sweep_lease_until {timestamp}",
        f"ALTER TABLE tryon_results ADD COLUMN sweep_lease_until {timestamp}",
        "CREATE INDEX tryon_results_created_at ON tryon_results (created_at)",
    ):
        execute_sql(db, statement)


def _add_versions_and_usage(db: peewee.Database) -> None:
    """Issue 11: a version per upload and try-on, so every state change is a compare-and-set on the
    version it read; and one usage row per user, the lock that serialises a user's orders and the
    count behind the daily image quota."""
    for statement in (
        "ALTER TABLE uploads ADD COLUMN version INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE tryons ADD COLUMN version INTEGER NOT NULL DEFAULT 0",
        """CREATE TABLE user_usage (
            user_id VARCHAR(128) NOT NULL PRIMARY KEY,
            quota_day VARCHAR(10) NOT NULL,
            images INTEGER NOT NULL)""",
    ):
        execute_sql(db, statement)


def _add_verification_attempts(db: peewee.Database) -> None:
    """Issue 12: verifications started per upload, so one that never finishes is not retried forever."""
    execute_sql(db, "ALTER TABLE uploads ADD COLUMN verification_attempts INTEGER NOT NULL DEFAULT 0")


def _split_upload_deadlines(db: peewee.Database) -> None:
    """Issue 13: an upload's two deadlines apart. ``expires_at`` stays the PUT URL's expiry; the sanitised
    selfie's deletion deadline, which verification used to write over it, gets a column of its own (and
    the index the expiry sweep reads it by). Verified rows take theirs from ``expires_at``."""
    timestamp = "TIMESTAMPTZ" if is_postgres(db) else "DATETIME"
    for statement in (
        f"ALTER TABLE uploads ADD COLUMN source_expires_at {timestamp}",
        "UPDATE uploads SET source_expires_at = expires_at WHERE stored_key IS NOT NULL",
        "CREATE INDEX uploads_status_source_expires_at ON uploads (status, source_expires_at)",
    ):
        execute_sql(db, statement)


def _add_fal_requests(db: peewee.Database) -> None:
    """Issue 14: fal's webhooks name a request id. Every request submitted for a try-on is recorded (so a
    late delivery for an earlier attempt is still recognised as ours), looked up by its primary key; and
    the request a verified webhook said has finished is marked on the try-on."""
    for statement in (
        """CREATE TABLE fal_requests (
            request_id VARCHAR(255) NOT NULL PRIMARY KEY,
            tryon_id VARCHAR(64) NOT NULL)""",
        "CREATE INDEX fal_requests_tryon_id ON fal_requests (tryon_id)",
        """INSERT INTO fal_requests (request_id, tryon_id)
            SELECT fal_request_id, tryon_id FROM tryons WHERE fal_request_id IS NOT NULL""",
        "ALTER TABLE tryons ADD COLUMN notified_request_id VARCHAR(255)",
    ):
        execute_sql(db, statement)


UNSETTLED_TRYONS = "status IN ('queued', 'running')"
"""The predicate of the partial indexes on unsettled try-ons; a query uses them only when its WHERE says
exactly this (``TryOnStatus`` minus ``TERMINAL``, spelled as ``IN``, never as ``NOT IN`` the settled ones)."""


OVERDUE_SOURCES = "status = 'verified' AND NOT source_kept"
KEPT_SOURCES = "status = 'verified' AND source_kept"
NEVER_CONFIRMED = "'1970-01-01 00:00:00+00:00'"
"""``source_kept_at`` of a mark migration 9 set: no expiry confirmed it, so the sweep's re-check reads it
first (the literal sorts before every instant on SQLite and parses as one on Postgres)."""
"""The predicate of ``uploads_overdue_sources``: verified selfies no favourite is known to hold. The overdue
query says exactly this (``status = ? AND NOT source_kept``: SQLite matches a bound status to the index's
literal) for SQLite and Postgres to use the index."""


def _index_live_work(db: peewee.Database) -> None:
    """Issue 15: every periodic query (the sweep, the reconciler, the verifier's stalled claims) reads a
    partial index holding only the rows that may still need work, so its cost follows the work due, not the
    years of settled history. The indexes they replace are dropped (no other query reads them).

    Overdue selfies: a selfie with a favourite result stays verified past its deadline for as long as the
    favourite lasts (years), so "verified and past its deadline" is not work due. ``uploads.source_kept``
    marks the ones a favourite holds (``keep_if_held`` sets it when an expiry finds one; every restart of
    retention clears it, and an unfavourite always restarts it), and ``uploads_overdue_sources`` leaves them
    out (``OVERDUE_SOURCES``). Rows a favourite already holds are marked here, whatever their deadline (the
    mark stays true until a favourite goes, and that restarts retention); the ``ALTER TABLE`` holds uploads
    exclusively until this transaction commits, so an unfavourite under way waits to write its new deadline
    and then clears the mark.

    A mark the backfill set can go stale: the code still serving during the release knows no ``source_kept``,
    so its unfavourite moves the deadline and leaves the mark, and if that expiry's job is then lost, the
    sweep would never list the selfie again. ``source_kept_at`` says when a mark was last set or confirmed
    (the backfill's: ``NEVER_CONFIRMED``), and ``uploads_kept_sources`` (``KEPT_SOURCES``) lets each sweep
    re-check the few marks confirmed longest ago (``UploadRepository.recheck_kept``): a mark no favourite
    justifies is cleared, the selfie is listed as overdue again and its expiry deletes it.

    Plain ``CREATE INDEX`` inside the release migration: on Postgres it holds a SHARE lock on each table
    (writes wait; reads go on) while it builds; the partial indexes are small, but building them still reads
    the whole table once (a few seconds at 400,000 uploads). The ``ALTER TABLE`` comes last: its ACCESS
    EXCLUSIVE lock (reads of uploads wait too) is held only for the backfill and the one index after it."""
    timestamp = "TIMESTAMPTZ" if is_postgres(db) else "DATETIME"
    for statement in (
        "CREATE INDEX uploads_unpurged_created_at ON uploads (created_at) WHERE purged_at IS NULL",
        "CREATE INDEX uploads_verifying_updated_at ON uploads (updated_at) WHERE status = 'verifying'",
        "CREATE INDEX tryon_results_unkept_created_at ON tryon_results (created_at) WHERE NOT favorite",
        f"CREATE INDEX tryons_unsettled_created_at ON tryons (created_at) WHERE {UNSETTLED_TRYONS}",
        f"CREATE INDEX tryons_unsettled_next_action_at ON tryons (next_action_at) WHERE {UNSETTLED_TRYONS}",
        "DROP INDEX tryons_status_next_action_at",
        "DROP INDEX tryon_results_created_at",
        # Last: from here to the commit uploads is locked exclusively (reads of it wait too).
        "ALTER TABLE uploads ADD COLUMN source_kept BOOLEAN NOT NULL DEFAULT FALSE",
        f"ALTER TABLE uploads ADD COLUMN source_kept_at {timestamp}",
        f"""UPDATE uploads SET source_kept = TRUE, source_kept_at = {NEVER_CONFIRMED}
            WHERE status = 'verified' AND EXISTS (
            SELECT 1 FROM tryon_results JOIN tryons ON tryons.tryon_id = tryon_results.tryon_id
            WHERE tryons.upload_id = uploads.upload_id AND tryon_results.favorite)""",  # noqa: S608 - a constant
        f"CREATE INDEX uploads_overdue_sources ON uploads (source_expires_at) WHERE {OVERDUE_SOURCES}",
        f"CREATE INDEX uploads_kept_sources ON uploads (source_kept_at) WHERE {KEPT_SOURCES}",
        "DROP INDEX uploads_status_expires_at",
        "DROP INDEX uploads_status_source_expires_at",
    ):
        execute_sql(db, statement)


AUDIT_MONTHS_AHEAD = 3


def _partition_audit_events_by_month(db: peewee.Database) -> None:
    """Issue 15: on Postgres, ``audit_events`` becomes partitioned by month on ``occurred_at`` so retention
    can drop whole old months (SQLite: nothing; its retention is `tryon audit prune`). The old table is
    renamed, a partitioned one made in its place (primary key (id, occurred_at): it must hold the partition
    key), with the same indexes and append-only triggers, partitions for every month holding rows and the
    next few, and a default partition; the rows are copied with their ids and the identity continues after
    the old one. All in the migration's transaction (inserts wait for it: the table is locked throughout)."""
    if not is_postgres(db):
        return
    old = "audit_events_unpartitioned"
    for statement in (
        f"ALTER TABLE audit_events RENAME TO {old}",
        f"ALTER TABLE {old} RENAME CONSTRAINT audit_events_pkey TO {old}_pkey",
        f"ALTER SEQUENCE audit_events_id_seq RENAME TO {old}_id_seq",
        "DROP INDEX audit_events_occurred_at, audit_events_event, audit_events_actor_id",
        """CREATE TABLE audit_events (
            id BIGINT GENERATED ALWAYS AS IDENTITY,
            occurred_at TIMESTAMPTZ NOT NULL,
            event VARCHAR(64) NOT NULL,
            actor_id VARCHAR(128),
            subject_id VARCHAR(128),
            outcome VARCHAR(32) NOT NULL,
            reason TEXT,
            details TEXT NOT NULL,
            PRIMARY KEY (id, occurred_at)) PARTITION BY RANGE (occurred_at)""",
        "CREATE INDEX audit_events_occurred_at ON audit_events (occurred_at)",
        "CREATE INDEX audit_events_event ON audit_events (event)",
        "CREATE INDEX audit_events_actor_id ON audit_events (actor_id)",
        # The function from migration 1 (it names TG_OP); row triggers are cloned onto every partition.
        """CREATE TRIGGER audit_events_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_events
            FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()""",
    ):
        execute_sql(db, statement)
    protect_from_truncate(db, "audit_events")
    create_default_partition(db)
    (now,) = execute_sql(db, "SELECT now()").fetchone()
    with_rows = execute_sql(
        db,
        "SELECT DISTINCT date_trunc('month', occurred_at AT TIME ZONE 'UTC') FROM audit_events_unpartitioned",
    ).fetchall()
    months = {month.replace(tzinfo=UTC) for (month,) in with_rows}
    months |= {add_months(month_start(now), ahead) for ahead in range(AUDIT_MONTHS_AHEAD + 1)}
    for month in sorted(months):
        create_month_partition(db, month)
    execute_sql(
        db,
        """INSERT INTO audit_events (id, occurred_at, event, actor_id, subject_id, outcome, reason, details)
            OVERRIDING SYSTEM VALUE
            SELECT id, occurred_at, event, actor_id, subject_id, outcome, reason, details
            FROM audit_events_unpartitioned""",
    )
    (last,) = execute_sql(
        db,
        """SELECT GREATEST(
            (SELECT COALESCE(max(id), 0) FROM audit_events_unpartitioned),
            (SELECT CASE WHEN is_called THEN last_value ELSE 0 END
                FROM audit_events_unpartitioned_id_seq))""",
    ).fetchone()
    execute_sql(db, f"DROP TABLE {old}")  # fires no row trigger; its sequence goes with it
    if last > 0:
        execute_sql(db, "SELECT setval(pg_get_serial_sequence('audit_events', 'id'), %s)", (last,))


VERSIONS = (
    (1, "create_uploads_and_audit_events", _create_uploads_and_audit_events),
    (2, "add_verification_columns", _add_verification_columns),
    (3, "create_tryons_and_results", _create_tryons_and_results),
    (4, "add_sweep_columns", _add_sweep_columns),
    (5, "add_versions_and_usage", _add_versions_and_usage),
    (6, "add_verification_attempts", _add_verification_attempts),
    (7, "split_upload_deadlines", _split_upload_deadlines),
    (8, "add_fal_requests", _add_fal_requests),
    (9, "index_live_work", _index_live_work),
    (10, "partition_audit_events_by_month", _partition_audit_events_by_month),
)
