"""The adapters: every port's real implementation, built from Settings unless a test passed its own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import redis
from peewee import Database

from adapters.better_auth_jwt import BetterAuthJwtAuthenticator
from adapters.better_auth_session import BetterAuthSessionAuthenticator
from adapters.prometheus_metrics import QueueDepths, Unsettled
from adapters.rq_queue import VERIFY_QUEUE, RqTryOnQueue, TryOnJobs
from adapters.s3_provisioning import (
    EXPIRING,
    EXPIRING_TAGGING,
    FAVORITE,
    RETENTION_TAG,
)
from adapters.s3_storage import S3BucketProbe, S3PrivateObjects, S3UploadUrlSigner, make_s3_client
from domain.auth import JwtOrSession
from domain.ports import (
    AuditRetention,
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
from entrypoints import jobs
from entrypoints.settings import Settings

WEBHOOK_MAX_BODY_BYTES = 64 * 1024
"""fal's deliveries name a few result URLs; the app-wide body cap (MAX_CONTENT_LENGTH) is the same."""


RQ_QUEUES = ("tryons", VERIFY_QUEUE, "maintenance")
"""Every RQ queue: the worker's (try-on steps, maintenance) and the verifier's."""

TRYON_JOBS = TryOnJobs(advance_tryon=jobs.advance_tryon, expire_upload=jobs.expire_upload)
"""The job functions the queues name (RQ stores their dotted paths): handed to the adapter from here."""


ReadinessCheck = Callable[[], None]


def close_connection(database: Database) -> None:
    """Peewee keeps one connection per thread: close it when the request ends."""
    if not database.is_closed():
        database.close()


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
    audit_retention: AuditRetention | None = None
    """None with a faked database: the sweep then leaves the audit trail alone."""


@dataclass
class Infrastructure:
    """What the adapters need kept or checked beyond the ports: readiness probes, the end of a request,
    the shared state /metrics reads (None where faked), and the one Redis connection (None where a test
    faked everything on Redis)."""

    checks: dict[str, ReadinessCheck] = field(default_factory=dict)
    end_request: Callable[[], None] = field(default=lambda: None)
    unsettled: Unsettled | None = None
    queue_depths: QueueDepths | None = None
    redis: redis.Redis | None = field(default=None, repr=False)


def rq_tryon_queue(connection: redis.Redis) -> RqTryOnQueue:
    """The ``tryons`` queue, whose jobs run this service's job functions."""
    return RqTryOnQueue(connection, TRYON_JOBS)


def build_s3(settings: Settings, ports: Adapters, checks: dict[str, ReadinessCheck]) -> None:
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


def authenticator_for(settings: Settings) -> Authenticator:
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
