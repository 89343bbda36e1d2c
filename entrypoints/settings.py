"""Configuration, read from the environment once (by bootstrap) into a frozen value."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar
from urllib.parse import urlsplit

from domain.model import HARD_MAX_UPLOAD_BYTES, HARD_MAX_URL_TTL_SECONDS
from domain.retention import SOURCE_RETENTION_SECONDS

Number = TypeVar("Number", int, float)
NUMBER_WORDS: dict[type, str] = {int: "a whole number", float: "a number"}
FAL_JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"
FAL_WEBHOOK_PATH = "/v1/webhooks/fal"


class SettingsError(ValueError):
    """The environment describes a configuration the service refuses to run with."""


@dataclass(frozen=True)
class Settings:
    uploads_bucket: str = field(repr=False)
    processed_bucket: str = field(repr=False)
    better_auth_url: str
    database_url: str = "sqlite:///var/tryon.db"
    redis_url: str = field(default="redis://localhost:6379/0", repr=False)
    aws_region: str = "us-east-1"
    s3_endpoint_url: str | None = None
    s3_sse: str = "AES256"
    s3_sse_kms_key_id: str | None = field(default=None, repr=False)
    upload_url_ttl_seconds: int = 300
    max_upload_bytes: int = HARD_MAX_UPLOAD_BYTES
    better_auth_jwks_url: str = ""
    better_auth_issuer: str = ""
    better_auth_audience: str = ""
    better_auth_secret: str | None = field(default=None, repr=False)
    auth_mode: str = "jwt"
    fal_api_key: str | None = field(default=None, repr=False)
    fal_queue_url: str = "https://queue.fal.run"
    fal_model: str = "fal-ai/nano-banana/edit"
    fal_image_url_ttl_seconds: int = 300
    fal_max_attempts: int = 3
    fal_result_hosts: tuple[str, ...] = ("fal.media", "*.fal.media")
    rate_limit_uploads: str = "30/minute"
    rate_limit_tryons: str = "10/minute"
    rate_limit_mutations: str = "60/minute"
    """Every other authenticated mutation (complete, favourites, deletes, erasure), per user."""
    max_active_tryons: int = 3
    daily_image_quota: int = 40
    metrics_token: str | None = field(default=None, repr=False)
    metrics_port: int | None = None
    """The worker's and the verifier's own /metrics port (served only with METRICS_TOKEN too)."""
    verify_wait_seconds: float = 8.0
    source_retention_seconds: int = SOURCE_RETENTION_SECONDS
    unused_upload_ttl_seconds: int = 86400
    processed_retention_days: int = 30
    audit_retention_days: int = 400
    """Our addition to the contract: audit events older than this go (whole months on Postgres)."""
    cors_allowed_origins: tuple[str, ...] = ()
    public_base_url: str | None = None
    """The API's public origin: when set, fal is asked to call ``FAL_WEBHOOK_PATH`` on it."""
    fal_webhook_jwks_url: str = FAL_JWKS_URL
    fal_webhook_grace_seconds: float = 30.0
    """With webhooks, how long after submit the worker first asks fal itself (polling is the fallback)."""

    @property
    def fal_webhook_url(self) -> str | None:
        """Where fal calls back (no secret in it), or None without PUBLIC_BASE_URL."""
        return None if self.public_base_url is None else self.public_base_url + FAL_WEBHOOK_PATH

    def __post_init__(self) -> None:
        _require(self.uploads_bucket, "UPLOADS_BUCKET")
        _require(self.processed_bucket, "PROCESSED_BUCKET")
        _require(self.better_auth_url, "BETTER_AUTH_URL")
        if self.uploads_bucket == self.processed_bucket:
            raise SettingsError("UPLOADS_BUCKET and PROCESSED_BUCKET must be different buckets")
        _bounded("UPLOAD_URL_TTL_SECONDS", self.upload_url_ttl_seconds, HARD_MAX_URL_TTL_SECONDS)
        _bounded("FAL_IMAGE_URL_TTL_SECONDS", self.fal_image_url_ttl_seconds, HARD_MAX_URL_TTL_SECONDS)
        if self.metrics_port is not None:
            _bounded("METRICS_PORT", self.metrics_port, 65535)
        _bounded("MAX_UPLOAD_BYTES", self.max_upload_bytes, HARD_MAX_UPLOAD_BYTES)
        if self.s3_sse not in ("AES256", "aws:kms"):
            raise SettingsError("S3_SSE must be AES256 or aws:kms")
        if self.auth_mode not in ("jwt", "session", "both"):
            raise SettingsError("AUTH_MODE must be jwt, session or both")
        if self.auth_mode != "jwt" and not self.better_auth_secret:
            raise SettingsError(f"BETTER_AUTH_SECRET is required with AUTH_MODE={self.auth_mode}")
        if self.fal_max_attempts < 1:
            raise SettingsError("FAL_MAX_ATTEMPTS must be at least 1")
        if not 0 <= self.verify_wait_seconds <= 25:
            raise SettingsError("VERIFY_WAIT_SECONDS must be between 0 and 25 (the router gives up at 30)")
        if self.max_active_tryons < 1:
            raise SettingsError("MAX_ACTIVE_TRYONS must be at least 1")
        if self.daily_image_quota < 1:
            raise SettingsError("DAILY_IMAGE_QUOTA must be at least 1")
        if self.audit_retention_days < 1:
            raise SettingsError("AUDIT_RETENTION_DAYS must be at least 1")
        self._check_webhooks()
        origin = self.better_auth_url.rstrip("/")
        for name, default in (
            ("better_auth_jwks_url", f"{origin}/api/auth/jwks"),
            ("better_auth_issuer", origin),
            ("better_auth_audience", origin),
        ):
            if not getattr(self, name):
                object.__setattr__(self, name, default)

    def _check_webhooks(self) -> None:
        if self.public_base_url is not None:
            object.__setattr__(self, "public_base_url", _public_origin(self.public_base_url))
        if urlsplit(self.fal_webhook_jwks_url).scheme not in ("https", "http"):
            raise SettingsError("FAL_WEBHOOK_JWKS_URL must be an http(s) URL")
        if not 0 < self.fal_webhook_grace_seconds <= 600:
            raise SettingsError("FAL_WEBHOOK_GRACE_SECONDS must be more than 0 and at most 600")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def text(name: str, default: str = "") -> str:
            return env.get(name, default).strip()

        def optional(name: str) -> str | None:
            return text(name) or None

        def parsed(name: str, default: Number, kind: type[Number]) -> Number:
            raw = text(name)
            if not raw:
                return default
            try:
                return kind(raw)
            except ValueError:
                raise SettingsError(f"{name} must be {NUMBER_WORDS[kind]}, got {raw!r}") from None

        integer, number = partial(parsed, kind=int), partial(parsed, kind=float)

        return cls(
            uploads_bucket=text("UPLOADS_BUCKET"),
            processed_bucket=text("PROCESSED_BUCKET"),
            better_auth_url=text("BETTER_AUTH_URL"),
            database_url=text("DATABASE_URL", "sqlite:///var/tryon.db"),
            redis_url=text("REDIS_URL", "redis://localhost:6379/0"),
            aws_region=text("AWS_REGION", "us-east-1"),
            s3_endpoint_url=optional("S3_ENDPOINT_URL"),
            s3_sse=text("S3_SSE", "AES256"),
            s3_sse_kms_key_id=optional("S3_SSE_KMS_KEY_ID"),
            upload_url_ttl_seconds=integer("UPLOAD_URL_TTL_SECONDS", 300),
            max_upload_bytes=integer("MAX_UPLOAD_BYTES", HARD_MAX_UPLOAD_BYTES),
            better_auth_jwks_url=text("BETTER_AUTH_JWKS_URL"),
            better_auth_issuer=text("BETTER_AUTH_ISSUER"),
            better_auth_audience=text("BETTER_AUTH_AUDIENCE"),
            better_auth_secret=optional("BETTER_AUTH_SECRET"),
            auth_mode=text("AUTH_MODE", "jwt"),
            fal_api_key=optional("FAL_API_KEY"),
            fal_queue_url=text("FAL_QUEUE_URL", "https://queue.fal.run"),
            fal_model=text("FAL_MODEL", "fal-ai/nano-banana/edit"),
            fal_image_url_ttl_seconds=integer("FAL_IMAGE_URL_TTL_SECONDS", 300),
            fal_max_attempts=integer("FAL_MAX_ATTEMPTS", 3),
            fal_result_hosts=tuple(
                h.strip() for h in text("FAL_RESULT_HOSTS", "fal.media,*.fal.media").split(",") if h.strip()
            ),
            rate_limit_uploads=text("RATE_LIMIT_UPLOADS", "30/minute"),
            rate_limit_tryons=text("RATE_LIMIT_TRYONS", "10/minute"),
            rate_limit_mutations=text("RATE_LIMIT_MUTATIONS", "60/minute"),
            max_active_tryons=integer("MAX_ACTIVE_TRYONS", 3),
            daily_image_quota=integer("DAILY_IMAGE_QUOTA", 40),
            metrics_token=optional("METRICS_TOKEN"),
            metrics_port=integer("METRICS_PORT", 0) or None,
            verify_wait_seconds=number("VERIFY_WAIT_SECONDS", 8.0),
            source_retention_seconds=integer("SOURCE_RETENTION_SECONDS", SOURCE_RETENTION_SECONDS),
            unused_upload_ttl_seconds=integer("UNUSED_UPLOAD_TTL_SECONDS", 86400),
            processed_retention_days=integer("PROCESSED_RETENTION_DAYS", 30),
            audit_retention_days=integer("AUDIT_RETENTION_DAYS", 400),
            cors_allowed_origins=tuple(
                origin.strip() for origin in text("CORS_ALLOWED_ORIGINS").split(",") if origin.strip()
            ),
            public_base_url=optional("PUBLIC_BASE_URL"),
            fal_webhook_jwks_url=text("FAL_WEBHOOK_JWKS_URL", FAL_JWKS_URL),
            fal_webhook_grace_seconds=number("FAL_WEBHOOK_GRACE_SECONDS", 30.0),
        )


def _require(value: str, name: str) -> None:
    if not value:
        raise SettingsError(f"{name} is required but not set")


def _bounded(name: str, value: int, maximum: int) -> None:
    if not 1 <= value <= maximum:
        raise SettingsError(f"{name}={value} is refused: it must be between 1 and {maximum}")


def _public_origin(value: str) -> str:
    """An http(s) origin without user info, query or fragment (a trailing slash is dropped); https unless
    the host is loopback (tests and local development)."""
    refused = SettingsError(
        "PUBLIC_BASE_URL must be an origin such as https://api.example.com "
        "(no path, user info, query or fragment; http only for a loopback host)"
    )
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        raise refused from None
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.path not in ("", "/"):
        raise refused
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise refused
    if parts.query or parts.fragment or "?" in value or "#" in value:
        raise refused
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise refused
    return f"{parts.scheme}://{parts.netloc}"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
