"""Authenticates callers by the JWTs Better Auth's JWT plugin issues, checked against its JWKS."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import jwt
import requests

from domain.errors import AuthUnavailable, Unauthenticated
from domain.model import Credentials, validated_user_id
from domain.ports import Authenticator

log = logging.getLogger(__name__)

#: Asymmetric algorithms only: a token can never choose ``none`` or an HMAC keyed by a public key.
ALLOWED_ALGORITHMS = frozenset({"EdDSA", "ES256", "RS256", "PS256"})
_REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]


class BetterAuthJwtAuthenticator(Authenticator):
    """Accepts a bearer JWT only if it is signed by a key currently published in the JWKS, with that key's
    own algorithm, and carries our issuer and audience, an unexpired ``exp`` and a valid user id as ``sub``.

    Keys are cached for ``cache_ttl_seconds``. An unknown ``kid`` or an expired cache triggers a re-fetch,
    but never more than once per ``refetch_min_interval_seconds``, so forged ``kid``s cannot flood the
    auth server. While the JWKS cannot be fetched, cached keys keep working; a token whose key is not
    cached is then ``AuthUnavailable`` (retryable), not ``Unauthenticated``.
    """

    def __init__(
        self,
        *,
        jwks_url: str,
        issuer: str,
        audience: str,
        timeout_seconds: float = 3.0,
        refetch_min_interval_seconds: float = 5.0,
        cache_ttl_seconds: float = 600.0,
        leeway_seconds: int = 30,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._jwks_url = jwks_url
        self._issuer = issuer
        self._audience = audience
        self._timeout = timeout_seconds
        self._min_interval = refetch_min_interval_seconds
        self._ttl = cache_ttl_seconds
        self._leeway = leeway_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: Mapping[str, jwt.PyJWK] | None = None  # replaced whole, never mutated
        self._fetched_at = 0.0
        self._attempted_at: float | None = None

    def authenticate(self, credentials: Credentials) -> str:
        token = credentials.bearer
        if not token:
            raise Unauthenticated("a bearer token is required")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("the bearer token is not a well-formed JWT") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALLOWED_ALGORITHMS:
            raise Unauthenticated("the token's algorithm is not accepted")
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("the token names no signing key")
        key = self._key_for(kid)
        if alg != key.algorithm_name:
            raise Unauthenticated("the token's algorithm does not match its signing key")
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[key.algorithm_name],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as error:
            raise Unauthenticated(f"the token was refused ({type(error).__name__})") from None
        return validated_user_id(payload["sub"])

    def _key_for(self, kid: str) -> jwt.PyJWK:
        keys = self._keys
        if keys is not None and kid in keys and self._clock() - self._fetched_at < self._ttl:
            return keys[kid]
        with self._lock:
            now = self._clock()
            fresh = self._keys is not None and now - self._fetched_at < self._ttl
            known = self._keys is not None and kid in self._keys
            throttled = self._attempted_at is not None and now - self._attempted_at < self._min_interval
            if not (fresh and known) and not throttled:
                self._attempted_at = now
                try:
                    self._keys, self._fetched_at = self._fetch(), now
                except AuthUnavailable:
                    if not known:
                        raise
            if self._keys is None:
                raise AuthUnavailable("the auth server's signing keys are not available")
            key = self._keys.get(kid)
        if key is None:
            raise Unauthenticated("the token is signed by an unknown key")
        return key

    def _fetch(self) -> Mapping[str, jwt.PyJWK]:
        try:
            response = requests.get(self._jwks_url, timeout=self._timeout, allow_redirects=False)
            if response.status_code != 200:
                problem = f"HTTP {response.status_code}"
            elif keys := _usable_keys(jwt.PyJWKSet.from_dict(response.json())):
                return keys
            else:
                problem = "no usable signing keys"
        except (requests.RequestException, ValueError, TypeError, AttributeError, jwt.PyJWTError) as error:
            problem = type(error).__name__
        log.warning("JWKS fetch from %s failed: %s", self._jwks_url, problem)
        raise AuthUnavailable("the auth server's signing keys could not be fetched")


def _usable_keys(jwk_set: jwt.PyJWKSet) -> Mapping[str, jwt.PyJWK]:
    """Signing keys with a string ``kid`` and an allowed algorithm; anything else is ignored."""
    return {
        key.key_id: key
        for key in jwk_set.keys
        if isinstance(key.key_id, str)
        and key.public_key_use in (None, "sig")
        and key.algorithm_name in ALLOWED_ALGORITHMS
    }
