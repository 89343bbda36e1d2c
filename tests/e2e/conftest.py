"""Shared e2e fixtures: Settings for the real adapters, on a migrated per-test SQLite database."""

from __future__ import annotations

import pytest

from adapters.peewee_db import migrate, open_database
from entrypoints.settings import Settings


@pytest.fixture
def settings(buckets, ministack_url, redis_url, sqlite_url, dev_issuer) -> Settings:
    database = open_database(sqlite_url)
    migrate(database)
    database.close()
    return Settings(
        uploads_bucket=buckets[0],
        processed_bucket=buckets[1],
        better_auth_url=dev_issuer.base_url,
        database_url=sqlite_url,
        redis_url=redis_url,
        s3_endpoint_url=ministack_url,
        rate_limit_uploads="1000/minute",
        rate_limit_tryons="1000/minute",
        rate_limit_mutations="1000/minute",
        max_active_tryons=1000,
        daily_image_quota=100_000,
    )
