"""fal's webhooks in the domain: a verified delivery for the current attempt of an unsettled try-on queues its
result fetch once; everything else changes nothing. The runner skips the status call after a webhook, and
polling becomes a backed-off fallback."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

import pytest

from domain.errors import DependencyUnavailable, GenerationFailed
from domain.model import FalDelivery, JobState, Submission, TryOnStatus
from domain.ports import WebhookVerifier
from domain.tryon_runner import RunnerPolicy, TryOnRunner
from domain.tryons import TryOnDesk, TryOnOrder
from domain.webhooks import FalWebhooks, Outcome, WebhookRejected
from tests.builders.worlds import TryOnWorld
from tests.fakes import (
    FakeChangeBoard,
    FakeImageGenerator,
    FakeReplayGuard,
    FakeResultStorage,
    FakeSourceUrlSigner,
    FakeStore,
    FakeTryOnQueue,
    FakeUnitOfWork,
    FixedClock,
    SequentialIds,
)


class CountingGenerator(FakeImageGenerator):
    def __init__(self) -> None:
        super().__init__()
        self.state_calls = 0
        self.result_calls = 0

    def state(self, submission: Submission) -> JobState:
        self.state_calls += 1
        return super().state(submission)

    def result(self, submission: Submission):
        self.result_calls += 1
        return super().result(submission)


class HeaderVerifier(WebhookVerifier):
    """Stands in for the Ed25519 check (tested on its own): the headers say what was 'signed'."""

    max_body_bytes = 1024

    def verify(self, headers: Mapping[str, str], body: bytes) -> FalDelivery:
        if headers.get("forged"):
            raise WebhookRejected("bad_signature")
        return FalDelivery(
            request_id=headers["request"],
            gateway_request_id=None,
            status="OK",
            error=None,
            payload_error=None,
            payload=None,
            signed_at=0,
            signature=headers["signature"],
        )


class World(TryOnWorld):
    def __init__(self, policy: RunnerPolicy | None = None) -> None:
        self.store = FakeStore()
        self.clock = FixedClock()
        self.queue = FakeTryOnQueue()
        self.generator = CountingGenerator()
        self.results = FakeResultStorage()
        self.replays = FakeReplayGuard()
        self.changes = FakeChangeBoard()
        uow = lambda: FakeUnitOfWork(self.store)  # noqa: E731
        self.desk = TryOnDesk(
            unit_of_work=uow,
            queue=self.queue,
            results=self.results,
            clock=self.clock,
            ids=SequentialIds(),
            changes=self.changes,
        )
        self.runner = TryOnRunner(
            policy=policy or RunnerPolicy(webhooks=True, webhook_grace_seconds=30, max_poll_seconds=120),
            generator=self.generator,
            signer=FakeSourceUrlSigner(),
            results=self.results,
            unit_of_work=uow,
            queue=self.queue,
            clock=self.clock,
            ids=SequentialIds(),
            jitter=lambda: 0.5,
            changes=self.changes,
        )
        self.webhooks = FalWebhooks(
            verifier=HeaderVerifier(),
            replays=self.replays,
            unit_of_work=uow,
            queue=self.queue,
            clock=self.clock,
        )
        self._signatures = 0

    def submitted(self) -> str:
        """A try-on ordered and submitted (its first step run); its id."""
        self.verified_upload()
        tryon = self.desk.order("alice", TryOnOrder("up1", "a copper bob"))
        self.queue.advances.clear()
        self.runner.advance(tryon.tryon_id)
        assert self.store.tryons[tryon.tryon_id].status is TryOnStatus.RUNNING
        self.queue.advances.clear()
        return tryon.tryon_id

    def deliver(self, request_id: str, signature: str | None = None) -> Outcome:
        """A delivery as fal retries one: each with a fresh signature unless told otherwise."""
        self._signatures += 1
        signature = signature or f"{self._signatures:0128x}"
        return self.webhooks.receive({"request": request_id, "signature": signature}, b"{}")

    def request_id(self, tryon_id: str) -> str:
        submission = self.store.tryons[tryon_id].submission
        assert submission is not None
        return submission.request_id


@pytest.fixture
def world() -> World:
    return World()


def test_a_webhook_for_the_current_request_queues_the_result_fetch_once(world):
    tryon_id = world.submitted()
    request_id = world.request_id(tryon_id)

    assert world.deliver(request_id) is Outcome.QUEUED
    assert world.deliver(request_id) is Outcome.QUEUED  # fal's retry of the same delivery

    assert world.queue.advances == [(tryon_id, 0)]  # the stable key collapsed the second
    assert len(world.queue.once) == 1
    tryon = world.store.tryons[tryon_id]
    assert tryon.notified_request_id == request_id
    assert tryon.next_action_at == world.clock.now()


def test_after_a_webhook_the_runner_fetches_the_result_without_asking_for_the_status(world):
    tryon_id = world.submitted()
    world.deliver(world.request_id(tryon_id))
    world.clock.advance(1)

    world.runner.advance(tryon_id)
    world.runner.advance(tryon_id)  # the polling fallback's step, arriving late, changes nothing

    assert world.generator.state_calls == 0
    assert world.generator.result_calls == 1
    assert world.store.tryons[tryon_id].status is TryOnStatus.SUCCEEDED
    assert [e for e, _ in world.events()].count("falai.succeeded") == 1
    assert [e for e, _ in world.events()].count("result.stored") == 1
    assert len(world.store.results) == 1


def test_a_replayed_signature_is_rejected_and_changes_nothing(world):
    tryon_id = world.submitted()
    request_id = world.request_id(tryon_id)
    world.deliver(request_id, signature="ab" * 64)
    before = world.store.tryons[tryon_id]

    with pytest.raises(WebhookRejected) as rejected:
        world.deliver(request_id, signature="AB" * 64)  # hex is case-insensitive: the same signature

    assert rejected.value.reason == "replayed"
    assert world.store.tryons[tryon_id] == before
    assert len(world.queue.advances) == 1


def test_a_request_we_never_submitted_is_rejected_and_changes_nothing(world):
    tryon_id = world.submitted()
    before = dict(world.store.tryons)

    with pytest.raises(WebhookRejected) as rejected:
        world.deliver("not-ours")

    assert rejected.value.reason == "unknown_request"
    assert world.store.tryons == before
    assert world.queue.advances == []
    assert world.store.tryons[tryon_id].notified_request_id is None


def test_a_forged_delivery_is_rejected_before_anything_is_read_or_remembered(world):
    tryon_id = world.submitted()

    with pytest.raises(WebhookRejected):
        world.webhooks.receive({"forged": "1", "request": world.request_id(tryon_id)}, b"{}")

    assert world.replays.seen == {}
    assert world.queue.advances == []


def test_a_late_delivery_for_an_earlier_attempt_changes_nothing(world):
    world.generator.result_failures.append(GenerationFailed("busy", code="upstream_busy", retryable=True))
    tryon_id = world.submitted()
    first = world.request_id(tryon_id)
    world.clock.advance(30)
    world.runner.advance(tryon_id)  # COMPLETED, but the result is an error: a new attempt
    world.clock.advance(10)
    world.runner.advance(tryon_id)  # resubmitted
    assert world.request_id(tryon_id) != first
    world.queue.advances.clear()
    before = world.store.tryons[tryon_id]

    assert world.deliver(first) is Outcome.SUPERSEDED

    assert world.store.tryons[tryon_id] == before
    assert world.queue.advances == []


def test_a_delivery_for_a_settled_tryon_changes_nothing(world):
    tryon_id = world.submitted()
    request_id = world.request_id(tryon_id)
    world.deliver(request_id)
    world.runner.advance(tryon_id)
    settled = world.store.tryons[tryon_id]
    assert settled.status is TryOnStatus.SUCCEEDED
    world.queue.advances.clear()
    events = len(world.store.audit)

    assert world.deliver(request_id) is Outcome.SETTLED

    assert world.store.tryons[tryon_id] == settled
    assert world.queue.advances == []
    assert len(world.store.audit) == events


def test_an_outage_forgets_the_signature_so_that_fals_retry_passes(world):
    tryon_id = world.submitted()
    request_id = world.request_id(tryon_id)
    world.queue.down = True

    with pytest.raises(DependencyUnavailable):
        world.deliver(request_id, signature="cd" * 64)

    world.queue.down = False
    assert world.deliver(request_id, signature="cd" * 64) is Outcome.QUEUED


def test_with_webhooks_polling_starts_after_the_grace_period_and_backs_off(world):
    tryon_id = world.submitted()
    world.generator.states = [JobState.RUNNING] * 10
    submitted_at = world.store.tryons[tryon_id].submitted_at
    assert submitted_at is not None
    checks = []
    for _ in range(6):
        due = world.store.tryons[tryon_id].next_action_at
        assert due is not None
        checks.append((due - submitted_at).total_seconds())
        world.clock.advance((due - world.clock.now()).total_seconds())
        world.runner.advance(tryon_id)

    assert checks == [30, 60, 120, 240, 360, 480]  # x2 after the grace, then capped at 120 s apart
    assert world.generator.state_calls == 6


def test_without_webhooks_polling_is_every_two_seconds():
    world = World(RunnerPolicy())
    tryon_id = world.submitted()
    assert world.queue.advances == []  # submitted() cleared it; look at the schedule instead
    tryon = world.store.tryons[tryon_id]
    assert tryon.next_action_at == world.clock.now() + timedelta(seconds=2)
    assert RunnerPolicy().poll_delay(100) == 2.0


def test_the_reconciler_respects_the_grace_period(world):
    tryon_id = world.submitted()

    world.clock.advance(25)
    assert world.runner.reconcile() == 0  # the first check is due at 30 s, not before
    world.clock.advance(20)
    assert world.runner.reconcile() == 1  # overdue (a lost job): re-queued
    assert world.queue.advances == [(tryon_id, 0)]


def test_a_webhook_makes_an_overdue_step_due_now_for_the_reconciler(world):
    tryon_id = world.submitted()
    world.queue.down = True
    with pytest.raises(DependencyUnavailable):  # the queue is down: the step could not be queued
        world.deliver(world.request_id(tryon_id))
    world.queue.down = False

    world.clock.advance(11)  # well before the grace period's end

    assert world.runner.reconcile() == 1
    world.runner.advance(tryon_id)
    assert world.store.tryons[tryon_id].status is TryOnStatus.SUCCEEDED
    assert world.generator.state_calls == 0


def test_a_webhook_that_finds_a_status_check_holding_the_tryon_comes_back_shortly(world):
    tryon_id = world.submitted()
    world.clock.advance(30)
    world.store.leases[tryon_id] = world.clock.now() + timedelta(seconds=60)  # a poll step holds it
    world.deliver(world.request_id(tryon_id))
    world.queue.advances.clear()

    world.runner.advance(tryon_id)  # the webhook's step: the lease is taken

    assert world.queue.advances == [(tryon_id, 2.0)]  # back in poll_seconds, not at the next poll
    assert world.generator.state_calls == 0
    world.store.leases.clear()  # the holder saved its (not yet COMPLETED) answer and let go
    world.clock.advance(2)
    world.runner.advance(tryon_id)
    assert world.store.tryons[tryon_id].status is TryOnStatus.SUCCEEDED
    assert world.generator.state_calls == 0


def test_a_step_that_finds_the_tryon_held_without_a_webhook_just_stops(world):
    tryon_id = world.submitted()
    world.store.leases[tryon_id] = world.clock.now() + timedelta(seconds=60)

    world.runner.advance(tryon_id)

    assert world.queue.advances == []
