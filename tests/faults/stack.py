"""The system under fault: real web app, real worker processes, and every dependency behind a ChaosProxy.

Postgres (a schema of its own), Redis, ministack and the fal simulator are real; the service reaches the
first three only through proxies a test can take down, while the checks here look at them directly.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import psycopg2
from flask.testing import FlaskClient

from adapters.mtcnn_faces import MtcnnFaceDetector
from adapters.s3_storage import make_s3_client
from devtools.fal_simulator import FalSimulator
from domain.model import UploadStatus
from domain.ports import FaceDetector
from entrypoints.http.app import create_app
from entrypoints.settings import Settings
from tests.builders.stack import environment
from tests.faults.proxy import ChaosProxy
from tests.inline import bootstrap_verifying_inline

LIVE = (UploadStatus.ISSUED.value, UploadStatus.VERIFYING.value, UploadStatus.VERIFIED.value)
AWAITING_SWEEP = (UploadStatus.REJECTED.value, UploadStatus.EXPIRED.value)
"""Rows whose objects the sweep purges once their URL has been dead 15 minutes: not orphans yet."""


def host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


@dataclass
class FaultStack:
    settings: Settings
    """What the service is configured with: S3, Redis and Postgres through the proxies."""
    s3: ChaosProxy
    redis: ChaosProxy
    postgres: ChaosProxy
    simulator: FalSimulator
    detector: MtcnnFaceDetector
    direct_s3_url: str
    direct_postgres_url: str
    direct_redis_url: str
    proxies: tuple[ChaosProxy, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.proxies = (self.s3, self.redis, self.postgres)

    def all_up(self) -> None:
        for proxy in self.proxies:
            proxy.up()

    def close(self) -> None:
        for proxy in self.proxies:
            proxy.close()

    def client(self, detector: FaceDetector | None = None) -> FlaskClient:
        services = bootstrap_verifying_inline(self.settings, detector=detector or self.detector)
        return create_app(services, configure_logs=False).test_client()

    def env(self) -> dict[str, str]:
        return environment(self.settings)

    def sweep(self) -> str:
        """`tryon sweep`, the operator's command, run as a process."""
        done = subprocess.run(
            [sys.executable, "-m", "entrypoints.cli", "sweep"],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        parts = urlsplit(self.direct_postgres_url)
        options = parse_qs(parts.query).get("options", [""])[0]
        base = urlunsplit(parts._replace(query=""))
        connection = psycopg2.connect(base, options=options, connect_timeout=5)
        try:
            with connection, connection.cursor() as cursor:  # commits on success
                cursor.execute(sql)
                rows: list[tuple[Any, ...]] = cursor.fetchall() if cursor.description else []
        finally:
            connection.close()
        return rows

    def keys(self, bucket: str) -> set[str]:
        s3 = make_s3_client(region="us-east-1", endpoint_url=self.direct_s3_url)
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return {item["Key"] for page in pages for item in page.get("Contents", [])}

    def orphans(self) -> list[str]:
        """Objects no row accounts for, rows whose object is gone, deletions left unfinished."""
        found: list[str] = []
        uploads = self.rows("SELECT upload_id, status, object_key, stored_key, purged_at FROM uploads")
        source_keys = self.keys(self.settings.uploads_bucket)
        held: set[str] = set()
        for upload_id, status, object_key, stored_key, purged_at in uploads:
            if purged_at is None and status == UploadStatus.DELETED.value:
                found.append(f"upload {upload_id} is deleted but its purge never finished")
            if purged_at is None and status == UploadStatus.VERIFIED.value:
                held.add(stored_key)  # the original was replaced by the sanitised copy
            elif purged_at is None and status in LIVE + AWAITING_SWEEP:
                held.update(key for key in (object_key, stored_key) if key)
            if purged_at is None and status == UploadStatus.VERIFIED.value and stored_key not in source_keys:
                found.append(f"verified upload {upload_id} has no stored selfie")
        found += [f"object {key} in the uploads bucket has no row" for key in sorted(source_keys - held)]
        result_keys = {key for (key,) in self.rows("SELECT object_key FROM tryon_results")}
        stored = self.keys(self.settings.processed_bucket)
        found += [f"result row for {key} has no object" for key in sorted(result_keys - stored)]
        found += [f"object {key} in the processed bucket has no row" for key in sorted(stored - result_keys)]
        return found

    def unsettled(self) -> list[str]:
        return [
            t for (t,) in self.rows("SELECT tryon_id FROM tryons WHERE status NOT IN ('succeeded', 'failed')")
        ]


def proxied(settings: Settings, s3: ChaosProxy, redis: ChaosProxy, postgres: ChaosProxy) -> Settings:
    """``settings`` with S3, Redis and Postgres reached through the proxies (same database, db number)."""
    redis_db = urlsplit(settings.redis_url).path or "/0"
    database = urlsplit(settings.database_url)
    return replace(
        settings,
        s3_endpoint_url=f"http://{s3.address}",
        redis_url=f"redis://{redis.address}{redis_db}",
        database_url=database._replace(netloc=f"{database.username}@{postgres.address}").geturl(),
    )
