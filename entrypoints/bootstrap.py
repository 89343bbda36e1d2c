"""The one composition root: builds every adapter from Settings; tests pass fakes as keyword overrides."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

import redis
from peewee import Database

from adapters.better_auth_jwt import BetterAuthJwtAuthenticator
from adapters.better_auth_session import BetterAuthSessionAuthenticator
from adapters.fal_queue import FalQueueGenerator
from adapters.fal_webhooks import FalWebhookVerifier, HttpJwksFetcher, JwksCache
from adapters.mtcnn_faces import MtcnnFaceDetector
from adapters.peewee_db import (
    Counts,
    PeeweeAuditLog,
    PeeweeUnitOfWork,
    bind,
    migrate,
    open_database,
    ping,
    read_counts,
)
from adapters.pillow_images import PillowImageSanitizer, SandboxedImageSanitizer
from adapters.redis_store import RedisChangeBoard, RedisProbe, RedisReplayGuard, connect_redis
from adapters.rq_queue import RqTryOnQueue, RqVerificationQueue, TryOnJobs
from adapters.s3_provisioning import (
    EXPIRING,
    EXPIRING_TAGGING,
    FAVORITE,
    RETENTION_TAG,
    BucketRole,
    ProvisionReport,
    S3BucketProvisioner,
)
from adapters.s3_storage import S3BucketProbe, S3PrivateObjects, S3UploadUrlSigner, make_s3_client
from adapters.system import RandomIds, SystemClock
from domain.auth import JwtOrSession
from domain.completion import UploadCompletion
from domain.faces import FacePolicy
from domain.model import AuditEvent
from domain.ports import (
    Authenticator,
    ChangeBoard,
    Clock,
    FaceDetector,
    IdGenerator,
    ImageGenerator,
    ImageSanitizer,
    ReplayGuard,
    ResultStorage,
    SourceUrlSigner,
    TryOnQueue,
    UnitOfWork,
    UploadStorage,
    UploadUrlSigner,
    VerificationQueue,
    WebhookVerifier,
)
from domain.retention import SourceExpiry
from domain.scrubbing import Scrubber
from domain.sweeper import Sweeper, SweepPolicy
from domain.tryon_runner import RunnerPolicy, TryOnRunner
from domain.tryons import TryOnDesk, TryOnLimits
from domain.uploads import UploadIssuer, UploadPolicy
from domain.user_data import UserData
from domain.verification import UploadVerifier, VerificationPolicy
from domain.webhooks import FalWebhooks
from entrypoints import jobs
from entrypoints.settings import Settings, SettingsError

FAL_KEY_REQUIRED = "FAL_API_KEY is required by the worker"
WEBHOOK_MAX_BODY_BYTES = 64 * 1024
"""fal's deliveries name a few result URLs; the app-wide body cap (MAX_CONTENT_LENGTH) is the same."""
TRYON_JOBS = TryOnJobs(advance_tryon=jobs.advance_tryon, expire_upload=jobs.expire_upload)
"""The job functions the queues name (RQ stores their dotted paths): handed to the adapter from here."""

ReadinessCheck = Callable[[], None]


def scrubber_for(settings: Settings) -> Scrubber:
    """The one scrubber: generic secrets plus this deployment's bucket names and fal key."""
    return Scrubber(
        [settings.uploads_bucket, settings.processed_bucket, settings.fal_api_key, settings.metrics_token]
    )


def close_connection(database: Database) -> None:
    """Peewee keeps one connection per thread: close it when the request ends."""
    if not database.is_closed():
        database.close()


@dataclass(frozen=True)
class Services:
    settings: Settings
    scrubber: Scrubber
    authenticator: Authenticator
    upload_issuer: UploadIssuer
    upload_completion: UploadCompletion
    upload_verifier: UploadVerifier
    """Run by the verifier process only: the web hands uploads to it through the ``verify`` queue."""
    face_detector: FaceDetector
    sanitizer: ImageSanitizer
    tryon_desk: TryOnDesk
    source_expiry: SourceExpiry
    user_data: UserData
    sweeper: Sweeper
    fal_webhooks: FalWebhooks
    tryon_runner: TryOnRunner | None
    """None where FAL_API_KEY is not set: only the worker needs it (see ``runner``)."""
    readiness_checks: Mapping[str, ReadinessCheck]
    rate_limit_storage_uri: str = field(repr=False)
    end_request: Callable[[], None] = field(default=lambda: None)
    read_counts: Callable[[], Counts] | None = None
    """For /metrics: audit and try-on counts from the database (None with a faked database)."""
    queue_depth: Callable[[], dict[str, int]] | None = None

    def runner(self) -> TryOnRunner:
        """The try-on runner, which only a process with FAL_API_KEY has: the worker refuses to start
        without it, and a try-on job run anywhere else fails with the same words."""
        if self.tryon_runner is None:
            raise SettingsError(FAL_KEY_REQUIRED)
        return self.tryon_runner


@dataclass
class Adapters:
    """Every port's implementation: real ones from Settings unless a test passed its own."""

    authenticator: Authenticator | None = None
    signer: UploadUrlSigner | None = None
    storage: UploadStorage | None = None
    sanitizer: ImageSanitizer | None = None
    detector: FaceDetector | None = None
    unit_of_work: Callable[[], UnitOfWork] | None = None
    clock: Clock | None = None
    ids: IdGenerator | None = None
    queue: TryOnQueue | None = None
    generator: ImageGenerator | None = None
    source_signer: SourceUrlSigner | None = None
    results: ResultStorage | None = None
    verification_queue: VerificationQueue | None = None
    changes: ChangeBoard | None = None
    webhook_verifier: WebhookVerifier | None = None
    replays: ReplayGuard | None = None


@dataclass
class Infrastructure:
    """What the adapters need kept or checked beyond the ports: readiness probes, the end of a request,
    /metrics' readings, and the one Redis connection (None where a test faked everything on Redis)."""

    checks: dict[str, ReadinessCheck] = field(default_factory=dict)
    end_request: Callable[[], None] = field(default=lambda: None)
    read_counts: Callable[[], Counts] | None = None
    queue_depth: Callable[[], dict[str, int]] | None = None
    redis: redis.Redis | None = field(default=None, repr=False)


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
        ports.unit_of_work = lambda: PeeweeUnitOfWork(database)
        built.checks["database"] = lambda: ping(database)
        built.end_request = partial(close_connection, database)
        built.read_counts = partial(read_counts, database)
    if None in (ports.signer, ports.storage, ports.results, ports.source_signer):
        _s3(settings, ports, built.checks)
    if None in (rate_limit_storage_uri, ports.queue, ports.verification_queue, ports.changes):
        built.redis = connect_redis(settings.redis_url)
        if ports.queue is None:
            rq_queue = rq_tryon_queue(built.redis)
            ports.queue, built.queue_depth = rq_queue, rq_queue.depth
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
        )
    services = _services(
        settings,
        ports,
        built,
        readiness_checks=built.checks if readiness_checks is None else readiness_checks,
        rate_limit_storage_uri=rate_limit_storage_uri or settings.redis_url,
    )
    return services, built


def rq_tryon_queue(connection: redis.Redis) -> RqTryOnQueue:
    """The ``tryons`` queue, whose jobs run this service's job functions."""
    return RqTryOnQueue(connection, TRYON_JOBS)


def _s3(settings: Settings, ports: Adapters, checks: dict[str, ReadinessCheck]) -> None:
    s3 = make_s3_client(region=settings.aws_region, endpoint_url=settings.s3_endpoint_url)
    sse, kms_key_id = settings.s3_sse, settings.s3_sse_kms_key_id

    def tagged_for_lifecycle(bucket: str) -> S3PrivateObjects:
        """Writes are tagged retention=expiring, which each bucket's lifecycle backstop expires; a favourite
        re-tags its result (and holds its selfie) retention=favorite. In the uploads bucket the service
        writes only sources/: what clients PUT under uploads/ goes through the pre-signed URL, untagged."""
        return S3PrivateObjects(
            s3,
            bucket,
            sse=sse,
            kms_key_id=kms_key_id,
            tags=EXPIRING_TAGGING,
            favorite_tags={RETENTION_TAG: FAVORITE},
            expiring_tags={RETENTION_TAG: EXPIRING},
        )

    uploads = tagged_for_lifecycle(settings.uploads_bucket)
    ports.signer = ports.signer or S3UploadUrlSigner(
        s3, settings.uploads_bucket, sse=sse, kms_key_id=kms_key_id
    )
    ports.storage = ports.storage or uploads
    ports.source_signer = ports.source_signer or uploads
    ports.results = ports.results or tagged_for_lifecycle(settings.processed_bucket)
    checks["storage"] = S3BucketProbe(s3, (settings.uploads_bucket, settings.processed_bucket)).check


def _authenticator(settings: Settings) -> Authenticator:
    jwt = BetterAuthJwtAuthenticator(
        jwks_url=settings.better_auth_jwks_url,
        issuer=settings.better_auth_issuer,
        audience=settings.better_auth_audience,
    )
    if settings.auth_mode == "jwt":
        return jwt
    session = BetterAuthSessionAuthenticator(
        base_url=settings.better_auth_url, secret=settings.better_auth_secret or ""
    )
    return session if settings.auth_mode == "session" else JwtOrSession(jwt=jwt, session=session)


def _services(
    settings: Settings,
    ports: Adapters,
    built: Infrastructure,
    *,
    readiness_checks: Mapping[str, ReadinessCheck],
    rate_limit_storage_uri: str,
) -> Services:
    assert ports.unit_of_work and ports.storage and ports.signer and ports.queue
    assert ports.results and ports.source_signer and ports.verification_queue and ports.changes
    assert ports.webhook_verifier and ports.replays
    clock, ids, unit_of_work = ports.clock or SystemClock(), ports.ids or RandomIds(), ports.unit_of_work
    detector = ports.detector or MtcnnFaceDetector()
    runner = None
    if ports.generator is not None:
        runner = TryOnRunner(
            policy=RunnerPolicy(
                max_attempts=settings.fal_max_attempts,
                image_url_ttl_seconds=settings.fal_image_url_ttl_seconds,
                source_retention_seconds=settings.source_retention_seconds,
                webhooks=settings.public_base_url is not None,
                webhook_grace_seconds=settings.fal_webhook_grace_seconds,
            ),
            generator=ports.generator,
            signer=ports.source_signer,
            results=ports.results,
            unit_of_work=unit_of_work,
            queue=ports.queue,
            changes=ports.changes,
            clock=clock,
            ids=ids,
        )
    # Decoding runs in a child process with its own budget; started lazily (only the verifier sanitises).
    sanitizer = ports.sanitizer or SandboxedImageSanitizer(PillowImageSanitizer())
    verification = VerificationPolicy(
        max_upload_bytes=settings.max_upload_bytes,
        unused_upload_ttl_seconds=settings.unused_upload_ttl_seconds,
        wait_seconds=settings.verify_wait_seconds,
    )
    expiry = SourceExpiry(
        storage=ports.storage,
        unit_of_work=unit_of_work,
        clock=clock,
        changes=ports.changes,
        queue=ports.queue,
    )
    return Services(
        settings=settings,
        scrubber=scrubber_for(settings),
        authenticator=ports.authenticator or _authenticator(settings),
        readiness_checks=readiness_checks,
        rate_limit_storage_uri=rate_limit_storage_uri,
        end_request=built.end_request,
        read_counts=built.read_counts,
        queue_depth=built.queue_depth,
        sweeper=Sweeper(
            policy=SweepPolicy(processed_retention_days=settings.processed_retention_days),
            uploads=ports.storage,
            results=ports.results,
            expiry=expiry,
            unit_of_work=unit_of_work,
            clock=clock,
        ),
        upload_issuer=UploadIssuer(
            policy=UploadPolicy(
                max_upload_bytes=settings.max_upload_bytes, url_ttl_seconds=settings.upload_url_ttl_seconds
            ),
            signer=ports.signer,
            unit_of_work=unit_of_work,
            clock=clock,
            ids=ids,
        ),
        upload_completion=UploadCompletion(
            policy=verification,
            storage=ports.storage,
            queue=ports.verification_queue,
            changes=ports.changes,
            unit_of_work=unit_of_work,
            clock=clock,
        ),
        upload_verifier=UploadVerifier(
            policy=verification,
            changes=ports.changes,
            faces=FacePolicy(),
            storage=ports.storage,
            sanitizer=sanitizer,
            detector=detector,
            unit_of_work=unit_of_work,
            clock=clock,
        ),
        face_detector=detector,
        sanitizer=sanitizer,
        tryon_desk=TryOnDesk(
            unit_of_work=unit_of_work,
            queue=ports.queue,
            results=ports.results,
            clock=clock,
            ids=ids,
            changes=ports.changes,
            limits=TryOnLimits(
                max_active=settings.max_active_tryons, daily_images=settings.daily_image_quota
            ),
        ),
        source_expiry=expiry,
        fal_webhooks=FalWebhooks(
            verifier=ports.webhook_verifier,
            replays=ports.replays,
            unit_of_work=unit_of_work,
            queue=ports.queue,
            clock=clock,
        ),
        user_data=UserData(
            uploads=ports.storage,
            results=ports.results,
            queue=ports.queue,
            changes=ports.changes,
            unit_of_work=unit_of_work,
            clock=clock,
            source_retention_seconds=settings.source_retention_seconds,
        ),
        tryon_runner=runner,
    )


# What the operators' commands run on: each opens what it needs and closes it when done.


def schema_migrator(settings: Settings) -> Callable[[], list[str]]:
    """``tryon migrate``: applies the pending migrations; returns their names ([] when up to date)."""

    def migrate_schema() -> list[str]:
        database = open_database(settings.database_url)
        try:
            return migrate(database)
        finally:
            database.close()

    return migrate_schema


@dataclass(frozen=True)
class BucketPlan:
    """``tryon provision``'s step for one bucket: ``ensure()`` creates and hardens it (idempotent); raises
    StorageUnavailable when S3 refuses, ValueError for a configuration it will not apply."""

    role: BucketRole
    ensure: Callable[[], ProvisionReport] = field(repr=False)


def bucket_plans(settings: Settings) -> tuple[BucketPlan, ...]:
    provisioner = S3BucketProvisioner(
        make_s3_client(region=settings.aws_region, endpoint_url=settings.s3_endpoint_url),
        region=settings.aws_region,
        sse=settings.s3_sse,
        kms_key_id=settings.s3_sse_kms_key_id,
    )

    def plan(role: BucketRole, bucket: str, cors_origins: tuple[str, ...]) -> BucketPlan:
        ensure = partial(
            provisioner.ensure_private_bucket,
            bucket,
            role=role,
            processed_retention_days=settings.processed_retention_days,
            cors_origins=cors_origins,
        )
        return BucketPlan(role=role, ensure=ensure)

    return (
        plan("uploads", settings.uploads_bucket, settings.cors_allowed_origins),
        plan("processed", settings.processed_bucket, ()),
    )


@dataclass(frozen=True)
class AuditTrail:
    """``tryon audit export``: the audit log's events, and the scrubber every printed line goes through."""

    events: Callable[[datetime | None, str | None], list[AuditEvent]] = field(repr=False)
    scrub: Scrubber = field(repr=False)


def audit_trail(settings: Settings) -> AuditTrail:
    def events(since: datetime | None, user_id: str | None) -> list[AuditEvent]:
        database = open_database(settings.database_url)
        try:
            return PeeweeAuditLog(database).events(since=since, user_id=user_id)
        finally:
            database.close()

    return AuditTrail(events=events, scrub=scrubber_for(settings))
