from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from domain.model import Upload, UploadStatus
from domain.ports import Topic
from domain.sweeper import Sweeper, SweepPolicy
from tests.builders.worlds import ORDER, DataWorld
from tests.fakes import FakeObject, FakeUnitOfWork


class SweepWorld(DataWorld):
    def __init__(self) -> None:
        super().__init__()
        self.sweeper = self.new_sweeper()

    def new_sweeper(self, **policy: int) -> Sweeper:
        return Sweeper(
            policy=SweepPolicy(**{"processed_retention_days": 30, "settle_margin_seconds": 900, **policy}),
            uploads=self.uploads,
            results=self.results,
            expiry=self.expiry,
            unit_of_work=lambda: FakeUnitOfWork(self.store),
            clock=self.clock,
        )

    def intent(self, upload_id: str, status: UploadStatus, put: bool = True) -> Upload:
        upload = self.verified_upload("alice", upload_id, status=status, stored=None)
        upload = replace(
            upload, url_expires_at=self.clock.now() + timedelta(seconds=300), source_expires_at=None
        )
        self.store.uploads[upload_id] = upload
        if put:
            self.uploads.objects[upload.object_key] = FakeObject(b"raw", "image/jpeg")
        return upload


@pytest.fixture
def world() -> SweepWorld:
    return SweepWorld()


def test_unfinished_and_rejected_uploads_lose_their_objects_once_the_url_is_long_dead(world):
    world.intent("never", UploadStatus.ISSUED)
    world.intent("rejected", UploadStatus.REJECTED)
    world.clock.advance(300 + 60)
    assert world.sweeper.sweep().objects_purged == 0

    world.clock.advance(900)
    counts = world.sweeper.sweep()

    assert (counts.objects_purged, counts.intents_expired) == (2, 1)
    assert world.uploads.objects == {}
    assert world.store.uploads["never"].status is UploadStatus.EXPIRED
    assert world.store.uploads["rejected"].status is UploadStatus.REJECTED
    assert world.sweeper.sweep().objects_purged == 0


def test_a_verified_selfie_past_its_deadline_goes_unless_a_result_is_a_favourite(world):
    kept = world.tried_on("alice", "up1")
    world.data.favorite("alice", kept.result_id, True)
    world.tried_on("bob", "up2")
    world.clock.advance(3601)

    counts = world.sweeper.sweep()

    assert counts.sources_deleted == 1
    assert world.store.uploads["up2"].status is UploadStatus.DELETED
    assert world.store.uploads["up1"].status is UploadStatus.VERIFIED
    assert set(world.uploads.objects) == {"uploads/alice/up1.jpg"}


def test_selfies_kept_by_favourites_do_not_hold_back_the_ones_due_behind_them(world):
    """More kept selfies than a batch: the sweep used to list the same kept ones every pass (declining each
    after a claim) and never reach the rest. Their expiry, run at their deadline, marked them kept."""
    for upload_id in ("kept1", "kept2"):
        world.data.favorite("alice", world.tried_on("alice", upload_id).result_id, True)
    world.tried_on("bob", "due")
    world.clock.advance(3601)
    assert [world.expiry.expire(u) for u in ("kept1", "kept2")] == [False, False]
    world.sweeper = world.new_sweeper(batch_size=2)

    counts = world.sweeper.sweep()

    assert (counts.sources_deleted, counts.skipped) == (1, 0)
    assert world.store.uploads["due"].status is UploadStatus.DELETED
    assert {world.store.uploads[u].status for u in ("kept1", "kept2")} == {UploadStatus.VERIFIED}


def test_a_selfie_a_favourite_keeps_is_marked_by_the_first_sweep_that_lists_it_and_never_listed_again(world):
    """Its scheduled expiry never ran (the job was lost): the sweep lists it once, and its expiry marks it."""
    for upload_id in ("kept1", "kept2"):
        world.data.favorite("alice", world.tried_on("alice", upload_id).result_id, True)
    world.tried_on("bob", "due")
    world.clock.advance(3601)
    world.sweeper = world.new_sweeper(batch_size=2)
    overdue = world.store.uploads  # committed rows, as the sweep reads them

    with FakeUnitOfWork(world.store) as uow:
        assert uow.uploads.overdue_sources(world.clock.now(), 10) == ["kept1", "kept2", "due"]
    first = world.sweeper.sweep()
    second = world.sweeper.sweep()

    assert (first.sources_deleted, second.sources_deleted) == (0, 1)
    assert overdue["due"].status is UploadStatus.DELETED
    assert [(overdue[u].status, overdue[u].source_kept) for u in ("kept1", "kept2")] == [
        (UploadStatus.VERIFIED, True),
        (UploadStatus.VERIFIED, True),
    ]
    with FakeUnitOfWork(world.store) as uow:
        assert uow.uploads.overdue_sources(world.clock.now() + timedelta(days=365), 10) == []
    assert world.sweeper.sweep().sources_deleted == 0


def test_a_selfie_a_try_on_keeps_is_not_marked_and_not_listed(world):
    """Settling the try-on restarts its retention, but in a unit of work of its own: a mark could outlive a
    worker dying in between, so a try-on's hold is left to the query, never marked."""
    world.tried_on("alice", "up1")
    world.desk.order("alice", ORDER)
    world.clock.advance(3601)
    world.store.uploads["up1"] = replace(world.store.uploads["up1"], source_expires_at=world.clock.now())
    world.clock.advance(1)

    assert world.expiry.expire("up1") is False
    with FakeUnitOfWork(world.store) as uow:
        assert uow.uploads.overdue_sources(world.clock.now(), 10) == []
        assert uow.uploads.keep_if_held("up1", world.clock.now()) is False
    assert world.store.uploads["up1"].source_kept is False


def stale_mark(world: SweepWorld, upload_id: str) -> None:
    """Migration 9's backfill marked the selfie kept while the old code still served: its unfavourite moved
    the deadline but, knowing no ``source_kept``, left the mark, and that expiry's job was then lost."""
    result = world.tried_on("alice", upload_id)
    world.data.favorite("alice", result.result_id, True)
    upload = world.store.uploads[upload_id]
    world.store.uploads[upload_id] = replace(upload, source_kept=True)  # the backfill: never confirmed
    world.store.results[result.result_id] = replace(world.store.results[result.result_id], favorite=False)
    world.store.uploads[upload_id] = replace(
        world.store.uploads[upload_id], source_expires_at=world.clock.now() + timedelta(hours=1)
    )


def test_a_kept_mark_no_favourite_justifies_is_cleared_and_the_selfie_expires_in_the_same_pass(world):
    """Before, the sweep never listed the selfie again: kept forever."""
    stale_mark(world, "up1")
    world.clock.advance(3601)

    counts = world.sweeper.sweep()

    assert (counts.kept_marks_cleared, counts.sources_deleted) == (1, 1)
    assert world.store.uploads["up1"].status is UploadStatus.DELETED
    assert world.uploads.objects == {}
    assert "cleared 1 kept mark(s)" in counts.summary()


def test_a_justified_mark_is_confirmed_at_most_once_per_recheck_period_and_stays(world):
    kept = world.tried_on("alice", "up1")
    world.data.favorite("alice", kept.result_id, True)
    world.clock.advance(3601)
    assert world.expiry.expire("up1") is False
    marked_at = world.clock.now()
    assert world.store.kept_at == {"up1": marked_at}

    world.clock.advance(3600)
    assert world.sweeper.sweep().kept_marks_cleared == 0
    assert world.store.kept_at == {"up1": marked_at}  # confirmed within the re-check period: not looked at

    world.clock.advance(SweepPolicy().kept_recheck_seconds)
    counts = world.sweeper.sweep()

    assert (counts.kept_marks_cleared, counts.sources_deleted) == (0, 0)
    assert world.store.kept_at == {"up1": world.clock.now()}
    assert (world.store.uploads["up1"].status, world.store.uploads["up1"].source_kept) == (
        UploadStatus.VERIFIED,
        True,
    )


def test_a_pass_rechecks_at_most_a_batch_of_kept_marks(world):
    for upload_id in ("up1", "up2", "up3"):
        stale_mark(world, upload_id)
    world.clock.advance(3601)
    world.sweeper = world.new_sweeper(batch_size=2)

    first = world.sweeper.sweep()
    second = world.sweeper.sweep()

    assert (first.kept_marks_cleared, second.kept_marks_cleared) == (2, 1)
    assert (first.sources_deleted, second.sources_deleted) == (2, 1)
    assert {u.status for u in world.store.uploads.values()} == {UploadStatus.DELETED}


def test_results_past_retention_go_and_favourites_stay(world):
    kept = world.tried_on("alice", "up1")
    world.data.favorite("alice", kept.result_id, True)
    dropped = world.tried_on("bob", "up2")
    world.clock.advance(30 * 86400 + 1)

    counts = world.sweeper.sweep()

    assert counts.results_deleted == 1
    assert set(world.store.results) == {kept.result_id}
    assert dropped.object_key not in world.results.objects
    assert [e.reason for e in world.store.audit if e.event == "result.deleted"] == ["retention"]


def test_two_sweeps_at_once_delete_each_item_once(world):
    world.intent("never", UploadStatus.ISSUED)
    world.clock.advance(300 + 901)
    first, second = world.sweeper, world.new_sweeper()
    world.store.sweep_leases["upload:never"] = world.clock.now() + timedelta(seconds=60)

    assert second.sweep().skipped == 1
    assert "uploads/alice/never" in world.uploads.objects
    world.clock.advance(61)
    assert first.sweep().objects_purged == 1
    assert [e.event for e in world.store.audit].count("upload.expired") == 1


def test_a_sweep_that_died_after_deleting_is_finished_by_the_next(world):
    world.intent("never", UploadStatus.ISSUED)
    world.clock.advance(300 + 901)
    world.store.sweep_leases["upload:never"] = world.clock.now() + timedelta(seconds=300)
    del world.uploads.objects["uploads/alice/never"]

    world.clock.advance(301)
    counts = world.sweeper.sweep()

    assert counts.objects_purged == 1
    assert world.store.uploads["never"].status is UploadStatus.EXPIRED


class ProcessDied(BaseException):
    """Stands for the web process being killed at this point."""


def test_a_deletion_cut_short_between_the_objects_and_the_rows_is_finished_by_the_next_sweep(
    world, monkeypatch
):
    result = world.tried_on()

    def killed(object_key: str) -> None:
        raise ProcessDied

    with monkeypatch.context() as patch:
        patch.setattr(world.results, "delete", killed)
        with pytest.raises(ProcessDied):
            world.data.delete_upload("alice", "up1")
    assert world.store.uploads["up1"].status is UploadStatus.DELETED
    assert world.uploads.objects == {}
    assert set(world.store.results) == {result.result_id}
    assert "up1" not in world.store.purged

    counts = world.sweeper.sweep()  # the dead process's claim on the result is taken over at once

    assert (counts.objects_purged, counts.results_deleted) == (1, 1)
    assert world.results.objects == {} and world.store.results == {}
    assert "up1" in world.store.purged
    assert world.sweeper.sweep().objects_purged == 0


def test_an_erasure_cut_short_leaves_its_selfies_for_the_sweep_to_finish(world, monkeypatch):
    world.tried_on()

    def killed(object_key: str) -> None:
        raise ProcessDied

    with monkeypatch.context() as patch:
        patch.setattr(world.uploads, "delete", killed)
        with pytest.raises(ProcessDied):
            world.data.erase("alice")
    assert world.store.uploads["up1"].status is UploadStatus.DELETED

    world.sweeper.sweep()

    assert world.uploads.objects == {} and world.results.objects == {}
    assert world.store.results == {}


def test_an_upload_the_sweep_expires_is_announced_to_its_waiting_requests(world):
    world.intent("never", UploadStatus.ISSUED)
    world.intent("rejected", UploadStatus.REJECTED)
    world.clock.advance(300 + 60 + 900)

    world.sweeper.sweep()

    assert [(key, message) for topic, key, message in world.changes.announced if topic is Topic.UPLOAD] == [
        ("never", "settled")
    ]
