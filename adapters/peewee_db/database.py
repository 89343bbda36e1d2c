"""Opening the database named by DATABASE_URL, the model proxy, and the readiness probe."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import peewee
from playhouse import db_url
from playhouse.pool import MaxConnectionsExceeded, PooledPostgresqlDatabase, PooledSqliteDatabase

from domain.errors import PersistenceUnavailable

# synchronous=NORMAL is the documented safe pairing with WAL: no corruption, and a commit costs no fsync.
SQLITE_PRAGMAS: dict[str, object] = {
    "busy_timeout": 5000,
    "journal_mode": "wal",
    "synchronous": 1,
    "foreign_keys": 1,
}
# Connections are pooled per process: the HTTP layer "closes" one per request, which hands it back.
POOL_OPTIONS: dict[str, Any] = {"max_connections": 16, "stale_timeout": 300, "timeout": 5}
# The pool hands a connection to one thread at a time (peewee keeps the checked-out connection in
# thread-local state, and the pool tracks it as in use until that thread closes it), but the next thread
# may get a connection an earlier one opened: sqlite3 must not insist on the opening thread.
SQLITE_CONNECT_OPTIONS: dict[str, Any] = {"check_same_thread": False}
SQLITE_LOCKED_RETRY_SECONDS = 5.0
POSTGRES_CONNECT_TIMEOUT_SECONDS = 5

database_proxy = peewee.DatabaseProxy()

# Connection-level failures (refused, dropped, timed out, locked, every pooled connection in use for the
# pool's whole timeout): retrying later may work.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    peewee.OperationalError,
    peewee.InterfaceError,
    MaxConnectionsExceeded,
)


def open_database(url: str) -> peewee.Database:
    """A lazily-connecting, pooled database for ``url``: no connection is opened here. Safe to share
    between threads: each thread gets a connection of its own from the pool, for as long as it holds it.

    SQLite gets WAL, enforced foreign keys and a busy timeout (its parent directory is created), and
    connections any thread may use once the pool hands them over;
    Postgres gets a connect timeout unless the URL sets ``connect_timeout`` itself.
    """
    scheme = urlparse(url).scheme
    params = db_url.parse(url)
    if scheme == "sqlite":
        _create_parent_directory(str(params["database"]))
        return PatientSqliteDatabase(
            pragmas=SQLITE_PRAGMAS, **POOL_OPTIONS, **{**params, **SQLITE_CONNECT_OPTIONS}
        )
    if scheme.startswith("sqlite"):
        _create_parent_directory(str(params["database"]))
        db: peewee.Database = db_url.connect(url, pragmas=SQLITE_PRAGMAS, **SQLITE_CONNECT_OPTIONS)
        return db
    if scheme in ("postgres", "postgresql"):
        params.setdefault("connect_timeout", POSTGRES_CONNECT_TIMEOUT_SECONDS)
        pooled: peewee.Database = PooledPostgresqlDatabase(**POOL_OPTIONS, **params)
        return pooled
    db = db_url.connect(url)
    return db


class PatientSqliteDatabase(PooledSqliteDatabase):  # type: ignore[misc]  # playhouse.pool is untyped
    """Waits out the lock a concurrent first connection holds while the file switches to WAL.

    SQLite answers that switch with "database is locked" at once, ignoring busy_timeout, so two
    processes opening a new database together would otherwise fail. Peewee calls ``_set_pragmas``
    for every new connection (and closes the connection if it raises).
    """

    def _set_pragmas(self, conn: sqlite3.Connection) -> None:
        deadline = time.monotonic() + SQLITE_LOCKED_RETRY_SECONDS
        while True:
            try:
                for name, value in SQLITE_PRAGMAS.items():
                    conn.execute(f"PRAGMA {name} = {value}")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)


def _create_parent_directory(path: str) -> None:
    if path and path != ":memory:" and not path.startswith("file:"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def execute_sql(db: peewee.Database, sql: str, params: Sequence[object] = ()) -> Any:
    """``db.execute_sql`` with types: peewee's bundled stubs leave it unannotated."""
    return db.execute_sql(sql, params)  # type: ignore[no-untyped-call]


def bind(db: peewee.Database) -> None:
    """Point the models' ``database_proxy`` at ``db`` (done once, by bootstrap)."""
    database_proxy.initialize(db)


def is_postgres(db: peewee.Database) -> bool:
    return isinstance(db, peewee.PostgresqlDatabase)


def is_sqlite(db: peewee.Database) -> bool:
    return isinstance(db, peewee.SqliteDatabase)


@contextlib.contextmanager
def unavailable_on_failure(what: str) -> Iterator[None]:
    """Turn driver-level connection failures into ``PersistenceUnavailable``; integrity errors pass."""
    try:
        yield
    except UNAVAILABLE_ERRORS as error:
        raise PersistenceUnavailable(f"{what}: the database is unavailable") from error


def ping(db: peewee.Database) -> None:
    """Round-trip ``SELECT 1``; raise ``PersistenceUnavailable`` if the database does not answer."""
    try:
        with unavailable_on_failure("readiness check"):
            db.connect(reuse_if_open=True)
            execute_sql(db, "SELECT 1").fetchone()
    except PersistenceUnavailable:
        _discard_broken_connection(db)
        raise


def _discard_broken_connection(db: peewee.Database) -> None:
    """Forget a dead connection so the next attempt reconnects instead of reusing it."""
    if db.in_transaction():
        return
    with contextlib.suppress(*UNAVAILABLE_ERRORS):
        db.close()
