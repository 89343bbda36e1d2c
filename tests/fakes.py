"""Hand-written fakes of the domain's ports: in memory, no I/O, honest about transactions."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType

from domain.errors import PersistenceUnavailable, Unauthenticated
from domain.model import (
    AuditEvent,
    PresignedPut,
    SignedUrl,
    UploadIntent,
    UploadRequest,
    validated_user_id,
)
from domain.ports import (
    AuditLog,
    Authenticator,
    Clock,
    Credentials,
    IdGenerator,
    UnitOfWork,
    UploadRepository,
    UploadUrlSigner,
)


class FixedClock(Clock):
    def __init__(self, start: datetime = datetime(2026, 11, 28, 22, 0, tzinfo=UTC)) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


class SequentialIds(IdGenerator):
    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def new_id(self) -> str:
        return f"{next(self._counter):032x}"


@dataclass
class FakeStore:
    """What a committed database would hold."""

    uploads: dict[str, UploadIntent] = field(default_factory=dict)
    audit: list[AuditEvent] = field(default_factory=list)
    fail_commit: bool = False


class FakeUploadRepository(UploadRepository):
    def __init__(self, committed: dict[str, UploadIntent]) -> None:
        self._committed = committed
        self.pending: dict[str, UploadIntent] = {}

    def add(self, intent: UploadIntent) -> None:
        self.pending[intent.upload_id] = intent

    def get(self, upload_id: str) -> UploadIntent | None:
        return self.pending.get(upload_id) or self._committed.get(upload_id)


class FakeAuditLog(AuditLog):
    def __init__(self) -> None:
        self.pending: list[AuditEvent] = []

    def append(self, event: AuditEvent) -> None:
        self.pending.append(event)


class FakeUnitOfWork(UnitOfWork):
    def __init__(self, store: FakeStore) -> None:
        self._store = store
        self.uploads = FakeUploadRepository(store.uploads)
        self.audit = FakeAuditLog()

    def __enter__(self) -> FakeUnitOfWork:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.uploads.pending.clear()
        self.audit.pending.clear()

    def commit(self) -> None:
        if self._store.fail_commit:
            raise PersistenceUnavailable("the database is down")
        self._store.uploads.update(self.uploads.pending)
        self._store.audit.extend(self.audit.pending)
        self.uploads.pending.clear()
        self.audit.pending.clear()


class FakeUploadUrlSigner(UploadUrlSigner):
    def __init__(self) -> None:
        self.signed: list[tuple[str, UploadRequest, int]] = []

    def presign_put(self, object_key: str, request: UploadRequest, ttl_seconds: int) -> PresignedPut:
        self.signed.append((object_key, request, ttl_seconds))
        headers = {"Content-Type": request.content_type, "Content-Length": str(request.content_length)}
        return PresignedPut(
            url=SignedUrl(f"https://s3.example/{object_key}?X-Amz-Signature=fake{len(self.signed)}"),
            headers=headers,
        )


class FakeAuthenticator(Authenticator):
    """Accepts ``token-<user_id>``; anything else is refused."""

    def authenticate(self, credentials: Credentials) -> str:
        if credentials.bearer and credentials.bearer.startswith("token-"):
            return validated_user_id(credentials.bearer.removeprefix("token-"))
        raise Unauthenticated("invalid token")
