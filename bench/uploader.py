"""A user-like client of the upload API for ``bench.verification``: issue, PUT, complete.

Split in two so the burst can prepare its uploads untimed and then fire only the completes: ``prepare``
(``POST /v1/uploads`` + the ``PUT`` to the pre-signed URL) and ``complete``. Request ids of the completes
start with ``benchv-``, so the service's access log can be read back for them.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass

import requests

from bench.stack import Stack

TOKEN_TTL_SECONDS = 3600
HTTP_TIMEOUT_SECONDS = 10
PUT_TIMEOUT_SECONDS = 60
COMPLETE_TIMEOUT_SECONDS = 60
CONTENT_TYPE = "image/jpeg"
REQUEST_ID_PREFIX = "benchv-"


class SampleFailed(Exception):
    pass


@dataclass(frozen=True)
class Ticket:
    """An issued upload whose photo is in S3: ready for ``complete``."""

    upload_id: str
    object_key: str
    auth: dict[str, str]
    put_ms: float


def new_request_id() -> str:
    return f"{REQUEST_ID_PREFIX}{secrets.token_hex(8)}"


def verified(response: requests.Response) -> str | None:
    """None if a complete answered 200 ``verified``, else what it was (``HTTP 503``, ``200 rejected``)."""
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    status = response.json().get("status")
    return None if status == "verified" else f"200 {status}: {response.text[:300]}"


class Uploader:
    """Uploads the one photo for ``users`` users in turn; its own ``requests.Session`` (one thread)."""

    def __init__(self, stack: Stack, photo: bytes, users: int) -> None:
        self._api = stack.service.url
        self._photo = photo
        self._checksum = base64.b64encode(hashlib.sha256(photo).digest()).decode()
        self._auth = [
            {"Authorization": f"Bearer {stack.issuer.mint(f'benchv{n:03d}', ttl_seconds=TOKEN_TTL_SECONDS)}"}
            for n in range(users)
        ]
        self._session = requests.Session()

    def close(self) -> None:
        self._session.close()

    def prepare(self, index: int) -> Ticket:
        """Issue an upload for the ``index``-th user in turn and PUT the photo; ``SampleFailed`` if not."""
        auth = self._auth[index % len(self._auth)]
        body = {
            "content_type": CONTENT_TYPE,
            "content_length": len(self._photo),
            "checksum_sha256": self._checksum,
        }
        issued = self._session.post(
            f"{self._api}/v1/uploads", json=body, headers=auth, timeout=HTTP_TIMEOUT_SECONDS
        )
        if issued.status_code != 201:
            raise SampleFailed(f"POST /v1/uploads answered {issued.status_code}: {issued.text[:200]}")
        ticket = issued.json()
        started = time.perf_counter()
        sent = self._session.put(
            ticket["url"], data=self._photo, headers=ticket["headers"], timeout=PUT_TIMEOUT_SECONDS
        )
        put_ms = (time.perf_counter() - started) * 1000
        if sent.status_code != 200:
            raise SampleFailed(f"PUT answered {sent.status_code}: {sent.text[:200]}")
        return Ticket(str(ticket["upload_id"]), str(ticket["object_key"]), auth, put_ms)

    def complete(
        self, ticket: Ticket, request_id: str, session: requests.Session | None = None
    ) -> requests.Response:
        """``POST .../complete`` over ``session`` (default: this uploader's; a thread passes its own)."""
        return (session or self._session).post(
            f"{self._api}/v1/uploads/{ticket.upload_id}/complete",
            json={"object_key": ticket.object_key},
            headers={**ticket.auth, "X-Request-ID": request_id},
            timeout=COMPLETE_TIMEOUT_SECONDS,
        )

    def upload(self, index: int) -> tuple[float, float, str]:
        """(complete ms, PUT ms, request id of the complete); ``SampleFailed`` unless it ends ``verified``."""
        ticket = self.prepare(index)
        request_id = new_request_id()
        started = time.perf_counter()
        completed = self.complete(ticket, request_id)
        complete_ms = (time.perf_counter() - started) * 1000
        if (failure := verified(completed)) is not None:
            raise SampleFailed(f"complete answered {failure}")
        return complete_ms, ticket.put_ms, request_id
