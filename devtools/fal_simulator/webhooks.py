"""fal's signed completion webhooks, simulated: a job submitted with ``?fal_webhook=<url>`` is POSTed to that
URL once it completes, signed the way fal documents ("Verifying Your Webhook", docs.fal.ai) with the
simulator's own Ed25519 key, whose JWKS the simulator serves at ``/.well-known/jwks.json``.

Armed faults (FIFO, each used up by one job that asked for a webhook) make a delivery late, duplicated, out of
order (held back until another delivery went out), followed by an older contradicting ERROR, forged, signed
by a key outside the JWKS, signed with a stale timestamp, or never sent. Genuine deliveries that fail (no
2xx) are retried a few times, quickly, as fal retries them (10 times over 2 hours).

The signed message is built here on its own, not with the verifier's code, so that a mistake on one side
shows up as a failed check instead of cancelling out.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal, get_args

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

# Relative on purpose: the simulator package is about to move (entrypoints/ -> devtools/); this stays valid.
from .jobs import Job

WebhookFault = Literal[
    "late",
    "duplicated",
    "out_of_order",
    "error_after_ok",
    "forged_signature",
    "wrong_key",
    "stale_timestamp",
    "never",
]
WEBHOOK_FAULTS: tuple[str, ...] = get_args(WebhookFault)
JWKS_PATH = "/.well-known/jwks.json"
USER_ID = "fal-simulator-user"
DELIVERY_TIMEOUT_SECONDS = 5.0
RETRY_DELAYS = (0.2, 0.5, 1.0)
STALE_SECONDS = 600  # twice fal's ±300 s leeway
OLDER_SECONDS = 60  # how much older the contradicting ERROR of "error_after_ok" claims to be
MAX_RECORDS = 1000


@dataclass(frozen=True)
class WebhookDelivery:
    """One POST attempt. ``kind`` is "genuine", "duplicate" or the fault that shaped it; ``answered`` is
    the receiver's HTTP status, None when the connection failed."""

    request_id: str
    kind: str
    status: str  # the body's "status": OK or ERROR
    attempt: int
    answered: int | None
    sent_at: float  # time.monotonic()


@dataclass(frozen=True)
class _Send:
    kind: str
    body: dict[str, Any]
    key: Ed25519PrivateKey | None  # None: a random signature
    age_seconds: int
    retried: bool


class WebhookSigner:
    """The simulator's signing key and its public JWKS (one key, ``kty`` OKP, ``crv`` Ed25519)."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.kid = hashlib.sha256(raw).hexdigest()[:16]
        self._x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def jwks(self) -> dict[str, Any]:
        return {
            "keys": [
                {"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": self.kid, "x": self._x}
            ]
        }


def sign(key: Ed25519PrivateKey | None, request_id: str, body: bytes, timestamp: int) -> dict[str, str]:
    """fal's four headers: Ed25519 over ``request_id \\n user_id \\n timestamp \\n hex(sha256(body))``."""
    message = f"{request_id}\n{USER_ID}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()
    signature = key.sign(message) if key is not None else secrets.token_bytes(64)
    return {
        "X-Fal-Webhook-Request-Id": request_id,
        "X-Fal-Webhook-User-Id": USER_ID,
        "X-Fal-Webhook-Timestamp": str(timestamp),
        "X-Fal-Webhook-Signature": signature.hex(),
    }


def delivery_body(job: Job) -> dict[str, Any]:
    """fal's documented shape: OK with the output as ``payload``, or ERROR with the error answer's body."""
    base = {"request_id": job.request_id, "gateway_request_id": job.request_id}
    if job.failure is None:
        return {**base, "status": "OK", "payload": job.result, "error": None}
    payload = None if isinstance(job.failure.body, bytes) else job.failure.body
    return {
        **base,
        "status": "ERROR",
        "error": f"Invalid status code: {job.failure.status}",
        "payload": payload,
    }


class Webhooks:
    """Thread-safe. The engine calls ``expect`` at submit (under its lock) and ``finished`` from the job's
    thread once the job is COMPLETED; deliveries then run in that (daemon) thread."""

    def __init__(self, stopping: threading.Event, retry_delays: tuple[float, ...] = RETRY_DELAYS) -> None:
        self.signer = WebhookSigner()
        self.late_seconds = 1.0
        self.hold_seconds = 5.0  # the longest an out-of-order delivery waits for another one to overtake it
        self.retry_delays = retry_delays
        self._stopping = stopping
        self._changed = threading.Condition()
        self._faults: deque[str] = deque()
        self._expected: dict[str, tuple[str, str | None]] = {}
        self._records: deque[WebhookDelivery] = deque(maxlen=MAX_RECORDS)
        self._sent = 0
        self._generation = 0

    # -- controls ---------------------------------------------------------------------------------------

    def fail_next(self, kind: WebhookFault, count: int = 1) -> None:
        if kind not in WEBHOOK_FAULTS:
            raise ValueError(f"unknown webhook fault {kind!r}; expected one of {WEBHOOK_FAULTS}")
        with self._changed:
            self._faults.extend([kind] * count)

    def deliveries(self) -> list[WebhookDelivery]:
        with self._changed:
            return list(self._records)

    def reset(self) -> None:
        with self._changed:
            self._faults.clear()
            self._expected.clear()
            self._records.clear()
            self._generation += 1  # deliveries under way give up
            self._changed.notify_all()

    def wake(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # -- called by the engine ---------------------------------------------------------------------------

    def expect(self, request_id: str, url: str) -> None:
        with self._changed:
            fault = self._faults.popleft() if self._faults else None
            self._expected[request_id] = (url, fault)

    def finished(self, job: Job) -> None:
        with self._changed:
            expected = self._expected.pop(job.request_id, None)
            generation = self._generation
        if expected is None:
            return
        url, fault = expected
        body = delivery_body(job)
        if fault == "never":
            return
        if fault == "late" and self._pause(self.late_seconds, generation):
            return
        if fault == "out_of_order" and self._hold(generation):
            return
        for send in self._plan(fault, body):
            if not self._deliver(url, job.request_id, send, generation):
                return

    # -- delivering -------------------------------------------------------------------------------------

    def _plan(self, fault: str | None, body: dict[str, Any]) -> list[_Send]:
        key = self.signer.key
        genuine = _Send("genuine", body, key, 0, True)
        if fault == "duplicated":
            return [genuine, _Send("duplicate", body, key, 0, True)]
        if fault == "error_after_ok":
            older = {
                **body,
                "status": "ERROR",
                "error": "Invalid status code: 500",
                "payload": {"detail": "Internal error"},
            }
            return [genuine, _Send(fault, older, key, OLDER_SECONDS, False)]
        if fault == "forged_signature":
            return [_Send(fault, body, None, 0, False)]
        if fault == "wrong_key":
            return [_Send(fault, body, Ed25519PrivateKey.generate(), 0, False)]
        if fault == "stale_timestamp":
            return [_Send(fault, body, key, STALE_SECONDS, False)]
        return [genuine]  # no fault, "late" and "out_of_order" (already delayed)

    def _deliver(self, url: str, request_id: str, send: _Send, generation: int) -> bool:
        """POST until a 2xx (retrying only genuine deliveries); False when the simulator stopped or reset."""
        data = json.dumps(send.body).encode()
        delays = self.retry_delays if send.retried else ()
        for attempt in range(1, len(delays) + 2):
            if self._gone(generation):
                return False
            headers = sign(send.key, request_id, data, int(time.time()) - send.age_seconds)
            headers["Content-Type"] = "application/json"
            try:
                answered: int | None = requests.post(
                    url, data=data, headers=headers, timeout=DELIVERY_TIMEOUT_SECONDS, allow_redirects=False
                ).status_code
            except requests.RequestException:
                answered = None
            with self._changed:
                if generation != self._generation:
                    return False
                self._records.append(
                    WebhookDelivery(
                        request_id, send.kind, send.body["status"], attempt, answered, time.monotonic()
                    )
                )
                self._sent += 1
                self._changed.notify_all()
            if answered is not None and 200 <= answered < 300:
                return True
            if attempt > len(delays):
                return True  # given up, as fal gives up after its last retry
            if self._pause(delays[attempt - 1], generation):
                return False
        return True

    def _pause(self, seconds: float, generation: int) -> bool:
        """Wait; True when the simulator stopped or was reset meanwhile (the delivery is then dropped)."""
        deadline = time.monotonic() + seconds
        with self._changed:
            while not self._gone(generation) and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(left)
            return self._gone(generation)

    def _hold(self, generation: int) -> bool:
        """Wait until another delivery went out (or ``hold_seconds``); True when stopped or reset."""
        deadline = time.monotonic() + self.hold_seconds
        with self._changed:
            mark = self._sent
            while (
                self._sent == mark
                and not self._gone(generation)
                and (left := deadline - time.monotonic()) > 0
            ):
                self._changed.wait(left)
            return self._gone(generation)

    def _gone(self, generation: int) -> bool:
        return self._stopping.is_set() or generation != self._generation
