"""The Peewee unit of work tells its listener (metrics) the audit events a transaction committed, once the
outermost transaction has committed them; never those rolled back; and a listener that fails does not fail
the commit. On SQLite and Postgres. Also: unsettled try-ons are read with the partial index's predicate."""

from __future__ import annotations

import logging
from datetime import timedelta

import peewee
import pytest

from adapters.peewee_db import PeeweeAuditLog, PeeweeUnitOfWork, read_unsettled
from adapters.peewee_db.database import is_sqlite
from domain.model import TryOnStatus
from tests.builders.databases import T0, a_tryon, an_event, an_intent

pytestmark = pytest.mark.integration


class Listener:
    def __init__(self, fails: bool = False) -> None:
        self.heard: list[list[str | None]] = []
        self.fails = fails

    def __call__(self, events) -> None:
        self.heard.append([event.subject_id for event in events])
        if self.fails:
            raise RuntimeError("listener broke")


def test_the_listener_hears_a_transactions_events_once_it_has_committed(db: peewee.Database) -> None:
    listener = Listener()

    with PeeweeUnitOfWork(db, on_commit=listener) as uow:
        uow.audit.append(an_event("up_1"))
        uow.audit.append(an_event("up_2"))
        assert listener.heard == []  # written, not yet committed
        uow.commit()
        assert listener.heard == [["up_1", "up_2"]]
        uow.audit.append(an_event("up_3"))  # after commit: a transaction of its own
        uow.commit()

    assert listener.heard == [["up_1", "up_2"], ["up_3"]]
    assert [e.subject_id for e in PeeweeAuditLog(db).events()] == ["up_1", "up_2", "up_3"]


def test_the_listener_never_hears_what_was_rolled_back(db: peewee.Database) -> None:
    listener = Listener()

    with PeeweeUnitOfWork(db, on_commit=listener) as uow:
        uow.audit.append(an_event("kept"))
        uow.commit()
        uow.audit.append(an_event("ended_without_commit"))
    with pytest.raises(RuntimeError), PeeweeUnitOfWork(db, on_commit=listener) as uow:
        uow.audit.append(an_event("raised"))
        raise RuntimeError("the block failed")

    assert listener.heard == [["kept"]]
    assert [e.subject_id for e in PeeweeAuditLog(db).events()] == ["kept"]


def test_a_nested_blocks_events_wait_for_the_outermost_commit(db: peewee.Database) -> None:
    listener = Listener()

    with PeeweeUnitOfWork(db, on_commit=listener) as outer:
        outer.audit.append(an_event("outer"))
        with PeeweeUnitOfWork(db, on_commit=listener) as inner:  # a savepoint
            inner.audit.append(an_event("inner"))
            inner.commit()
        assert listener.heard == []  # released a savepoint, committed nothing
        outer.commit()
    # The outer block ends without commit: the savepoint's events go with it.
    with PeeweeUnitOfWork(db, on_commit=listener), PeeweeUnitOfWork(db, on_commit=listener) as inner:
        inner.audit.append(an_event("inner_of_rolled_back"))
        inner.commit()

    assert listener.heard == [["outer", "inner"]]
    assert [e.subject_id for e in PeeweeAuditLog(db).events()] == ["outer", "inner"]


def test_a_listener_that_fails_does_not_fail_the_commit(db: peewee.Database, caplog) -> None:
    listener = Listener(fails=True)

    with caplog.at_level(logging.ERROR), PeeweeUnitOfWork(db, on_commit=listener) as uow:
        uow.uploads.add(an_intent())
        uow.audit.append(an_event("up_1"))
        uow.commit()

    assert listener.heard == [["up_1"]]
    assert "audit listener failed; the commit stands" in caplog.text
    with PeeweeUnitOfWork(db) as uow:
        assert uow.uploads.get("up_1") is not None
    assert len(PeeweeAuditLog(db).events()) == 1


def test_unsettled_tryons_are_counted_by_status_and_the_oldest_found(db: peewee.Database) -> None:
    with PeeweeUnitOfWork(db) as uow:
        uow.uploads.add(an_intent())
        statuses = [TryOnStatus.QUEUED, TryOnStatus.RUNNING, TryOnStatus.QUEUED, TryOnStatus.SUCCEEDED]
        for n, status in enumerate(statuses):
            uow.tryons.add(a_tryon(f"t{n}", created_at=T0 + timedelta(minutes=10 - n), status=status))
        uow.tryons.add(a_tryon("t_old_settled", created_at=T0 - timedelta(days=1), status=TryOnStatus.FAILED))
        uow.commit()

    by_status, oldest = read_unsettled(db)

    assert by_status == {"queued": 2, "running": 1}
    assert oldest == T0 + timedelta(minutes=8)  # t2: the settled ones are older, and not counted


def test_nothing_unsettled_reads_as_no_oldest(db: peewee.Database) -> None:
    assert read_unsettled(db) == ({}, None)


def test_the_unsettled_reads_use_the_partial_index_of_migration_9(db: peewee.Database) -> None:
    """Migration 9's partial indexes hold only unsettled try-ons; both reads must go through one of them."""
    queries = captured_queries(db)

    plans = [explain(db, sql, params) for sql, params in queries]

    # Each reads only the unsettled rows: through a partial index of unsettled try-ons (SQLite without
    # statistics may take the one ordered by next_action_at), never a scan of the table.
    for plan in plans:
        assert "Seq Scan" not in plan, plan
        assert "tryons_unsettled_" in plan, plan


def captured_queries(db: peewee.Database) -> list[tuple[str, tuple[object, ...]]]:
    queries: list[tuple[str, tuple[object, ...]]] = []
    original = db.execute_sql

    def recording(sql, params=None, *args, **kwargs):
        queries.append((sql, tuple(params or ())))
        return original(sql, params, *args, **kwargs)

    db.execute_sql = recording  # type: ignore[method-assign]
    try:
        read_unsettled(db)
    finally:
        del db.execute_sql
    found = [(sql, params) for sql, params in queries if "tryons" in sql]
    assert len(found) == 2, found
    return found


def explain(db: peewee.Database, sql: str, params: tuple[object, ...]) -> str:
    if is_sqlite(db):
        rows = db.execute_sql(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
        return " ".join(str(row[-1]) for row in rows)
    with db.atomic():
        db.execute_sql("SET LOCAL enable_seqscan = off")  # a tiny table: make the planner show its choice
        rows = db.execute_sql(f"EXPLAIN {sql}", params).fetchall()
    return " ".join(str(row[0]) for row in rows)
