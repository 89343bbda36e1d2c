"""Shared e2e fixtures: Settings for the real adapters on a per-test SQLite database, and the face model."""

from __future__ import annotations

import pytest

from adapters.mtcnn_faces import MtcnnFaceDetector
from adapters.peewee_db import migrate, open_database
from entrypoints.settings import Settings
from tests.builders.stack import stack_settings


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
