from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from domain.errors import NotFound
from domain.model import TryOnResult, UploadStatus
from domain.ports import Topic
from tests.builders.worlds import ORDER, DataWorld
from tests.fakes import FakeResultRepository, FakeStore, FakeUnitOfWork


@pytest.fixture
def world() -> DataWorld:
    return DataWorld()


def test_a_favourite_is_tagged_recorded_and_keeps_its_selfie_past_the_deadline(world):
    result = world.tried_on()
    world.data.favorite("alice", result.result_id, True)
    world.clock.advance(3601)

    assert world.expiry.expire("up1") is False
    assert world.store.results[result.result_id].favorite is True
    assert world.results.favorites == {result.object_key: True}
    assert "uploads/alice/up1.jpg" in world.uploads.objects
    assert world.store.audit[-1].event == "result.favorited"


def test_when_the_last_favourite_goes_the_selfie_gets_its_retention_again_then_goes(world):
    result = world.tried_on()
    world.data.favorite("alice", result.result_id, True)
    world.clock.advance(7200)

    world.data.favorite("alice", result.result_id, False)

    upload = world.store.uploads["up1"]
    assert upload.source_expires_at == world.clock.now() + timedelta(seconds=3600)
    assert world.queue.expiries[-1] == ("up1", upload.source_expires_at)
    assert world.expiry.expire("up1") is False
    world.clock.advance(3601)
    assert world.expiry.expire("up1") is True
    assert world.uploads.objects == {}
    assert world.store.uploads["up1"].status is UploadStatus.DELETED


def two_favourites(world: DataWorld) -> tuple[TryOnResult, TryOnResult]:
    first = world.tried_on()
    tryon = world.desk.order("alice", ORDER)
    world.run_until_settled(tryon.tryon_id)
    [second] = [r for r in world.store.results.values() if r.tryon_id == tryon.tryon_id]
    for result in (first, second):
        world.data.favorite("alice", result.result_id, True)
    return first, second


def test_a_selfie_a_favourite_keeps_past_its_deadline_is_marked_kept_and_any_unfavourite_unmarks_it(world):
    first, second = two_favourites(world)
    world.clock.advance(7200)

    assert world.expiry.expire("up1") is False
    assert world.store.uploads["up1"].source_kept is True
    world.data.favorite("alice", first.result_id, False)  # another is left: retention restarts all the same

    upload = world.store.uploads["up1"]
    assert (upload.source_kept, upload.source_expires_at) == (False, world.clock.now() + timedelta(hours=1))
    assert world.queue.expiries[-1] == ("up1", upload.source_expires_at)
    assert world.uploads.held == {"uploads/alice/up1.jpg": True}  # the S3 hold stays for the other one
    world.clock.advance(3601)
    assert world.expiry.expire("up1") is False  # the other favourite still keeps it
    assert world.store.uploads["up1"].source_kept is True
    world.data.favorite("alice", second.result_id, False)
    assert world.uploads.held == {"uploads/alice/up1.jpg": False}
    world.clock.advance(3601)
    assert world.expiry.expire("up1") is True


class SnapshotResults(FakeResultRepository):
    """READ COMMITTED as two concurrent unfavourites see it: each reads the results as they were before
    either committed, plus its own write."""

    def __init__(self, store: FakeStore, snapshot: dict[str, TryOnResult]) -> None:
        super().__init__(store)
        self._snapshot = snapshot
        self._own: dict[str, TryOnResult] = {}

    def set_favorite(self, result_id: str, favorite: bool, now: datetime) -> bool:
        changed = super().set_favorite(result_id, favorite, now)
        if changed:
            self._own[result_id] = self._store.results[result_id]
        return changed

    def for_upload(self, upload_id: str) -> list[TryOnResult]:
        seen = {**self._snapshot, **self._own}
        return [seen[r.result_id] for r in super().for_upload(upload_id)]


def test_two_unfavourites_of_the_last_two_favourites_at_once_still_restart_retention(world):
    """Each sees the other favourite still set. Before, neither restarted the selfie's retention: marked
    kept, it would never have been deleted."""
    first, second = two_favourites(world)
    world.clock.advance(7200)
    assert world.expiry.expire("up1") is False and world.store.uploads["up1"].source_kept
    snapshot = dict(world.store.results)

    def racing_unit_of_work() -> FakeUnitOfWork:
        uow = FakeUnitOfWork(world.store)
        uow.results = SnapshotResults(world.store, snapshot)
        return uow

    racing = world.user_data(racing_unit_of_work)
    racing.favorite("alice", first.result_id, False)
    racing.favorite("alice", second.result_id, False)

    upload = world.store.uploads["up1"]
    assert not any(r.favorite for r in world.store.results.values())
    assert (upload.source_kept, upload.source_expires_at) == (False, world.clock.now() + timedelta(hours=1))
    assert world.queue.expiries[-2:] == [("up1", upload.source_expires_at)] * 2
    world.clock.advance(3601)
    assert world.expiry.expire("up1") is True
    assert world.uploads.objects == {}


SELFIE = "uploads/alice/up1.jpg"


def one_favourite_one_not(world: DataWorld) -> tuple[TryOnResult, TryOnResult]:
    first, second = two_favourites(world)
    world.data.favorite("alice", second.result_id, False)
    assert world.uploads.held == {SELFIE: True}
    return first, second


def test_a_favourite_whose_hold_an_unfavourite_releases_before_its_flag_flips_holds_the_selfie_again(
    world, monkeypatch
):
    """The unfavourite of the last favourite runs whole between the new favourite's hold and its flag: it
    sees no favourite left and releases the hold the new one had just set. Before, the tag stayed off and
    the 2-day lifecycle rule could delete the selfie the new favourite keeps."""
    first, second = one_favourite_one_not(world)
    hold = world.uploads.hold_source
    writes: list[bool] = []

    def hold_then_race(object_key: str, held: bool) -> None:
        hold(object_key, held)
        writes.append(held)
        if writes == [True]:  # the new favourite's hold, its flag not yet flipped
            world.data.favorite("alice", first.result_id, False)

    monkeypatch.setattr(world.uploads, "hold_source", hold_then_race)
    world.data.favorite("alice", second.result_id, True)

    assert writes == [True, False, True]  # held, released by the race, held again after the commit
    assert [
        r.favorite for r in (world.store.results[first.result_id], world.store.results[second.result_id])
    ] == [
        False,
        True,
    ]
    assert world.uploads.held == {SELFIE: True}


def test_an_unfavourite_that_missed_a_favourite_committed_meanwhile_holds_the_selfie_again(
    world, monkeypatch
):
    """The unfavourite's unit of work read the results before the new favourite committed (READ COMMITTED),
    so it releases the hold after the new favourite's last hold; reading the favourites afresh after the
    release, it finds the new one and holds the selfie again. Before, the tag stayed off."""
    first, second = one_favourite_one_not(world)
    before = dict(world.store.results)
    world.data.favorite("alice", second.result_id, True)  # commits whole, both its holds written
    hold = world.uploads.hold_source
    released: list[bool] = []

    def hold_and_note(object_key: str, held: bool) -> None:
        hold(object_key, held)
        released.append(not held)

    def racing_unit_of_work() -> FakeUnitOfWork:
        uow = FakeUnitOfWork(world.store)
        if not any(released):  # until its release, it sees the results as they were before the favourite
            uow.results = SnapshotResults(world.store, before)
        return uow

    monkeypatch.setattr(world.uploads, "hold_source", hold_and_note)
    world.user_data(racing_unit_of_work).favorite("alice", first.result_id, False)

    assert released == [True, False]
    assert world.store.results[second.result_id].favorite is True
    assert world.uploads.held == {SELFIE: True}


def test_only_the_owner_can_favourite(world):
    result = world.tried_on()

    with pytest.raises(NotFound):
        world.data.favorite("mallory", result.result_id, True)
    assert world.store.results[result.result_id].favorite is False


def test_deleting_an_upload_removes_the_selfie_and_its_other_results_but_keeps_favourites(world):
    kept = world.tried_on()
    world.data.favorite("alice", kept.result_id, True)
    tryon = world.desk.order("alice", ORDER)
    world.run_until_settled(tryon.tryon_id)
    [dropped] = [r for r in world.store.results.values() if r.tryon_id == tryon.tryon_id]

    world.data.delete_upload("alice", "up1")

    assert world.uploads.objects == {}
    assert set(world.store.results) == {kept.result_id}
    assert set(world.results.objects) == {kept.object_key}
    assert dropped.object_key not in world.results.objects
    assert world.store.uploads["up1"].status is UploadStatus.DELETED
    assert [e.reason for e in world.store.audit[-2:]] == ["user_request", "user_request"]


def test_erasure_leaves_nothing_of_the_user_but_audit_events_and_nothing_of_anyone_else_is_touched(world):
    world.tried_on("alice", "up1")
    bobs = world.tried_on("bob", "up2")

    erased = world.data.erase("alice")

    assert (erased.uploads, erased.results, erased.tryons) == (1, 1, 1)
    assert [u.user_id for u in world.store.uploads.values()] == ["bob"]
    assert [r.user_id for r in world.store.results.values()] == ["bob"]
    assert [t.user_id for t in world.store.tryons.values()] == ["bob"]
    assert set(world.results.objects) == {bobs.object_key}
    assert set(world.uploads.objects) == {"uploads/bob/up2.jpg"}
    assert world.store.audit[-1].event == "user.erased"
    assert any(e.actor_id == "alice" for e in world.store.audit)


def gone_announced(world: DataWorld) -> list[tuple[str, str]]:
    return [(key, message) for topic, key, message in world.changes.announced if topic is Topic.UPLOAD]


def test_a_deleted_erased_or_expired_upload_is_announced_to_its_waiting_requests(world):
    world.tried_on("alice", "up1")
    world.tried_on("alice", "up2")
    world.tried_on("bob", "up3")
    world.changes.announced.clear()

    world.data.delete_upload("alice", "up1")
    assert gone_announced(world) == [("up1", "settled")]
    world.data.erase("alice")
    assert gone_announced(world)[1:] == [("up1", "settled"), ("up2", "settled")]
    world.clock.advance(3601)
    assert world.expiry.expire("up3")
    assert gone_announced(world)[3:] == [("up3", "settled")]


def test_an_erasure_wakes_the_requests_waiting_on_its_unfinished_try_ons(world):
    world.tried_on("alice", "up1")  # settled: nobody waits on it
    world.tried_on("bob", "up2")
    running = world.desk.order("alice", ORDER)
    bobs = world.desk.order("bob", replace(ORDER, upload_id="up2"))
    world.changes.announced.clear()

    world.data.erase("alice")

    assert [(key, message) for topic, key, message in world.changes.announced if topic is Topic.TRYON] == [
        (running.tryon_id, "erased")
    ]
    assert bobs.tryon_id in world.store.tryons


def test_with_the_board_down_a_deletion_still_completes(world):
    world.tried_on("alice", "up1")
    world.changes.down = True

    world.data.delete_upload("alice", "up1")

    assert world.store.uploads["up1"].status is UploadStatus.DELETED
    assert world.uploads.objects == {}
