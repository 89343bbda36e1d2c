"""Try-on and result repositories on SQLite and on the running Postgres (same fixtures as the upload ones)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import peewee
import pytest

from adapters.peewee_db import (
    PeeweeResultRepository,
    PeeweeTryOnRepository,
    PeeweeUnitOfWork,
    PeeweeUploadRepository,
)
from domain.model import Submission, TryOnError, TryOnResult, TryOnStatus, UploadStatus
from tests.builders.databases import T0, a_tryon, an_intent

pytestmark = pytest.mark.integration


def a_result(position: int = 0, **changes: object) -> TryOnResult:
    result = TryOnResult(
        result_id=f"t1-{position}",
        tryon_id="t1",
        user_id="user_1",
        position=position,
        object_key=f"processed/user_1/t1/{position}.jpg",
        content_type="image/jpeg",
        size=1234,
        width=1024,
        height=1024,
        created_at=T0,
    )
    return replace(result, **changes)  # type: ignore[arg-type]


def test_a_running_tryon_with_its_submission_and_error_reads_back_identically(db: peewee.Database) -> None:
    repository = PeeweeTryOnRepository(db)
    repository.add(a_tryon(idempotency_key="k1", request_fingerprint="f" * 64))
    running = a_tryon(
        idempotency_key="k1",
        request_fingerprint="f" * 64,
        status=TryOnStatus.FAILED,
        attempts=3,
        submission=Submission("req-1", "https://q/s", "https://q/r", "https://q/c"),
        submitted_at=T0 + timedelta(seconds=1),
        completed_at=T0 + timedelta(seconds=9),
        error=TryOnError("upstream_unavailable", "fal was busy", True),
        next_action_at=None,
    )

    assert repository.update(running) is True

    assert repository.get("t1") == replace(running, version=1)
    assert repository.by_idempotency_key("user_1", "k1") == replace(running, version=1)
    assert repository.update(running) is False  # written from a stale read
    assert repository.by_idempotency_key("user_2", "k1") is None


def test_one_idempotency_key_per_user_is_enforced_by_the_database(db: peewee.Database) -> None:
    repository = PeeweeTryOnRepository(db)
    repository.add(a_tryon("t1", idempotency_key="k1"))
    repository.add(a_tryon("t2", user_id="user_2", idempotency_key="k1"))

    with pytest.raises(peewee.IntegrityError):
        repository.add(a_tryon("t3", idempotency_key="k1"))


def test_a_claim_is_exclusive_until_saved_or_its_lease_runs_out(db: peewee.Database) -> None:
    repository = PeeweeTryOnRepository(db)
    repository.add(a_tryon())

    first = repository.claim("t1", T0, T0 + timedelta(seconds=60))
    assert first is not None and first.version == 1
    assert repository.claim("t1", T0 + timedelta(seconds=5), T0 + timedelta(seconds=65)) is None
    second = repository.claim("t1", T0 + timedelta(seconds=61), T0 + timedelta(seconds=121))
    assert second is not None and second.version == 2
    assert repository.update(first) is False  # the lease ran out and another step took it over
    assert repository.update(second) is True
    assert repository.claim("t1", T0 + timedelta(seconds=62), T0 + timedelta(seconds=122)) is not None


def test_settled_tryons_are_never_claimed_or_due(db: peewee.Database) -> None:
    repository = PeeweeTryOnRepository(db)
    repository.add(a_tryon("t1", status=TryOnStatus.SUCCEEDED))
    repository.add(a_tryon("t2", status=TryOnStatus.FAILED))
    repository.add(a_tryon("t3"))
    repository.add(a_tryon("t4", next_action_at=T0 + timedelta(hours=1)))
    later = T0 + timedelta(minutes=5)

    assert repository.claim("t1", later, later) is None
    assert repository.due(later, limit=10) == ["t3"]
    repository.claim("t3", later, later + timedelta(seconds=60))
    assert repository.due(later, limit=10) == []
    assert repository.unsettled_for_upload("up_1") == 2
    repository.add(a_tryon("t5", user_id="user_2", status=TryOnStatus.RUNNING))
    assert repository.unsettled_ids_for_user("user_1") == ["t3", "t4"]  # what an erasure wakes


def test_results_are_added_once_listed_in_order_favourited_and_deleted(db: peewee.Database) -> None:
    with PeeweeUnitOfWork(db) as uow:
        uow.uploads.add(an_intent())
        uow.tryons.add(a_tryon())
        uow.results.add_if_absent(a_result(1))
        uow.results.add_if_absent(a_result(0))
        uow.results.add_if_absent(a_result(0, size=999))
        uow.commit()
    results = PeeweeResultRepository(db)

    assert results.for_tryon("t1") == [a_result(0), a_result(1)]
    assert results.set_favorite("t1-1", True, T0) is True
    assert results.set_favorite("t1-1", True, T0) is False  # already a favourite: nothing changes
    assert [r.favorite for r in results.for_upload("up_1")] == [False, True]
    assert results.claim_sweep("t1-1", T0, T0 + timedelta(minutes=5)) is False  # favourites are kept
    assert results.claim_sweep("t1-0", T0, T0 + timedelta(minutes=5)) is True
    assert results.set_favorite("t1-0", True, T0) is False  # being deleted: cannot be favourited
    later = T0 + timedelta(minutes=1)
    assert results.claim_for_deletion("t1-0", later + timedelta(minutes=5)) is True  # taken over at once
    assert results.claim_for_deletion("t1-1", later + timedelta(minutes=5)) is False  # a favourite stays
    assert len(results.for_user("user_1")) == 2
    assert results.delete("t1-0") is True
    assert results.delete("t1-0") is False  # already gone
    assert results.get("t1-0") is None
    assert PeeweeTryOnRepository(db).delete_for_user("user_1") == 1


def test_the_sweep_finds_what_must_go_claims_it_once_and_records_the_purge(db: peewee.Database) -> None:
    uploads = PeeweeUploadRepository(db)
    later = T0 + timedelta(hours=2)
    uploads.add(an_intent("never"))
    uploads.add(an_intent("fresh", url_expires_at=later + timedelta(hours=1)))
    uploads.add(
        an_intent(
            "verified", status=UploadStatus.VERIFIED, updated_at=T0, source_expires_at=T0 + timedelta(hours=1)
        )
    )

    assert [u.upload_id for u in uploads.to_purge(later, 10)] == ["never", "verified"]
    assert uploads.overdue_sources(later, 10) == ["verified"]
    assert uploads.claim_sweep("never", later, later + timedelta(minutes=5)) is True
    assert uploads.claim_sweep("never", later, later + timedelta(minutes=5)) is False
    never = uploads.get("never")
    assert never is not None
    assert uploads.mark_purged(never, later, UploadStatus.EXPIRED) is True
    assert uploads.mark_purged(never, later, UploadStatus.EXPIRED) is False  # stale version
    assert [u.upload_id for u in uploads.to_purge(later, 10)] == ["verified"]
    assert uploads.get("never").status is UploadStatus.EXPIRED  # type: ignore[union-attr]
    assert uploads.claim_sweep("never", later, later) is True


def test_only_old_non_favourite_results_are_expired(db: peewee.Database) -> None:
    results = PeeweeResultRepository(db)
    results.add_if_absent(a_result(0))
    results.add_if_absent(a_result(1, favorite=True))
    results.add_if_absent(a_result(2, created_at=T0 + timedelta(days=40)))

    assert [r.result_id for r in results.expired(T0 + timedelta(days=31), 10)] == ["t1-0"]
    assert results.claim_sweep("t1-0", T0, T0 + timedelta(minutes=5)) is True
    assert results.claim_sweep("t1-0", T0, T0 + timedelta(minutes=5)) is False
