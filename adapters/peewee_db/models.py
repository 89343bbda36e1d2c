"""Row shapes of the tables ``migrations.py`` creates. The DDL lives there; these only map columns."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import peewee

from adapters.peewee_db.database import database_proxy
from domain.model import TERMINAL, UNSETTLED

SETTLED_TRYON_STATUSES = [status.value for status in TERMINAL]
UNSETTLED_TRYON_STATUSES = [status.value for status in UNSETTLED]


def unsettled_tryon(status: peewee.Field) -> peewee.Expression:
    """``status IN ('queued', 'running')``, the predicate of migration 9's partial indexes on unsettled
    try-ons. A planner uses a partial index only for a WHERE that implies its predicate: not ``NOT IN`` the
    settled ones, and on SQLite not an ``IN`` list of bound parameters either, so the (constant, enum-made)
    values are written into the SQL."""
    return status.in_([peewee.SQL(f"'{value}'") for value in UNSETTLED_TRYON_STATUSES])


class UtcDateTimeField(peewee.DateTimeField):
    """A timezone-aware UTC instant, identical after a round trip on SQLite and Postgres.

    Written as an aware UTC datetime (Postgres ``TIMESTAMPTZ``; SQLite text
    ``YYYY-MM-DD HH:MM:SS[.ffffff]+00:00``, which sorts chronologically); read back with
    ``tzinfo=UTC`` whatever the session time zone. Naive datetimes are refused, never guessed.
    """

    field_type = "TIMESTAMPTZ"

    def db_value(self, value: Any) -> Any:
        if value is None or not isinstance(value, datetime):
            return value
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{self.name} must be a timezone-aware datetime")
        return value.astimezone(UTC)

    def python_value(self, value: Any) -> Any:
        parsed = super().python_value(value)  # type: ignore[no-untyped-call]
        if not isinstance(parsed, datetime):
            return parsed
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)


class BaseRow(peewee.Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


class UploadRow(BaseRow):
    upload_id = peewee.CharField(max_length=64, primary_key=True)
    user_id = peewee.CharField(max_length=128, index=True)
    object_key = peewee.CharField(max_length=512, unique=True)
    content_type = peewee.CharField(max_length=128)
    content_length = peewee.BigIntegerField()
    checksum_sha256 = peewee.CharField(max_length=64, null=True)
    status = peewee.CharField(max_length=32)
    created_at = UtcDateTimeField()
    url_expires_at = UtcDateTimeField(column_name="expires_at")
    """The column keeps its first name (a rename buys nothing over this mapping); verified rows written
    before migration 7 hold their old deletion deadline here, which nothing reads once they are verified."""
    source_expires_at = UtcDateTimeField(null=True)
    updated_at = UtcDateTimeField(null=True)
    stored_key = peewee.CharField(max_length=600, null=True)
    stored_content_type = peewee.CharField(max_length=128, null=True)
    stored_size = peewee.BigIntegerField(null=True)
    width = peewee.IntegerField(null=True)
    height = peewee.IntegerField(null=True)
    stored_checksum_sha256 = peewee.CharField(max_length=64, null=True)
    rejection_reason = peewee.CharField(max_length=64, null=True)
    purged_at = UtcDateTimeField(null=True)
    sweep_lease_until = UtcDateTimeField(null=True)
    version = peewee.IntegerField(default=0)
    verification_attempts = peewee.IntegerField(default=0)
    source_kept = peewee.BooleanField(default=False)
    source_kept_at = UtcDateTimeField(null=True)
    """When ``source_kept`` was last set or confirmed (``PeeweeUploadRepository.recheck_kept``)."""

    class Meta:
        table_name = "uploads"


class AuditRow(BaseRow):
    id = peewee.BigAutoField()
    occurred_at = UtcDateTimeField(index=True)
    event = peewee.CharField(max_length=64, index=True)
    actor_id = peewee.CharField(max_length=128, null=True, index=True)
    subject_id = peewee.CharField(max_length=128, null=True)
    outcome = peewee.CharField(max_length=32)
    reason = peewee.TextField(null=True)
    details = peewee.TextField()

    class Meta:
        table_name = "audit_events"


class TryOnRow(BaseRow):
    tryon_id = peewee.CharField(max_length=64, primary_key=True)
    user_id = peewee.CharField(max_length=128)
    upload_id = peewee.CharField(max_length=64)
    style_prompt = peewee.TextField()
    num_images = peewee.IntegerField()
    output_format = peewee.CharField(max_length=8)
    status = peewee.CharField(max_length=16)
    attempts = peewee.IntegerField()
    created_at = UtcDateTimeField()
    completed_at = UtcDateTimeField(null=True)
    error_code = peewee.CharField(max_length=64, null=True)
    error_message = peewee.TextField(null=True)
    error_retryable = peewee.BooleanField(null=True)
    idempotency_key = peewee.CharField(max_length=255, null=True)
    request_fingerprint = peewee.CharField(max_length=64, null=True)
    fal_request_id = peewee.CharField(max_length=255, null=True)
    status_url = peewee.TextField(null=True)
    response_url = peewee.TextField(null=True)
    cancel_url = peewee.TextField(null=True)
    submitted_at = UtcDateTimeField(null=True)
    next_action_at = UtcDateTimeField(null=True)
    lease_until = UtcDateTimeField(null=True)
    version = peewee.IntegerField(default=0)
    notified_request_id = peewee.CharField(max_length=255, null=True)

    class Meta:
        table_name = "tryons"


class FalRequestRow(BaseRow):
    """Every generator request submitted for a try-on, this attempt's and earlier ones'."""

    request_id = peewee.CharField(max_length=255, primary_key=True)
    tryon_id = peewee.CharField(max_length=64)

    class Meta:
        table_name = "fal_requests"


class ResultRow(BaseRow):
    result_id = peewee.CharField(max_length=80, primary_key=True)
    tryon_id = peewee.CharField(max_length=64)
    user_id = peewee.CharField(max_length=128)
    position = peewee.IntegerField()
    object_key = peewee.CharField(max_length=600)
    content_type = peewee.CharField(max_length=64)
    size = peewee.BigIntegerField()
    width = peewee.IntegerField(null=True)
    height = peewee.IntegerField(null=True)
    created_at = UtcDateTimeField()
    favorite = peewee.BooleanField(default=False)
    sweep_lease_until = UtcDateTimeField(null=True)

    class Meta:
        table_name = "tryon_results"


class UsageRow(BaseRow):
    user_id = peewee.CharField(max_length=128, primary_key=True)
    quota_day = peewee.CharField(max_length=10)
    images = peewee.IntegerField()

    class Meta:
        table_name = "user_usage"


def bound_to(db: peewee.Database, *models: type[peewee.Model]) -> Any:
    """Run queries of ``models`` (default: every row model) on ``db`` whatever the proxy points at.

    Peewee decides some query shapes (e.g. ``RETURNING`` on insert) from a model's own database, so
    naming ``db`` at execute time is not enough when the proxy is bound elsewhere.
    """
    return db.bind_ctx(
        models or (UploadRow, AuditRow, TryOnRow, ResultRow, UsageRow, FalRequestRow),
        bind_refs=False,
        bind_backrefs=False,
    )
