"""Which URLs the fal adapter may talk to, and what kind of image a body is (never trusting headers)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from domain.images import stored_content_type

_DEFAULT_PORTS = {"http": 80, "https": 443}
#: Printable ASCII without spaces or backslashes: nothing that parsers disagree on or silently drop.
_PLAIN_URL = re.compile(r"[!-\[\]-~]+")
_HOST = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|[0-9a-f:.]+")


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int


def origin_of(url: str) -> Origin | None:
    """The scheme, host and port of a plain absolute http(s) URL, or None for anything unusual
    (userinfo, odd characters, a bad port, a trailing-dot or percent-encoded host)."""
    if not _PLAIN_URL.fullmatch(url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in _DEFAULT_PORTS or "@" in parts.netloc or not host or not _HOST.fullmatch(host):
        return None
    return Origin(scheme, host, _DEFAULT_PORTS[scheme] if port is None else port)


@dataclass(frozen=True)
class _Rule:
    origin: Origin
    wildcard: bool

    def matches(self, origin: Origin) -> bool:
        if (origin.scheme, origin.port) != (self.origin.scheme, self.origin.port):
            return False
        if self.wildcard:
            return origin.host.endswith("." + self.origin.host)
        return origin.host == self.origin.host


def _rule(entry: str) -> _Rule:
    scheme, sep, rest = entry.strip().lower().partition("://")
    if not sep:
        scheme, rest = "https", scheme
    wildcard = rest.startswith("*.")
    rest = rest[2:] if wildcard else rest
    origin = origin_of(f"{scheme}://{rest}")
    if origin is None or any(c in rest.rstrip("/") for c in "/?#"):
        raise ValueError(f"not a usable result host entry: {entry!r}")
    return _Rule(origin, wildcard)


class ResultHosts:
    """Hosts results may be downloaded from. ``fal.media`` allows exactly that host, ``*.fal.media`` its
    subdomains (not ``fal.media`` itself); both https on port 443 only. An entry naming a scheme
    (``http://127.0.0.1:8123``) allows exactly that scheme, host and port."""

    def __init__(self, entries: Iterable[str]) -> None:
        self._entries = tuple(entries)
        self._rules = tuple(_rule(entry) for entry in self._entries)
        if not self._rules:
            raise ValueError("at least one result host is required")

    def allows(self, url: str) -> bool:
        origin = origin_of(url)
        return origin is not None and any(rule.matches(origin) for rule in self._rules)

    def __repr__(self) -> str:
        return f"ResultHosts({self._entries!r})"


def sniff_image_type(data: bytes) -> str | None:
    """The content type from the magic bytes: JPEG, PNG or WebP, otherwise None (domain/images.py)."""
    return stored_content_type(data)
