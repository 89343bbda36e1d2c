"""Ports: what the domain needs from the world, as Protocols. Adapters subclass them explicitly."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Protocol

from domain.model import AuditEvent, PresignedPut, UploadIntent, UploadRequest


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class IdGenerator(Protocol):
    def new_id(self) -> str:
        """A fresh, unguessable, URL- and key-safe identifier."""
        ...


class UploadUrlSigner(Protocol):
    def presign_put(self, object_key: str, request: UploadRequest, ttl_seconds: int) -> PresignedPut:
        """Sign a single-use PUT that S3 accepts only with exactly the returned headers."""
        ...


class UploadRepository(Protocol):
    def add(self, intent: UploadIntent) -> None: ...

    def get(self, upload_id: str) -> UploadIntent | None: ...


class AuditLog(Protocol):
    def append(self, event: AuditEvent) -> None: ...


class UnitOfWork(Protocol):
    """One transaction. Nothing is kept unless ``commit`` is called before the block ends."""

    uploads: UploadRepository
    audit: AuditLog

    def __enter__(self) -> UnitOfWork: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None: ...


@dataclass(frozen=True)
class Credentials:
    """What a request presented: a bearer value and/or cookies. Never logged."""

    bearer: str | None = field(default=None, repr=False)
    cookies: Mapping[str, str] = field(default_factory=dict, repr=False)


class Authenticator(Protocol):
    def authenticate(self, credentials: Credentials) -> str:
        """Return the caller's user id, or raise Unauthenticated / AuthUnavailable."""
        ...
