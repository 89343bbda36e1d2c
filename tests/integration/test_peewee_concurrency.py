"""One opened database shared by many threads, as a gthread web process shares it."""

from __future__ import annotations

import threading

import peewee
import pytest

from adapters.peewee_db import PeeweeUploadRepository
from tests.integration.test_peewee_repositories import an_intent

pytestmark = pytest.mark.integration

WAIT = 60.0


def seeded(db: peewee.Database) -> peewee.Database:
    PeeweeUploadRepository(db).add(an_intent())
    db.close()
    return db


def test_a_connection_the_pool_hands_to_another_thread_works_there(db: peewee.Database) -> None:
    seeded(db)
    used_by: list[int] = []
    errors: list[str] = []

    def request() -> None:
        try:
            db.connect(reuse_if_open=True)
            used_by.append(id(db.connection()))
            assert PeeweeUploadRepository(db).get("up_1") is not None
        except Exception as error:
            errors.append(f"{type(error).__name__}: {error}")
        finally:
            db.close()  # back to the pool, as the web does when a request ends

    for _ in range(3):
        thread = threading.Thread(target=request)
        thread.start()
        thread.join(WAIT)

    assert errors == []
    assert len(used_by) == 3
    assert len(set(used_by)) == 1  # one pooled connection, used by three threads in turn
