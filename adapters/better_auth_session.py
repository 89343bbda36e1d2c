"""Better Auth session tokens (the Expo app's cookie, or the bearer plugin's header), behind Authenticator.

A token whose HMAC does not verify with BETTER_AUTH_SECRET is refused locally, without a network call.
The rest is confirmed with the auth server's get-session, cached briefly by a hash of the token, so a
signed-out session stops working within ``cache_seconds``. If the auth server cannot answer quickly,
the request is refused as retryable (503), never let through.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Mapping
from urllib.parse import unquote

import requests

from domain.errors import AuthUnavailable, Unauthenticated
from domain.model import Credentials, validated_user_id
from domain.ports import Authenticator

COOKIE_NAMES = ("better-auth.session_token", "__Secure-better-auth.session_token")
GET_SESSION_PATH = "/api/auth/get-session"
MAX_CACHE_ENTRIES = 10_000


class BetterAuthSessionAuthenticator(Authenticator):
    def __init__(
        self,
        *,
        base_url: str,
        secret: str,
        cache_seconds: float = 30.0,
        timeout_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        session: requests.Session | None = None,
    ) -> None:
        self._url = base_url.rstrip("/") + GET_SESSION_PATH
        self._secret = secret.encode()
        self._cache_seconds = cache_seconds
        self._timeout = timeout_seconds
        self._clock = clock
        self._http = session or requests.Session()
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"BetterAuthSessionAuthenticator(url={self._url!r})"

    def authenticate(self, credentials: Credentials) -> str:
        presented = _presented_token(credentials)
        if presented is None:
            raise Unauthenticated("a Better Auth session token is required")
        header_name, raw = presented
        if not self._signed_by_us(unquote(raw)):
            raise Unauthenticated("the session token's signature is not valid")
        key = hashlib.sha256(raw.encode()).hexdigest()
        user_id = self._cached(key)
        if user_id is _MISS:
            user_id = self._ask_auth_server(header_name, raw)
            self._remember(key, user_id)
        if user_id is None:
            raise Unauthenticated("the session is not valid (signed out or expired)")
        return str(user_id)

    def _signed_by_us(self, value: str) -> bool:
        token, _, signature = value.rpartition(".")
        if not token or not signature:
            return False
        digest = hmac.new(self._secret, token.encode(), hashlib.sha256).digest()
        expected = {base64.b64encode(digest).decode(), base64.urlsafe_b64encode(digest).decode().rstrip("=")}
        return any(hmac.compare_digest(signature, candidate) for candidate in expected)

    def _ask_auth_server(self, header_name: str, raw: str) -> str | None:
        if header_name == "Authorization":
            headers = {"Authorization": f"Bearer {raw}"}
        else:
            headers = {"Cookie": f"{header_name}={raw}"}
        try:
            response = self._http.get(
                self._url, headers=headers, timeout=self._timeout, allow_redirects=False
            )
        except requests.RequestException:
            raise AuthUnavailable("the auth server did not answer") from None
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise AuthUnavailable("the auth server is unavailable")
        if response.status_code != 200:
            return None
        try:
            body = response.json()
        except ValueError:
            raise AuthUnavailable("the auth server answered nonsense") from None
        user = body.get("user") if isinstance(body, Mapping) else None
        if not isinstance(user, Mapping):
            return None
        return validated_user_id(user.get("id"))

    def _cached(self, key: str) -> object:
        with self._lock:
            entry = self._cache.get(key)
        if entry is None or entry[0] < self._clock():
            return _MISS
        return entry[1]

    def _remember(self, key: str, user_id: str | None) -> None:
        with self._lock:
            if len(self._cache) >= MAX_CACHE_ENTRIES:
                now = self._clock()
                self._cache = {k: v for k, v in self._cache.items() if v[0] >= now}
                if len(self._cache) >= MAX_CACHE_ENTRIES:
                    self._cache.clear()
            self._cache[key] = (self._clock() + self._cache_seconds, user_id)


_MISS = object()


def _presented_token(credentials: Credentials) -> tuple[str, str] | None:
    """Which header carried the session token, and its raw (still URL-encoded) value."""
    if credentials.bearer:
        return "Authorization", credentials.bearer
    for name in COOKIE_NAMES:
        value = credentials.cookies.get(name)
        if value:
            return name, value
    return None
