from __future__ import annotations

import base64
import hashlib

import pytest

from domain.errors import InvalidRequest, PersistenceUnavailable, Unauthenticated
from domain.model import HARD_MAX_UPLOAD_BYTES, UploadRequest, UploadStatus, validated_user_id
from domain.uploads import UploadIssuer, UploadPolicy
from tests.fakes import FakeStore, FakeUnitOfWork, FakeUploadUrlSigner, FixedClock, SequentialIds

CHECKSUM = base64.b64encode(hashlib.sha256(b"selfie").digest()).decode()


def make_issuer(store: FakeStore, signer: FakeUploadUrlSigner, **policy: int) -> UploadIssuer:
    return UploadIssuer(
        policy=UploadPolicy(**policy),
        signer=signer,
        unit_of_work=lambda: FakeUnitOfWork(store),
        clock=FixedClock(),
        ids=SequentialIds(),
    )


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def signer() -> FakeUploadUrlSigner:
    return FakeUploadUrlSigner()


def test_an_issued_upload_is_scoped_to_the_callers_prefix_and_expires_after_the_ttl(store, signer):
    issued = make_issuer(store, signer, url_ttl_seconds=120).issue(
        "user1", UploadRequest("image/jpeg", 2481733, CHECKSUM)
    )

    assert issued.intent.object_key == f"uploads/user1/{issued.intent.upload_id}"
    assert (issued.intent.url_expires_at - issued.intent.created_at).total_seconds() == 120
    assert signer.signed == [(issued.intent.object_key, UploadRequest("image/jpeg", 2481733, CHECKSUM), 120)]


def test_the_intent_and_its_audit_event_are_committed_together(store, signer):
    issued = make_issuer(store, signer).issue("user1", UploadRequest("image/png", 10))

    assert store.uploads[issued.intent.upload_id].status is UploadStatus.ISSUED
    assert store.uploads[issued.intent.upload_id].user_id == "user1"
    [event] = store.audit
    assert (event.event, event.actor_id, event.subject_id, event.outcome) == (
        "upload.issued",
        "user1",
        issued.intent.upload_id,
        "success",
    )
    assert event.details == {
        "content_type": "image/png",
        "content_length": 10,
        "checksum_supplied": False,
        "ttl_seconds": 300,
    }


def test_every_issue_gets_a_fresh_upload_id(store, signer):
    issuer = make_issuer(store, signer)
    first = issuer.issue("user1", UploadRequest("image/png", 10))
    second = issuer.issue("user1", UploadRequest("image/png", 10))

    assert first.intent.upload_id != second.intent.upload_id
    assert len(store.uploads) == 2


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (UploadRequest("image/svg+xml", 100), "unsupported_content_type"),
        (UploadRequest("text/html", 100), "unsupported_content_type"),
        (UploadRequest("image/gif", 100), "unsupported_content_type"),
        (UploadRequest("IMAGE/JPEG", 100), "unsupported_content_type"),
        (UploadRequest("image/jpeg", 0), "invalid_content_length"),
        (UploadRequest("image/jpeg", -5), "invalid_content_length"),
        (UploadRequest("image/jpeg", HARD_MAX_UPLOAD_BYTES + 1), "too_large"),
        (UploadRequest("image/jpeg", 100, "not base64!"), "invalid_checksum"),
        (UploadRequest("image/jpeg", 100, base64.b64encode(b"short").decode()), "invalid_checksum"),
    ],
)
def test_refused_requests_change_nothing_and_sign_nothing(store, signer, request_, code):
    with pytest.raises(InvalidRequest) as refused:
        make_issuer(store, signer).issue("user1", request_)

    assert refused.value.code == code
    assert signer.signed == []
    assert store.uploads == {}
    assert store.audit == []


def test_a_configured_cap_below_16_mib_is_enforced(store, signer):
    issuer = make_issuer(store, signer, max_upload_bytes=1000)

    issuer.issue("user1", UploadRequest("image/webp", 1000))
    with pytest.raises(InvalidRequest, match="1000-byte limit"):
        issuer.issue("user1", UploadRequest("image/webp", 1001))


def test_a_database_failure_leaves_nothing_behind_and_is_retryable(store, signer):
    store.fail_commit = True

    with pytest.raises(PersistenceUnavailable) as failure:
        make_issuer(store, signer).issue("user1", UploadRequest("image/heic", 10))

    assert failure.value.retryable
    assert store.uploads == {}
    assert store.audit == []


@pytest.mark.parametrize(
    "limits", [{"max_upload_bytes": HARD_MAX_UPLOAD_BYTES + 1}, {"url_ttl_seconds": 301}]
)
def test_a_policy_beyond_the_hard_limits_cannot_be_built(limits):
    with pytest.raises(ValueError, match="must be"):
        UploadPolicy(**limits)


@pytest.mark.parametrize("subject", ["", "../other", "a/b", "user.name", None, 42, "x" * 129])
def test_a_subject_that_could_escape_the_prefix_is_not_a_user_id(subject):
    with pytest.raises(Unauthenticated):
        validated_user_id(subject)


def test_better_auth_style_ids_are_user_ids():
    assert validated_user_id("GZ3x1bq0mTjYv7rD8kP2wQ9sLcHnA4Ue") == "GZ3x1bq0mTjYv7rD8kP2wQ9sLcHnA4Ue"
