"""A user-like client of the upload API for ``bench.verification``: issue, PUT, complete (and follow).

Split in two so the burst can prepare its uploads untimed and then fire only the completes: ``prepare``
(``POST /v1/uploads`` + the ``PUT`` to the pre-signed URL) and ``settle``. ``settle`` does what the app
does: ``POST .../complete``, and if that answers 202 (no verdict within ``VERIFY_WAIT_SECONDS``, or every
waiting place of the web process taken), ``GET /v1/uploads/{id}`` every 0.2 s until the upload is settled.
Its time is end to end: from the POST to the verdict known. Request ids of the completes start with
``benchv-``, so the service's access log can be read back for them.
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
POLL_EVERY_SECONDS = 0.2
SETTLE_TIMEOUT_SECONDS = 180
"""A complete not settled this long after its POST is a failure (the verifier lost it, or is far behind)."""
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


@dataclass(frozen=True)
class Settled:
    """One complete followed to its verdict, as the app follows it."""

    ms: float
    """End to end: from the POST to the answer that carried the verdict (the 200, or the settling poll)."""
    error: str | None
    """None if the upload ended ``verified``; else what it was (``HTTP 503``, ``rejected no_face_detected``,
    a transport error of the POST, ``not settled``)."""
    answered: int
    """The POST's status (0 if it got no answer)."""
    polls: int
    """``GET /v1/uploads/{id}`` sent after a 202 (0 when the POST carried the verdict)."""
    poll_retries: int
    """Polls that got no usable answer (a 5xx, a 429, a transport error) and were simply sent again, as the
    app would: not an error unless the upload never settles."""
    started_at: float
    """``time.time()`` when the POST was sent: to line up with other processes' log timestamps."""


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

    def __init__(
        self, stack: Stack, photo: bytes, users: int, poll_seconds: float = POLL_EVERY_SECONDS
    ) -> None:
        self._poll_seconds = poll_seconds
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

    def settle(self, ticket: Ticket, request_id: str, session: requests.Session | None = None) -> Settled:
        """``complete``, then (on 202) ``GET /v1/uploads/{id}`` every ``poll_seconds`` (0.2 s) until verified
        or rejected."""
        session = session or self._session
        started_at, started = time.time(), time.perf_counter()

        def done(error: str | None, answered: int, polls: int = 0, retries: int = 0) -> Settled:
            ms = (time.perf_counter() - started) * 1000
            return Settled(ms, error, answered, polls, retries, started_at)

        try:
            completed = self.complete(ticket, request_id, session)
        except requests.RequestException as failure:
            return done(f"{type(failure).__name__}: {failure}", 0)
        if completed.status_code != 202:
            return done(verified(completed), completed.status_code)
        polls = retries = 0
        deadline = started + SETTLE_TIMEOUT_SECONDS
        while time.perf_counter() < deadline:
            time.sleep(self._poll_seconds)
            polls += 1
            try:
                state = session.get(
                    f"{self._api}/v1/uploads/{ticket.upload_id}",
                    headers={**ticket.auth, "X-Request-ID": f"{request_id}-poll"},
                    timeout=HTTP_TIMEOUT_SECONDS,
                )
            except requests.RequestException:
                retries += 1
                continue
            if state.status_code == 429 or state.status_code >= 500:
                retries += 1
                continue
            if state.status_code != 200:
                return done(f"poll HTTP {state.status_code}: {state.text[:300]}", 202, polls, retries)
            body = state.json()
            status = body.get("status")
            if status == "verified":
                return done(None, 202, polls, retries)
            if status not in ("verifying", "issued"):
                code = (body.get("error") or {}).get("code", "")
                return done(f"{status} {code}".strip() + f": {state.text[:300]}", 202, polls, retries)
        return done(f"not settled: still verifying after {SETTLE_TIMEOUT_SECONDS} s", 202, polls, retries)

    def upload(self, index: int) -> tuple[Settled, Ticket, str]:
        """(the complete followed to its verdict, its upload, the complete's request id); ``SampleFailed``
        unless it ends ``verified``."""
        ticket = self.prepare(index)
        request_id = new_request_id()
        settled = self.settle(ticket, request_id)
        if settled.error is not None:
            raise SampleFailed(f"complete: {settled.error}")
        return settled, ticket, request_id
