"""The one place that removes secrets from text bound for logs, errors, audit rows and job metadata."""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "<redacted>"

_URL_QUERY = re.compile(r"(?P<base>\bhttps?://[^\s\"'<>?#]+)\?[^\s\"'<>]*", re.IGNORECASE)
_SIGNATURE_PARAM = re.compile(
    r"(?P<name>X-Amz-(?:Signature|Credential|Security-Token)|Signature|AWSAccessKeyId)=[^&\s\"'<>]+",
    re.IGNORECASE,
)
_AUTH_SCHEME = re.compile(r"\b(?P<scheme>Bearer|Key|Basic)\s+[A-Za-z0-9._~+/=:-]{8,}", re.IGNORECASE)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_SESSION_COOKIE = re.compile(r"(?P<name>better-auth\.session_token)=[^;\s\"']+", re.IGNORECASE)


class Scrubber:
    """Redacts signed query strings, bearer/API credentials, JWTs, session cookies and configured secrets.

    Configured secrets (the fal key, bucket names) are replaced wherever they appear, longest first.
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        text = _URL_QUERY.sub(lambda m: f"{m.group('base')}?{REDACTED}", text)
        text = _SIGNATURE_PARAM.sub(lambda m: f"{m.group('name')}={REDACTED}", text)
        text = _AUTH_SCHEME.sub(lambda m: f"{m.group('scheme')} {REDACTED}", text)
        text = _JWT.sub(REDACTED, text)
        text = _SESSION_COOKIE.sub(lambda m: f"{m.group('name')}={REDACTED}", text)
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text
