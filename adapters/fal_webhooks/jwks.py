"""fal's webhook signing keys: a JWKS of Ed25519 keys, fetched with a timeout and a size cap, kept at most
24 h (fal: "Do not cache longer than 24 hours since they can change"), refetched early when a signature
matches no cached key, but never more often than once per ``min_refetch_seconds``."""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from domain.webhooks import WebhookKeysUnavailable

FAL_JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"
MAX_AGE_SECONDS = 24 * 60 * 60
MIN_REFETCH_SECONDS = 60.0
FETCH_TIMEOUT_SECONDS = 5.0
MAX_JWKS_BYTES = 64 * 1024
MAX_KEYS = 32
_B64URL = bytes.maketrans(b"-_", b"+/")


class _Response(Protocol):
    status_code: int
    headers: Any

    def iter_content(self, chunk_size: int) -> Iterator[bytes]: ...

    def close(self) -> None: ...


class HttpSession(Protocol):
    """The part of ``requests.Session`` the fetcher uses (a fake in unit tests)."""

    def get(self, url: str, *, timeout: float, stream: bool, allow_redirects: bool) -> _Response: ...


def _unavailable(why: str) -> WebhookKeysUnavailable:
    return WebhookKeysUnavailable(f"fal webhook keys unavailable: {why}")


def parse_jwks(document: Any) -> tuple[Ed25519PublicKey, ...]:
    """The usable Ed25519 keys of a JWKS: ``kty`` OKP and ``crv`` Ed25519 when stated (fal documents only
    the ``x`` field), ``use`` sig when stated, ``x`` base64url of exactly 32 bytes. Others are skipped."""
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise _unavailable("not a JWKS document")
    keys = []
    for entry in entries[:MAX_KEYS]:
        if not isinstance(entry, dict):
            continue
        if entry.get("kty", "OKP") != "OKP" or entry.get("crv", "Ed25519") != "Ed25519":
            continue
        if entry.get("use", "sig") != "sig":
            continue
        raw = _b64url_decode(entry.get("x"))
        if raw is None or len(raw) != 32:
            continue
        try:
            keys.append(Ed25519PublicKey.from_public_bytes(raw))
        except ValueError:
            continue
    return tuple(keys)


def _b64url_decode(value: object) -> bytes | None:
    if not isinstance(value, str) or not value.isascii():
        return None
    data = value.encode().translate(_B64URL).rstrip(b"=")
    try:
        return base64.b64decode(data + b"=" * (-len(data) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


class HttpJwksFetcher:
    """GET the JWKS URL (no redirects, a timeout, at most ``MAX_JWKS_BYTES``) and parse its keys. Every
    failure is ``WebhookKeysUnavailable``; its message never carries the response body."""

    def __init__(
        self,
        url: str = FAL_JWKS_URL,
        *,
        session: HttpSession | None = None,
        timeout_seconds: float = FETCH_TIMEOUT_SECONDS,
    ) -> None:
        self._url = url
        self._session: HttpSession = session if session is not None else requests.Session()
        self._timeout = timeout_seconds

    def __call__(self) -> tuple[Ed25519PublicKey, ...]:
        try:
            response = self._session.get(self._url, timeout=self._timeout, stream=True, allow_redirects=False)
        except requests.RequestException as error:
            raise _unavailable(type(error).__name__) from None
        try:
            if response.status_code != 200:
                raise _unavailable(f"HTTP {response.status_code}")
            body = bytearray()
            for chunk in response.iter_content(16 * 1024):
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise _unavailable("document too large")
        except requests.RequestException as error:
            raise _unavailable(type(error).__name__) from None
        finally:
            response.close()
        try:
            document = json.loads(bytes(body))
        except ValueError:
            raise _unavailable("not JSON") from None
        return parse_jwks(document)


class JwksCache:
    """Thread-safe. ``keys()`` answers the cached keys while younger than ``max_age_seconds`` and fetches
    otherwise; ``refresh()`` asks for a refetch because a signature matched no cached key. Fetch attempts,
    failed ones included, are at least ``min_refetch_seconds`` apart, so neither forged deliveries nor an
    outage of the JWKS host can make us hammer it."""

    def __init__(
        self,
        fetch: Callable[[], tuple[Ed25519PublicKey, ...]],
        *,
        clock: Callable[[], float] = time.monotonic,
        max_age_seconds: float = MAX_AGE_SECONDS,
        min_refetch_seconds: float = MIN_REFETCH_SECONDS,
    ) -> None:
        if not 0 < max_age_seconds <= MAX_AGE_SECONDS:
            raise ValueError("fal's keys may be cached for at most 24 hours")
        self._fetch = fetch
        self._clock = clock
        self._max_age = max_age_seconds
        self._min_refetch = min_refetch_seconds
        self._lock = threading.Lock()
        self._keys: tuple[Ed25519PublicKey, ...] = ()
        self._fetched_at: float | None = None  # when the cached keys were fetched
        self._attempted_at: float | None = None  # the last fetch attempt, successful or not
        self.fetches = 0  # attempts, for metrics and tests

    def keys(self) -> tuple[Ed25519PublicKey, ...]:
        """The current keys (never older than the cache limit), or ``WebhookKeysUnavailable``."""
        with self._lock:
            now = self._clock()
            if self._fresh(now):
                return self._keys
            if self._may_fetch(now):
                self._fetch_now(now)  # on failure the stale keys stay unusable: nothing older than max age
            if self._fresh(now):
                return self._keys
            raise _unavailable("no keys younger than the cache limit")

    def refresh(self) -> tuple[Ed25519PublicKey, ...] | None:
        """Fetch again because a signature matched no cached key. The new keys, or None when a fetch is
        not allowed yet or fails (the cached keys stay in use until they expire)."""
        with self._lock:
            now = self._clock()
            if not self._may_fetch(now):
                return None
            try:
                self._fetch_now(now)
            except WebhookKeysUnavailable:
                return None
            return self._keys

    def _fresh(self, now: float) -> bool:
        return self._fetched_at is not None and now - self._fetched_at < self._max_age and bool(self._keys)

    def _may_fetch(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self._min_refetch

    def _fetch_now(self, now: float) -> None:
        """Callers hold the lock. Raises ``WebhookKeysUnavailable`` when the fetch fails."""
        self._attempted_at = now
        self.fetches += 1
        keys = self._fetch()
        if not keys:
            raise _unavailable("the key set holds no Ed25519 key")
        self._keys, self._fetched_at = keys, now
