"""Shared e2e fixtures: Settings for the real adapters on a migrated per-test SQLite database, a user's
bearer token, and the face model."""

from __future__ import annotations

import pytest

from adapters.mtcnn_faces import MtcnnFaceDetector
from adapters.peewee_db import migrate, open_database
from entrypoints.settings import Settings
from tests.builders.stack import stack_settings


@pytest.fixture
def settings(buckets, ministack_url, redis_url, sqlite_url, dev_issuer) -> Settings:
    database = open_database(sqlite_url)
    migrate(database)
    database.close()
    return stack_settings(
        buckets,
        better_auth_url=dev_issuer.base_url,
        database_url=sqlite_url,
        redis_url=redis_url,
        s3_endpoint_url=ministack_url,
    )


@pytest.fixture(scope="module")
def detector() -> MtcnnFaceDetector:
    detector = MtcnnFaceDetector()
    detector.warm_up()
    return detector
