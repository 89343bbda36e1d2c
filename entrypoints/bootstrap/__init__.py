"""The one composition root: builds every adapter and service from Settings (tests pass fakes as keyword
overrides), and what each process and operator command runs on. Nothing else constructs an adapter."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial

import redis

from adapters.fal_queue import FalQueueGenerator
from adapters.fal_webhooks import FalWebhookVerifier, HttpJwksFetcher, JwksCache
from adapters.peewee_db import (
    PeeweeAuditRetention,
    PeeweeUnitOfWork,
    bind,
    open_database,
    ping,
    read_unsettled,
)
from adapters.prometheus_metrics import MetricsExporter, observe_fal_request, record_events
from adapters.redis_store import RedisChangeBoard, RedisProbe, RedisReplayGuard, connect_redis
from adapters.rq_queue import RqVerificationQueue, queue_depths
from adapters.system import SystemClock
from entrypoints import jobs
from entrypoints.bootstrap.adapters import (
    RQ_QUEUES,
    TRYON_JOBS,
    WEBHOOK_MAX_BODY_BYTES,
    Adapters,
    Infrastructure,
    ReadinessCheck,
    build_s3,
    close_connection,
    rq_tryon_queue,
)
from entrypoints.bootstrap.operator_tools import (
    AuditTrail,
    BucketPlan,
    audit_pruner,
    audit_trail,
    bucket_plans,
    schema_migrator,
)
from entrypoints.bootstrap.services import FAL_KEY_REQUIRED, Services, build_services, scrubber_for
from entrypoints.settings import Settings


@dataclass(frozen=True)
class QueueProcess:
    """What ``tryon worker`` and ``tryon verifier`` run on: the services their jobs call, and the Redis
    connection their RQ workers share with the adapters."""

    services: Services
    redis: redis.Redis = field(repr=False)


def bootstrap(
    settings: Settings | None = None,
    *,
    readiness_checks: Mapping[str, ReadinessCheck] | None = None,
    rate_limit_storage_uri: str | None = None,
    **overrides: object,
) -> Services:
    services, _ = _compose(
        settings or Settings.from_env(),
        Adapters(**overrides),  # type: ignore[arg-type]
        readiness_checks=readiness_checks,
        rate_limit_storage_uri=rate_limit_storage_uri,
    )
    return services


def worker_process(settings: Settings) -> QueueProcess:
    """``tryon worker``: refuses to start without FAL_API_KEY (SettingsError)."""
    process = _queue_process(settings)
    process.services.runner()
    return process


def verifier_process(settings: Settings) -> QueueProcess:
    """``tryon verifier``."""
    return _queue_process(settings)


def metrics_exporter(settings: Settings) -> MetricsExporter | None:
    """The worker's or verifier's own /metrics on METRICS_PORT, started; None unless both METRICS_PORT and
    METRICS_TOKEN are set (metrics are never served without the token)."""
    if settings.metrics_port is None or not settings.metrics_token:
        return None
    return MetricsExporter(settings.metrics_port, settings.metrics_token).start()


def _queue_process(settings: Settings) -> QueueProcess:
    services, infrastructure = _compose(settings, Adapters())
    assert infrastructure.redis is not None  # nothing was faked: the real queues were built on it
    return QueueProcess(services=services, redis=infrastructure.redis)


def _compose(
    settings: Settings,
    ports: Adapters,
    *,
    readiness_checks: Mapping[str, ReadinessCheck] | None = None,
    rate_limit_storage_uri: str | None = None,
) -> tuple[Services, Infrastructure]:
    built = Infrastructure()
    if ports.unit_of_work is None:
        database = open_database(settings.database_url)
        bind(database)
        # Metrics count the audit events each transaction committed, in the process that committed them.
        ports.unit_of_work = lambda: PeeweeUnitOfWork(database, on_commit=record_events)
        built.checks["database"] = lambda: ping(database)
        built.end_request = partial(close_connection, database)
        ports.audit_retention = ports.audit_retention or PeeweeAuditRetention(database)
        built.unsettled = partial(read_unsettled, database)
    if None in (ports.signer, ports.storage, ports.results, ports.source_signer):
        build_s3(settings, ports, built.checks)
    if None in (rate_limit_storage_uri, ports.queue, ports.verification_queue, ports.changes):
        built.redis = connect_redis(settings.redis_url)
        if ports.queue is None:
            ports.queue = rq_tryon_queue(built.redis)
            built.queue_depths = partial(queue_depths, built.redis, RQ_QUEUES)
        ports.verification_queue = ports.verification_queue or RqVerificationQueue(
            built.redis, jobs.verify_upload
        )
        ports.changes = ports.changes or RedisChangeBoard(built.redis)  # one per process: one waiter cap
        built.checks["redis"] = RedisProbe(built.redis).check
    if ports.replays is None:  # a client connects lazily: only a webhook delivery uses it
        ports.replays = RedisReplayGuard(built.redis or connect_redis(settings.redis_url))
    if ports.webhook_verifier is None:  # fal's keys are fetched on the first delivery, not before
        keys = JwksCache(HttpJwksFetcher(settings.fal_webhook_jwks_url))
        ports.webhook_verifier = FalWebhookVerifier(
            keys, ports.clock or SystemClock(), max_body_bytes=WEBHOOK_MAX_BODY_BYTES
        )
    if ports.generator is None and settings.fal_api_key:
        ports.generator = FalQueueGenerator(
            api_key=settings.fal_api_key,
            queue_url=settings.fal_queue_url,
            model=settings.fal_model,
            result_hosts=settings.fal_result_hosts,
            webhook_url=settings.fal_webhook_url,
            observe=observe_fal_request,
        )
    services = build_services(
        settings,
        ports,
        built,
        readiness_checks=built.checks if readiness_checks is None else readiness_checks,
        rate_limit_storage_uri=rate_limit_storage_uri or settings.redis_url,
    )
    return services, built


__all__ = [
    "FAL_KEY_REQUIRED",
    "TRYON_JOBS",
    "WEBHOOK_MAX_BODY_BYTES",
    "Adapters",
    "AuditTrail",
    "BucketPlan",
    "QueueProcess",
    "ReadinessCheck",
    "Services",
    "audit_pruner",
    "audit_trail",
    "bootstrap",
    "bucket_plans",
    "close_connection",
    "metrics_exporter",
    "rq_tryon_queue",
    "schema_migrator",
    "scrubber_for",
    "verifier_process",
    "worker_process",
]
