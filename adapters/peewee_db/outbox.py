"""Audit events held until their transaction ends, then told to a listener (metrics) or dropped."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from domain.model import AuditEvent

log = logging.getLogger(__name__)

AuditListener = Callable[[Sequence[AuditEvent]], None]
"""Told the audit events a transaction committed, once it has (metrics count them)."""


class EventOutbox:
    """Audit events appended in a transaction, held until it ends: delivered to the listener after the
    commit of the outermost transaction, dropped if it rolls back. A listener that raises is logged and
    ignored: what was committed stays committed."""

    def __init__(self, listener: AuditListener | None) -> None:
        self._listener = listener
        self._held: list[AuditEvent] = []

    def hold(self, event: AuditEvent) -> None:
        if self._listener is not None:
            self._held.append(event)

    def hand_to(self, enclosing: EventOutbox) -> None:
        """A savepoint was released: its events now stand or fall with the enclosing transaction."""
        enclosing._held += self._held
        self._held = []

    def discard(self) -> None:
        self._held = []

    def deliver(self) -> None:
        held, self._held = self._held, []
        if not held or self._listener is None:
            return
        try:
            self._listener(held)
        except Exception:
            log.exception("audit listener failed; the commit stands", extra={"events": len(held)})
