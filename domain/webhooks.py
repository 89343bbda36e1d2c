"""fal.ai's signed completion callbacks: why a delivery is refused, and what a verified one changes.

A delivery is only a hint that a request has finished: the result itself is still fetched from the queue's
``response_url`` by the worker, so nothing here carries trust beyond "fal says request X is done". The web
request that receives it only marks the try-on and queues its next step; it never downloads anything.
"""

from __future__ import annotations

import enum
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from domain.errors import DependencyUnavailable, DomainError
from domain.model import TERMINAL
from domain.ports import Clock, ReplayGuard, TryOnQueue, UnitOfWork, WebhookVerifier

log = logging.getLogger(__name__)

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
    "replayed",  # a signature already accepted within the replay window
    "unknown_request",  # validly signed, but for a request we never submitted
]
REJECT_REASONS: tuple[str, ...] = get_args(RejectReason)

REPLAY_WINDOW_SECONDS = 600
"""A signature is remembered this long: the ±300 s timestamp tolerance, both ways."""


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


class Outcome(enum.StrEnum):
    """What a verified delivery for one of our requests did."""

    QUEUED = "queued"  # the try-on's next step (fetching the result) is queued now
    SETTLED = "settled"  # the try-on is already settled: nothing to do
    SUPERSEDED = "superseded"  # an earlier attempt's request: the try-on has moved on


@dataclass(frozen=True)
class FalWebhooks:
    """``receive``: verify (signature first), refuse replays, find the try-on by fal request id, and for
    the current attempt of an unsettled try-on mark it and queue its next step now (once per request)."""

    verifier: WebhookVerifier
    replays: ReplayGuard
    unit_of_work: Callable[[], UnitOfWork]
    queue: TryOnQueue
    clock: Clock

    @property
    def max_body_bytes(self) -> int:
        return self.verifier.max_body_bytes

    def receive(self, headers: Mapping[str, str], body: bytes) -> Outcome:
        """Raises ``WebhookRejected`` (answer alike), ``DependencyUnavailable`` (answer 503: fal retries)."""
        delivery = self.verifier.verify(headers, body)
        replay_key = hashlib.sha256(delivery.signature.lower().encode()).hexdigest()
        if not self.replays.first_sighting(replay_key, REPLAY_WINDOW_SECONDS):
            raise WebhookRejected("replayed")
        try:
            return self._act(delivery.request_id)
        except DependencyUnavailable:
            self.replays.forget(replay_key)  # nothing was done: fal's retry of this delivery must pass
            raise

    def _act(self, request_id: str) -> Outcome:
        with self.unit_of_work() as uow:
            tryon = uow.tryons.by_request_id(request_id)
        if tryon is None:
            raise WebhookRejected("unknown_request")
        if tryon.status in TERMINAL:
            return Outcome.SETTLED
        if tryon.submission is None or tryon.submission.request_id != request_id:
            return Outcome.SUPERSEDED
        with self.unit_of_work() as uow:
            marked = uow.tryons.note_finished(tryon.tryon_id, request_id, self.clock.now())
            uow.commit()
        if not marked:  # settled or resubmitted since we read it
            return Outcome.SUPERSEDED
        # The job id is per request, so duplicates collapse; a key never names the request itself.
        self.queue.advance_once(tryon.tryon_id, hashlib.sha256(request_id.encode()).hexdigest()[:32])
        log.info("fal webhook: try-on step queued", extra={"tryon_id": tryon.tryon_id})
        return Outcome.QUEUED
