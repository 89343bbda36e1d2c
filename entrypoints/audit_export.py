"""`tryon audit export [--since ISO] [--until ISO] [--user ID]`: the audit trail as JSON lines on stdout,
streamed (read in batches, written as read) so memory stays flat however long the trail is."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TextIO

from domain.audit import instant_text
from entrypoints.bootstrap import AuditTrail


class ExportError(ValueError):
    """The arguments cannot be understood; nothing was printed."""


def parse_moment(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ExportError(
            f"{option} must be an ISO 8601 time such as 2026-11-28T22:00:00Z, got {value!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def export_audit(
    trail: AuditTrail,
    out: TextIO,
    *,
    since: str | None = None,
    user: str | None = None,
    until: str | None = None,
) -> int:
    """Print one JSON object per event, in the order they were appended (``since`` inclusive, ``until``
    exclusive); returns how many were printed."""
    start, end = parse_moment(since, "--since"), parse_moment(until, "--until")
    if start is not None and end is not None and end <= start:
        raise ExportError("--until must be later than --since")
    printed = 0
    for event in trail.events(start, user, end):
        line = {
            "occurred_at": instant_text(event.occurred_at),
            "event": event.event,
            "actor_id": event.actor_id,
            "subject_id": event.subject_id,
            "outcome": event.outcome,
            "reason": event.reason,
            "details": event.details,
        }
        out.write(trail.scrub(json.dumps(line, sort_keys=True)) + "\n")
        printed += 1
    return printed
