"""The one clock and the one id generator."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from domain.ports import Clock, IdGenerator


class SystemClock(Clock):
    def now(self) -> datetime:
        return datetime.now(UTC)


class RandomIds(IdGenerator):
    """128 random bits as 32 lowercase hex characters: unguessable and safe in object keys."""

    def new_id(self) -> str:
        return secrets.token_hex(16)
