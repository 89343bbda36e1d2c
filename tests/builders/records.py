"""Domain records as the tests need them, in one place: what an upload looks like when it is issued."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from domain.model import Upload


def an_upload(
    user_id: str, upload_id: str, *, now: datetime, content_length: int = 1000, **changes: Any
) -> Upload:
    """An issued upload of a JPEG under ``uploads/<user>/<id>`` at ``now``, its URL valid for 300 s."""
    upload = Upload(
        upload_id=upload_id,
        user_id=user_id,
        object_key=f"uploads/{user_id}/{upload_id}",
        content_type="image/jpeg",
        content_length=content_length,
        checksum_sha256=None,
        created_at=now,
        url_expires_at=now + timedelta(seconds=300),
    )
    return replace(upload, **changes)
