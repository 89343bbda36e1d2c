"""Where every object lives: the one statement of the object-key layout.

- ``uploads/<user>/<upload_id>``: what a client PUTs with its signed URL (uploads bucket);
- ``sources/<user>/<upload_id>.<ext>``: the sanitised selfie verification stores (uploads bucket);
- ``processed/<user>/<tryon_id>/<n>.<ext>``: try-on results (processed bucket).

The sanitised copy lives apart from what clients PUT: the bucket's lifecycle backstop expires ``uploads/``
after a day, and ``sources/`` by tag, so a source a favourite holds can outlive it. The IAM documents
(deploy/iam) and the bucket lifecycle rules (adapters/s3_provisioning) grant and expire by these prefixes.
"""

from __future__ import annotations

from domain.images import IMAGE_EXTENSIONS

UPLOADS_PREFIX = "uploads/"
SOURCES_PREFIX = "sources/"
PROCESSED_PREFIX = "processed/"


def user_uploads_prefix(user_id: str) -> str:
    """Every key a user may PUT to starts with this."""
    return f"{UPLOADS_PREFIX}{user_id}/"


def upload_object_key(user_id: str, upload_id: str) -> str:
    return f"{user_uploads_prefix(user_id)}{upload_id}"


def source_object_key(user_id: str, upload_id: str, content_type: str) -> str:
    return f"{SOURCES_PREFIX}{user_id}/{upload_id}.{IMAGE_EXTENSIONS[content_type]}"


def result_object_key(user_id: str, tryon_id: str, position: int, content_type: str) -> str:
    """An unexpected content type is stored as ``.bin`` rather than refused."""
    return f"{PROCESSED_PREFIX}{user_id}/{tryon_id}/{position}.{IMAGE_EXTENSIONS.get(content_type, 'bin')}"
