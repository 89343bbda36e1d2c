"""The one composition root: builds every adapter from Settings; tests pass fakes as keyword overrides."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial

from peewee import Database

from adapters.better_auth_jwt import BetterAuthJwtAuthenticator
from adapters.mtcnn_faces import MtcnnFaceDetector
from adapters.peewee_db import PeeweeUnitOfWork, bind, open_database, ping
from adapters.pillow_images import PillowImageSanitizer
from adapters.redis_store import RedisProbe, connect_redis
from adapters.s3_storage import S3BucketProbe, S3UploadStorage, S3UploadUrlSigner, make_s3_client
from adapters.system import RandomIds, SystemClock
from domain.faces import FacePolicy
from domain.ports import (
    Authenticator,
    Clock,
    FaceDetector,
    IdGenerator,
    ImageSanitizer,
    UnitOfWork,
    UploadStorage,
    UploadUrlSigner,
)
from domain.scrubbing import Scrubber
from domain.uploads import UploadIssuer, UploadPolicy
from domain.verification import UploadVerifier, VerificationPolicy
from entrypoints.settings import Settings

ReadinessCheck = Callable[[], None]


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
    upload_verifier: UploadVerifier
    face_detector: FaceDetector
    readiness_checks: Mapping[str, ReadinessCheck]
    rate_limit_storage_uri: str = field(repr=False)
    end_request: Callable[[], None] = field(default=lambda: None)


def bootstrap(
    settings: Settings | None = None,
    *,
    authenticator: Authenticator | None = None,
    signer: UploadUrlSigner | None = None,
    storage: UploadStorage | None = None,
    sanitizer: ImageSanitizer | None = None,
    detector: FaceDetector | None = None,
    unit_of_work: Callable[[], UnitOfWork] | None = None,
    clock: Clock | None = None,
    ids: IdGenerator | None = None,
    readiness_checks: Mapping[str, ReadinessCheck] | None = None,
    rate_limit_storage_uri: str | None = None,
) -> Services:
    settings = settings or Settings.from_env()
    checks: dict[str, ReadinessCheck] = {}
    end_request: Callable[[], None] = lambda: None  # noqa: E731

    if unit_of_work is None:
        database = open_database(settings.database_url)
        bind(database)
        unit_of_work = lambda: PeeweeUnitOfWork(database)  # noqa: E731
        checks["database"] = lambda: ping(database)
        end_request = partial(close_connection, database)

    if signer is None or storage is None:
        s3 = make_s3_client(region=settings.aws_region, endpoint_url=settings.s3_endpoint_url)
        sse, kms_key_id = settings.s3_sse, settings.s3_sse_kms_key_id
        signer = signer or S3UploadUrlSigner(s3, settings.uploads_bucket, sse=sse, kms_key_id=kms_key_id)
        storage = storage or S3UploadStorage(s3, settings.uploads_bucket, sse=sse, kms_key_id=kms_key_id)
        checks["storage"] = S3BucketProbe(s3, (settings.uploads_bucket, settings.processed_bucket)).check

    if rate_limit_storage_uri is None:
        rate_limit_storage_uri = settings.redis_url
        checks["redis"] = RedisProbe(connect_redis(settings.redis_url)).check

    if authenticator is None:
        authenticator = BetterAuthJwtAuthenticator(
            jwks_url=settings.better_auth_jwks_url,
            issuer=settings.better_auth_issuer,
            audience=settings.better_auth_audience,
        )

    clock = clock or SystemClock()
    detector = detector or MtcnnFaceDetector()
    verifier = UploadVerifier(
        policy=VerificationPolicy(
            max_upload_bytes=settings.max_upload_bytes,
            unused_upload_ttl_seconds=settings.unused_upload_ttl_seconds,
        ),
        faces=FacePolicy(),
        storage=storage,
        sanitizer=sanitizer or PillowImageSanitizer(),
        detector=detector,
        unit_of_work=unit_of_work,
        clock=clock,
    )
    issuer = UploadIssuer(
        policy=UploadPolicy(
            max_upload_bytes=settings.max_upload_bytes, url_ttl_seconds=settings.upload_url_ttl_seconds
        ),
        signer=signer,
        unit_of_work=unit_of_work,
        clock=clock,
        ids=ids or RandomIds(),
    )
    return Services(
        settings=settings,
        scrubber=Scrubber([settings.uploads_bucket, settings.processed_bucket, settings.fal_api_key]),
        authenticator=authenticator,
        upload_issuer=issuer,
        upload_verifier=verifier,
        face_detector=detector,
        readiness_checks=checks if readiness_checks is None else readiness_checks,
        rate_limit_storage_uri=rate_limit_storage_uri,
        end_request=end_request,
    )
