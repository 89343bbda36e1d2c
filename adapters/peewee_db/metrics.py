"""Operational counts read from the database at scrape time: the same answer from every process."""

from __future__ import annotations

from dataclasses import dataclass

import peewee

from adapters.peewee_db.database import unavailable_on_failure
from adapters.peewee_db.models import AuditRow, TryOnRow, bound_to


@dataclass(frozen=True)
class Counts:
    events: dict[tuple[str, str, str], int]
    """(event, outcome, reason or "") -> how many audit events."""
    tryons: dict[tuple[str, str], int]
    """(status, error code or "") -> how many try-ons."""
    fal_seconds: list[float]
    """Submit-to-completion times of the latest succeeded try-ons (newest 500)."""


def read_counts(db: peewee.Database) -> Counts:
    with unavailable_on_failure("reading metrics"), bound_to(db):
        events = (
            AuditRow.select(AuditRow.event, AuditRow.outcome, AuditRow.reason, peewee.fn.COUNT(AuditRow.id))
            .group_by(AuditRow.event, AuditRow.outcome, AuditRow.reason)
            .tuples()
            .execute(db)
        )
        tryons = (
            TryOnRow.select(TryOnRow.status, TryOnRow.error_code, peewee.fn.COUNT(TryOnRow.tryon_id))
            .group_by(TryOnRow.status, TryOnRow.error_code)
            .tuples()
            .execute(db)
        )
        latest = (
            TryOnRow.select(TryOnRow.submitted_at, TryOnRow.completed_at)
            .where((TryOnRow.status == "succeeded") & TryOnRow.submitted_at.is_null(False))
            .order_by(TryOnRow.completed_at.desc())
            .limit(500)
            .execute(db)
        )
        return Counts(
            events={(event, outcome, reason or ""): int(n) for event, outcome, reason, n in events},
            tryons={(status, code or ""): int(n) for status, code, n in tryons},
            fal_seconds=[(row.completed_at - row.submitted_at).total_seconds() for row in latest],
        )
