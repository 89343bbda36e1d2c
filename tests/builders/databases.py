"""Real databases for the integration and e2e tiers (a fresh Postgres schema, a SQLite or Postgres
backend) and ready-made records to store in them."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import peewee
import psycopg2
import pytest

from adapters.peewee_db import migrate, open_database
from domain.model import AuditEvent, TryOn, Upload
from tests import leaks
from tests.builders import records
from tests.builders.records import an_upload

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


@dataclass
class Backend:
    name: str
    url: str
    opened: list[peewee.Database] = field(default_factory=list)

    def open(self) -> peewee.Database:
        """A new, independent connection to the same database."""
        db = open_database(self.url)
        self.opened.append(db)
        return db

    def close_all(self) -> None:
        for db in self.opened:
            if not db.is_closed():
                db.close()


def postgres_admin() -> psycopg2.extensions.connection:
    try:
        connection = psycopg2.connect(POSTGRES_URL, connect_timeout=5)
    except psycopg2.OperationalError as error:
        reason = str(error).strip()
    else:
        connection.autocommit = True
        return connection
    pytest.fail(
        f"PostgreSQL is unreachable at TEST_POSTGRES_URL={POSTGRES_URL!r} ({reason}). "
        "These tests need it: start the server or point TEST_POSTGRES_URL at one.",
        pytrace=False,
    )


def _with_search_path(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query), ("options", f"-c search_path={schema}")]
    return urlunsplit(parts._replace(query=urlencode(query)))


@contextmanager
def postgres_schema(prefix: str) -> Iterator[str]:
    """An empty schema of its own on the running Postgres (its URL); dropped afterwards, once the leak scan
    has its rows."""
    schema = f"{prefix}_{secrets.token_hex(6)}"
    admin = postgres_admin()
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield _with_search_path(POSTGRES_URL, schema)
    finally:
        leaks.keep_postgres_schema(admin, schema)
        with admin.cursor() as cursor:
            cursor.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()


@contextmanager
def migrated_postgres_schema(prefix: str) -> Iterator[str]:
    """A freshly migrated schema of its own on the running Postgres (its URL); dropped afterwards."""
    with postgres_schema(prefix) as url:
        database = open_database(url)
        migrate(database)
        database.close()
        yield url


def an_intent(upload_id: str = "up_1", *, user_id: str = "user_1", **changes: object) -> Upload:
    return an_upload(user_id, upload_id, now=T0, content_length=5 * 1024 * 1024, **changes)


def a_tryon(
    tryon_id: str = "t1", *, user_id: str = "user_1", upload_id: str = "up_1", **changes: object
) -> TryOn:
    return records.a_tryon(tryon_id, now=T0, user_id=user_id, upload_id=upload_id, **changes)


def an_event(subject_id: str = "up_1", *, actor_id: str | None = "user_1", **changes: object) -> AuditEvent:
    values: dict[str, object] = {
        "event": "upload.issued",
        "actor_id": actor_id,
        "subject_id": subject_id,
        "outcome": "success",
        "occurred_at": T0,
        "details": {"ttl_seconds": 300, "content_type": "image/jpeg", "checksum_supplied": False},
    }
    values.update(changes)
    return AuditEvent(**values)  # type: ignore[arg-type]
