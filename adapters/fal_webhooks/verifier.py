"""fal.ai's webhook signature check, as fal documents it ("Verifying Your Webhook", docs.fal.ai):

1. headers ``X-Fal-Webhook-Request-Id``, ``-User-Id``, ``-Timestamp`` (Unix epoch seconds) and
   ``-Signature`` (hex) must all be present;
2. the timestamp must be within ±300 s of now;
3. the message is ``request_id \\n user_id \\n timestamp \\n hex(sha256(raw body))``, UTF-8 encoded, with
   the header values exactly as received;
4. the signature is Ed25519 over that message by any key of fal's JWKS.

Then the body must be fal's documented JSON shape for the same request id. Cheap checks come first; the key
set is only consulted for a delivery that is well-formed and fresh.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from adapters.fal_webhooks.jwks import JwksCache
from domain.model import FalDelivery
from domain.ports import Clock, WebhookVerifier
from domain.webhooks import WebhookRejected

REQUEST_ID = "x-fal-webhook-request-id"
USER_ID = "x-fal-webhook-user-id"
TIMESTAMP = "x-fal-webhook-timestamp"
SIGNATURE = "x-fal-webhook-signature"
HEADERS = (REQUEST_ID, USER_ID, TIMESTAMP, SIGNATURE)

TOLERANCE_SECONDS = 300
MAX_BODY_BYTES = 1024 * 1024
MAX_HEADER_CHARS = 256
_EPOCH_SECONDS = re.compile(r"[0-9]{1,12}")
_SIGNATURE_HEX = re.compile(r"[0-9a-fA-F]{128}")  # an Ed25519 signature is 64 bytes


def signed_message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    """The bytes fal signs."""
    return "\n".join((request_id, user_id, timestamp, hashlib.sha256(body).hexdigest())).encode("utf-8")


class FalWebhookVerifier(WebhookVerifier):
    def __init__(
        self,
        keys: JwksCache,
        clock: Clock,
        *,
        tolerance_seconds: int = TOLERANCE_SECONDS,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self._keys = keys
        self._clock = clock
        self._tolerance = tolerance_seconds
        self.max_body_bytes = max_body_bytes

    def check_length(self, declared: int | None) -> None:
        """For the caller, before reading: a declared Content-Length over the cap is refused unread."""
        if declared is not None and declared > self.max_body_bytes:
            raise WebhookRejected("body_too_large")

    def verify(self, headers: Mapping[str, str], body: bytes) -> FalDelivery:
        if len(body) > self.max_body_bytes:
            raise WebhookRejected("body_too_large")
        lowered = {name.lower(): value for name, value in headers.items()}
        request_id, user_id, timestamp, signature = (lowered.get(name, "") for name in HEADERS)
        if not (request_id and user_id and timestamp and signature):
            raise WebhookRejected("missing_header")
        if len(request_id) > MAX_HEADER_CHARS or len(user_id) > MAX_HEADER_CHARS:
            raise WebhookRejected("malformed_header")
        if not _EPOCH_SECONDS.fullmatch(timestamp) or not _SIGNATURE_HEX.fullmatch(signature):
            raise WebhookRejected("malformed_header")
        signed_at = int(timestamp)
        skew = signed_at - int(self._clock.now().timestamp())
        if skew < -self._tolerance:
            raise WebhookRejected("stale")
        if skew > self._tolerance:
            raise WebhookRejected("future")
        message = signed_message(request_id, user_id, timestamp, body)
        self._check_signature(message, bytes.fromhex(signature))
        return _delivery(body, request_id, signed_at, signature)

    def _check_signature(self, message: bytes, signature: bytes) -> None:
        if _any_verifies(self._keys.keys(), message, signature):
            return
        fresh = self._keys.refresh()  # fal may have rotated its keys since we cached them
        if fresh is None:
            raise WebhookRejected("unknown_key")
        if not _any_verifies(fresh, message, signature):
            raise WebhookRejected("bad_signature")


def _any_verifies(keys: tuple[Ed25519PublicKey, ...], message: bytes, signature: bytes) -> bool:
    for key in keys:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return True
    return False


def _delivery(body: bytes, request_id: str, signed_at: int, signature: str) -> FalDelivery:
    """fal's documented shape, for the request the signed header names; anything else is malformed."""
    try:
        document: Any = json.loads(body)
    except (ValueError, RecursionError):
        raise WebhookRejected("malformed_body") from None
    if not isinstance(document, dict) or document.get("request_id") != request_id:
        raise WebhookRejected("malformed_body")
    status = document.get("status")
    gateway, error, payload_error = (
        document.get(k) for k in ("gateway_request_id", "error", "payload_error")
    )
    if status not in ("OK", "ERROR"):
        raise WebhookRejected("malformed_body")
    if not all(value is None or isinstance(value, str) for value in (gateway, error, payload_error)):
        raise WebhookRejected("malformed_body")
    return FalDelivery(
        request_id=request_id,
        gateway_request_id=gateway,
        status=status,
        error=error,
        payload_error=payload_error,
        payload=document.get("payload"),
        signed_at=signed_at,
        signature=signature,
    )
