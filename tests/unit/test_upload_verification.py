from __future__ import annotations

from datetime import timedelta

import pytest

from domain.errors import Conflict, ContentRejected, Forbidden, Gone, NotFound, StorageUnavailable
from domain.faces import FacePolicy
from domain.model import DetectedFace, Upload, UploadStatus
from domain.verification import UploadVerifier, VerificationPolicy, sha256_base64
from tests.fakes import (
    FakeFaceDetector,
    FakeImageSanitizer,
    FakeObject,
    FakeStore,
    FakeUnitOfWork,
    FakeUploadStorage,
    FixedClock,
)

IMAGE = b"IMG" + b"x" * 997


class World:
    def __init__(self) -> None:
        self.store = FakeStore()
        self.storage = FakeUploadStorage()
        self.detector = FakeFaceDetector()
        self.clock = FixedClock()
        self.verifier = UploadVerifier(
            policy=VerificationPolicy(max_upload_bytes=16 * 1024 * 1024, unused_upload_ttl_seconds=86400),
            faces=FacePolicy(),
            storage=self.storage,
            sanitizer=FakeImageSanitizer(),
            detector=self.detector,
            unit_of_work=lambda: FakeUnitOfWork(self.store),
            clock=self.clock,
        )

    def issue(
        self, data: bytes = IMAGE, *, user_id: str = "alice", upload_id: str = "u1", put: bool = True
    ) -> Upload:
        upload = Upload(
            upload_id=upload_id,
            user_id=user_id,
            object_key=f"uploads/{user_id}/{upload_id}",
            content_type="image/jpeg",
            content_length=len(data),
            checksum_sha256=None,
            created_at=self.clock.now(),
            expires_at=self.clock.now() + timedelta(seconds=300),
        )
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

    verified = world.verifier.complete("alice", "u1", upload.object_key)

    assert verified.status is UploadStatus.VERIFIED
    assert verified.stored is not None
    assert verified.stored.object_key == "sources/alice/u1.jpg"
    assert verified.stored.checksum_sha256 == sha256_base64(b"CLEAN" + IMAGE[3:])
    assert (verified.stored.width, verified.stored.height) == (1536, 2048)
    assert verified.expires_at == world.clock.now() + timedelta(seconds=86400)
    assert set(world.storage.objects) == {"sources/alice/u1.jpg"}
    assert world.store.uploads["u1"] == verified
    assert world.events() == [("upload.validated", None)]


def test_completing_twice_gives_the_same_answer_and_does_no_work_twice(world):
    upload = world.issue()
    first = world.verifier.complete("alice", "u1", upload.object_key)

    second = world.verifier.complete("alice", "u1", upload.object_key)

    assert second == first
    assert world.storage.reads == 1
    assert world.detector.calls == 1


def test_another_users_upload_is_not_found_and_untouched(world):
    upload = world.issue(user_id="alice")

    with pytest.raises(NotFound) as refused:
        world.verifier.complete("mallory", "u1", upload.object_key)

    assert refused.value.code == "upload_not_found"
    assert upload.object_key in world.storage.objects
    assert world.store.uploads["u1"].status is UploadStatus.ISSUED
    assert world.events() == [("upload.complete_refused", "upload_not_found")]


def test_an_unknown_upload_is_not_found(world):
    with pytest.raises(NotFound):
        world.verifier.complete("alice", "nope", "uploads/alice/nope")


@pytest.mark.parametrize("key", ["uploads/bob/u1", "uploads/alice/other", "sources/alice/u1.jpg", "../u1"])
def test_a_key_that_was_not_issued_to_the_caller_is_forbidden_and_nothing_is_touched(world, key):
    upload = world.issue()
    world.storage.objects[key] = FakeObject(IMAGE, "image/jpeg")

    with pytest.raises(Forbidden) as refused:
        world.verifier.complete("alice", "u1", key)

    assert refused.value.code == "key_not_owned"
    assert {upload.object_key, key} <= set(world.storage.objects)
    assert world.store.uploads["u1"].status is UploadStatus.ISSUED
    assert world.events() == [("upload.complete_refused", "key_not_owned")]


def test_nothing_uploaded_yet_is_a_retryable_conflict_that_a_later_complete_can_pass(world):
    upload = world.issue(put=False)

    with pytest.raises(Conflict) as refused:
        world.verifier.complete("alice", "u1", upload.object_key)
    assert (refused.value.code, refused.value.retryable) == ("upload_missing", True)
    assert world.store.uploads["u1"].status is UploadStatus.ISSUED

    world.storage.objects[upload.object_key] = FakeObject(IMAGE, "image/jpeg")
    assert world.verifier.complete("alice", "u1", upload.object_key).status is UploadStatus.VERIFIED


def test_completing_long_after_the_url_expired_is_gone_and_the_object_deleted(world):
    upload = world.issue()
    world.clock.advance(300 + 601)

    with pytest.raises(Gone) as refused:
        world.verifier.complete("alice", "u1", upload.object_key)

    assert (refused.value.code, refused.value.retryable) == ("upload_expired", True)
    assert world.storage.objects == {}
    assert world.store.uploads["u1"].status is UploadStatus.EXPIRED
    with pytest.raises(Gone):
        world.verifier.complete("alice", "u1", upload.object_key)


def test_completing_shortly_after_the_url_expired_still_works(world):
    upload = world.issue()
    world.clock.advance(300 + 60)

    assert world.verifier.complete("alice", "u1", upload.object_key).status is UploadStatus.VERIFIED


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
        world.verifier.complete("alice", "u1", upload.object_key)

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
        world.verifier.complete("alice", "u1", upload.object_key)

    assert refused.value.code == code
    assert world.storage.objects == {}
    with pytest.raises(ContentRejected) as again:
        world.verifier.complete("alice", "u1", upload.object_key)
    assert again.value.code == code
    assert world.detector.calls == 1


def test_a_small_background_face_beside_the_selfie_does_not_count(world):
    upload = world.issue()
    world.detector.faces = [DetectedFace(100, 100, 150, 150, 0.99), DetectedFace(5, 300, 30, 30, 0.97)]

    assert world.verifier.complete("alice", "u1", upload.object_key).status is UploadStatus.VERIFIED


def test_a_storage_outage_releases_the_upload_so_a_retry_can_verify_it(world):
    upload = world.issue()
    world.storage.down = True

    with pytest.raises(StorageUnavailable):
        world.verifier.complete("alice", "u1", upload.object_key)
    assert world.store.uploads["u1"].status is UploadStatus.ISSUED

    world.storage.down = False
    assert world.verifier.complete("alice", "u1", upload.object_key).status is UploadStatus.VERIFIED


def test_a_concurrent_verification_answers_retry_later(world):
    upload = world.issue()
    world.store.uploads["u1"] = Upload(
        **{**upload.__dict__, "status": UploadStatus.VERIFYING, "updated_at": world.clock.now()}
    )

    with pytest.raises(Conflict) as refused:
        world.verifier.complete("alice", "u1", upload.object_key)

    assert refused.value.retryable
    assert world.detector.calls == 0


def test_a_verification_that_stalled_past_its_lease_is_taken_over(world):
    upload = world.issue()
    world.store.uploads["u1"] = Upload(
        **{**upload.__dict__, "status": UploadStatus.VERIFYING, "updated_at": world.clock.now()}
    )
    world.clock.advance(121)

    assert world.verifier.complete("alice", "u1", upload.object_key).status is UploadStatus.VERIFIED
