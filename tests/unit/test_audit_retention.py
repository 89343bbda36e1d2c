"""The audit trail's retention as the domain drives it: the window it asks the adapter for, the events that
record each removal, the sweep's counts and the commands' one-line summaries; and the export streaming."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from domain.audit_retention import AuditRetainer, AuditRetentionPolicy, summary
from domain.model import AuditEvent
from domain.ports import AuditRemoval, AuditRetention, AuditRetentionReport
from domain.scrubbing import Scrubber
from domain.sweeper import Sweeper, SweepPolicy
from entrypoints.audit_export import ExportError, export_audit
from entrypoints.bootstrap import AuditTrail
from tests.builders.worlds import DataWorld
from tests.fakes import FakeUnitOfWork, FixedClock

NOW = datetime(2026, 12, 2, 12, 34, tzinfo=UTC)


class ScriptedRetention(AuditRetention):
    """Removes what it was told to, building each removal's event with the domain's ``record``."""

    def __init__(self, removals: list[AuditRemoval], *, partitioned: bool = True) -> None:
        self.removals = removals
        self.partitioned = partitioned
        self.calls: list[tuple[str, datetime, datetime, int]] = []
        self.recorded: list[AuditEvent] = []

    def rotate(
        self,
        now: datetime,
        keep_from: datetime,
        months_ahead: int,
        record: Callable[[AuditRemoval], AuditEvent],
    ) -> AuditRetentionReport:
        self.calls.append(("rotate", now, keep_from, months_ahead))
        return self._report(record, created=["2026-12", "2027-01"])

    def prune(
        self,
        now: datetime,
        keep_from: datetime,
        months_ahead: int,
        record: Callable[[AuditRemoval], AuditEvent],
        progress: Callable[[int], None],
    ) -> AuditRetentionReport:
        self.calls.append(("prune", now, keep_from, months_ahead))
        report = self._report(record, created=[])
        for index in range(len(report.removed)):
            progress(sum(r.rows for r in report.removed[: index + 1]))
        return report

    def _report(
        self, record: Callable[[AuditRemoval], AuditEvent], created: list[str]
    ) -> AuditRetentionReport:
        self.recorded += [record(removal) for removal in self.removals]
        return AuditRetentionReport(
            partitioned=self.partitioned, created=created, removed=list(self.removals), held=1
        )


def a_retainer(retention: AuditRetention, days: int = 400) -> AuditRetainer:
    return AuditRetainer(
        policy=AuditRetentionPolicy(retention_days=days), retention=retention, clock=FixedClock(NOW)
    )


def a_sweeper(audit_retention: AuditRetainer | None) -> Sweeper:
    world = DataWorld()
    world.clock.current = NOW
    return Sweeper(
        policy=SweepPolicy(),
        uploads=world.uploads,
        results=world.results,
        expiry=world.expiry,
        unit_of_work=lambda: FakeUnitOfWork(world.store),
        clock=world.clock,
        audit_retention=audit_retention,
    )


OLD_MONTH = AuditRemoval(month="2025-09", rows=1234, before=datetime(2025, 10, 1, tzinfo=UTC))


def test_the_sweep_asks_for_the_window_and_counts_what_went() -> None:
    retention = ScriptedRetention([OLD_MONTH])

    counts = a_sweeper(a_retainer(retention, days=30)).sweep()

    assert retention.calls == [("rotate", NOW, NOW - timedelta(days=30), 3)]
    assert (counts.audit_partitions_dropped, counts.audit_events_dropped) == (1, 1234)
    assert counts.audit_partitions_created == 2
    assert counts.skipped == 1  # the step another sweep held
    assert "dropped 1 audit partition(s) (1234 event(s)), created 2" in counts.summary()


def test_each_dropped_month_is_recorded_by_an_event_of_its_own() -> None:
    second = AuditRemoval(month="2025-10", rows=7, before=datetime(2025, 11, 1, tzinfo=UTC))
    retention = ScriptedRetention([OLD_MONTH, second])

    report = a_retainer(retention).rotate()

    assert retention.recorded == [
        AuditEvent(
            "audit.partition_dropped",
            None,
            "2025-09",
            "success",
            NOW,
            "retention",
            {"month": "2025-09", "rows": 1234, "before": "2025-10-01T00:00:00Z"},
        ),
        AuditEvent(
            "audit.partition_dropped",
            None,
            "2025-10",
            "success",
            NOW,
            "retention",
            {"month": "2025-10", "rows": 7, "before": "2025-11-01T00:00:00Z"},
        ),
    ]
    assert summary(report) == (
        "dropped 2 audit partition(s): 2025-09 (1234 event(s)), 2025-10 (7 event(s)); created 2;"
        " 1 step(s) held by another run"
    )


def test_pruning_batches_of_rows_records_each_batch_and_reports_progress() -> None:
    keep_from = NOW - timedelta(days=400)
    batches = [AuditRemoval(month=None, rows=5000, before=keep_from), AuditRemoval(None, 12, keep_from)]
    retention = ScriptedRetention(batches, partitioned=False)
    heard: list[int] = []

    report = a_retainer(retention).prune(heard.append)

    assert retention.calls == [("prune", NOW, keep_from, 3)]
    assert heard == [5000, 5012]
    assert [e.event for e in retention.recorded] == ["audit.rows_pruned", "audit.rows_pruned"]
    assert retention.recorded[1].details == {"rows": 12, "before": "2025-10-28T12:34:00Z"}
    assert summary(report) == "deleted 5012 audit event(s)"


def test_a_sweep_without_audit_retention_leaves_the_counts_at_zero() -> None:
    assert a_sweeper(None).sweep().audit_partitions_dropped == 0


def an_audit_event(index: int) -> AuditEvent:
    return AuditEvent("upload.issued", "alice", f"up_{index}", "success", NOW + timedelta(seconds=index))


def test_the_export_writes_each_event_as_it_is_read_and_passes_the_period_on() -> None:
    asked: list[tuple[datetime | None, str | None, datetime | None]] = []
    out = io.StringIO()
    written_before_each_read: list[int] = []

    def events(since: datetime | None, user: str | None, until: datetime | None) -> Iterator[AuditEvent]:
        asked.append((since, user, until))
        for index in range(3):
            written_before_each_read.append(out.getvalue().count("\n"))
            yield an_audit_event(index)

    trail = AuditTrail(events=events, scrub=Scrubber([]))

    printed = export_audit(
        trail, out, since="2026-12-01T00:00:00Z", until="2026-12-03T00:00:00+00:00", user="alice"
    )

    assert printed == 3
    assert asked == [(datetime(2026, 12, 1, tzinfo=UTC), "alice", datetime(2026, 12, 3, tzinfo=UTC))]
    assert written_before_each_read == [0, 1, 2]  # streamed: nothing is collected before writing


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        ("2026-12-02T00:00:00Z", "2026-12-01T00:00:00Z", "--until must be later than --since"),
        (None, "yesterday", "--until must be an ISO 8601 time"),
        ("soon", None, "--since must be an ISO 8601 time"),
    ],
)
def test_an_export_period_that_makes_no_sense_is_refused_before_anything_is_read(
    since: str | None, until: str | None, message: str
) -> None:
    def events(*_: object) -> Iterator[AuditEvent]:
        raise AssertionError("nothing may be read")

    with pytest.raises(ExportError, match=message):
        export_audit(AuditTrail(events=events, scrub=Scrubber([])), io.StringIO(), since=since, until=until)
