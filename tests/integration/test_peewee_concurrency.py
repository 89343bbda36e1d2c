"""One opened database shared by many threads (as a gthread web process shares it), and several processes
writing to one SQLite file (web and worker processes): every read-then-write transaction succeeds, none is
lost. On SQLite that needs connections usable from whichever thread the pool hands them to, and
transactions that take the write lock up front, so writers queue on ``busy_timeout`` instead of failing."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import peewee
import pytest

from adapters.peewee_db import (
    PeeweeAuditLog,
    PeeweeUnitOfWork,
    PeeweeUploadRepository,
    migrate,
    open_database,
)
from adapters.peewee_db.database import execute_sql
from domain.errors import PersistenceUnavailable
from tests.builders.databases import Backend, an_event, an_intent

pytestmark = pytest.mark.integration

THREADS = 8
TRANSACTIONS = 50
PROCESSES = 2
PROCESS_TRANSACTIONS = 150
DAY = "2025-03-01"
WAIT = 60.0


def read_then_write(db: peewee.Database, subject_id: str) -> None:
    """One request's transaction: a read first (on SQLite, the snapshot is taken here), then writes that
    depend on what was read: a shared counter incremented, and one audit row."""
    with PeeweeUnitOfWork(db) as uow:
        assert uow.uploads.get("up_1") is not None
        used = uow.usage.hold("user_1", DAY)
        uow.usage.record_images("user_1", DAY, used + 1)
        uow.audit.append(an_event(subject_id))
        uow.commit()


def counter(db: peewee.Database) -> int:
    with PeeweeUnitOfWork(db) as uow:
        return uow.usage.hold("user_1", DAY)


def seeded(db: peewee.Database) -> peewee.Database:
    PeeweeUploadRepository(db).add(an_intent())
    db.close()
    return db


def test_a_connection_the_pool_hands_to_another_thread_works_there(db: peewee.Database) -> None:
    seeded(db)
    used_by: list[int] = []
    errors: list[str] = []

    def request() -> None:
        try:
            db.connect(reuse_if_open=True)
            used_by.append(id(db.connection()))
            assert PeeweeUploadRepository(db).get("up_1") is not None
        except Exception as error:
            errors.append(f"{type(error).__name__}: {error}")
        finally:
            db.close()  # back to the pool, as the web does when a request ends

    for _ in range(3):
        thread = threading.Thread(target=request)
        thread.start()
        thread.join(WAIT)

    assert errors == []
    assert len(used_by) == 3
    assert len(set(used_by)) == 1  # one pooled connection, used by three threads in turn


def test_threads_sharing_one_database_run_read_then_write_transactions_without_an_error(
    backend: Backend, db: peewee.Database
) -> None:
    seeded(db)
    start = threading.Barrier(THREADS)

    def web_thread(thread: int) -> list[str]:
        errors: list[str] = []
        start.wait(WAIT)
        for n in range(TRANSACTIONS):
            try:
                read_then_write(db, f"t{thread}-{n}")
            except Exception as error:
                errors.append(f"{type(error).__name__}: {str(error)[:60]}")
            finally:
                db.close()  # the end of the request: the connection goes back to the pool
        return errors

    with ThreadPoolExecutor(THREADS) as pool:
        errors = [error for found in pool.map(web_thread, range(THREADS)) for error in found]

    assert Counter(errors) == Counter()
    elsewhere = backend.open()
    assert counter(elsewhere) == THREADS * TRANSACTIONS
    subjects = Counter(event.subject_id for event in PeeweeAuditLog(elsewhere).events())
    assert subjects == Counter(f"t{t}-{n}" for t in range(THREADS) for n in range(TRANSACTIONS))


def write_from_another_process(url: str, name: str, start: threading.Event) -> tuple[int, list[str]]:
    """A separate process (a web or worker dyno) on the same database; returns its commits and errors."""
    db = open_database(url)
    start.wait(WAIT)
    committed, errors = 0, []
    for n in range(PROCESS_TRANSACTIONS):
        try:
            read_then_write(db, f"{name}-{n}")
            committed += 1
        except PersistenceUnavailable as error:
            errors.append(f"PersistenceUnavailable: {error} ({error.__cause__})")
        finally:
            db.close()
    return committed, errors


def test_processes_writing_one_sqlite_file_at_once_wait_for_each_other(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tryon.db'}"
    db = open_database(url)
    migrate(db)
    seeded(db)
    spawn = multiprocessing.get_context("spawn")  # fresh interpreters, as separate dynos are
    with spawn.Manager() as manager, spawn.Pool(PROCESSES) as pool:
        start = manager.Event()
        pending = [
            pool.apply_async(write_from_another_process, (url, f"p{p}", start)) for p in range(PROCESSES)
        ]
        start.set()
        outcomes = [result.get(WAIT * 2) for result in pending]

    errors = [error for _, found in outcomes for error in found]
    assert Counter(error.split(" (")[0] for error in errors) == Counter()
    assert [committed for committed, _ in outcomes] == [PROCESS_TRANSACTIONS] * PROCESSES
    assert counter(db) == PROCESSES * PROCESS_TRANSACTIONS
    assert len(PeeweeAuditLog(db).events()) == PROCESSES * PROCESS_TRANSACTIONS
    db.close()


def can_take_the_write_lock(other: peewee.Database) -> bool:
    try:
        execute_sql(other, "BEGIN IMMEDIATE")
    except peewee.OperationalError as error:
        assert "locked" in str(error)
        return False
    execute_sql(other, "ROLLBACK")
    return True


def test_a_sqlite_unit_of_work_holds_the_write_lock_from_its_start_to_its_commit(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'tryon.db'}")
    migrate(db)
    other = open_database(f"sqlite:///{tmp_path / 'tryon.db'}")
    execute_sql(other, "PRAGMA busy_timeout = 0")  # answer at once instead of waiting

    with PeeweeUnitOfWork(db) as uow:
        assert uow.uploads.get("up_1") is None  # only a read so far, and the write lock is already held
        assert not can_take_the_write_lock(other)
        with PeeweeUnitOfWork(db) as inner:  # a savepoint inside the outer transaction
            inner.uploads.add(an_intent())
            inner.commit()
        assert not can_take_the_write_lock(other)
        uow.commit()
        assert can_take_the_write_lock(other)  # committed: the lock is let go before the block ends
        uow.audit.append(an_event())  # and a later write still works, in a transaction of its own
        uow.commit()
    assert can_take_the_write_lock(other)

    assert PeeweeUploadRepository(other).get("up_1") is not None
    assert len(PeeweeAuditLog(other).events()) == 1
    db.close()
    other.close()


def test_a_sqlite_unit_of_work_that_ends_without_commit_keeps_nothing_and_frees_the_lock(
    tmp_path: Path,
) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'tryon.db'}")
    migrate(db)
    other = open_database(f"sqlite:///{tmp_path / 'tryon.db'}")
    execute_sql(other, "PRAGMA busy_timeout = 0")

    with pytest.raises(RuntimeError), PeeweeUnitOfWork(db) as uow:
        uow.uploads.add(an_intent())
        raise RuntimeError("the request failed")

    assert can_take_the_write_lock(other)
    assert PeeweeUploadRepository(other).get("up_1") is None
    db.close()
    other.close()


def test_a_thread_that_finds_every_pooled_connection_taken_is_told_to_retry(db: peewee.Database) -> None:
    db.close()
    pool: Any = db
    pool._max_connections, pool._wait_timeout = 1, 0.2  # one connection, and a short wait for it
    holding, release = threading.Event(), threading.Event()

    def long_request() -> None:
        db.connect(reuse_if_open=True)
        holding.set()
        release.wait(WAIT)
        db.close()

    other = threading.Thread(target=long_request)
    other.start()
    try:
        assert holding.wait(WAIT)
        with pytest.raises(PersistenceUnavailable), PeeweeUnitOfWork(db):
            pass
    finally:
        release.set()
        other.join(WAIT)
    with PeeweeUnitOfWork(db) as uow:  # the connection is back: the retry works
        assert uow.uploads.get("up_1") is None
