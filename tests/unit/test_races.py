"""Every race of issue 11, forced deterministically: the competing call runs inside a hook at the exact
point the other one is at (fakes, no threads, no sleeps). The stress twins on Postgres with real processes
are in tests/e2e/test_race_stress.py."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from domain.completion import UploadCompletion
from domain.errors import Gone, LimitExceeded, NotFound, StorageUnavailable
from domain.faces import FacePolicy
from domain.model import DetectedFace, JobState, Pixels, TryOnStatus, Upload, UploadStatus
from domain.retention import SourceExpiry
from domain.sweeper import Sweeper, SweepPolicy
from domain.tryons import TryOnDesk, TryOnLimits, TryOnOrder
from domain.verification import UploadVerifier, VerificationPolicy
from tests.builders.records import an_upload
from tests.builders.worlds import DataWorld
from tests.fakes import (
    FakeChangeBoard,
    FakeImageSanitizer,
    FakeObject,
    FakeUnitOfWork,
    FakeVerificationQueue,
    SequentialIds,
)

IMAGE = b"IMG" + b"x" * 997


class RaceWorld(DataWorld):
    def __init__(self) -> None:
        super().__init__()
        uow = lambda: FakeUnitOfWork(self.store)  # noqa: E731
        self.hooks: list[object] = []
        policy = VerificationPolicy(max_upload_bytes=16 * 1024 * 1024, unused_upload_ttl_seconds=86400)
        changes, verifications = FakeChangeBoard(), FakeVerificationQueue()
        verifications.verifier = UploadVerifier(
            policy=policy,
            faces=FacePolicy(),
            storage=self.uploads,
            sanitizer=FakeImageSanitizer(),
            detector=self,
            changes=changes,
            unit_of_work=uow,
            clock=self.clock,
        )
        self.verifier = UploadCompletion(
            policy=policy,
            storage=self.uploads,
            queue=verifications,
            changes=changes,
            unit_of_work=uow,
            clock=self.clock,
        )
        self.expiry = SourceExpiry(
            storage=self.uploads, unit_of_work=uow, clock=self.clock, changes=changes, queue=self.queue
        )
        self.sweeper = Sweeper(
            policy=SweepPolicy(),
            uploads=self.uploads,
            results=self.results,
            expiry=self.expiry,
            unit_of_work=uow,
            clock=self.clock,
        )

    # The face detector of the verifier: runs the competing call while verification is in progress.
    def detect(self, image: Pixels) -> list[DetectedFace]:
        for hook in self.hooks:
            hook()  # type: ignore[operator]
        return [DetectedFace(100, 100, 150, 150, 0.99)]

    def warm_up(self) -> None:
        return None

    def put(self, user_id: str = "alice", upload_id: str = "up1") -> Upload:
        upload = an_upload(user_id, upload_id, now=self.clock.now(), content_length=len(IMAGE))
        self.store.uploads[upload_id] = upload
        self.uploads.objects[upload.object_key] = FakeObject(IMAGE, "image/jpeg")
        return upload


@pytest.fixture
def world() -> RaceWorld:
    return RaceWorld()


ORDER = TryOnOrder("up1", "a sleek bob")


def test_a_deletion_during_verification_wins_and_the_verification_removes_what_it_stored(world):
    world.put()
    world.hooks.append(lambda: world.data.delete_upload("alice", "up1"))

    with pytest.raises(Gone):
        world.verifier.complete("alice", "up1", "uploads/alice/up1")

    assert world.uploads.objects == {}
    assert world.store.uploads["up1"].status is UploadStatus.DELETED
    assert "upload.validated" not in [e.event for e in world.store.audit]
    with pytest.raises(Gone):
        world.desk.order("alice", ORDER)
    with pytest.raises(Gone):  # completing again cannot revive it
        world.verifier.complete("alice", "up1", "uploads/alice/up1")


def test_an_erasure_during_verification_leaves_no_selfie_and_no_row(world):
    world.put()
    world.hooks.append(lambda: world.data.erase("alice"))

    with pytest.raises((Gone, NotFound)):  # erased: its row is gone too
        world.verifier.complete("alice", "up1", "uploads/alice/up1")

    assert world.uploads.objects == {}
    assert world.store.uploads == {}


def test_a_deletion_right_after_verification_removes_the_sanitised_copy_too(world):
    world.put()
    verified = world.verifier.complete("alice", "up1", "uploads/alice/up1")
    assert verified.stored is not None and verified.stored.object_key in world.uploads.objects

    world.data.delete_upload("alice", "up1")

    assert world.uploads.objects == {}
    with pytest.raises(Gone):
        world.desk.order("alice", ORDER)


def test_a_tryon_at_fal_when_its_selfie_is_deleted_is_cancelled_and_stores_nothing(world):
    world.tried_on()  # the selfie and one finished try-on
    world.generator.states = [JobState.RUNNING]
    tryon = world.desk.order("alice", ORDER)
    world.runner.advance(tryon.tryon_id)  # submitted; fal is working
    submitted = world.store.tryons[tryon.tryon_id].submission
    assert submitted is not None

    world.data.delete_upload("alice", "up1")
    world.clock.advance(5)
    world.runner.advance(tryon.tryon_id)

    settled = world.store.tryons[tryon.tryon_id]
    assert (settled.status, settled.error and settled.error.code) == (TryOnStatus.FAILED, "source_expired")
    assert submitted.request_id in world.generator.cancelled
    assert world.results.objects == {}
    assert [r for r in world.store.results.values() if r.tryon_id == tryon.tryon_id] == []


def copy_results_while(world: RaceWorld, meanwhile: Callable[[], object]) -> str:
    """Order a try-on, let fal finish, and run ``meanwhile`` while the worker copies the results."""
    world.tried_on()
    tryon = world.desk.order("alice", ORDER)
    world.runner.advance(tryon.tryon_id)
    download = world.generator.download

    def copying(image, max_bytes):
        copied = download(image, max_bytes)
        meanwhile()
        return copied

    world.generator.download = copying  # type: ignore[method-assign]
    world.clock.advance(5)
    world.runner.advance(tryon.tryon_id)
    return tryon.tryon_id


def test_a_deletion_while_results_are_being_copied_keeps_none_of_them(world):
    tryon_id = copy_results_while(world, lambda: world.data.delete_upload("alice", "up1"))

    assert world.store.tryons[tryon_id].status is TryOnStatus.FAILED
    assert world.results.objects == {}
    assert world.store.results == {}


def test_an_erasure_while_results_are_being_copied_keeps_none_of_them(world):
    copy_results_while(world, lambda: world.data.erase("alice"))

    assert world.results.objects == {}
    assert world.store.results == {}
    assert world.store.tryons == {}
    assert world.uploads.objects == {}


def test_a_step_that_lost_its_lease_cannot_overwrite_the_step_that_took_over(world):
    world.verified_upload()
    tryon = world.desk.order("alice", ORDER)
    now = world.clock.now()
    with FakeUnitOfWork(world.store) as uow:
        stale = uow.tryons.claim(tryon.tryon_id, now, now + timedelta(seconds=60))
    world.clock.advance(61)
    world.runner.advance(tryon.tryon_id)  # the lease ran out: another worker submits
    assert stale is not None

    with FakeUnitOfWork(world.store) as uow:
        assert uow.tryons.update(stale) is False
    assert world.store.tryons[tryon.tryon_id].status is TryOnStatus.RUNNING


def test_a_favourite_set_while_a_deletion_claims_its_result_is_refused_and_never_half_kept(world):
    result = world.tried_on()
    now = world.clock.now()
    with FakeUnitOfWork(world.store) as uow:  # a sweep or a deletion holds the result
        assert uow.results.claim_sweep(result.result_id, now, now + timedelta(minutes=5))

    with pytest.raises(NotFound):
        world.data.favorite("alice", result.result_id, True)
    assert world.store.results[result.result_id].favorite is False


def test_a_favourite_set_first_is_kept_whole_by_a_later_deletion(world):
    result = world.tried_on()
    world.data.favorite("alice", result.result_id, True)

    world.data.delete_upload("alice", "up1")

    assert world.store.results[result.result_id].favorite is True
    assert result.object_key in world.results.objects


def test_favouriting_the_selfie_holds_its_source_against_the_lifecycle_backstop(world):
    result = world.tried_on()
    source = world.store.uploads["up1"].stored.object_key

    world.data.favorite("alice", result.result_id, True)
    assert world.uploads.held == {source: True}
    world.data.favorite("alice", result.result_id, False)
    assert world.uploads.held == {source: False}


def test_toggling_to_the_state_it_already_has_records_and_schedules_nothing(world):
    result = world.tried_on()
    world.data.favorite("alice", result.result_id, True)
    events, expiries = len(world.store.audit), len(world.queue.expiries)

    for _ in range(50):
        world.data.favorite("alice", result.result_id, True)

    assert (len(world.store.audit), len(world.queue.expiries)) == (events, expiries)


def test_an_expiry_that_runs_before_a_moved_deadline_schedules_itself_for_it(world):
    result = world.tried_on()
    world.data.favorite("alice", result.result_id, True)
    world.clock.advance(7200)
    world.data.favorite("alice", result.result_id, False)
    deadline = world.store.uploads["up1"].source_expires_at
    world.queue.expiries.clear()

    world.clock.advance(10)  # the job scheduled for the old deadline fires early
    assert world.expiry.expire("up1") is False
    assert world.queue.expiries == [("up1", deadline)]

    world.clock.current = deadline
    assert world.expiry.expire("up1") is True
    assert world.uploads.objects == {}


def test_a_sweep_that_claims_an_upload_and_declines_releases_it_for_the_next_pass(world):
    result = world.tried_on()
    world.data.favorite("alice", result.result_id, True)
    world.clock.advance(7200)  # overdue, but a favourite holds it
    assert world.sweeper.sweep().sources_deleted == 0

    world.data.favorite("alice", result.result_id, False)
    world.clock.advance(3601)
    assert world.sweeper.sweep().sources_deleted == 1  # no lease left to wait out
    assert world.store.uploads["up1"].status is UploadStatus.DELETED


class LimitWorld(RaceWorld):
    def __init__(self) -> None:
        super().__init__()
        self.desk = TryOnDesk(
            unit_of_work=lambda: FakeUnitOfWork(self.store),
            queue=self.queue,
            results=self.results,
            clock=self.clock,
            ids=SequentialIds(),
            changes=FakeChangeBoard(),
            limits=TryOnLimits(max_active=3, daily_images=40),
        )


def test_a_bursting_user_is_capped_at_their_active_tryons_while_another_user_is_served():
    world = LimitWorld()
    world.verified_upload("alice", "up1")
    world.verified_upload("bob", "up2")

    accepted, refused = [], []
    for _ in range(10):
        try:
            accepted.append(world.desk.order("alice", ORDER))
        except LimitExceeded as error:
            refused.append(error)
    bobs = world.desk.order("bob", TryOnOrder("up2", "curls"))

    assert (len(accepted), len(refused)) == (3, 7)
    assert {e.code for e in refused} == {"too_many_active_tryons"}
    assert all(e.retry_after_seconds >= 1 for e in refused)
    # Bob's try-on waits behind at most alice's three: the queue is FIFO and one step each.
    position = [tryon_id for tryon_id, _ in world.queue.advances].index(bobs.tryon_id)
    assert position == 3
    for tryon_id, _ in list(world.queue.advances)[: position + 1]:
        world.runner.advance(tryon_id)
    assert world.store.tryons[bobs.tryon_id].status is TryOnStatus.RUNNING


def test_the_daily_image_quota_refuses_with_the_reset_time_and_resets_at_utc_midnight():
    world = LimitWorld()
    world.verified_upload("alice", "up1")
    four = TryOnOrder("up1", "a bob", num_images=4)
    for _ in range(10):
        tryon = world.desk.order("alice", four)
        world.run_until_settled(tryon.tryon_id)
    world.verified_upload("alice", "up1")  # the selfie again (settling moved its deadline)

    with pytest.raises(LimitExceeded) as refused:
        world.desk.order("alice", TryOnOrder("up1", "a bob"))
    now = world.clock.now()
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert refused.value.code == "quota_exceeded"
    assert refused.value.retry_after_seconds == int((midnight - now.replace(microsecond=0)).total_seconds())
    assert midnight.isoformat().replace("+00:00", "Z") in refused.value.detail

    world.clock.current = midnight
    world.verified_upload("alice", "up1")
    assert world.desk.order("alice", TryOnOrder("up1", "a bob")).status is TryOnStatus.QUEUED


def test_a_refused_order_records_nothing_and_an_idempotent_replay_is_never_refused():
    world = LimitWorld()
    world.verified_upload("alice", "up1")
    first = world.desk.order("alice", ORDER, "key-1")
    for n in range(2):
        world.desk.order("alice", TryOnOrder("up1", f"style {n}"))
    events = len(world.store.audit)

    with pytest.raises(LimitExceeded):
        world.desk.order("alice", TryOnOrder("up1", "one too many"))
    assert world.desk.order("alice", ORDER, "key-1").tryon_id == first.tryon_id

    assert len(world.store.audit) == events
    assert len(world.store.tryons) == 3


def test_a_deletion_that_makes_the_verifications_read_fail_answers_gone_not_unavailable(world, monkeypatch):
    world.put()

    def deleted_under_the_read(object_key: str, max_bytes: int) -> bytes:
        world.data.delete_upload("alice", "up1")
        raise StorageUnavailable("NoSuchKey: the object went while it was being read")

    monkeypatch.setattr(world.uploads, "read", deleted_under_the_read)
    with pytest.raises(Gone):
        world.verifier.complete("alice", "up1", "uploads/alice/up1")
    assert world.store.uploads["up1"].status is UploadStatus.DELETED
