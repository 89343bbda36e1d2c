"""The database fixtures of every repository test module: each test once on SQLite and once on an isolated
Postgres schema."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest
from rq import Queue
from rq.serializers import JSONSerializer

from adapters.peewee_db import migrate
from adapters.peewee_db.database import database_proxy
from adapters.peewee_db.models import AuditRow, FalRequestRow, ResultRow, TryOnRow, UploadRow, UsageRow
from adapters.redis_store import connect_redis
from adapters.rq_queue import RqTryOnQueue
from entrypoints.bootstrap import TRYON_JOBS
from tests.builders.databases import Backend, postgres_schema


@pytest.fixture(autouse=True)
def row_models_on_the_proxy() -> Iterator[None]:
    """peewee's ``bind_ctx`` (``models.bound_to``) sets a model's database on the class and puts back the
    one it found: two threads inside it at once can put back each other's, leaving the row models bound
    to one test connection instead of ``database_proxy`` (harmless in a process with one database; here a
    later test that queries through the proxy reached a dropped Postgres schema). Rebound after each test."""
    yield
    for model in (UploadRow, AuditRow, TryOnRow, ResultRow, UsageRow, FalRequestRow):
        model._meta.set_database(database_proxy)


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


@pytest.fixture
def tryon_queues(redis_url: str) -> Iterator[tuple[RqTryOnQueue, Queue]]:
    """The tryons queue adapter on a queue of this test's own in the real Redis, and RQ's view of that queue;
    every job left on it, queued or scheduled, is deleted afterwards."""
    connection = connect_redis(redis_url)
    name = f"tryons-test-{secrets.token_hex(4)}"
    rq = Queue(name, connection=connection, serializer=JSONSerializer)
    try:
        yield RqTryOnQueue(connection, TRYON_JOBS, queue_name=name), rq
    finally:
        for job in rq.get_jobs():
            job.delete()
        rq.empty()
        for job_id in rq.scheduled_job_registry.get_job_ids():
            rq.scheduled_job_registry.remove(job_id, delete_job=True)
