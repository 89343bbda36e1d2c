"""Races decided by the database itself, on SQLite and on the running Postgres: two connections, two
threads, and the interleaving forced (one side pauses inside its transaction until the other is waiting)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta

import pytest

from adapters.peewee_db import PeeweeUnitOfWork, PeeweeUploadRepository
from domain.errors import LimitExceeded
from domain.model import StoredImage, TryOn, TryOnResult, TryOnStatus, UploadStatus
from domain.tryons import TryOnDesk, TryOnLimits, TryOnOrder
from tests.builders.databases import T0, Backend, an_intent
from tests.fakes import FakeChangeBoard, FakeResultStorage, FakeTryOnQueue, FixedClock, SequentialIds

pytestmark = pytest.mark.integration

ORDER = TryOnOrder("up_1", "a copper bob")
WAIT = 10.0


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
