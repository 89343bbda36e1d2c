"""Worlds for the unit tier: the domain's services wired to fakes (tests/fakes.py), and a few ready-made
records. A test module subclasses one to add its own services."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

from domain.model import StoredImage, TryOnResult, TryOnStatus, Upload, UploadStatus
from domain.ports import UnitOfWork
from domain.retention import SourceExpiry
from domain.tryon_runner import RunnerPolicy, TryOnRunner
from domain.tryons import TryOnDesk, TryOnOrder
from domain.user_data import UserData
from tests.builders.records import an_upload
from tests.fakes import (
    FakeChangeBoard,
    FakeImageGenerator,
    FakeObject,
    FakeResultStorage,
    FakeSourceUrlSigner,
    FakeStore,
    FakeTryOnQueue,
    FakeUnitOfWork,
    FakeUploadStorage,
    FixedClock,
    SequentialIds,
)

ORDER = TryOnOrder("up1", "a sleek bob with copper highlights")


class TryOnWorld:
    def __init__(
        self, *, generator: FakeImageGenerator | None = None, policy: RunnerPolicy | None = None
    ) -> None:
        """``generator`` and ``policy`` swap the runner's fake generator and its policy."""
        self.store = FakeStore()
        self.clock = FixedClock()
        self.queue = FakeTryOnQueue()
        self.generator = generator or FakeImageGenerator()
        self.signer = FakeSourceUrlSigner()
        self.results = FakeResultStorage()
        self.changes = FakeChangeBoard()
        uow = lambda: FakeUnitOfWork(self.store)  # noqa: E731
        self.desk = TryOnDesk(
            unit_of_work=uow,
            queue=self.queue,
            results=self.results,
            clock=self.clock,
            ids=SequentialIds(),
            changes=self.changes,
        )
        self.runner = TryOnRunner(
            policy=policy
            or RunnerPolicy(max_attempts=3, image_url_ttl_seconds=300, source_retention_seconds=3600),
            generator=self.generator,
            signer=self.signer,
            results=self.results,
            unit_of_work=uow,
            queue=self.queue,
            changes=self.changes,
            clock=self.clock,
            ids=SequentialIds(),
            jitter=lambda: 0.5,
        )

    def verified_upload(self, user_id: str = "alice", upload_id: str = "up1", **changes: object) -> Upload:
        now = self.clock.now()
        upload = an_upload(
            user_id,
            upload_id,
            now=now,
            source_expires_at=now + timedelta(days=1),
            status=UploadStatus.VERIFIED,
            stored=StoredImage(f"uploads/{user_id}/{upload_id}.jpg", "image/jpeg", 900, 512, 512, "c2hh"),
        )
        upload = replace(upload, **changes)  # type: ignore[arg-type]
        self.store.uploads[upload_id] = upload
        return upload

    def run_until_settled(self, tryon_id: str, steps: int = 20) -> None:
        for _ in range(steps):
            if self.store.tryons[tryon_id].status in (TryOnStatus.SUCCEEDED, TryOnStatus.FAILED):
                return
            self.clock.advance(5)
            self.runner.advance(tryon_id)
        raise AssertionError("the try-on never settled")

    def events(self) -> list[tuple[str, str]]:
        return [(e.event, e.outcome) for e in self.store.audit]


class DataWorld(TryOnWorld):
    def __init__(self) -> None:
        super().__init__()
        self.uploads = FakeUploadStorage()
        uow = lambda: FakeUnitOfWork(self.store)  # noqa: E731
        self.data = self.user_data(uow)
        self.expiry = SourceExpiry(
            storage=self.uploads, unit_of_work=uow, clock=self.clock, changes=self.changes
        )

    def user_data(self, unit_of_work: Callable[[], UnitOfWork]) -> UserData:
        """This world's ``UserData``, on units of work of the caller's making."""
        return UserData(
            uploads=self.uploads,
            results=self.results,
            queue=self.queue,
            changes=self.changes,
            unit_of_work=unit_of_work,
            clock=self.clock,
            source_retention_seconds=3600,
        )

    def tried_on(self, user_id: str = "alice", upload_id: str = "up1") -> TryOnResult:
        upload = self.verified_upload(user_id, upload_id)
        self.uploads.objects[upload.stored.object_key] = FakeObject(b"clean", "image/jpeg")  # type: ignore[union-attr]
        tryon = self.desk.order(user_id, ORDER if upload_id == "up1" else ORDER.__class__(upload_id, "a bob"))
        self.run_until_settled(tryon.tryon_id)
        [result] = [r for r in self.store.results.values() if r.tryon_id == tryon.tryon_id]
        return result
