"""Every audit event the service records, each built in one place: its name, outcome, reason and details.

A service says what happened (``upload_rejected(upload, now, reason, ...)``); this module decides how
the fact is written down. ``details`` hold ids, sizes, counts and reason codes: never URLs, tokens or
image data.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from domain.model import AuditEvent, TryOn, TryOnResult, Upload

SUCCESS = "success"
FAILURE = "failure"


# Uploads (US1, US2): subject is the upload.


def upload_issued(upload: Upload, ttl_seconds: int) -> AuditEvent:
    details = {
        "content_type": upload.content_type,
        "content_length": upload.content_length,
        "checksum_supplied": upload.checksum_sha256 is not None,
        "ttl_seconds": ttl_seconds,
    }
    return AuditEvent(
        "upload.issued", upload.user_id, upload.upload_id, SUCCESS, upload.created_at, None, details
    )


def complete_refused(user_id: str, upload_id: str, now: datetime, code: str) -> AuditEvent:
    """A completion refused without changing the upload (not the caller's, a foreign key, nothing PUT)."""
    return AuditEvent("upload.complete_refused", user_id, upload_id, FAILURE, now, code)


def upload_validated(upload: Upload, now: datetime, details: dict[str, Any]) -> AuditEvent:
    return AuditEvent("upload.validated", upload.user_id, upload.upload_id, SUCCESS, now, None, details)


def upload_rejected(upload: Upload, now: datetime, reason: str, details: dict[str, Any]) -> AuditEvent:
    return AuditEvent("upload.rejected", upload.user_id, upload.upload_id, FAILURE, now, reason, details)


def upload_expired(upload: Upload, now: datetime, *, at_completion: bool) -> AuditEvent:
    """An upload never completed in time: refused to a late ``complete`` (a failure the client sees), or
    found by the sweep (``never_completed``, the sweep's success)."""
    if at_completion:
        return AuditEvent("upload.expired", upload.user_id, upload.upload_id, FAILURE, now, "upload_expired")
    return AuditEvent("upload.expired", upload.user_id, upload.upload_id, SUCCESS, now, "never_completed")


def upload_deleted(user_id: str, upload_id: str, now: datetime, reason: str) -> AuditEvent:
    """``reason``: ``user_request`` (DELETE /v1/uploads/{id}) or ``retention`` (its deadline passed)."""
    return AuditEvent("upload.deleted", user_id, upload_id, SUCCESS, now, reason)


# Results (US3, US4): subject is the result.


def result_deleted(result: TryOnResult, now: datetime, reason: str) -> AuditEvent:
    """``reason``: ``user_request`` (its upload was deleted) or ``retention`` (PROCESSED_RETENTION_DAYS)."""
    return AuditEvent("result.deleted", result.user_id, result.result_id, SUCCESS, now, reason)


def result_favorite(user_id: str, result_id: str, now: datetime, favorite: bool) -> AuditEvent:
    name = "result.favorited" if favorite else "result.unfavorited"
    return AuditEvent(name, user_id, result_id, SUCCESS, now)


def user_erased(user_id: str, now: datetime, *, uploads: int, results: int, tryons: int) -> AuditEvent:
    details = {"uploads": uploads, "results": results, "tryons": tryons}
    return AuditEvent("user.erased", user_id, user_id, SUCCESS, now, "erasure", details)


# Try-ons (US3): subject is the try-on.


def tryon_requested(tryon: TryOn) -> AuditEvent:
    details = {"upload_id": tryon.upload_id, "num_images": tryon.num_images}
    return AuditEvent(
        "tryon.requested", tryon.user_id, tryon.tryon_id, SUCCESS, tryon.created_at, None, details
    )


def generation_submitted(tryon: TryOn, now: datetime, attempt: int, request_id: str) -> AuditEvent:
    details = {"attempt": attempt, "request_id": request_id}
    return AuditEvent("falai.invoked", tryon.user_id, tryon.tryon_id, "submitted", now, None, details)


def generation_failed(
    tryon: TryOn, now: datetime, attempt: int, code: str, retryable: bool | None, *, retrying: bool
) -> AuditEvent:
    """``retryable`` is the generator's word on a failure it reported (then the details say so, and name
    the generator's request); None for a failure of ours (the selfie went)."""
    details: dict[str, Any] = {"attempt": attempt}
    if retryable is not None:
        details |= {"code": code, "retryable": retryable}
        if tryon.submission is not None:
            details["request_id"] = tryon.submission.request_id
    outcome = "retrying" if retrying else "failed"
    return AuditEvent("falai.failed", tryon.user_id, tryon.tryon_id, outcome, now, code, details)


def generation_succeeded(tryon: TryOn, now: datetime) -> AuditEvent:
    """``generation_seconds``: from this attempt's submission to now (metrics' fal generation time)."""
    details: dict[str, Any] = {"request_id": tryon.submission.request_id if tryon.submission else None}
    if tryon.submitted_at is not None:
        details["generation_seconds"] = round(max((now - tryon.submitted_at).total_seconds(), 0.0), 3)
    return AuditEvent("falai.succeeded", tryon.user_id, tryon.tryon_id, SUCCESS, now, None, details)


def result_stored(tryon: TryOn, now: datetime, result: TryOnResult) -> AuditEvent:
    details = {"result_id": result.result_id, "size": result.size}
    return AuditEvent("result.stored", tryon.user_id, tryon.tryon_id, SUCCESS, now, None, details)


# The audit trail's own retention (AUDIT_RETENTION_DAYS): no actor; subject is the month or nothing.


def partition_dropped(month: str, rows: int, before: datetime, now: datetime) -> AuditEvent:
    """A whole month of audit events dropped by retention (Postgres: its partition detached and dropped)."""
    details = {"month": month, "rows": rows, "before": instant_text(before)}
    return AuditEvent("audit.partition_dropped", None, month, SUCCESS, now, "retention", details)


def rows_pruned(rows: int, before: datetime, now: datetime) -> AuditEvent:
    """A batch of audit events older than ``before`` deleted by `tryon audit prune` (SQLite)."""
    details = {"rows": rows, "before": instant_text(before)}
    return AuditEvent("audit.rows_pruned", None, None, SUCCESS, now, "retention", details)


def instant_text(moment: datetime) -> str:
    """An instant as the audit trail writes it: ISO 8601 in UTC with a ``Z`` (``2026-11-28T22:00:00Z``)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
