"""fal.ai's signed completion callbacks: what a verified delivery says, why one is refused, and the port.

A delivery is only a hint that a request has finished: the result itself is still fetched from the queue's
``response_url``, so nothing here carries trust beyond "fal says request X is done".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args

from domain.errors import DependencyUnavailable, DomainError

DeliveryStatus = Literal["OK", "ERROR"]

#: Why a delivery was refused. For metrics and logs only: the HTTP answer is the same for every reason.
RejectReason = Literal[
    "body_too_large",  # more bytes than the cap (checked before anything is parsed)
    "missing_header",  # one of the four X-Fal-Webhook-* headers is absent or empty
    "malformed_header",  # a timestamp that is not epoch seconds, a signature that is not 64 bytes of hex
    "stale",  # signed more than the tolerance ago (a replay, or a retry that came too late)
    "future",  # signed more than the tolerance ahead of our clock
    "unknown_key",  # no cached key verifies and the key set may not be refetched yet (rate limit)
    "bad_signature",  # no key verifies, even from a freshly fetched key set
    "malformed_body",  # signed, but not the documented JSON shape, or another request id than the header
]
REJECT_REASONS: tuple[str, ...] = get_args(RejectReason)


class WebhookRejected(DomainError):
    """A delivery that must change nothing. ``reason`` is one of ``REJECT_REASONS``; the caller answers
    every reason alike so that a forger learns nothing."""

    code = "webhook_rejected"

    def __init__(self, reason: RejectReason) -> None:
        super().__init__(f"fal webhook rejected: {reason}")
        self.reason: RejectReason = reason


class WebhookKeysUnavailable(DependencyUnavailable):
    """fal's signing keys could not be fetched and none younger than the cache limit are at hand: the
    delivery cannot be judged now (answer 503: fal retries, and polling settles the try-on anyway)."""

    code = "webhook_keys_unavailable"


@dataclass(frozen=True)
class FalDelivery:
    """A verified delivery, as fal documents it: ``{request_id, gateway_request_id, status, payload,
    error, payload_error}``. ``signed_at`` is the signed ``X-Fal-Webhook-Timestamp`` (epoch seconds)."""

    request_id: str
    gateway_request_id: str | None
    status: DeliveryStatus
    error: str | None
    payload_error: str | None
    payload: Any  # the model's output (OK) or error details (ERROR); JSON values, untrusted content
    signed_at: int


class WebhookVerifier(Protocol):
    max_body_bytes: int

    def verify(self, headers: Mapping[str, str], body: bytes) -> FalDelivery:
        """The delivery, once its signature, timestamp and shape are good; else ``WebhookRejected``
        (or ``WebhookKeysUnavailable`` when fal's keys cannot be had). ``headers`` names are matched
        case-insensitively; ``body`` is the raw bytes exactly as received."""
        ...
