"""The services the doors call: the use cases wired to the adapters, with their policies from Settings."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from adapters.mtcnn_faces import MtcnnFaceDetector
from adapters.pillow_images import PillowImageSanitizer, SandboxedImageSanitizer
from adapters.prometheus_metrics import SharedStateCollector
from adapters.system import RandomIds, SystemClock
from domain.audit_retention import AuditRetainer, AuditRetentionPolicy
from domain.completion import UploadCompletion
from domain.faces import FacePolicy
from domain.ports import (
    AuditRetention,
    Authenticator,
    Clock,
    FaceDetector,
    ImageSanitizer,
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
from entrypoints.bootstrap.adapters import Adapters, Infrastructure, ReadinessCheck, authenticator_for
from entrypoints.settings import Settings, SettingsError

FAL_KEY_REQUIRED = "FAL_API_KEY is required by the worker"


def scrubber_for(settings: Settings) -> Scrubber:
    """The one scrubber: generic secrets plus this deployment's bucket names and fal key."""
    return Scrubber(
        [settings.uploads_bucket, settings.processed_bucket, settings.fal_api_key, settings.metrics_token]
    )


def audit_retainer(settings: Settings, retention: AuditRetention, clock: Clock) -> AuditRetainer:
    """The audit trail's retention on ``retention``, as the sweep and `tryon audit prune` both run it."""
    return AuditRetainer(
        policy=AuditRetentionPolicy(retention_days=settings.audit_retention_days),
        retention=retention,
        clock=clock,
    )


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
    shared_metrics: SharedStateCollector | None = None
    """For the web's /metrics: gauges of shared state (queues, unsettled try-ons), read when scraped."""

    def runner(self) -> TryOnRunner:
        """The try-on runner, which only a process with FAL_API_KEY has: the worker refuses to start
        without it, and a try-on job run anywhere else fails with the same words."""
        if self.tryon_runner is None:
            raise SettingsError(FAL_KEY_REQUIRED)
        return self.tryon_runner


def build_services(
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
        authenticator=ports.authenticator or authenticator_for(settings),
        readiness_checks=readiness_checks,
        rate_limit_storage_uri=rate_limit_storage_uri,
        end_request=built.end_request,
        shared_metrics=SharedStateCollector(
            queue_depths=built.queue_depths, unsettled=built.unsettled, now=clock.now
        ),
        sweeper=Sweeper(
            policy=SweepPolicy(processed_retention_days=settings.processed_retention_days),
            uploads=ports.storage,
            results=ports.results,
            expiry=expiry,
            unit_of_work=unit_of_work,
            clock=clock,
            audit_retention=None
            if ports.audit_retention is None
            else audit_retainer(settings, ports.audit_retention, clock),
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
