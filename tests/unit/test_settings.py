from __future__ import annotations

import pytest

from entrypoints.settings import Settings, SettingsError

REQUIRED = {
    "UPLOADS_BUCKET": "hf-uploads",
    "PROCESSED_BUCKET": "hf-processed",
    "BETTER_AUTH_URL": "https://auth.example.com/",
}


def test_defaults_follow_the_contract():
    settings = Settings.from_env(REQUIRED)

    assert settings.database_url == "sqlite:///var/tryon.db"
    assert settings.upload_url_ttl_seconds == 300
    assert settings.max_upload_bytes == 16 * 1024 * 1024
    assert settings.better_auth_jwks_url == "https://auth.example.com/api/auth/jwks"
    assert settings.better_auth_issuer == settings.better_auth_audience == "https://auth.example.com"
    assert settings.fal_result_hosts == ("fal.media", "*.fal.media")
    assert settings.rate_limit_uploads == "30/minute"
    assert settings.audit_retention_days == 400
    assert settings.metrics_port is None  # the worker and verifier serve no metrics unless asked
    assert Settings.from_env({**REQUIRED, "METRICS_PORT": "9102"}).metrics_port == 9102


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("UPLOAD_URL_TTL_SECONDS", "301", "UPLOAD_URL_TTL_SECONDS=301 is refused"),
        ("UPLOAD_URL_TTL_SECONDS", "0", "UPLOAD_URL_TTL_SECONDS=0 is refused"),
        ("MAX_UPLOAD_BYTES", str(16 * 1024 * 1024 + 1), "MAX_UPLOAD_BYTES=16777217 is refused"),
        ("FAL_IMAGE_URL_TTL_SECONDS", "600", "FAL_IMAGE_URL_TTL_SECONDS=600 is refused"),
        ("UPLOAD_URL_TTL_SECONDS", "five", "must be a whole number"),
        ("S3_SSE", "none", "S3_SSE must be"),
        ("AUTH_MODE", "anything", "AUTH_MODE must be"),
        ("PROCESSED_BUCKET", "hf-uploads", "must be different buckets"),
        ("AUTH_MODE", "session", "BETTER_AUTH_SECRET is required with AUTH_MODE=session"),
        ("AUDIT_RETENTION_DAYS", "0", "AUDIT_RETENTION_DAYS must be at least 1"),
        ("AUDIT_RETENTION_DAYS", "-5", "AUDIT_RETENTION_DAYS must be at least 1"),
        ("AUDIT_RETENTION_DAYS", "a year", "AUDIT_RETENTION_DAYS must be a whole number"),
        ("METRICS_PORT", "65536", "METRICS_PORT=65536 is refused"),
        ("METRICS_PORT", "-1", "METRICS_PORT=-1 is refused"),
        ("METRICS_PORT", "http", "METRICS_PORT must be a whole number"),
    ],
)
def test_unsafe_configuration_is_refused_with_a_clear_message(name, value, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({**REQUIRED, name: value})


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_required_settings_are_named_when_missing(missing):
    env = {k: v for k, v in REQUIRED.items() if k != missing}
    with pytest.raises(SettingsError, match=f"{missing} is required"):
        Settings.from_env(env)


def test_secrets_and_bucket_names_stay_out_of_the_settings_repr():
    settings = Settings.from_env(
        {**REQUIRED, "FAL_API_KEY": "fal-secret-key", "BETTER_AUTH_SECRET": "s3cr3t"}
    )

    shown = repr(settings)
    for secret in ("fal-secret-key", "s3cr3t", "hf-uploads", "hf-processed"):
        assert secret not in shown
