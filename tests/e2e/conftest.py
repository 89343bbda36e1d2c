"""Shared e2e fixtures: Settings for the real adapters on a per-test SQLite database, the face model, and
the fal simulator with the settings and in-process client of the try-on modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from flask.testing import FlaskClient

from adapters.mtcnn_faces import MtcnnFaceDetector
from adapters.peewee_db import migrate, open_database
from devtools.fal_simulator import FalSimulator
from entrypoints.settings import Settings
from tests import leaks
from tests.builders.stack import on_simulator, stack_settings
from tests.inline import inline_client


@pytest.fixture
def unmigrated_settings(buckets, ministack_url, redis_url, sqlite_url, dev_issuer) -> Settings:
    """Settings for our processes on the emulated stack, with a per-test SQLite database not yet created."""
    return stack_settings(
        buckets,
        better_auth_url=dev_issuer.base_url,
        database_url=sqlite_url,
        redis_url=redis_url,
        s3_endpoint_url=ministack_url,
    )


@pytest.fixture
def settings(unmigrated_settings: Settings) -> Settings:
    """The same settings, on a migrated database."""
    database = open_database(unmigrated_settings.database_url)
    migrate(database)
    database.close()
    return unmigrated_settings


@pytest.fixture(scope="module")
def detector() -> MtcnnFaceDetector:
    detector = MtcnnFaceDetector()
    detector.warm_up()
    return detector


@pytest.fixture(scope="module")
def simulator() -> Iterator[FalSimulator]:
    with FalSimulator() as sim:
        yield sim


@pytest.fixture
def tryon_settings(settings: Settings, simulator: FalSimulator) -> Settings:
    """The settings on the simulator (reset), over an emptied Redis."""
    simulator.reset()
    leaks.keep_redis(settings.redis_url)
    redis.Redis.from_url(settings.redis_url).flushdb()
    return on_simulator(settings, simulator)


@pytest.fixture
def client(tryon_settings: Settings, detector: MtcnnFaceDetector) -> FlaskClient:
    """In-process, for the app's own calls (uploads, orders, reads); the workers call fal."""
    return inline_client(tryon_settings, detector=detector)
