"""The database fixtures (SQLite and an isolated Postgres schema) for every repository test module."""

from tests.integration.test_peewee_repositories import backend, db

__all__ = ["backend", "db"]
