"""Peewee persistence: SQLite in development, PostgreSQL in production, the same code for both."""

from adapters.peewee_db.audit_partitions import PeeweeAuditRetention
from adapters.peewee_db.database import bind, database_proxy, open_database, ping
from adapters.peewee_db.metrics import Unsettled, read_unsettled
from adapters.peewee_db.migrations import MIGRATIONS, Migration, migrate
from adapters.peewee_db.models import AuditRow, ResultRow, TryOnRow, UploadRow
from adapters.peewee_db.outbox import AuditListener, EventOutbox
from adapters.peewee_db.repositories import PeeweeAuditLog, PeeweeUploadRepository
from adapters.peewee_db.tryon_repositories import PeeweeResultRepository, PeeweeTryOnRepository
from adapters.peewee_db.unit_of_work import PeeweeUnitOfWork

__all__ = [
    "MIGRATIONS",
    "AuditListener",
    "AuditRow",
    "EventOutbox",
    "Migration",
    "PeeweeAuditLog",
    "PeeweeAuditRetention",
    "PeeweeResultRepository",
    "PeeweeTryOnRepository",
    "PeeweeUnitOfWork",
    "PeeweeUploadRepository",
    "ResultRow",
    "TryOnRow",
    "Unsettled",
    "UploadRow",
    "bind",
    "database_proxy",
    "migrate",
    "open_database",
    "ping",
    "read_unsettled",
]
