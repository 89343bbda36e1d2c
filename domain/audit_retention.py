"""The audit trail's retention (AUDIT_RETENTION_DAYS): events older than the window go, a month or a batch at
a time, each removal recorded by an audit event of its own. Rows are never updated or deleted one by one on
Postgres: the sweep drops whole monthly partitions; on SQLite `tryon audit prune` deletes in batches."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from domain import audit
from domain.model import AuditEvent
from domain.ports import AuditRemoval, AuditRetention, AuditRetentionReport, Clock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditRetentionPolicy:
    retention_days: int = 400
    months_ahead: int = 3
    """Partitions are kept ready for the current month and this many more."""


class AuditRetainer:
    def __init__(self, *, policy: AuditRetentionPolicy, retention: AuditRetention, clock: Clock) -> None:
        self._policy = policy
        self._retention = retention
        self._clock = clock

    def keep_from(self, now: datetime) -> datetime:
        """Events at or after this instant are kept; older ones may go."""
        return now - timedelta(days=self._policy.retention_days)

    def rotate(self) -> AuditRetentionReport:
        """The sweep's part: partitions made ahead, whole old months dropped (nothing on SQLite)."""
        now = self._clock.now()
        report = self._retention.rotate(
            now, self.keep_from(now), self._policy.months_ahead, self._recorder(now)
        )
        self._log(report)
        return report

    def prune(self, progress: Callable[[int], None] = lambda _: None) -> AuditRetentionReport:
        """`tryon audit prune`: the same on Postgres; on SQLite, the old rows deleted in batches."""
        now = self._clock.now()
        report = self._retention.prune(
            now, self.keep_from(now), self._policy.months_ahead, self._recorder(now), progress
        )
        self._log(report)
        return report

    @staticmethod
    def _recorder(now: datetime) -> Callable[[AuditRemoval], AuditEvent]:
        def record(removal: AuditRemoval) -> AuditEvent:
            if removal.month is None:
                return audit.rows_pruned(removal.rows, removal.before, now)
            return audit.partition_dropped(removal.month, removal.rows, removal.before, now)

        return record

    @staticmethod
    def _log(report: AuditRetentionReport) -> None:
        if report.default_has_rows:
            log.warning(
                "audit rows in the default partition: retention does not drop them",
                extra={"skipped_months": report.skipped},
            )
        for removal in report.removed:
            log.info(
                "audit retention removed events",
                extra={"month": removal.month, "rows": removal.rows, "before": removal.before.isoformat()},
            )


def summary(report: AuditRetentionReport) -> str:
    """One line for a command's output."""
    if not report.partitioned:
        return f"deleted {report.rows_removed} audit event(s)"
    months = ", ".join(f"{r.month} ({r.rows} event(s))" for r in report.removed)
    text = f"dropped {report.partitions_dropped} audit partition(s)" + (f": {months}" if months else "")
    text += f"; created {len(report.created)}"
    if report.skipped:
        text += f"; not created (rows in the default partition): {', '.join(report.skipped)}"
    if report.held:
        text += f"; {report.held} step(s) held by another run"
    return text
