"""Domain records as the tests need them, in one place: what an upload looks like when it is issued, and a
try-on when it is ordered."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from domain.model import TryOn, Upload


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


def a_tryon(
    tryon_id: str = "t1", *, now: datetime, user_id: str = "alice", upload_id: str = "up1", **changes: Any
) -> TryOn:
    """A queued try-on of one JPEG of "a copper bob", ordered at ``now`` and due then."""
    tryon = TryOn(
        tryon_id=tryon_id,
        user_id=user_id,
        upload_id=upload_id,
        style_prompt="a copper bob",
        num_images=1,
        output_format="jpeg",
        created_at=now,
        next_action_at=now,
    )
    return replace(tryon, **changes)
