"""`tryon audit export [--since ISO] [--user ID]`: the audit trail as JSON lines on stdout."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TextIO

from entrypoints.bootstrap import AuditTrail


class ExportError(ValueError):
    """The arguments cannot be understood; nothing was printed."""


def parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ExportError(
            f"--since must be an ISO 8601 time such as 2026-11-28T22:00:00Z, got {value!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def export_audit(trail: AuditTrail, out: TextIO, *, since: str | None = None, user: str | None = None) -> int:
    """Print one JSON object per event, oldest first; returns how many were printed."""
    events = trail.events(parse_since(since), user)
    for event in events:
        line = {
            "occurred_at": event.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "event": event.event,
            "actor_id": event.actor_id,
            "subject_id": event.subject_id,
            "outcome": event.outcome,
            "reason": event.reason,
            "details": event.details,
        }
        out.write(trail.scrub(json.dumps(line, sort_keys=True)) + "\n")
    return len(events)
