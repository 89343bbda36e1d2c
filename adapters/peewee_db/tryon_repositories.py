"""Try-ons and their results, stored with Peewee (same conventions as repositories.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import peewee

from adapters.peewee_db.database import unavailable_on_failure
from adapters.peewee_db.models import (
    SETTLED_TRYON_STATUSES,
    FalRequestRow,
    ResultRow,
    TryOnRow,
    bound_to,
    unsettled_tryon,
)
from domain.model import Submission, TryOn, TryOnError, TryOnResult, TryOnStatus
from domain.ports import ResultRepository, TryOnRepository

_SETTLED = SETTLED_TRYON_STATUSES


class PeeweeTryOnRepository(TryOnRepository):
    def __init__(self, db: peewee.Database) -> None:
        self._db = db

    def add(self, tryon: TryOn) -> None:
        with unavailable_on_failure("recording a try-on"), bound_to(self._db):
            TryOnRow.insert(tryon_id=tryon.tryon_id, **_columns(tryon)).execute(self._db)

    def get(self, tryon_id: str) -> TryOn | None:
        with unavailable_on_failure("reading a try-on"), bound_to(self._db):
            row = TryOnRow.select().where(TryOnRow.tryon_id == tryon_id).first(self._db)
        return None if row is None else _tryon(row)

    def by_idempotency_key(self, user_id: str, key: str) -> TryOn | None:
        with unavailable_on_failure("reading a try-on"), bound_to(self._db):
            query = TryOnRow.select().where((TryOnRow.user_id == user_id) & (TryOnRow.idempotency_key == key))
            row = query.first(self._db)
        return None if row is None else _tryon(row)

    def update(self, tryon: TryOn) -> bool:
        at_version = (TryOnRow.tryon_id == tryon.tryon_id) & (TryOnRow.version == tryon.version)
        with unavailable_on_failure("updating a try-on"), bound_to(self._db):
            query = TryOnRow.update(lease_until=None, version=TryOnRow.version + 1, **_columns(tryon))
            return bool(query.where(at_version).execute(self._db) == 1)

    def claim(self, tryon_id: str, now: datetime, lease_until: datetime) -> TryOn | None:
        free = TryOnRow.lease_until.is_null() | (TryOnRow.lease_until < now)
        unsettled = TryOnRow.status.not_in(_SETTLED)
        with unavailable_on_failure("claiming a try-on"), bound_to(self._db):
            query = TryOnRow.update(lease_until=lease_until, version=TryOnRow.version + 1)
            changed = query.where((TryOnRow.tryon_id == tryon_id) & free & unsettled).execute(self._db)
        return self.get(tryon_id) if changed == 1 else None

    def unsettled_for_user(self, user_id: str) -> int:
        with unavailable_on_failure("counting try-ons"), bound_to(self._db):
            query = TryOnRow.select().where((TryOnRow.user_id == user_id) & TryOnRow.status.not_in(_SETTLED))
            return int(query.count(self._db))

    def unsettled_ids_for_user(self, user_id: str) -> list[str]:
        unsettled = (TryOnRow.user_id == user_id) & unsettled_tryon(TryOnRow.status)
        with unavailable_on_failure("reading try-ons"), bound_to(self._db):
            query = TryOnRow.select(TryOnRow.tryon_id).where(unsettled).order_by(TryOnRow.tryon_id)
            return [row.tryon_id for row in query.execute(self._db)]

    def delete_for_user(self, user_id: str) -> int:
        with unavailable_on_failure("deleting try-ons"), bound_to(self._db):
            theirs = TryOnRow.select(TryOnRow.tryon_id).where(TryOnRow.user_id == user_id)
            FalRequestRow.delete().where(FalRequestRow.tryon_id.in_(theirs)).execute(self._db)
            return int(TryOnRow.delete().where(TryOnRow.user_id == user_id).execute(self._db))

    def record_request(self, tryon_id: str, request_id: str) -> None:
        with unavailable_on_failure("recording a generator request"), bound_to(self._db):
            query = FalRequestRow.insert(request_id=request_id, tryon_id=tryon_id)
            query.on_conflict_ignore().execute(self._db)

    def by_request_id(self, request_id: str) -> TryOn | None:
        with unavailable_on_failure("reading a try-on"), bound_to(self._db):
            found = FalRequestRow.select().where(FalRequestRow.request_id == request_id).first(self._db)
        return None if found is None else self.get(found.tryon_id)

    def note_finished(self, tryon_id: str, request_id: str, now: datetime) -> bool:
        current = (TryOnRow.tryon_id == tryon_id) & (TryOnRow.fal_request_id == request_id)
        with unavailable_on_failure("marking a try-on"), bound_to(self._db):
            query = TryOnRow.update(notified_request_id=request_id, next_action_at=now)
            changed = query.where(current & TryOnRow.status.not_in(_SETTLED)).execute(self._db)
        return bool(changed == 1)

    def unsettled_for_upload(self, upload_id: str) -> int:
        with unavailable_on_failure("counting try-ons"), bound_to(self._db):
            query = TryOnRow.select().where(
                (TryOnRow.upload_id == upload_id) & TryOnRow.status.not_in(_SETTLED)
            )
            return int(query.count(self._db))

    def due(self, before: datetime, limit: int) -> list[str]:
        """Reads ``tryons_unsettled_next_action_at`` (unsettled rows only), in its order."""
        free = TryOnRow.lease_until.is_null() | (TryOnRow.lease_until < before)
        overdue = TryOnRow.next_action_at.is_null() | (TryOnRow.next_action_at < before)
        with unavailable_on_failure("finding overdue try-ons"), bound_to(self._db):
            query = (
                TryOnRow.select(TryOnRow.tryon_id)
                .where(unsettled_tryon(TryOnRow.status) & free & overdue)
                .order_by(TryOnRow.next_action_at)
                .limit(limit)
            )
            return [row.tryon_id for row in query.execute(self._db)]


class PeeweeResultRepository(ResultRepository):
    def __init__(self, db: peewee.Database) -> None:
        self._db = db

    def add_if_absent(self, result: TryOnResult) -> None:
        values = {name: getattr(result, name) for name in _RESULT_FIELDS}
        with unavailable_on_failure("recording a result"), bound_to(self._db):
            ResultRow.insert(**values).on_conflict_ignore().execute(self._db)

    def set_favorite(self, result_id: str, favorite: bool, now: datetime) -> bool:
        flips = (ResultRow.result_id == result_id) & (ResultRow.favorite == (not favorite))
        unswept = ResultRow.sweep_lease_until.is_null() | (ResultRow.sweep_lease_until < now)
        with unavailable_on_failure("updating a result"), bound_to(self._db):
            query = ResultRow.update(favorite=favorite).where(flips & unswept)
            return bool(query.execute(self._db) == 1)

    def for_upload(self, upload_id: str) -> list[TryOnResult]:
        with unavailable_on_failure("reading results"), bound_to(self._db):
            tryons = TryOnRow.select(TryOnRow.tryon_id).where(TryOnRow.upload_id == upload_id)
            query = ResultRow.select().where(ResultRow.tryon_id.in_(tryons)).order_by(ResultRow.result_id)
            return [_result(row) for row in query.execute(self._db)]

    def for_user(self, user_id: str) -> list[TryOnResult]:
        with unavailable_on_failure("reading results"), bound_to(self._db):
            query = ResultRow.select().where(ResultRow.user_id == user_id).order_by(ResultRow.result_id)
            return [_result(row) for row in query.execute(self._db)]

    def delete(self, result_id: str) -> bool:
        with unavailable_on_failure("deleting a result"), bound_to(self._db):
            return bool(ResultRow.delete().where(ResultRow.result_id == result_id).execute(self._db) == 1)

    def claim_for_deletion(self, result_id: str, lease_until: datetime) -> bool:
        kept = ResultRow.favorite == True  # noqa: E712
        with unavailable_on_failure("claiming a result for deletion"), bound_to(self._db):
            query = ResultRow.update(sweep_lease_until=lease_until)
            return bool(query.where((ResultRow.result_id == result_id) & ~kept).execute(self._db) == 1)

    def expired(self, created_before: datetime, limit: int) -> list[TryOnResult]:
        """Reads ``tryon_results_unkept_created_at`` (``WHERE NOT favorite``: favourites kept for years are
        not in it), in its order; ``NOT favorite`` spelled as the index's predicate (SQLite cannot prove it
        from ``favorite = ?``)."""
        old = ~ResultRow.favorite & (ResultRow.created_at < created_before)
        with unavailable_on_failure("finding expired results"), bound_to(self._db):
            query = ResultRow.select().where(old).order_by(ResultRow.created_at).limit(limit)
            return [_result(row) for row in query.execute(self._db)]

    def claim_sweep(self, result_id: str, now: datetime, lease_until: datetime) -> bool:
        free = ResultRow.sweep_lease_until.is_null() | (ResultRow.sweep_lease_until < now)
        kept = ResultRow.favorite == True  # noqa: E712
        with unavailable_on_failure("claiming a result for the sweep"), bound_to(self._db):
            query = ResultRow.update(sweep_lease_until=lease_until)
            changed = query.where((ResultRow.result_id == result_id) & free & ~kept).execute(self._db)
        return bool(changed == 1)

    def for_tryon(self, tryon_id: str) -> list[TryOnResult]:
        with unavailable_on_failure("reading results"), bound_to(self._db):
            query = ResultRow.select().where(ResultRow.tryon_id == tryon_id).order_by(ResultRow.position)
            return [_result(row) for row in query.execute(self._db)]

    def get(self, result_id: str) -> TryOnResult | None:
        with unavailable_on_failure("reading a result"), bound_to(self._db):
            row = ResultRow.select().where(ResultRow.result_id == result_id).first(self._db)
        return None if row is None else _result(row)


_RESULT_FIELDS = (
    "result_id",
    "tryon_id",
    "user_id",
    "position",
    "object_key",
    "content_type",
    "size",
    "width",
    "height",
    "created_at",
    "favorite",
)


def _result(row: Any) -> TryOnResult:
    return TryOnResult(**{name: getattr(row, name) for name in _RESULT_FIELDS})


def _columns(tryon: TryOn) -> dict[str, Any]:
    error, submission = tryon.error, tryon.submission
    return {
        "user_id": tryon.user_id,
        "upload_id": tryon.upload_id,
        "style_prompt": tryon.style_prompt,
        "num_images": tryon.num_images,
        "output_format": tryon.output_format,
        "status": tryon.status.value,
        "attempts": tryon.attempts,
        "created_at": tryon.created_at,
        "completed_at": tryon.completed_at,
        "error_code": error and error.code,
        "error_message": error and error.message,
        "error_retryable": error and error.retryable,
        "idempotency_key": tryon.idempotency_key,
        "request_fingerprint": tryon.request_fingerprint,
        "fal_request_id": submission and submission.request_id,
        "status_url": submission and submission.status_url,
        "response_url": submission and submission.response_url,
        "cancel_url": submission and submission.cancel_url,
        "submitted_at": tryon.submitted_at,
        "next_action_at": tryon.next_action_at,
    }


def _tryon(row: Any) -> TryOn:
    """Rows written by ``_columns``: the error and submission columns are each all set or all null."""
    error = None
    if row.error_code is not None:
        error = TryOnError(row.error_code, row.error_message, bool(row.error_retryable))
    submission = None
    if row.fal_request_id is not None:
        submission = Submission(row.fal_request_id, row.status_url, row.response_url, row.cancel_url)
    return TryOn(
        tryon_id=row.tryon_id,
        user_id=row.user_id,
        upload_id=row.upload_id,
        style_prompt=row.style_prompt,
        num_images=row.num_images,
        output_format=row.output_format,
        created_at=row.created_at,
        status=TryOnStatus(row.status),
        attempts=row.attempts,
        completed_at=row.completed_at,
        error=error,
        idempotency_key=row.idempotency_key,
        request_fingerprint=row.request_fingerprint,
        submission=submission,
        submitted_at=row.submitted_at,
        next_action_at=row.next_action_at,
        version=row.version,
        notified_request_id=row.notified_request_id,
    )
