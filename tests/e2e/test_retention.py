"""Retention through the HTTP API against ministack, on SQLite and Postgres, with a fake clock: what must
go goes, and nothing else."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from adapters.peewee_db import PeeweeAuditLog, UploadRow, open_database
from adapters.peewee_db.audit_partitions import add_months, create_month_partition, month_start
from adapters.peewee_db.database import is_postgres
from adapters.s3_storage import make_s3_client
from entrypoints.http.app import create_app
from entrypoints.settings import Settings
from tests import hostile
from tests.builders.databases import an_event, migrated_postgres_schema
from tests.builders.stack import put
from tests.fakes import FakeFaceDetector, FixedClock
from tests.inline import bootstrap_verifying_inline

pytestmark = pytest.mark.e2e


class Clock(FixedClock):
    """The fake clock, started at the real now (S3 still checks real time on pre-signed URLs)."""

    def __init__(self) -> None:
        super().__init__(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, settings: Settings) -> Iterator[str]:
    """The e2e database (SQLite), or a freshly migrated schema on the running Postgres."""
    if request.param == "sqlite":
        yield settings.database_url
        return
    with migrated_postgres_schema("tryon_e2e") as url:
        yield url


@pytest.fixture
def world(settings: Settings, database_url: str, dev_issuer) -> Any:
    clock = Clock()
    configured = replace(settings, unused_upload_ttl_seconds=3600, database_url=database_url)
    services = bootstrap_verifying_inline(configured, clock=clock, detector=FakeFaceDetector())
    client = create_app(services, configure_logs=False).test_client()
    s3 = make_s3_client(region="us-east-1", endpoint_url=settings.s3_endpoint_url)

    def keys() -> list[str]:
        listing = s3.list_objects_v2(Bucket=settings.uploads_bucket).get("Contents", [])
        return sorted(item["Key"] for item in listing)

    return SimpleNamespace(
        clock=clock,
        services=services,
        client=client,
        auth={"Authorization": f"Bearer {dev_issuer.mint(f'user{secrets.token_hex(6)}')}"},
        keys=keys,
    )


def issue(world: Any, *, put_it: bool = True, complete: bool = False) -> dict[str, Any]:
    data = (hostile.IMAGES / "one_face.jpg").read_bytes()
    body = {"content_type": "image/jpeg", "content_length": len(data)}
    ticket: dict[str, Any] = world.client.post("/v1/uploads", json=body, headers=world.auth).get_json()
    if put_it:
        assert put(ticket, data).status_code == 200
    if complete:
        response = world.client.post(
            f"/v1/uploads/{ticket['upload_id']}/complete",
            json={"object_key": ticket["object_key"]},
            headers=world.auth,
        )
        assert response.status_code == 200, response.get_data(as_text=True)
    return ticket


def test_the_sweep_removes_what_retention_says_and_only_that(world):
    never_completed = issue(world)
    verified = issue(world, complete=True)
    user_id = verified["object_key"].split("/")[1]
    assert world.keys() == sorted(
        [never_completed["object_key"], f"sources/{user_id}/{verified['upload_id']}.jpg"]
    )

    assert world.services.sweeper.sweep().objects_purged == 0
    world.clock.advance(300 + 901)
    first = world.services.sweeper.sweep()
    assert (first.objects_purged, first.intents_expired, first.sources_deleted) == (2, 1, 0)
    assert world.keys() == [f"sources/{user_id}/{verified['upload_id']}.jpg"]

    world.clock.advance(3600)
    second = world.services.sweeper.sweep()
    assert second.sources_deleted == 1
    assert world.keys() == []
    statuses = {row.upload_id: row.status for row in UploadRow.select()}
    assert statuses == {never_completed["upload_id"]: "expired", verified["upload_id"]: "deleted"}
    again = world.services.sweeper.sweep()
    assert (again.objects_purged, again.sources_deleted, again.results_deleted, again.skipped) == (0, 0, 0, 0)


def test_deleting_an_upload_over_http_removes_its_objects_now(world):
    verified = issue(world, complete=True)

    response = world.client.delete(f"/v1/uploads/{verified['upload_id']}", headers=world.auth)

    assert response.status_code == 204
    assert world.keys() == []
    assert UploadRow.get_by_id(verified["upload_id"]).status == "deleted"
    assert world.client.delete(f"/v1/uploads/{verified['upload_id']}", headers=world.auth).status_code == 204
    other = {"Authorization": "Bearer nope"}
    assert world.client.delete(f"/v1/uploads/{verified['upload_id']}", headers=other).status_code == 401


def test_the_sweep_drops_audit_months_past_the_window_on_postgres_only(world, database_url):
    """Wired by bootstrap: the sweep's audit part (AUDIT_RETENTION_DAYS, 400 by default). On SQLite the sweep
    leaves the audit trail to `tryon audit prune`."""
    old_month = add_months(month_start(world.clock.now() - timedelta(days=400)), -1)
    database = open_database(database_url)
    try:
        if is_postgres(database):
            with database.atomic():
                create_month_partition(database, old_month)
        PeeweeAuditLog(database).append(an_event("ancient", occurred_at=old_month + timedelta(days=2)))

        counts = world.services.sweeper.sweep()

        left = [e.subject_id for e in PeeweeAuditLog(database).events()]
    finally:
        database.close()
    if database_url.startswith("postgres"):
        assert (counts.audit_partitions_dropped, counts.audit_events_dropped) == (1, 1)
        assert "ancient" not in left
        assert "dropped 1 audit partition(s) (1 event(s))" in counts.summary()
    else:
        assert counts.audit_partitions_dropped == 0
        assert "ancient" in left
