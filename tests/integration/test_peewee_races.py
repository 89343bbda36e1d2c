"""Races decided by the database itself, on SQLite and on the running Postgres: two connections, two
threads, and the interleaving forced (one side pauses inside its transaction until the other is waiting)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import peewee
import pytest

from adapters.peewee_db import PeeweeResultRepository, PeeweeUnitOfWork, PeeweeUploadRepository
from adapters.peewee_db.database import execute_sql
from domain.errors import LimitExceeded
from domain.model import StoredImage, TryOn, TryOnResult, TryOnStatus, UploadStatus
from domain.retention import SourceExpiry
from domain.sweeper import Sweeper, SweepPolicy
from domain.tryons import TryOnDesk, TryOnLimits, TryOnOrder
from domain.user_data import UserData
from tests.builders.databases import T0, Backend, an_intent
from tests.fakes import (
    FakeChangeBoard,
    FakeResultStorage,
    FakeTryOnQueue,
    FakeUploadStorage,
    FixedClock,
    SequentialIds,
)

pytestmark = pytest.mark.integration

ORDER = TryOnOrder("up_1", "a copper bob")
WAIT = 10.0
ROUNDS = 40


class PausingIds(SequentialIds):
    """Pauses the first order inside its transaction (ids are drawn after the user's usage is held)."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = threading.Event()
        self.go_on = threading.Event()

    def new_id(self) -> str:
        if not self.inside.is_set():
            self.inside.set()
            assert self.go_on.wait(WAIT)
        return super().new_id()


def a_desk(
    backend: Backend, ids: SequentialIds | None = None, limits: TryOnLimits | None = None
) -> TryOnDesk:
    database = backend.open()
    return TryOnDesk(
        unit_of_work=lambda: PeeweeUnitOfWork(database),
        queue=FakeTryOnQueue(),
        results=FakeResultStorage(),
        clock=FixedClock(T0),
        ids=ids or SequentialIds(),
        changes=FakeChangeBoard(),
        limits=limits,
    )


def verified(db) -> None:
    stored = StoredImage("sources/user_1/up_1.jpg", "image/jpeg", 900, 512, 512, "c2hh")
    upload = an_intent(status=UploadStatus.VERIFIED, stored=stored, source_expires_at=T0 + timedelta(hours=1))
    PeeweeUploadRepository(db).add(upload)


def test_two_orders_with_one_idempotency_key_at_once_get_the_same_tryon(backend: Backend, db) -> None:
    verified(db)
    ids = PausingIds()
    first_desk, second_desk = a_desk(backend, ids), a_desk(backend)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(first_desk.order, "user_1", ORDER, "key-1")
        assert ids.inside.wait(WAIT)  # the first holds the user's usage, mid-transaction
        second = pool.submit(second_desk.order, "user_1", ORDER, "key-1")
        with pytest.raises(TimeoutError):
            second.result(timeout=0.5)  # waits for the first: it cannot see or create anything yet
        ids.go_on.set()
        answers = [first.result(WAIT), second.result(WAIT)]

    assert answers[0].tryon_id == answers[1].tryon_id
    with PeeweeUnitOfWork(db) as uow:
        assert uow.tryons.unsettled_for_user("user_1") == 1


def test_orders_racing_past_the_active_limit_are_refused_beyond_it(backend: Backend, db) -> None:
    verified(db)
    ids, limits = SequentialIds(), TryOnLimits(max_active=3, daily_images=40)
    desks = [a_desk(backend, ids, limits) for _ in range(6)]
    start = threading.Barrier(len(desks))

    def order(desk: TryOnDesk, n: int) -> TryOn | LimitExceeded:
        start.wait(WAIT)
        try:
            return desk.order("user_1", TryOnOrder("up_1", f"style {n}"))
        except LimitExceeded as refused:
            return refused

    with ThreadPoolExecutor(len(desks)) as pool:
        outcomes = list(pool.map(order, desks, range(len(desks))))

    assert sum(isinstance(o, TryOn) for o in outcomes) == 3
    assert {o.code for o in outcomes if isinstance(o, LimitExceeded)} == {"too_many_active_tryons"}
    with PeeweeUnitOfWork(db) as uow:
        assert uow.tryons.unsettled_for_user("user_1") == 3


def test_an_upload_deleted_while_verifying_can_never_become_verified(db) -> None:
    uploads = PeeweeUploadRepository(db)
    uploads.add(an_intent())
    claimed = uploads.claim_for_verification("up_1", T0, T0 - timedelta(seconds=120))
    assert claimed is not None

    uploads.mark_deleted("up_1", T0)

    assert uploads.update(replace(claimed, status=UploadStatus.VERIFIED)) is False
    assert uploads.lock_verified("up_1") is None
    assert uploads.set_deadline("up_1", T0 + timedelta(hours=1)) is False
    assert uploads.get("up_1").status is UploadStatus.DELETED  # type: ignore[union-attr]


def test_expiry_is_one_conditional_update_that_a_tryon_or_a_favourite_holds_off(db) -> None:
    verified(db)
    due = T0 + timedelta(hours=2)
    tryon = TryOn("t1", "user_1", "up_1", "a bob", 1, "jpeg", T0)
    with PeeweeUnitOfWork(db) as uow:
        uow.tryons.add(tryon)
        uow.commit()
    uploads = PeeweeUploadRepository(db)
    assert uploads.expire_if_due("up_1", due) is None  # a try-on still needs it

    with PeeweeUnitOfWork(db) as uow:
        assert uow.tryons.update(replace(tryon, status=TryOnStatus.SUCCEEDED))
        uow.results.add_if_absent(
            TryOnResult("t1-0", "t1", "user_1", 0, "processed/user_1/t1/0.jpg", "image/jpeg", 1, 1, 1, T0)
        )
        assert uow.results.set_favorite("t1-0", True, T0)
        uow.commit()
    assert uploads.expire_if_due("up_1", due) is None  # a favourite holds it
    assert uploads.expire_if_due("up_1", T0) is None  # and it is not due yet anyway

    with PeeweeUnitOfWork(db) as uow:
        assert uow.results.set_favorite("t1-0", False, T0)
        uow.commit()
    expired = uploads.expire_if_due("up_1", due)
    assert expired is not None and expired.status is UploadStatus.DELETED
    assert uploads.expire_if_due("up_1", due) is None  # once


def test_a_users_usage_counts_images_per_utc_day(db) -> None:
    with PeeweeUnitOfWork(db) as uow:
        assert uow.usage.hold("user_1", "2025-03-01") == 0
        uow.usage.record_images("user_1", "2025-03-01", 7)
        uow.commit()
    with PeeweeUnitOfWork(db) as uow:
        assert uow.usage.hold("user_1", "2025-03-01") == 7
        assert uow.usage.hold("user_1", "2025-03-02") == 0
        assert uow.usage.hold("user_2", "2025-03-01") == 0


DUE = T0 + timedelta(hours=2)
"""Past ``verified``'s deadline (T0 + 1 h): the clock of the kept-selfie tests below."""


def two_favourites(db: peewee.Database) -> None:
    """``up_1`` verified, two settled try-ons on it, and each one's result a favourite."""
    verified(db)
    with PeeweeUnitOfWork(db) as uow:
        for n in (1, 2):
            uow.tryons.add(
                replace(
                    TryOn(f"t{n}", "user_1", "up_1", "a bob", 1, "jpeg", T0), status=TryOnStatus.SUCCEEDED
                )
            )
            uow.results.add_if_absent(
                TryOnResult(
                    f"r{n}", f"t{n}", "user_1", 0, f"processed/user_1/t{n}/0.jpg", "image/jpeg", 1, 1, 1, T0
                )
            )
            assert uow.results.set_favorite(f"r{n}", True, T0)
        uow.commit()


def test_a_selfie_kept_by_a_favourite_is_marked_once_left_out_of_the_overdue_list_and_freed_by_a_new_deadline(
    db,
) -> None:
    two_favourites(db)
    uploads = PeeweeUploadRepository(db)
    assert uploads.keep_if_held("up_1", T0) is False  # not due yet
    assert uploads.overdue_sources(DUE, 10) == [
        "up_1"
    ]  # due and held, not yet marked: listed, for its expiry

    before = uploads.get("up_1")
    assert uploads.keep_if_held("up_1", DUE) is True
    assert uploads.keep_if_held("up_1", DUE) is False  # once
    kept = uploads.get("up_1")
    assert before is not None and kept is not None and kept.source_kept
    assert kept.version == before.version  # a mark, not a change of state: compare-and-sets still land
    assert uploads.overdue_sources(DUE + timedelta(days=400), 10) == []

    assert uploads.set_deadline("up_1", DUE + timedelta(hours=1))
    restarted = uploads.get("up_1")
    assert restarted is not None and not restarted.source_kept
    assert uploads.overdue_sources(DUE + timedelta(hours=2), 10) == ["up_1"]


def test_a_selfie_an_unsettled_tryon_holds_is_never_marked_nor_listed(db) -> None:
    verified(db)
    with PeeweeUnitOfWork(db) as uow:
        uow.tryons.add(TryOn("t1", "user_1", "up_1", "a bob", 1, "jpeg", T0))
        uow.commit()
    uploads = PeeweeUploadRepository(db)

    assert uploads.keep_if_held("up_1", DUE) is False
    assert uploads.overdue_sources(DUE, 10) == []
    assert uploads.expire_if_due("up_1", DUE) is None


def test_an_expiry_that_waits_for_an_unfavourites_new_deadline_does_not_mark_the_selfie(
    backend: Backend, db
) -> None:
    """The interleaving the deadline term of ``keep_if_held`` is for: the unfavourite holds the row, its new
    deadline written; the expiry's UPDATE saw the favourite and the old deadline, and waits. Once the
    unfavourite commits, Postgres re-checks the row's own terms on its new version (the EXISTS still sees
    the favourite): only the deadline, now in the future, stops the mark."""
    two_favourites(db)
    with PeeweeUnitOfWork(db) as uow:
        assert uow.results.set_favorite("r2", False, T0)
        uow.commit()
    unfavourite = PeeweeUnitOfWork(backend.open())
    with unfavourite as uow, ThreadPoolExecutor(1) as pool:
        assert uow.results.set_favorite("r1", False, DUE)
        assert uow.uploads.set_deadline("up_1", DUE + timedelta(hours=1))

        def keep() -> bool:
            with PeeweeUnitOfWork(backend.open()) as expiry:
                kept = expiry.uploads.keep_if_held("up_1", DUE)
                expiry.commit()
            return kept

        waiting = pool.submit(keep)
        with pytest.raises(TimeoutError):
            waiting.result(timeout=0.5)  # waits for the row (Postgres) or the database (SQLite)
        uow.commit()
        assert waiting.result(WAIT) is False

    upload = PeeweeUploadRepository(db).get("up_1")
    assert upload is not None and not upload.source_kept
    assert upload.source_expires_at == DUE + timedelta(hours=1)


def user_data_on(
    database: peewee.Database,
    storage: FakeUploadStorage,
    clock: FixedClock,
    results: Callable[[peewee.Database], PeeweeResultRepository] | None = None,
) -> UserData:
    """``UserData`` on a connection of its own, its results repository made by ``results`` if given."""

    def unit_of_work() -> PeeweeUnitOfWork:
        uow = PeeweeUnitOfWork(database)
        if results is not None:
            uow.results = results(database)
        return uow

    return UserData(
        uploads=storage,
        results=FakeResultStorage(),
        queue=FakeTryOnQueue(),
        changes=FakeChangeBoard(),
        unit_of_work=unit_of_work,
        clock=clock,
        source_retention_seconds=3600,
    )


class MeetingResults(PeeweeResultRepository):
    """Both unfavourites meet once each has turned its own favourite off, uncommitted: each then reads the
    other's as still set (READ COMMITTED), the interleaving that left the selfie kept forever."""

    def __init__(self, db: peewee.Database, meet: threading.Barrier) -> None:
        super().__init__(db)
        self._meet = meet

    def set_favorite(self, result_id: str, favorite: bool, now: datetime) -> bool:
        changed = super().set_favorite(result_id, favorite, now)
        self._meet.wait(WAIT)
        return changed


# Postgres only: SQLite runs units of work one at a time, so there is no interleaving to force.
@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_two_unfavourites_of_the_last_two_favourites_at_once_always_free_the_selfie(
    backend: Backend, db
) -> None:
    """Each round: the selfie past its deadline, marked kept by its two favourites; two requests unfavourite
    one each, meeting mid-transaction (each sees the other's favourite still set), while an expiry runs
    free beside them. Every round ends with the selfie unmarked and a deadline SOURCE_RETENTION_SECONDS on,
    never deleted (the favourites went only now)."""
    two_favourites(db)
    clock = FixedClock(DUE)
    meet = threading.Barrier(2)
    storage = FakeUploadStorage()

    def user_data(database: peewee.Database) -> UserData:
        return user_data_on(database, storage, clock, lambda db: MeetingResults(db, meet))

    first, second = user_data(backend.open()), user_data(backend.open())
    expiry_db = backend.open()
    expiry = SourceExpiry(
        storage=storage,
        unit_of_work=lambda: PeeweeUnitOfWork(expiry_db),
        clock=clock,
        changes=FakeChangeBoard(),
    )
    uploads = PeeweeUploadRepository(db)
    with ThreadPoolExecutor(3) as pool:  # the same threads every round: a connection each, per database
        for round_ in range(ROUNDS):
            with PeeweeUnitOfWork(db) as uow:
                for result_id in ("r1", "r2"):
                    uow.results.set_favorite(result_id, True, T0)  # False in the first round: already set
                assert uow.uploads.set_deadline("up_1", T0 + timedelta(hours=1))
                assert uow.uploads.keep_if_held("up_1", DUE)
                uow.commit()
            unfavourites = [
                pool.submit(first.favorite, "user_1", "r1", False),
                pool.submit(second.favorite, "user_1", "r2", False),
            ]
            expired = pool.submit(expiry.expire, "up_1")
            for unfavourite in unfavourites:
                unfavourite.result(WAIT)

            upload = uploads.get("up_1")
            assert expired.result(WAIT) is False, round_
            assert upload is not None and upload.status is UploadStatus.VERIFIED, round_
            assert (upload.source_kept, upload.source_expires_at) == (False, DUE + timedelta(hours=1)), round_


class PausingResults(PeeweeResultRepository):
    """Pauses the first unit of work that reads a selfie's results, just after the read, until told."""

    def __init__(self, db: peewee.Database, inside: threading.Event, go_on: threading.Event) -> None:
        super().__init__(db)
        self._inside, self._go_on = inside, go_on

    def for_upload(self, upload_id: str) -> list[TryOnResult]:
        found = super().for_upload(upload_id)
        if not self._inside.is_set():
            self._inside.set()
            assert self._go_on.wait(WAIT)
        return found


# Postgres only: SQLite runs units of work one at a time, so there is no interleaving to force.
@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_a_favourite_committed_while_the_last_unfavourite_is_under_way_keeps_its_s3_hold(
    backend: Backend, db
) -> None:
    """The unfavourite of r1 has read the selfie's results (r2 not a favourite) and pauses; r2 is favourited
    whole meanwhile (held, flag, held again); then the unfavourite commits and releases the hold, after the
    favourite's last hold. Before, the tag stayed off and the 2-day lifecycle rule could take the selfie."""
    two_favourites(db)
    with PeeweeUnitOfWork(db) as uow:
        assert uow.results.set_favorite("r2", False, T0)
        uow.commit()
    storage = FakeUploadStorage()
    inside, go_on = threading.Event(), threading.Event()

    clock = FixedClock(DUE)
    unfavouring = user_data_on(backend.open(), storage, clock, lambda db: PausingResults(db, inside, go_on))
    favouring = user_data_on(backend.open(), storage, clock)
    with ThreadPoolExecutor(1) as pool:
        unfavourite = pool.submit(unfavouring.favorite, "user_1", "r1", False)
        assert inside.wait(WAIT)  # r1's flag off, uncommitted; it saw r2 not a favourite
        favouring.favorite("user_1", "r2", True)
        assert storage.held == {"sources/user_1/up_1.jpg": True}
        go_on.set()
        unfavourite.result(WAIT)

    results = PeeweeResultRepository(db)
    assert [r.favorite for r in results.for_upload("up_1")] == [False, True]
    assert storage.held == {"sources/user_1/up_1.jpg": True}


def a_selfie_marked_kept(db: peewee.Database, n: int, *, stale: bool) -> None:
    """``up_<n>`` verified, a settled try-on on it, its result a favourite, and the selfie marked kept at DUE
    by its expiry. ``stale``: marked instead by migration 9's backfill while the old code served, whose
    unfavourite then turned the favourite off and moved the deadline without knowing the mark (and that
    expiry's job was lost)."""
    upload_id = f"up_{n}"
    stored = StoredImage(f"sources/user_1/{upload_id}.jpg", "image/jpeg", 900, 512, 512, "c2hh")
    upload = an_intent(
        upload_id, status=UploadStatus.VERIFIED, stored=stored, source_expires_at=T0 + timedelta(hours=1)
    )
    with PeeweeUnitOfWork(db) as uow:
        uow.uploads.add(upload)
        uow.tryons.add(
            replace(TryOn(f"t{n}", "user_1", upload_id, "a bob", 1, "jpeg", T0), status=TryOnStatus.SUCCEEDED)
        )
        uow.results.add_if_absent(
            TryOnResult(
                f"r{n}", f"t{n}", "user_1", 0, f"processed/user_1/t{n}/0.jpg", "image/jpeg", 1, 1, 1, T0
            )
        )
        assert uow.results.set_favorite(f"r{n}", True, T0)
        uow.commit()
    if not stale:
        assert PeeweeUploadRepository(db).keep_if_held(upload_id, DUE)
        return
    never = datetime(1970, 1, 1, tzinfo=UTC)  # as the backfill writes it
    backfill = (
        f"UPDATE uploads SET source_kept = TRUE, source_kept_at = {db.param} WHERE upload_id = {db.param}"
    )
    execute_sql(db, backfill, (never, upload_id))
    assert PeeweeResultRepository(db).set_favorite(f"r{n}", False, DUE)
    old_deadline = f"UPDATE uploads SET source_expires_at = {db.param} WHERE upload_id = {db.param}"
    execute_sql(db, old_deadline, (DUE + timedelta(hours=1), upload_id))


def test_the_sweep_clears_kept_marks_no_favourite_justifies_a_batch_a_pass_and_the_selfies_then_expire(
    db,
) -> None:
    for n in (1, 2, 3):
        a_selfie_marked_kept(db, n, stale=True)
    a_selfie_marked_kept(db, 4, stale=False)
    clock = FixedClock(DUE + timedelta(days=2))
    storage = FakeUploadStorage()
    for n in (1, 2, 3, 4):
        storage.put_new(f"sources/user_1/up_{n}.jpg", b"clean", "image/jpeg")

    def unit_of_work() -> PeeweeUnitOfWork:
        return PeeweeUnitOfWork(db)

    expiry = SourceExpiry(storage=storage, unit_of_work=unit_of_work, clock=clock, changes=FakeChangeBoard())
    sweeper = Sweeper(
        policy=SweepPolicy(batch_size=2),
        uploads=storage,
        results=FakeResultStorage(),
        expiry=expiry,
        unit_of_work=unit_of_work,
        clock=clock,
    )
    uploads = PeeweeUploadRepository(db)

    passes = [sweeper.sweep() for _ in range(3)]

    assert [(c.kept_marks_cleared, c.sources_deleted) for c in passes] == [(2, 2), (1, 1), (0, 0)]
    statuses = {n: getattr(uploads.get(f"up_{n}"), "status", None) for n in (1, 2, 3, 4)}
    assert statuses == {
        1: UploadStatus.DELETED,
        2: UploadStatus.DELETED,
        3: UploadStatus.DELETED,
        4: UploadStatus.VERIFIED,
    }
    kept = uploads.get("up_4")
    assert kept is not None and kept.source_kept  # its favourite still justifies it: confirmed, kept
    assert set(storage.objects) == {"sources/user_1/up_4.jpg"}
