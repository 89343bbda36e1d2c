"""Hand-written fakes of the domain's ports: in memory, no I/O, honest about transactions."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType

from domain.errors import (
    ContentRejected,
    GenerationFailed,
    PersistenceUnavailable,
    QueueUnavailable,
    StorageUnavailable,
    Unauthenticated,
)
from domain.model import (
    TERMINAL,
    AuditEvent,
    Credentials,
    DetectedFace,
    DownloadedImage,
    GeneratedImage,
    GenerationRequest,
    JobState,
    ObjectInfo,
    Pixels,
    PresignedPut,
    SanitizedImage,
    SignedUrl,
    Submission,
    TryOn,
    TryOnResult,
    Upload,
    UploadRequest,
    UploadStatus,
    validated_user_id,
)
from domain.ports import (
    AuditLog,
    Authenticator,
    ChangeBoard,
    ChangeListener,
    Clock,
    FaceDetector,
    IdGenerator,
    ImageGenerator,
    ImageSanitizer,
    ReplayGuard,
    ResultRepository,
    ResultStorage,
    SourceUrlSigner,
    Topic,
    TryOnQueue,
    TryOnRepository,
    UnitOfWork,
    UploadRepository,
    UploadStorage,
    UploadUrlSigner,
    UsageRepository,
    VerificationQueue,
)
from domain.verification import UploadVerifier


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

    uploads: dict[str, Upload] = field(default_factory=dict)
    audit: list[AuditEvent] = field(default_factory=list)
    tryons: dict[str, TryOn] = field(default_factory=dict)
    leases: dict[str, datetime] = field(default_factory=dict)
    results: dict[str, TryOnResult] = field(default_factory=dict)
    purged: dict[str, datetime] = field(default_factory=dict)
    sweep_leases: dict[str, datetime] = field(default_factory=dict)
    usage: dict[str, tuple[str, int]] = field(default_factory=dict)
    fal_requests: dict[str, str] = field(default_factory=dict)
    kept_at: dict[str, datetime] = field(default_factory=dict)
    """When each upload's ``source_kept`` was last set or confirmed (absent: by the backfill, never)."""
    fail_commit: bool = False


def _claim(leases: dict[str, datetime], key: str, now: datetime, lease_until: datetime) -> bool:
    held = leases.get(key)
    if held is not None and held >= now:
        return False
    leases[key] = lease_until
    return True


class FakeUploadRepository(UploadRepository):
    """Writes stay pending until the unit of work commits; every change is a compare-and-set on the
    version of the upload as this transaction sees it, as the Peewee repository's conditional UPDATEs."""

    def __init__(self, committed: dict[str, Upload], store: FakeStore | None = None) -> None:
        self._store = store or FakeStore(uploads=committed)
        self._committed = committed
        self.pending: dict[str, Upload] = {}
        self.deleted: set[str] = set()

    def add(self, upload: Upload) -> None:
        self.pending[upload.upload_id] = upload

    def _write(self, upload: Upload) -> Upload:
        written = replace(upload, version=upload.version + 1)
        self.pending[upload.upload_id] = written
        return written

    def update(self, upload: Upload) -> bool:
        current = self.get(upload.upload_id)
        if current is None or current.version != upload.version:
            return False
        self._write(upload)
        return True

    def get(self, upload_id: str) -> Upload | None:
        if upload_id in self.deleted:
            return None
        return self.pending.get(upload_id) or self._committed.get(upload_id)

    def claim_for_verification(self, upload_id: str, now: datetime, stale_before: datetime) -> Upload | None:
        upload = self.get(upload_id)
        if upload is None:
            return None
        stalled = upload.status is UploadStatus.VERIFYING and (upload.updated_at or now) < stale_before
        if upload.status is not UploadStatus.ISSUED and not stalled:
            return None
        return self._write(replace(upload, status=UploadStatus.VERIFYING, updated_at=now))

    def begin_verification(self, upload_id: str, now: datetime) -> Upload | None:
        upload = self.get(upload_id)
        if upload is None or upload.status is not UploadStatus.VERIFYING:
            return None
        attempts = upload.verification_attempts + 1
        return self._write(replace(upload, updated_at=now, verification_attempts=attempts))

    def stalled_verifications(self, before: datetime, limit: int) -> list[str]:
        uploads = [u for u in self._committed.values() if u.status is UploadStatus.VERIFYING]
        return [u.upload_id for u in uploads if (u.updated_at or u.created_at) < before][:limit]

    def lock_verified(self, upload_id: str) -> Upload | None:
        upload = self.get(upload_id)
        if upload is None or upload.status is not UploadStatus.VERIFIED:
            return None
        return self._write(upload)

    def set_deadline(self, upload_id: str, when: datetime) -> bool:
        upload = self.get(upload_id)
        if upload is None or upload.status is not UploadStatus.VERIFIED:
            return False
        self._write(replace(upload, source_expires_at=when, source_kept=False))
        return True

    def mark_deleted(self, upload_id: str, now: datetime) -> None:
        upload = self.get(upload_id)
        if upload is not None and upload.status is not UploadStatus.DELETED:
            self._write(replace(upload, status=UploadStatus.DELETED, updated_at=now))
            self._store.purged.pop(upload_id, None)

    def mark_user_deleted(self, user_id: str, now: datetime) -> int:
        doomed = [u for u in self.for_user(user_id) if u.status is not UploadStatus.DELETED]
        for upload in doomed:
            self.mark_deleted(upload.upload_id, now)
        return len(doomed)

    def expire_if_due(self, upload_id: str, now: datetime) -> Upload | None:
        upload = self.get(upload_id)
        if upload is None or upload.status is not UploadStatus.VERIFIED or not upload.source_expired(now):
            return None
        if self._held(upload_id):
            return None
        self._store.purged[upload_id] = now
        return self._write(replace(upload, status=UploadStatus.DELETED, updated_at=now))

    def keep_if_held(self, upload_id: str, now: datetime) -> bool:
        upload = self.get(upload_id)
        if upload is None or upload.status is not UploadStatus.VERIFIED or not upload.source_expired(now):
            return False
        if upload.source_kept or not self._favourite(upload_id):
            return False
        self.pending[upload_id] = replace(upload, source_kept=True)  # a mark: the version stays
        self._store.kept_at[upload_id] = now
        return True

    def recheck_kept(self, confirmed_before: datetime, now: datetime, limit: int) -> list[str]:
        never = datetime.min.replace(tzinfo=UTC)
        kept = [u for u in self._committed.values() if u.status is UploadStatus.VERIFIED and u.source_kept]
        due = [u for u in kept if self._store.kept_at.get(u.upload_id, never) < confirmed_before]
        due.sort(key=lambda u: self._store.kept_at.get(u.upload_id, never))
        cleared: list[str] = []
        for upload in due[:limit]:
            if self._favourite(upload.upload_id):
                self._store.kept_at[upload.upload_id] = now
            else:
                self.pending[upload.upload_id] = replace(upload, source_kept=False)  # the version stays
                cleared.append(upload.upload_id)
        return cleared

    def for_user(self, user_id: str) -> list[Upload]:
        ids = {*self._committed, *self.pending} - self.deleted
        found = [self.get(upload_id) for upload_id in sorted(ids)]
        return [u for u in found if u is not None and u.user_id == user_id]

    def delete(self, upload_id: str) -> None:
        upload = self.get(upload_id)
        if upload is not None and upload.status is UploadStatus.DELETED:
            self.deleted.add(upload_id)

    def to_purge(self, settled_before: datetime, limit: int) -> list[Upload]:
        def due(u: Upload) -> bool:
            if u.upload_id in self._store.purged:
                return False
            if u.status is UploadStatus.VERIFIED:
                return (u.updated_at or u.created_at) < settled_before
            return u.status is UploadStatus.DELETED or u.url_expires_at < settled_before

        return [u for u in self._committed.values() if due(u)][:limit]

    def overdue_sources(self, now: datetime, limit: int) -> list[str]:
        verified = [u for u in self._committed.values() if u.status is UploadStatus.VERIFIED]
        unkept = [u for u in verified if not u.source_kept]
        due = [u for u in unkept if u.source_expires_at is not None and u.source_expires_at < now]
        due.sort(key=lambda u: u.source_expires_at or now)
        return [u.upload_id for u in due if not self._unsettled(u.upload_id)][:limit]

    def _held(self, upload_id: str) -> bool:
        return self._unsettled(upload_id) or self._favourite(upload_id)

    def _unsettled(self, upload_id: str) -> bool:
        tryons = self._store.tryons.values()
        return any(t.upload_id == upload_id and t.status not in TERMINAL for t in tryons)

    def _favourite(self, upload_id: str) -> bool:
        tryons = {t.tryon_id for t in self._store.tryons.values() if t.upload_id == upload_id}
        return any(r.favorite and r.tryon_id in tryons for r in self._store.results.values())

    def claim_sweep(self, upload_id: str, now: datetime, lease_until: datetime) -> bool:
        return _claim(self._store.sweep_leases, f"upload:{upload_id}", now, lease_until)

    def release_sweep(self, upload_id: str) -> None:
        self._store.sweep_leases.pop(f"upload:{upload_id}", None)

    def mark_purged(self, upload: Upload, now: datetime, status: UploadStatus) -> bool:
        current = self.get(upload.upload_id)
        if current is None or current.version != upload.version:
            return False
        self._write(replace(current, status=status, updated_at=now))
        self._store.purged[upload.upload_id] = now
        self._store.sweep_leases.pop(f"upload:{upload.upload_id}", None)
        return True


class FakeAuditLog(AuditLog):
    def __init__(self) -> None:
        self.pending: list[AuditEvent] = []

    def append(self, event: AuditEvent) -> None:
        self.pending.append(event)


class FakeTryOnRepository(TryOnRepository):
    """Writes go straight to the store (claims must be visible at once, like a conditional UPDATE)."""

    def __init__(self, store: FakeStore) -> None:
        self._store = store

    def add(self, tryon: TryOn) -> None:
        self._store.tryons[tryon.tryon_id] = tryon

    def get(self, tryon_id: str) -> TryOn | None:
        return self._store.tryons.get(tryon_id)

    def by_idempotency_key(self, user_id: str, key: str) -> TryOn | None:
        matches = [t for t in self._store.tryons.values() if (t.user_id, t.idempotency_key) == (user_id, key)]
        return matches[0] if matches else None

    def update(self, tryon: TryOn) -> bool:
        current = self._store.tryons.get(tryon.tryon_id)
        if current is None or current.version != tryon.version:
            return False
        self._store.tryons[tryon.tryon_id] = replace(tryon, version=tryon.version + 1)
        self._store.leases.pop(tryon.tryon_id, None)
        return True

    def claim(self, tryon_id: str, now: datetime, lease_until: datetime) -> TryOn | None:
        if self._store.fail_commit:
            raise PersistenceUnavailable("the database is down")
        tryon = self._store.tryons.get(tryon_id)
        held = self._store.leases.get(tryon_id)
        if tryon is None or tryon.status in TERMINAL or (held is not None and held >= now):
            return None
        self._store.leases[tryon_id] = lease_until
        claimed = replace(tryon, version=tryon.version + 1)
        self._store.tryons[tryon_id] = claimed
        return claimed

    def unsettled_for_user(self, user_id: str) -> int:
        return sum(
            1 for t in self._store.tryons.values() if t.user_id == user_id and t.status not in TERMINAL
        )

    def unsettled_ids_for_user(self, user_id: str) -> list[str]:
        return sorted(
            t.tryon_id
            for t in self._store.tryons.values()
            if t.user_id == user_id and t.status not in TERMINAL
        )

    def delete_for_user(self, user_id: str) -> int:
        doomed = [t for t in self._store.tryons.values() if t.user_id == user_id]
        for tryon in doomed:
            del self._store.tryons[tryon.tryon_id]
        return len(doomed)

    def unsettled_for_upload(self, upload_id: str) -> int:
        return sum(
            1 for t in self._store.tryons.values() if t.upload_id == upload_id and t.status not in TERMINAL
        )

    def due(self, before: datetime, limit: int) -> list[str]:
        def overdue(t: TryOn) -> bool:
            held = self._store.leases.get(t.tryon_id)
            free = held is None or held < before
            return (
                t.status not in TERMINAL and free and (t.next_action_at is None or t.next_action_at < before)
            )

        return [t.tryon_id for t in self._store.tryons.values() if overdue(t)][:limit]

    def record_request(self, tryon_id: str, request_id: str) -> None:
        self._store.fal_requests.setdefault(request_id, tryon_id)

    def by_request_id(self, request_id: str) -> TryOn | None:
        tryon_id = self._store.fal_requests.get(request_id)
        return None if tryon_id is None else self._store.tryons.get(tryon_id)

    def note_finished(self, tryon_id: str, request_id: str, now: datetime) -> bool:
        tryon = self._store.tryons.get(tryon_id)
        if tryon is None or tryon.status in TERMINAL or tryon.submission is None:
            return False
        if tryon.submission.request_id != request_id:
            return False
        self._store.tryons[tryon_id] = replace(tryon, notified_request_id=request_id, next_action_at=now)
        return True


class FakeResultRepository(ResultRepository):
    def __init__(self, store: FakeStore) -> None:
        self._store = store

    def add_if_absent(self, result: TryOnResult) -> None:
        self._store.results.setdefault(result.result_id, result)

    def for_tryon(self, tryon_id: str) -> list[TryOnResult]:
        found = [r for r in self._store.results.values() if r.tryon_id == tryon_id]
        return sorted(found, key=lambda r: r.position)

    def set_favorite(self, result_id: str, favorite: bool, now: datetime) -> bool:
        result = self._store.results.get(result_id)
        swept = self._store.sweep_leases.get(f"result:{result_id}")
        if result is None or result.favorite == favorite or (swept is not None and swept >= now):
            return False
        self._store.results[result_id] = replace(result, favorite=favorite)
        return True

    def for_upload(self, upload_id: str) -> list[TryOnResult]:
        tryons = {t.tryon_id for t in self._store.tryons.values() if t.upload_id == upload_id}
        return [r for r in self._store.results.values() if r.tryon_id in tryons]

    def for_user(self, user_id: str) -> list[TryOnResult]:
        return [r for r in self._store.results.values() if r.user_id == user_id]

    def delete(self, result_id: str) -> bool:
        return self._store.results.pop(result_id, None) is not None

    def claim_for_deletion(self, result_id: str, lease_until: datetime) -> bool:
        result = self._store.results.get(result_id)
        if result is None or result.favorite:
            return False
        self._store.sweep_leases[f"result:{result_id}"] = lease_until
        return True

    def expired(self, created_before: datetime, limit: int) -> list[TryOnResult]:
        found = [r for r in self._store.results.values() if not r.favorite and r.created_at < created_before]
        return found[:limit]

    def claim_sweep(self, result_id: str, now: datetime, lease_until: datetime) -> bool:
        result = self._store.results.get(result_id)
        if result is None or result.favorite:
            return False
        return _claim(self._store.sweep_leases, f"result:{result_id}", now, lease_until)

    def get(self, result_id: str) -> TryOnResult | None:
        return self._store.results.get(result_id)


class FakeUsageRepository(UsageRepository):
    def __init__(self, store: FakeStore) -> None:
        self._store = store

    def hold(self, user_id: str, today: str) -> int:
        day, images = self._store.usage.get(user_id, (today, 0))
        return images if day == today else 0

    def record_images(self, user_id: str, today: str, images: int) -> None:
        self._store.usage[user_id] = (today, images)


class FakeUnitOfWork(UnitOfWork):
    def __init__(self, store: FakeStore) -> None:
        self._store = store
        self.uploads = FakeUploadRepository(store.uploads, store)
        self.audit = FakeAuditLog()
        self.tryons = FakeTryOnRepository(store)
        self.results = FakeResultRepository(store)
        self.usage = FakeUsageRepository(store)

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
        for upload_id in self.uploads.deleted:
            self._store.uploads.pop(upload_id, None)
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


@dataclass
class FakeObject:
    data: bytes = field(repr=False)
    content_type: str
    encrypted: bool = True


class FakeUploadStorage(UploadStorage):
    def __init__(self) -> None:
        self.objects: dict[str, FakeObject] = {}
        self.down = False
        self.reads = 0
        self.held: dict[str, bool] = {}

    def _check(self) -> None:
        if self.down:
            raise StorageUnavailable("object storage is down")

    def head(self, object_key: str) -> ObjectInfo | None:
        self._check()
        stored = self.objects.get(object_key)
        return None if stored is None else ObjectInfo(len(stored.data), stored.content_type, stored.encrypted)

    def read(self, object_key: str, max_bytes: int) -> bytes:
        self._check()
        self.reads += 1
        data = self.objects[object_key].data
        if len(data) > max_bytes:
            raise ContentRejected("too large", code="too_large")
        return data

    def put_new(self, object_key: str, data: bytes, content_type: str) -> None:
        self._check()
        self.objects.setdefault(object_key, FakeObject(data, content_type))

    def delete(self, object_key: str) -> None:
        self._check()
        self.objects.pop(object_key, None)

    def hold_source(self, object_key: str, held: bool) -> None:
        self._check()
        self.held[object_key] = held


class FakeImageSanitizer(ImageSanitizer):
    """Bytes starting with ``IMG`` are an image; ``BAD:<code>`` is refused with that code."""

    def sanitize(self, data: bytes, declared_type: str) -> SanitizedImage:
        if data.startswith(b"BAD:"):
            raise ContentRejected("refused", code=data[4:].split(b";")[0].decode())
        if not data.startswith(b"IMG"):
            raise ContentRejected("not an image", code="not_an_image")
        return SanitizedImage(
            data=b"CLEAN" + data[3:],
            content_type="image/jpeg",
            width=1536,
            height=2048,
            preview=Pixels(384, 512, b""),
        )


class FakeFaceDetector(FaceDetector):
    def __init__(self, faces: list[DetectedFace] | None = None) -> None:
        self.faces = [DetectedFace(100, 100, 150, 150, 0.99)] if faces is None else faces
        self.calls = 0

    def detect(self, image: Pixels) -> list[DetectedFace]:
        self.calls += 1
        return list(self.faces)

    def warm_up(self) -> None:
        return None


class FakeTryOnQueue(TryOnQueue):
    def __init__(self) -> None:
        self.advances: list[tuple[str, float]] = []
        self.once: list[tuple[str, str]] = []
        self.expiries: list[tuple[str, datetime]] = []
        self.down = False

    def advance_soon(self, tryon_id: str) -> None:
        self.advance_in(tryon_id, 0)

    def advance_in(self, tryon_id: str, seconds: float) -> None:
        if self.down:
            raise StorageUnavailable("redis is down")
        self.advances.append((tryon_id, seconds))

    def advance_once(self, tryon_id: str, key: str) -> None:
        """Like RQ with a stable job id: a key already pending is not queued again."""
        if self.down:
            raise StorageUnavailable("redis is down")
        if (tryon_id, key) not in self.once:
            self.once.append((tryon_id, key))
            self.advances.append((tryon_id, 0))

    def expire_upload_at(self, upload_id: str, when: datetime) -> None:
        self.expiries.append((upload_id, when))


class FakeSourceUrlSigner(SourceUrlSigner):
    def __init__(self) -> None:
        self.signed: list[tuple[str, int]] = []

    def presign_get(self, object_key: str, ttl_seconds: int) -> SignedUrl:
        self.signed.append((object_key, ttl_seconds))
        return SignedUrl(f"https://s3.example/{object_key}?X-Amz-Signature=get{len(self.signed)}")


class FakeResultStorage(ResultStorage):
    def __init__(self) -> None:
        self.objects: dict[str, FakeObject] = {}
        self.favorites: dict[str, bool] = {}
        self.down = False

    def put_new(self, object_key: str, data: bytes, content_type: str) -> None:
        if self.down:
            raise StorageUnavailable("the processed bucket is down")
        self.objects.setdefault(object_key, FakeObject(data, content_type))

    def read(self, object_key: str, max_bytes: int) -> bytes:
        return self.objects[object_key].data[: max_bytes + 1]

    def delete(self, object_key: str) -> None:
        self.objects.pop(object_key, None)

    def mark_favorite(self, object_key: str, favorite: bool) -> None:
        self.favorites[object_key] = favorite


class FakeImageGenerator(ImageGenerator):
    """A scripted fal: ``states`` are returned by successive state() calls (then COMPLETED);
    ``submit_failures``/``result_failures`` are raised, in order, before things go right."""

    def __init__(self) -> None:
        self.submitted: list[GenerationRequest] = []
        self.submit_failures: list[GenerationFailed] = []
        self.result_failures: list[GenerationFailed] = []
        self.states: list[JobState] = []
        self.images = [GeneratedImage("https://v3.fal.media/files/out-0.jpg", "image/jpeg", 1024, 1024)]
        self.cancelled: list[str] = []

    def submit(self, request: GenerationRequest) -> Submission:
        self.submitted.append(request)
        if self.submit_failures:
            raise self.submit_failures.pop(0)
        n = len(self.submitted)
        base = f"https://queue.fal.run/fal-ai/nano-banana/requests/req{n}"
        return Submission(f"req{n}", f"{base}/status", base, f"{base}/cancel")

    def state(self, submission: Submission) -> JobState:
        return self.states.pop(0) if self.states else JobState.COMPLETED

    def result(self, submission: Submission) -> list[GeneratedImage]:
        if self.result_failures:
            raise self.result_failures.pop(0)
        return list(self.images)

    def cancel(self, submission: Submission) -> None:
        self.cancelled.append(submission.request_id)

    def download(self, image: GeneratedImage, max_bytes: int) -> DownloadedImage:
        return DownloadedImage(b"\xff\xd8\xffRESULT:" + image.url.encode(), "image/jpeg")


class _NoWaiting(ChangeListener):
    def wait(self, seconds: float) -> str | None:
        return None


class FakeChangeListener(ChangeListener):
    def __init__(self, board: FakeChangeBoard, topic: Topic, key: str) -> None:
        self._board = board
        self._at = (topic, key)

    def wait(self, seconds: float) -> str | None:
        board = self._board
        with board.changed:
            board.waited.append(seconds)
            if board.blocking:
                board.changed.wait_for(lambda: self._at in board.heard, timeout=seconds)
            return board.heard.get(self._at)


class FakeChangeBoard(ChangeBoard):
    """Changes announced are heard by listeners of the same topic and key. By default nobody waits (a
    listener hears what was announced since it began, else None at once); ``blocking`` waits as Redis
    would, until an announcement or the time runs out. ``places`` caps the listeners at once (the rest
    hear nothing, at once); ``down`` makes announcing fail and listening hear nothing."""

    def __init__(self, *, blocking: bool = False, places: int | None = None, down: bool = False) -> None:
        self.blocking = blocking
        self.places = places
        self.down = down
        self.changed = threading.Condition()
        self.heard: dict[tuple[Topic, str], str] = {}
        self.announced: list[tuple[Topic, str, str]] = []
        self.waited: list[float] = []
        self.listening = 0

    @contextmanager
    def listen(self, topic: Topic, key: str) -> Iterator[ChangeListener]:
        with self.changed:
            self.heard.pop((topic, key), None)  # a listener hears only what is announced after it began
            refused = self.down or (self.places is not None and self.listening >= self.places)
            if not refused:
                self.listening += 1
        if refused:
            yield _NoWaiting()
            return
        try:
            yield FakeChangeListener(self, topic, key)
        finally:
            with self.changed:
                self.listening -= 1

    def announce(self, topic: Topic, key: str, message: str) -> None:
        if self.down:
            raise QueueUnavailable("the fake board is down")
        with self.changed:
            self.announced.append((topic, key, message))
            self.heard[(topic, key)] = message
            self.changed.notify_all()


class FakeVerificationQueue(VerificationQueue):
    """Records hand-offs; with ``verifier`` set, verifies at once (as a verifier process would, inline)."""

    def __init__(self) -> None:
        self.queued: list[str] = []
        self.verifier: UploadVerifier | None = None

    def verify_soon(self, upload_id: str) -> None:
        self.queued.append(upload_id)
        if self.verifier is not None:
            self.verifier.verify(upload_id)


class FakeReplayGuard(ReplayGuard):
    """Remembers every key (and the window it was given) until forgotten."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def first_sighting(self, key: str, ttl_seconds: int) -> bool:
        if key in self.seen:
            return False
        self.seen[key] = ttl_seconds
        return True

    def forget(self, key: str) -> None:
        self.seen.pop(key, None)
