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
from adapters.peewee_db.schema import VERSIONS

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


MIGRATIONS: tuple[Migration, ...] = tuple(Migration(*version) for version in VERSIONS)


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
