"""A tiny versioned migration runner: each migration runs once, in its own transaction, in order.

Applied versions are recorded in ``schema_migrations``. On Postgres every migration transaction
first takes a transaction-scoped advisory lock, and on SQLite it begins ``IMMEDIATE`` (the write
lock), so two release processes migrating at once serialise: the loser waits, then sees the
version recorded and skips it. Never edit an applied migration; append a new one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import NamedTuple

import peewee

from adapters.peewee_db.database import execute_sql, is_postgres, unavailable_on_failure
from adapters.peewee_db.models import BaseRow, UtcDateTimeField, bound_to

MIGRATION_LOCK_ID = 0x7472796F6E  # "tryon": the pg_advisory_xact_lock key all migrators share.


class SchemaMigrationRow(BaseRow):
    version = peewee.IntegerField(primary_key=True)
    name = peewee.TextField()
    applied_at = UtcDateTimeField()

    class Meta:
        table_name = "schema_migrations"


class Migration(NamedTuple):
    version: int
    name: str
    apply: Callable[[peewee.Database], None]


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

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "create_uploads_and_audit_events", _create_uploads_and_audit_events),
)


def migrate(db: peewee.Database) -> list[str]:
    """Apply the migrations not yet recorded, oldest first; return their names ([] when up to date)."""
    applied: list[str] = []
    with unavailable_on_failure("migration"):
        db.connect(reuse_if_open=True)
        with _migration_transaction(db):
            execute_sql(
                db,
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, "
                f"applied_at {'TIMESTAMPTZ' if is_postgres(db) else 'DATETIME'} NOT NULL)",
            )
        for migration in sorted(MIGRATIONS, key=lambda m: m.version):
            if _apply_once(db, migration):
                applied.append(migration.name)
    return applied


def _apply_once(db: peewee.Database, migration: Migration) -> bool:
    with _migration_transaction(db), bound_to(db, SchemaMigrationRow):
        recorded = SchemaMigrationRow.select().where(SchemaMigrationRow.version == migration.version)
        if recorded.exists(db):
            return False
        migration.apply(db)
        SchemaMigrationRow.insert(
            version=migration.version, name=migration.name, applied_at=datetime.now(UTC)
        ).execute(db)
    return True


@contextlib.contextmanager
def _migration_transaction(db: peewee.Database) -> Iterator[None]:
    """``db.atomic()`` that, first thing, takes the lock every migrator contends for."""
    if not is_postgres(db):
        with db.atomic(lock_type="IMMEDIATE"):
            yield
        return
    with db.atomic():
        execute_sql(db, "SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
        yield
