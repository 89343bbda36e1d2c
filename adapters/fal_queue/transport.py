"""How requests carry (or never carry) the key, and how bodies are read under a byte cap and a deadline."""

from __future__ import annotations

import time

import requests
import urllib3.exceptions
from requests.auth import AuthBase

from adapters.fal_queue.classify import Verdict, classify_transport

_CHUNK = 64 * 1024
_TOO_SLOW = Verdict("upstream_timeout", True, "the answer took longer than the timeout")


class KeyAuth(AuthBase):
    """``Authorization: Key …``, applied by requests after any session headers, so it always wins."""

    def __init__(self, key: str) -> None:
        self._header = f"Key {key}"

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = self._header
        return r

    def __repr__(self) -> str:
        return "KeyAuth(<redacted>)"


class NoAuth(AuthBase):
    """Removes any Authorization a shared session or ``~/.netrc`` would add: a CDN never sees a credential."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers.pop("Authorization", None)
        return r


def read_capped(response: requests.Response, cap: int, too_large: Verdict, deadline: float) -> bytes:
    """The (decoded) body of a ``stream=True`` response, refused past ``cap`` bytes or past ``deadline``
    (``time.monotonic()``). ``read1`` returns whatever has arrived, so a slow drip cannot stretch one read."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > cap:
        raise too_large.error()
    body = bytearray()
    try:
        while chunk := response.raw.read1(_CHUNK, decode_content=True):
            body += chunk
            if len(body) > cap:
                raise too_large.error()
            if time.monotonic() > deadline:
                raise _TOO_SLOW.error()
    except (urllib3.exceptions.HTTPError, OSError) as error:  # its message may name the URL: not chained
        raise classify_transport(error).error() from None
    return bytes(body)
