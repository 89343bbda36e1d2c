"""fal.ai's signed webhooks behind the ``WebhookVerifier`` port: the JWKS cache and the signature check."""

from adapters.fal_webhooks.jwks import FAL_JWKS_URL, HttpJwksFetcher, JwksCache, parse_jwks
from adapters.fal_webhooks.verifier import FalWebhookVerifier

__all__ = ["FAL_JWKS_URL", "FalWebhookVerifier", "HttpJwksFetcher", "JwksCache", "parse_jwks"]
