"""One database transaction around the repositories and the audit log; what it committed, told after."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

import peewee

from adapters.peewee_db.database import is_sqlite, unavailable_on_failure
from adapters.peewee_db.outbox import AuditListener, EventOutbox
from adapters.peewee_db.repositories import PeeweeAuditLog, PeeweeUploadRepository, PeeweeUsageRepository
from adapters.peewee_db.tryon_repositories import PeeweeResultRepository, PeeweeTryOnRepository
from domain.errors import PersistenceUnavailable
from domain.ports import UnitOfWork


class _Uncommitted(Exception):
    """Never raised: handed to peewee's ``atomic().__exit__`` to make it roll back."""


class PeeweeUnitOfWork(UnitOfWork):
    """``with PeeweeUnitOfWork(db) as uow: ...; uow.commit()``: all of it, or (without commit) none of it.

    Connects if needed but never closes: the HTTP layer closes the connection per request. Inside an
    enclosing transaction the block becomes a savepoint. Writes after ``commit()`` need another
    ``commit()``; anything uncommitted when the block ends, normally or by an exception, is rolled back.

    On SQLite the outermost transaction begins ``IMMEDIATE``: it takes the database's write lock before
    its first read, waiting up to ``busy_timeout`` while another connection (thread or process) holds it.
    A deferred transaction that read first would fail at its first write, at once, whenever another writer
    had committed since its read (SQLITE_BUSY, which no timeout waits out); with one writer at a time that
    cannot happen. So on SQLite units of work run one at a time per database file, read-only ones too
    (they are all short, and no block does I/O but the database's); plain reads outside a unit of work
    are not held up (WAL). After ``commit()`` the lock is let go: the transaction that follows is a
    deferred one, so a commit that succeeded never waits, nor fails, for a lock it does not need.
    Postgres is left as it is: its row locks already make writers wait for each other.

    ``on_commit`` (bootstrap gives the metrics' listener) is told the audit events appended, once the
    outermost transaction has committed them; never those rolled back. A nested block's events wait for
    its enclosing unit of work's commit; a block nested in a transaction that is no unit of work's tells
    nobody (it cannot know whether that transaction commits).
    """

    uploads: PeeweeUploadRepository
    audit: PeeweeAuditLog
    tryons: PeeweeTryOnRepository
    results: PeeweeResultRepository
    usage: PeeweeUsageRepository

    def __init__(self, db: peewee.Database, on_commit: AuditListener | None = None) -> None:
        self._db = db
        self._outbox = EventOutbox(on_commit)
        self.uploads = PeeweeUploadRepository(db)
        self.audit = PeeweeAuditLog(db, self._outbox)
        self.tryons = PeeweeTryOnRepository(db)
        self.results = PeeweeResultRepository(db)
        self.usage = PeeweeUsageRepository(db)
        self._atomic: Any = None
        self._transaction: Any = None
        self._outermost_on_sqlite = False
        self._outermost = False

    def __enter__(self) -> PeeweeUnitOfWork:
        if self._atomic is not None:
            raise RuntimeError("a PeeweeUnitOfWork cannot be entered twice at once")
        with unavailable_on_failure("starting a transaction"):
            self._db.connect(reuse_if_open=True)
            outermost = self._db.transaction_depth() == 0
            outermost_on_sqlite = is_sqlite(self._db) and outermost
            # Nested, atomic() is a savepoint (the enclosing transaction already holds what it needs).
            atomic = self._db.atomic(lock_type="IMMEDIATE") if outermost_on_sqlite else self._db.atomic()
            self._transaction = atomic.__enter__()
        self._atomic = atomic
        self._outermost_on_sqlite, self._outermost = outermost_on_sqlite, outermost
        _open_units(self._db).append(self)
        return self

    def commit(self) -> None:
        if self._transaction is None:
            raise RuntimeError("commit() called outside the unit of work's with-block")
        with unavailable_on_failure("committing"):
            if self._outermost_on_sqlite:
                self._transaction.commit(begin=False)
                self._db.begin()  # deferred: takes no lock until (unless) something is written again
            else:
                self._transaction.commit()  # begins a fresh transaction (or savepoint) for later writes
        self._committed()

    def _committed(self) -> None:
        if self._outermost:
            self._outbox.deliver()
            return
        units = _open_units(self._db)
        enclosing = units[-2] if len(units) >= 2 and units[-1] is self else None
        if enclosing is None:
            self._outbox.discard()  # inside a transaction no unit of work owns: nobody knows its fate
        else:
            self._outbox.hand_to(enclosing._outbox)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        atomic, self._atomic, self._transaction = self._atomic, None, None
        self._outbox.discard()  # whatever was not committed is rolled back below
        units = _open_units(self._db)
        if units and units[-1] is self:
            units.pop()
        try:
            with unavailable_on_failure("rolling back"):
                atomic.__exit__(exc_type or _Uncommitted, exc, tb)
        except PersistenceUnavailable:
            # A failed rollback on a dead connection explains less than the block's own error.
            if exc_type is None:
                raise


_units = threading.local()


def _open_units(db: peewee.Database) -> list[PeeweeUnitOfWork]:
    """This thread's units of work open on ``db``, outermost first (peewee's transactions are per thread)."""
    by_database: dict[int, list[PeeweeUnitOfWork]] = _units.__dict__.setdefault("by_database", {})
    return by_database.setdefault(id(db), [])
