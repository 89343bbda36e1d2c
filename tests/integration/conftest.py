"""The database fixtures of every repository test module: each test once on SQLite and once on an isolated
Postgres schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest

from adapters.peewee_db import migrate
from tests.builders.databases import Backend, postgres_schema


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        sqlite = Backend("sqlite", f"sqlite:///{tmp_path}/nested/tryon.db")
        yield sqlite
        sqlite.close_all()
        return
    with postgres_schema("tryon_test") as url:
        postgres = Backend("postgres", url)
        try:
            yield postgres
        finally:
            postgres.close_all()


@pytest.fixture
def db(backend: Backend) -> peewee.Database:
    database = backend.open()
    migrate(database)
    return database
