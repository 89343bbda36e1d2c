from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from domain.errors import Conflict, GenerationFailed, Gone, InvalidRequest, NotFound
from domain.model import JobState, TryOnStatus, UploadStatus
from domain.ports import Topic
from tests.builders.worlds import ORDER, TryOnWorld
from tests.fakes import (
    FixedClock,
)


@pytest.fixture
def world() -> TryOnWorld:
    return TryOnWorld()


def test_an_order_for_a_verified_upload_is_queued_after_it_is_recorded(world):
    world.verified_upload()

    tryon = world.desk.order("alice", ORDER)

    assert tryon.status is TryOnStatus.QUEUED
    assert world.store.tryons[tryon.tryon_id] == tryon
    assert world.queue.advances == [(tryon.tryon_id, 0)]
    assert world.events() == [("tryon.requested", "success")]


def test_the_same_idempotency_key_returns_the_same_tryon_and_a_different_body_is_refused(world):
    world.verified_upload()
    first = world.desk.order("alice", ORDER, idempotency_key="k1")

    assert world.desk.order("alice", ORDER, idempotency_key="k1") == first
    with pytest.raises(InvalidRequest) as refused:
        world.desk.order("alice", replace(ORDER, style_prompt="a mohawk"), idempotency_key="k1")
    assert refused.value.code == "idempotency_key_reused"
    assert len(world.store.tryons) == 1


@pytest.mark.parametrize(
    ("changes", "error", "code"),
    [
        ({"user_id": "bob"}, NotFound, "upload_not_found"),
        ({"status": UploadStatus.ISSUED, "stored": None}, Conflict, "upload_not_verified"),
        ({"status": UploadStatus.REJECTED, "stored": None}, Gone, "upload_expired"),
        ({"source_expires_at": FixedClock().now()}, Gone, "upload_expired"),
    ],
)
def test_only_the_callers_verified_unexpired_upload_can_be_tried_on(world, changes, error, code):
    world.verified_upload(**changes)

    with pytest.raises(error) as refused:
        world.desk.order("alice", ORDER)

    assert refused.value.code == code
    assert world.store.tryons == {}
    assert world.queue.advances == []


@pytest.mark.parametrize(
    ("order", "code"),
    [
        (replace(ORDER, style_prompt=""), "invalid_prompt"),
        (replace(ORDER, style_prompt="x" * 1001), "invalid_prompt"),
        (replace(ORDER, num_images=0), "invalid_num_images"),
        (replace(ORDER, num_images=5), "invalid_num_images"),
        (replace(ORDER, output_format="gif"), "invalid_format"),
    ],
)
def test_invalid_orders_are_refused_before_anything_is_recorded(world, order, code):
    world.verified_upload()
    with pytest.raises(InvalidRequest) as refused:
        world.desk.order("alice", order)
    assert refused.value.code == code
    assert world.store.tryons == {}


def test_a_queue_outage_still_records_the_tryon_for_the_reconciler(world):
    world.verified_upload()
    world.queue.down = True

    tryon = world.desk.order("alice", ORDER)

    assert world.store.tryons[tryon.tryon_id].status is TryOnStatus.QUEUED
    world.queue.down = False
    world.clock.advance(60)
    assert world.runner.reconcile() == 1
    assert world.queue.advances == [(tryon.tryon_id, 0)]


def test_a_storage_outage_while_storing_results_puts_the_step_back_and_loses_nothing(world):
    world.verified_upload()
    tryon = world.desk.order("alice", ORDER)
    world.runner.advance(tryon.tryon_id)
    world.results.down = True
    world.queue.advances.clear()

    world.clock.advance(5)
    world.runner.advance(tryon.tryon_id)

    held = world.store.tryons[tryon.tryon_id]
    assert held.status is TryOnStatus.RUNNING and held.submission is not None
    assert tryon.tryon_id not in world.store.leases
    assert held.next_action_at == world.clock.now() + timedelta(seconds=5)
    assert world.queue.advances == [(tryon.tryon_id, 5.0)]
    world.results.down = False
    world.run_until_settled(tryon.tryon_id)
    done = world.store.tryons[tryon.tryon_id]
    assert (done.status, done.attempts) == (TryOnStatus.SUCCEEDED, 1)
    assert len(world.generator.submitted) == 1


def test_a_database_outage_at_the_claim_requeues_the_step_without_touching_the_tryon(world):
    world.verified_upload()
    tryon = world.desk.order("alice", ORDER)
    world.store.fail_commit = True
    world.queue.advances.clear()

    world.runner.advance(tryon.tryon_id)

    assert world.queue.advances == [(tryon.tryon_id, 5.0)]
    assert world.store.tryons[tryon.tryon_id] == tryon
    assert world.generator.submitted == []
    world.store.fail_commit = False
    world.run_until_settled(tryon.tryon_id)
    assert world.store.tryons[tryon.tryon_id].status is TryOnStatus.SUCCEEDED


def test_a_step_whose_outage_cannot_even_be_recorded_is_found_by_the_reconciler(world):
    world.verified_upload()
    tryon = world.desk.order("alice", ORDER)
    world.runner.advance(tryon.tryon_id)
    world.results.down = True
    world.queue.down = True

    world.clock.advance(5)
    world.runner.advance(tryon.tryon_id)

    world.results.down = world.queue.down = False
    world.queue.advances.clear()
    world.clock.advance(60)
    assert world.runner.reconcile() == 1
    assert world.queue.advances == [(tryon.tryon_id, 0)]
    world.run_until_settled(tryon.tryon_id)
    assert world.store.tryons[tryon.tryon_id].status is TryOnStatus.SUCCEEDED


def test_a_tryon_is_submitted_with_only_a_fresh_short_lived_url_and_its_result_stored(world):
    world.verified_upload()
    tryon = world.desk.order("alice", ORDER)
    world.generator.states = [JobState.QUEUED, JobState.RUNNING]

    world.run_until_settled(tryon.tryon_id)

    done = world.store.tryons[tryon.tryon_id]
    assert (done.status, done.attempts, done.error) == (TryOnStatus.SUCCEEDED, 1, None)
    [request] = world.generator.submitted
    assert world.signer.signed == [("uploads/alice/up1.jpg", 300)]
    assert request.start_deadline_seconds == 270
    assert request.prompt == ORDER.style_prompt
    [result] = world.store.results.values()
    assert result.object_key == f"processed/alice/{tryon.tryon_id}/0.jpg"
    assert set(world.results.objects) == {result.object_key}
    assert [e for e, _ in world.events()] == [
        "tryon.requested",
        "falai.invoked",
        "falai.succeeded",
        "result.stored",
    ]
    upload = world.store.uploads["up1"]
    assert upload.source_expires_at == done.completed_at + timedelta(seconds=3600)
    assert world.queue.expiries == [("up1", upload.source_expires_at)]


def test_a_retryable_failure_resubmits_with_a_new_url_and_then_succeeds(world):
    world.verified_upload()
    tryon = world.desk.order("alice", ORDER)
    world.generator.submit_failures = [GenerationFailed("busy", code="upstream_unavailable", retryable=True)]
    world.generator.result_failures = [GenerationFailed("expired", code="source_expired", retryable=True)]

    world.run_until_settled(tryon.tryon_id)

    done = world.store.tryons[tryon.tryon_id]
    assert (done.status, done.attempts) == (TryOnStatus.SUCCEEDED, 3)
    assert len(world.signer.signed) == 3
    assert len({str(r.image_url) for r in world.generator.submitted}) == 3


def test_retries_stop_at_the_limit_and_the_tryon_fails_with_an_actionable_error(world):
    world.verified_upload()
    tryon = world.desk.order("alice", ORDER)
    world.generator.submit_failures = [
        GenerationFailed("busy", code="upstream_unavailable", retryable=True) for _ in range(5)
    ]

    world.run_until_settled(tryon.tryon_id)

    done = world.store.tryons[tryon.tryon_id]
    assert (done.status, done.attempts) == (TryOnStatus.FAILED, 3)
    assert done.error is not None
    assert (done.error.code, done.error.retryable) == ("upstream_unavailable", True)
    assert len(world.generator.submitted) == 3


def test_a_content_policy_violation_is_final_at_once(world):
    world.verified_upload()
    tryon = world.desk.order("alice", ORDER)
    world.generator.result_failures = [
        GenerationFailed("no", code="content_policy_violation", retryable=False)
    ]

    world.run_until_settled(tryon.tryon_id)

    done = world.store.tryons[tryon.tryon_id]
    assert (done.status, done.attempts) == (TryOnStatus.FAILED, 1)
    assert done.error is not None and done.error.code == "content_policy_violation"


def test_a_job_that_runs_past_its_deadline_is_cancelled_and_retried(world):
    world.verified_upload()
    tryon = world.desk.order("alice", ORDER)
    world.runner.advance(tryon.tryon_id)
    world.generator.states = [JobState.RUNNING]
    world.clock.advance(601)

    world.runner.advance(tryon.tryon_id)

    assert world.generator.cancelled == ["req1"]
    assert world.store.tryons[tryon.tryon_id].status is TryOnStatus.QUEUED
    world.run_until_settled(tryon.tryon_id)
    assert world.store.tryons[tryon.tryon_id].status is TryOnStatus.SUCCEEDED


def test_a_step_held_by_another_worker_is_skipped_and_a_settled_tryon_is_left_alone(world):
    world.verified_upload()
    tryon = world.desk.order("alice", ORDER)
    world.store.leases[tryon.tryon_id] = world.clock.now() + timedelta(seconds=30)

    world.runner.advance(tryon.tryon_id)
    assert world.generator.submitted == []

    world.clock.advance(31)
    world.run_until_settled(tryon.tryon_id)
    world.runner.advance(tryon.tryon_id)
    assert len(world.generator.submitted) == 1


def test_a_source_deleted_before_submission_fails_with_source_expired(world):
    world.verified_upload()
    tryon = world.desk.order("alice", ORDER)
    world.store.uploads["up1"] = replace(world.store.uploads["up1"], status=UploadStatus.DELETED)

    world.runner.advance(tryon.tryon_id)

    done = world.store.tryons[tryon.tryon_id]
    assert done.status is TryOnStatus.FAILED
    assert done.error is not None and done.error.code == "source_expired"
    assert world.generator.submitted == []


def test_a_result_image_is_served_to_its_owner_only(world):
    world.verified_upload()
    tryon = world.desk.order("alice", ORDER)
    world.run_until_settled(tryon.tryon_id)
    [result] = world.store.results.values()

    owned, data = world.desk.result_image("alice", result.result_id)

    assert owned == result
    assert data == world.results.objects[result.object_key].data
    with pytest.raises(NotFound):
        world.desk.result_image("mallory", result.result_id)


def test_each_change_the_app_sees_is_announced_once_committed_and_a_poll_announces_nothing(world):
    world.verified_upload()
    tryon = world.desk.order("alice", ORDER)
    world.generator.submit_failures = [GenerationFailed("busy", code="upstream_unavailable", retryable=True)]
    world.generator.states = [JobState.RUNNING, JobState.RUNNING]
    seen_at_announcement: list[tuple[str, str]] = []
    announce = world.changes.announce

    def announce_and_look(topic: Topic, key: str, message: str) -> None:
        seen_at_announcement.append((message, world.store.tryons[key].status.value))  # what is committed
        announce(topic, key, message)

    world.changes.announce = announce_and_look

    world.run_until_settled(tryon.tryon_id)

    assert world.store.tryons[tryon.tryon_id].status is TryOnStatus.SUCCEEDED
    assert seen_at_announcement == [("queued", "queued"), ("running", "running"), ("succeeded", "succeeded")]
    assert {(topic, key) for topic, key, _ in world.changes.announced} == {(Topic.TRYON, tryon.tryon_id)}


def test_a_final_failure_is_announced(world):
    world.verified_upload()
    tryon = world.desk.order("alice", ORDER)
    world.generator.result_failures = [GenerationFailed("no", code="content_policy_violation")]

    world.run_until_settled(tryon.tryon_id)

    assert [message for _, _, message in world.changes.announced] == ["running", "failed"]


def test_an_announcement_that_fails_does_not_fail_the_step(world):
    world.changes.down = True
    world.verified_upload()
    tryon = world.desk.order("alice", ORDER)

    world.run_until_settled(tryon.tryon_id)

    done = world.store.tryons[tryon.tryon_id]
    assert (done.status, done.attempts) == (TryOnStatus.SUCCEEDED, 1)
    assert len(world.store.results) == 1
    assert world.changes.announced == []
