from __future__ import annotations

from datetime import timedelta

import pytest

from domain.completion import UploadCompletion
from domain.errors import Conflict, ContentRejected, Forbidden, Gone, NotFound, StorageUnavailable
from domain.faces import FacePolicy
from domain.model import DetectedFace, Upload, UploadStatus
from domain.verification import UploadVerifier, VerificationPolicy, sha256_base64
from tests.builders.records import an_upload
from tests.fakes import (
    FakeChangeBoard,
    FakeFaceDetector,
    FakeImageSanitizer,
    FakeObject,
    FakeStore,
    FakeUnitOfWork,
    FakeUploadStorage,
    FakeVerificationQueue,
    FixedClock,
)

IMAGE = b"IMG" + b"x" * 997


class World:
    def __init__(self) -> None:
        self.store = FakeStore()
        self.storage = FakeUploadStorage()
        self.detector = FakeFaceDetector()
        self.clock = FixedClock()
        self.changes = FakeChangeBoard()
        self.queue = FakeVerificationQueue()
        policy = VerificationPolicy(max_upload_bytes=16 * 1024 * 1024, unused_upload_ttl_seconds=86400)
        self.verifier = UploadVerifier(
            policy=policy,
            faces=FacePolicy(),
            storage=self.storage,
            sanitizer=FakeImageSanitizer(),
            detector=self.detector,
            changes=self.changes,
            unit_of_work=lambda: FakeUnitOfWork(self.store),
            clock=self.clock,
        )
        self.queue.verifier = self.verifier  # a verifier that answers in time, unless a test unsets it
        self.completion = UploadCompletion(
            policy=policy,
            storage=self.storage,
            queue=self.queue,
            changes=self.changes,
            unit_of_work=lambda: FakeUnitOfWork(self.store),
            clock=self.clock,
        )

    def issue(
        self, data: bytes = IMAGE, *, user_id: str = "alice", upload_id: str = "u1", put: bool = True
    ) -> Upload:
        upload = an_upload(user_id, upload_id, now=self.clock.now(), content_length=len(data))
        self.store.uploads[upload_id] = upload
        if put:
            self.storage.objects[upload.object_key] = FakeObject(data, "image/jpeg")
        return upload

    def events(self) -> list[tuple[str, str | None]]:
        return [(event.event, event.reason) for event in self.store.audit]


@pytest.fixture
def world() -> World:
    return World()


def test_a_real_selfie_is_sanitised_stored_recorded_and_the_original_deleted(world):
    upload = world.issue()

    verified = world.completion.complete("alice", "u1", upload.object_key)

    assert verified.status is UploadStatus.VERIFIED
    assert verified.stored is not None
    assert verified.stored.object_key == "sources/alice/u1.jpg"
    assert verified.stored.checksum_sha256 == sha256_base64(b"CLEAN" + IMAGE[3:])
    assert (verified.stored.width, verified.stored.height) == (1536, 2048)
    assert verified.source_expires_at == world.clock.now() + timedelta(seconds=86400)
    assert set(world.storage.objects) == {"sources/alice/u1.jpg"}
    assert world.store.uploads["u1"] == verified
    assert world.events() == [("upload.validated", None)]


def test_completing_twice_gives_the_same_answer_and_does_no_work_twice(world):
    upload = world.issue()
    first = world.completion.complete("alice", "u1", upload.object_key)

    second = world.completion.complete("alice", "u1", upload.object_key)

    assert second == first
    assert world.storage.reads == 1
    assert world.detector.calls == 1


def test_another_users_upload_is_not_found_and_untouched(world):
    upload = world.issue(user_id="alice")

    with pytest.raises(NotFound) as refused:
        world.completion.complete("mallory", "u1", upload.object_key)

    assert refused.value.code == "upload_not_found"
    assert upload.object_key in world.storage.objects
    assert world.store.uploads["u1"].status is UploadStatus.ISSUED
    assert world.events() == [("upload.complete_refused", "upload_not_found")]


def test_an_unknown_upload_is_not_found(world):
    with pytest.raises(NotFound):
        world.completion.complete("alice", "nope", "uploads/alice/nope")


@pytest.mark.parametrize("key", ["uploads/bob/u1", "uploads/alice/other", "sources/alice/u1.jpg", "../u1"])
def test_a_key_that_was_not_issued_to_the_caller_is_forbidden_and_nothing_is_touched(world, key):
    upload = world.issue()
    world.storage.objects[key] = FakeObject(IMAGE, "image/jpeg")

    with pytest.raises(Forbidden) as refused:
        world.completion.complete("alice", "u1", key)

    assert refused.value.code == "key_not_owned"
    assert {upload.object_key, key} <= set(world.storage.objects)
    assert world.store.uploads["u1"].status is UploadStatus.ISSUED
    assert world.events() == [("upload.complete_refused", "key_not_owned")]


def test_nothing_uploaded_yet_is_a_retryable_conflict_that_a_later_complete_can_pass(world):
    upload = world.issue(put=False)

    with pytest.raises(Conflict) as refused:
        world.completion.complete("alice", "u1", upload.object_key)
    assert (refused.value.code, refused.value.retryable) == ("upload_missing", True)
    assert world.store.uploads["u1"].status is UploadStatus.ISSUED

    world.storage.objects[upload.object_key] = FakeObject(IMAGE, "image/jpeg")
    assert world.completion.complete("alice", "u1", upload.object_key).status is UploadStatus.VERIFIED


def test_completing_long_after_the_url_expired_is_gone_and_the_object_deleted(world):
    upload = world.issue()
    world.clock.advance(300 + 601)

    with pytest.raises(Gone) as refused:
        world.completion.complete("alice", "u1", upload.object_key)

    assert (refused.value.code, refused.value.retryable) == ("upload_expired", True)
    assert world.storage.objects == {}
    assert world.store.uploads["u1"].status is UploadStatus.EXPIRED
    assert [(key, message) for _, key, message in world.changes.announced] == [("u1", "settled")]
    with pytest.raises(Gone):
        world.completion.complete("alice", "u1", upload.object_key)


def test_completing_shortly_after_the_url_expired_still_works(world):
    upload = world.issue()
    world.clock.advance(300 + 60)

    assert world.completion.complete("alice", "u1", upload.object_key).status is UploadStatus.VERIFIED


@pytest.mark.parametrize(
    ("stored", "code"),
    [
        (FakeObject(IMAGE + b"!", "image/jpeg"), "too_large"),
        (FakeObject(IMAGE[:-1], "image/jpeg"), "not_an_image"),
        (FakeObject(IMAGE, "image/png"), "content_type_mismatch"),
        (FakeObject(b"<svg><script>alert(1)</script></svg>".ljust(len(IMAGE)), "image/jpeg"), "not_an_image"),
        (FakeObject(b"BAD:image_too_large;".ljust(len(IMAGE)), "image/jpeg"), "image_too_large"),
    ],
)
def test_bad_objects_are_deleted_recorded_and_refused_with_their_reason(world, stored, code):
    upload = world.issue(put=False)
    world.storage.objects[upload.object_key] = stored

    with pytest.raises(ContentRejected) as refused:
        world.completion.complete("alice", "u1", upload.object_key)

    assert refused.value.code == code
    assert world.storage.objects == {}
    assert world.store.uploads["u1"].status is UploadStatus.REJECTED
    assert world.store.uploads["u1"].rejection_reason == code
    assert world.events() == [("upload.rejected", code)]
    assert world.store.audit[0].details["declared_size"] == len(IMAGE)


@pytest.mark.parametrize(
    ("faces", "code"),
    [
        ([], "no_face_detected"),
        ([DetectedFace(10, 10, 150, 150, 0.80)], "no_face_detected"),
        ([DetectedFace(10, 10, 150, 150, 0.99), DetectedFace(200, 10, 140, 140, 0.98)], "multiple_faces"),
        ([DetectedFace(10, 10, 20, 20, 0.99)], "face_too_small"),
    ],
)
def test_the_face_gate_refuses_with_a_clear_reason(world, faces, code):
    upload = world.issue()
    world.detector.faces = faces

    with pytest.raises(ContentRejected) as refused:
        world.completion.complete("alice", "u1", upload.object_key)

    assert refused.value.code == code
    assert world.storage.objects == {}
    with pytest.raises(ContentRejected) as again:
        world.completion.complete("alice", "u1", upload.object_key)
    assert again.value.code == code
    assert world.detector.calls == 1


def test_a_small_background_face_beside_the_selfie_does_not_count(world):
    upload = world.issue()
    world.detector.faces = [DetectedFace(100, 100, 150, 150, 0.99), DetectedFace(5, 300, 30, 30, 0.97)]

    assert world.completion.complete("alice", "u1", upload.object_key).status is UploadStatus.VERIFIED


def test_a_storage_outage_releases_the_upload_so_a_retry_can_verify_it(world):
    upload = world.issue()
    world.storage.down = True

    with pytest.raises(StorageUnavailable) as outage:
        world.completion.complete("alice", "u1", upload.object_key)
    assert outage.value.code == "storage_unavailable"
    assert world.store.uploads["u1"].status is UploadStatus.ISSUED

    world.storage.down = False
    assert world.completion.complete("alice", "u1", upload.object_key).status is UploadStatus.VERIFIED


def test_a_complete_during_a_verification_waits_for_it_and_hands_nothing_off_again(world):
    upload = world.issue()
    world.store.uploads["u1"] = Upload(
        **{**upload.__dict__, "status": UploadStatus.VERIFYING, "updated_at": world.clock.now()}
    )

    answer = world.completion.complete("alice", "u1", upload.object_key)

    assert answer.status is UploadStatus.VERIFYING  # no verdict within the wait: 202
    assert world.queue.queued == []
    assert world.changes.waited == [8.0]
    assert world.detector.calls == 0


def test_without_a_verifier_the_upload_is_handed_off_once_and_answered_later(world):
    upload = world.issue()
    world.queue.verifier = None  # the verifier is down, or slower than the wait

    for _ in range(3):
        assert world.completion.complete("alice", "u1", upload.object_key).status is UploadStatus.VERIFYING
    assert world.queue.queued == ["u1"]

    assert world.verifier.verify("u1") == "settled"  # the verifier comes up and takes the job
    assert world.completion.complete("alice", "u1", upload.object_key).status is UploadStatus.VERIFIED
    assert [e.event for e in world.store.audit].count("upload.validated") == 1


def test_a_stalled_verification_is_queued_again_and_refused_after_its_attempts(world):
    upload = world.issue()
    world.queue.verifier = None
    world.completion.complete("alice", "u1", upload.object_key)
    for attempt in (1, 2):  # each start is counted; a verifier that dies leaves the claim to go stale
        with FakeUnitOfWork(world.store) as uow:
            assert uow.uploads.begin_verification("u1", world.clock.now()) is not None
            uow.commit()
        world.clock.advance(121)
        assert world.completion.requeue_stalled() == 1
        assert world.queue.queued == ["u1"] * (attempt + 1)

    assert world.verifier.verify("u1") == "settled"

    assert world.store.uploads["u1"].status is UploadStatus.REJECTED
    assert world.store.uploads["u1"].rejection_reason == "image_too_large"
    assert upload.object_key not in world.storage.objects
    assert world.detector.calls == 0


def test_a_verification_that_stalled_past_its_lease_is_taken_over(world):
    upload = world.issue()
    world.store.uploads["u1"] = Upload(
        **{**upload.__dict__, "status": UploadStatus.VERIFYING, "updated_at": world.clock.now()}
    )
    world.clock.advance(121)

    assert world.completion.complete("alice", "u1", upload.object_key).status is UploadStatus.VERIFIED
