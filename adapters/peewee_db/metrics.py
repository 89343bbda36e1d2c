"""Gauges of shared state read at scrape time: only the unsettled try-ons, never a whole table.

Both queries carry exactly the predicate ``status IN ('queued', 'running')`` (``models.unsettled_tryon``),
the one of the partial index ``tryons_unsettled_created_at`` (migration 9), so they read only the try-ons in
flight, however many rows history holds: the oldest is an index-only read, the count touches the unsettled
rows alone.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

import peewee

from adapters.peewee_db.database import unavailable_on_failure
from adapters.peewee_db.models import TryOnRow, bound_to, unsettled_tryon


class Unsettled(NamedTuple):
    by_status: dict[str, int]
    oldest_created_at: datetime | None


def read_unsettled(db: peewee.Database) -> Unsettled:
    with unavailable_on_failure("reading unsettled try-ons"), bound_to(db):
        counts = (
            TryOnRow.select(TryOnRow.status, peewee.fn.COUNT(peewee.SQL("*")))
            .where(unsettled_tryon(TryOnRow.status))
            .group_by(TryOnRow.status)
            .tuples()
            .execute(db)
        )
        oldest = (
            TryOnRow.select(TryOnRow.created_at)
            .where(unsettled_tryon(TryOnRow.status))
            .order_by(TryOnRow.created_at)
            .limit(1)
            .execute(db)
        )
        return Unsettled(
            by_status={status: int(n) for status, n in counts},
            oldest_created_at=next((row.created_at for row in oldest), None),
        )
