"""The audit table's retention, without ever updating or deleting an audit row through the table's own rules.

Postgres (after migration 10): ``audit_events`` is partitioned by month on ``occurred_at``. Partitions are
named ``audit_events_YYYY_MM`` (bounds: that month, UTC); ``audit_events_default`` takes anything outside
them, so an insert never fails for want of a partition. The sweep makes the coming months' partitions and
detaches and drops whole old ones, each step in its own short transaction under a try-lock (a second run
skips the step) with ``lock_timeout`` set, so DDL never queues inserts for long.

SQLite: `tryon audit prune` deletes old rows in batches; each batch's transaction drops the append-only
delete trigger, deletes, and recreates it from its own stored definition (SQLite DDL is transactional, so a
failure anywhere in the batch leaves the trigger and the rows as they were).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import peewee

from adapters.peewee_db.database import execute_sql, is_postgres, unavailable_on_failure
from adapters.peewee_db.models import AuditRow, bound_to
from adapters.peewee_db.repositories import PeeweeAuditLog
from domain.errors import DomainError
from domain.model import AuditEvent
from domain.ports import AuditRemoval, AuditRetention, AuditRetentionReport

log = logging.getLogger(__name__)

PARENT = "audit_events"
DEFAULT_PARTITION = "audit_events_default"
MONTHLY_PARTITION = re.compile(r"^audit_events_(\d{4})_(\d{2})$")
RETENTION_LOCK_ID = 0x7472796F6E_AD17  # "tryon" + audit: every retention step's pg_try_advisory_xact_lock
LOCK_TIMEOUT_MS = 2000
"""How long a retention step waits for a table lock before giving up (inserts queue behind a waiting DDL)."""
SQLITE_NO_DELETE_TRIGGER = "audit_events_no_delete"
LOCK_NOT_AVAILABLE = "55P03"


def month_start(moment: datetime) -> datetime:
    utc = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return datetime(utc.year, utc.month, 1, tzinfo=UTC)


def add_months(month: datetime, count: int) -> datetime:
    index = month.year * 12 + month.month - 1 + count
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def partition_name(month: datetime) -> str:
    return f"{PARENT}_{month.year:04d}_{month.month:02d}"


def month_label(month: datetime) -> str:
    return f"{month.year:04d}-{month.month:02d}"


def protect_from_truncate(db: peewee.Database, table: str) -> None:
    """Statement triggers do not propagate to partitions: each partition refuses TRUNCATE itself (row
    triggers, refusing UPDATE and DELETE, are cloned from the parent onto every partition)."""
    execute_sql(
        db,
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()",
    )


def create_month_partition(db: peewee.Database, month: datetime) -> None:
    """``audit_events_YYYY_MM`` for that month (UTC), refusing TRUNCATE; in the caller's transaction."""
    name = partition_name(month)
    start, end = month.isoformat(), add_months(month, 1).isoformat()
    execute_sql(db, f"CREATE TABLE {name} PARTITION OF {PARENT} FOR VALUES FROM ('{start}') TO ('{end}')")
    protect_from_truncate(db, name)


def create_default_partition(db: peewee.Database) -> None:
    execute_sql(db, f"CREATE TABLE {DEFAULT_PARTITION} PARTITION OF {PARENT} DEFAULT")
    protect_from_truncate(db, DEFAULT_PARTITION)


def monthly_partitions(db: peewee.Database) -> dict[datetime, str]:
    """The parent's partitions named by month, by their month's start (others, and the default, left out)."""
    rows = execute_sql(
        db,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass(%s)",
        (PARENT,),
    ).fetchall()
    found: dict[datetime, str] = {}
    for (name,) in rows:
        match = MONTHLY_PARTITION.match(name)
        if match:
            found[datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC)] = name
    return found


def is_partitioned(db: peewee.Database) -> bool:
    row = execute_sql(db, "SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", (PARENT,)).fetchone()
    return row is not None and row[0] == "p"


class PeeweeAuditRetention(AuditRetention):
    def __init__(
        self, db: peewee.Database, *, lock_timeout_ms: int = LOCK_TIMEOUT_MS, batch_size: int = 5000
    ) -> None:
        self._db = db
        self._lock_timeout_ms = lock_timeout_ms
        self._batch_size = batch_size

    def rotate(
        self,
        now: datetime,
        keep_from: datetime,
        months_ahead: int,
        record: Callable[[AuditRemoval], AuditEvent],
    ) -> AuditRetentionReport:
        report = AuditRetentionReport()
        if not is_postgres(self._db):
            return report
        with unavailable_on_failure("audit retention"):
            self._db.connect(reuse_if_open=True)
            if not is_partitioned(self._db):  # migration 10 not applied yet
                log.warning("audit retention skipped: audit_events is not partitioned (run tryon migrate)")
                return report
            report.partitioned = True
            first = month_start(now)
            for ahead in range(months_ahead + 1):
                self._ensure(add_months(first, ahead), report)
            for month, name in sorted(monthly_partitions(self._db).items()):
                if add_months(month, 1) <= keep_from:
                    self._drop(month, name, record, report)
            report.default_has_rows = self._default_has_rows()
        return report

    def prune(
        self,
        now: datetime,
        keep_from: datetime,
        months_ahead: int,
        record: Callable[[AuditRemoval], AuditEvent],
        progress: Callable[[int], None],
    ) -> AuditRetentionReport:
        if is_postgres(self._db):
            return self.rotate(now, keep_from, months_ahead, record)
        report = AuditRetentionReport()
        with unavailable_on_failure("pruning the audit trail"):
            self._db.connect(reuse_if_open=True)
            while True:
                removal = self._prune_batch(keep_from, record)
                if removal is None:
                    break
                report.removed.append(removal)
                progress(report.rows_removed)
                if removal.rows < self._batch_size:
                    break
        return report

    # Postgres

    @contextlib.contextmanager
    def _step(self, report: AuditRetentionReport, what: str) -> Iterator[bool]:
        """One short transaction: ``lock_timeout`` set, then the retention try-lock; yields whether it won.
        A step whose table lock did not come in time is rolled back and counted as held."""
        try:
            with self._db.atomic():
                execute_sql(self._db, f"SET LOCAL lock_timeout = '{int(self._lock_timeout_ms)}ms'")
                (won,) = execute_sql(
                    self._db, "SELECT pg_try_advisory_xact_lock(%s)", (RETENTION_LOCK_ID,)
                ).fetchone()
                if not won:
                    report.held += 1
                yield bool(won)
        except peewee.OperationalError as error:
            if not _lock_not_available(error):
                raise
            report.held += 1
            log.warning("audit retention step gave up waiting for a table lock", extra={"step": what})

    def _ensure(self, month: datetime, report: AuditRetentionReport) -> None:
        label = month_label(month)
        with self._step(report, f"create {label}") as won:
            if not won or month in monthly_partitions(self._db):
                return
            end = add_months(month, 1)
            (in_default,) = execute_sql(
                self._db,
                "SELECT EXISTS (SELECT 1 FROM audit_events_default"
                " WHERE occurred_at >= %s AND occurred_at < %s)",
                (month, end),
            ).fetchone()
            if in_default:
                report.skipped.append(label)
                log.warning(
                    "audit partition not created: its month's rows are in the default partition",
                    extra={"month": label},
                )
                return
            create_month_partition(self._db, month)
            report.created.append(label)

    def _drop(
        self,
        month: datetime,
        name: str,
        record: Callable[[AuditRemoval], AuditEvent],
        report: AuditRetentionReport,
    ) -> None:
        with self._step(report, f"drop {month_label(month)}") as won:
            if not won or name not in monthly_partitions(self._db).values():
                return
            # Counted before the DETACH, whose lock on the parent would hold inserts up for the count.
            count = f"SELECT count(*) FROM {name}"  # noqa: S608 - a partition name we made, matched by MONTHLY_PARTITION
            (rows,) = execute_sql(self._db, count).fetchone()
            execute_sql(self._db, f"ALTER TABLE {PARENT} DETACH PARTITION {name}")
            execute_sql(self._db, f"DROP TABLE {name}")
            removal = AuditRemoval(month=month_label(month), rows=int(rows), before=add_months(month, 1))
            PeeweeAuditLog(self._db).append(record(removal))
            report.removed.append(removal)

    def _default_has_rows(self) -> bool:
        if execute_sql(self._db, "SELECT to_regclass(%s)", (DEFAULT_PARTITION,)).fetchone()[0] is None:
            return False
        (found,) = execute_sql(self._db, "SELECT EXISTS (SELECT 1 FROM audit_events_default)").fetchone()
        return bool(found)

    # SQLite

    def _prune_batch(
        self, keep_from: datetime, record: Callable[[AuditRemoval], AuditEvent]
    ) -> AuditRemoval | None:
        with self._db.atomic(lock_type="IMMEDIATE"), bound_to(self._db):
            older = AuditRow.occurred_at < keep_from
            if not AuditRow.select(AuditRow.id).where(older).exists(self._db):
                return None
            (definition,) = execute_sql(
                self._db,
                "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?",
                (SQLITE_NO_DELETE_TRIGGER,),
            ).fetchone() or (None,)
            if definition is None:
                raise DomainError(
                    f"{SQLITE_NO_DELETE_TRIGGER} is missing: audit_events is not append-only; "
                    "refusing to prune",
                    code="audit_trigger_missing",
                )
            execute_sql(self._db, f"DROP TRIGGER {SQLITE_NO_DELETE_TRIGGER}")
            batch = AuditRow.select(AuditRow.id).where(older).order_by(AuditRow.id).limit(self._batch_size)
            rows = AuditRow.delete().where(AuditRow.id.in_(batch)).execute(self._db)
            execute_sql(self._db, definition)
            removal = AuditRemoval(month=None, rows=int(rows), before=keep_from)
            PeeweeAuditLog(self._db).append(record(removal))
        return removal


def _lock_not_available(error: Any) -> bool:
    causes = [error, *error.args, error.__cause__, error.__context__]
    return any(getattr(cause, "pgcode", None) == LOCK_NOT_AVAILABLE for cause in causes)
