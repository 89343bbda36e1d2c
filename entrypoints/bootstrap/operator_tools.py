"""What the operators' commands run on (`tryon migrate`, `provision`, `audit export`, `audit prune`): each
opens what it needs and closes it when done."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from adapters.peewee_db import (
    PeeweeAuditLog,
    PeeweeAuditRetention,
    migrate,
    open_database,
)
from adapters.s3_provisioning import (
    BucketRole,
    ProvisionReport,
    S3BucketProvisioner,
)
from adapters.s3_storage import make_s3_client
from adapters.system import SystemClock
from domain.model import AuditEvent
from domain.ports import AuditRetentionReport
from domain.scrubbing import Scrubber
from entrypoints.bootstrap.services import audit_retainer, scrubber_for
from entrypoints.settings import Settings


def schema_migrator(settings: Settings) -> Callable[[], list[str]]:
    """``tryon migrate``: applies the pending migrations; returns their names ([] when up to date)."""

    def migrate_schema() -> list[str]:
        database = open_database(settings.database_url)
        try:
            return migrate(database)
        finally:
            database.close()

    return migrate_schema


@dataclass(frozen=True)
class BucketPlan:
    """``tryon provision``'s step for one bucket: ``ensure()`` creates and hardens it (idempotent); raises
    StorageUnavailable when S3 refuses, ValueError for a configuration it will not apply."""

    role: BucketRole
    ensure: Callable[[], ProvisionReport] = field(repr=False)


def bucket_plans(settings: Settings) -> tuple[BucketPlan, ...]:
    provisioner = S3BucketProvisioner(
        make_s3_client(region=settings.aws_region, endpoint_url=settings.s3_endpoint_url),
        region=settings.aws_region,
        sse=settings.s3_sse,
        kms_key_id=settings.s3_sse_kms_key_id,
    )

    def plan(role: BucketRole, bucket: str, cors_origins: tuple[str, ...]) -> BucketPlan:
        ensure = partial(
            provisioner.ensure_private_bucket,
            bucket,
            role=role,
            processed_retention_days=settings.processed_retention_days,
            cors_origins=cors_origins,
        )
        return BucketPlan(role=role, ensure=ensure)

    return (
        plan("uploads", settings.uploads_bucket, settings.cors_allowed_origins),
        plan("processed", settings.processed_bucket, ()),
    )


@dataclass(frozen=True)
class AuditTrail:
    """``tryon audit export``: the audit log's events (streamed, the connection closed once they are read),
    and the scrubber every printed line goes through."""

    events: Callable[[datetime | None, str | None, datetime | None], Iterator[AuditEvent]] = field(repr=False)
    scrub: Scrubber = field(repr=False)


def audit_trail(settings: Settings) -> AuditTrail:
    def events(since: datetime | None, user_id: str | None, until: datetime | None) -> Iterator[AuditEvent]:
        database = open_database(settings.database_url)
        try:
            yield from PeeweeAuditLog(database).stream(since=since, user_id=user_id, until=until)
        finally:
            database.close()

    return AuditTrail(events=events, scrub=scrubber_for(settings))


def audit_pruner(settings: Settings) -> Callable[[Callable[[int], None]], AuditRetentionReport]:
    """``tryon audit prune``: one retention pass over the audit trail (see ``AuditRetainer.prune``)."""

    def prune(progress: Callable[[int], None]) -> AuditRetentionReport:
        database = open_database(settings.database_url)
        try:
            return audit_retainer(settings, PeeweeAuditRetention(database), SystemClock()).prune(progress)
        finally:
            database.close()

    return prune
