"""Metrics per process: committed audit events become counters with bounded labels, a transaction's events
reach the listener only once committed, and the shared-state gauges are read once per scrape.

Counters are process-global: every assertion is on the change a test made (``Samples.delta``)."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from adapters.peewee_db import EventOutbox
from adapters.prometheus_metrics import (
    SharedStateCollector,
    bearer_matches,
    exposition,
    observe_queue_wait,
    record_events,
    timing_verification,
)
from domain import audit
from domain.errors import PersistenceUnavailable, QueueUnavailable
from domain.model import AuditEvent, TryOnResult
from tests.builders.records import a_tryon, an_upload

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
UPLOAD = an_upload("alice", "up1", now=NOW)
TRYON = a_tryon(now=NOW)

Key = tuple[str, tuple[tuple[str, str], ...]]


def samples() -> dict[Key, float]:
    """Every tryon_ sample of this process's default registry (``_created`` timestamps left out)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in REGISTRY.collect()
        if family.name.startswith("tryon_")
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def delta(before: dict[Key, float], after: dict[Key, float]) -> dict[Key, float]:
    changed = {key: after[key] - before.get(key, 0.0) for key in after}
    return {key: round(value, 6) for key, value in changed.items() if value}


def counted(*events: AuditEvent) -> dict[Key, float]:
    before = samples()
    record_events(events)
    return delta(before, samples())


def test_uploads_issued_verified_and_rejected_are_counted_by_reason():
    assert counted(
        audit.upload_issued(UPLOAD, 300),
        audit.upload_issued(UPLOAD, 300),
        audit.upload_validated(UPLOAD, NOW, {}),
        audit.upload_rejected(UPLOAD, NOW, "no_face_detected", {}),
    ) == {
        ("tryon_uploads_issued_total", ()): 2,
        ("tryon_uploads_verified_total", ()): 1,
        ("tryon_uploads_rejected_total", (("reason", "no_face_detected"),)): 1,
    }


def test_a_code_nobody_expected_is_counted_as_other_never_as_a_new_series():
    hostile = "x" * 40 + "<script>"
    tryon = replace_submitted(TRYON, NOW)

    assert counted(
        audit.upload_rejected(UPLOAD, NOW, hostile, {}),
        audit.generation_failed(tryon, NOW, 3, hostile, False, retrying=False),
        audit.upload_deleted("alice", "up1", NOW, hostile),
    ) == {
        ("tryon_uploads_rejected_total", (("reason", "other"),)): 1,
        ("tryon_fal_attempts_total", (("code", "other"), ("outcome", "failed"))): 1,
        ("tryon_tryons_settled_total", (("code", "other"), ("status", "failed"))): 1,
        ("tryon_deletions_total", (("reason", "other"), ("what", "source"))): 1,
    }
    assert not any(hostile in value for _, labels in samples() for _, value in labels)


def replace_submitted(tryon, submitted_at):
    return replace(tryon, submitted_at=submitted_at, attempts=1)


def test_fal_attempts_settle_a_tryon_only_when_they_end_it():
    submitted = replace_submitted(TRYON, NOW - timedelta(seconds=12.5))

    assert counted(
        audit.generation_submitted(TRYON, NOW, 1, "req-1"),
        audit.generation_failed(submitted, NOW, 1, "upstream_timeout", True, retrying=True),
        audit.generation_failed(submitted, NOW, 3, "upstream_unavailable", True, retrying=False),
    ) == {
        ("tryon_fal_attempts_total", (("code", ""), ("outcome", "submitted"))): 1,
        ("tryon_fal_attempts_total", (("code", "upstream_timeout"), ("outcome", "retrying"))): 1,
        ("tryon_fal_attempts_total", (("code", "upstream_unavailable"), ("outcome", "failed"))): 1,
        ("tryon_tryons_settled_total", (("code", "upstream_unavailable"), ("status", "failed"))): 1,
    }


def test_a_success_settles_the_tryon_and_observes_submit_to_success():
    submitted = replace_submitted(TRYON, NOW - timedelta(seconds=12.5))

    changes = counted(audit.generation_succeeded(submitted, NOW))

    assert changes[("tryon_fal_attempts_total", (("code", ""), ("outcome", "succeeded")))] == 1
    assert changes[("tryon_tryons_settled_total", (("code", ""), ("status", "succeeded")))] == 1
    assert changes[("tryon_fal_generation_seconds_count", ())] == 1
    assert changes[("tryon_fal_generation_seconds_sum", ())] == 12.5
    assert changes[("tryon_fal_generation_seconds_bucket", (("le", "15.0"),))] == 1
    assert ("tryon_fal_generation_seconds_bucket", (("le", "10.0"),)) not in changes


def test_a_success_without_a_submission_time_is_counted_but_not_timed():
    changes = counted(audit.generation_succeeded(TRYON, NOW))

    assert changes[("tryon_tryons_settled_total", (("code", ""), ("status", "succeeded")))] == 1
    assert ("tryon_fal_generation_seconds_count", ()) not in changes


def test_deletions_are_counted_by_what_and_why_and_erasures_by_themselves():
    result = replace_result()

    assert counted(
        audit.upload_deleted("alice", "up1", NOW, "retention"),
        audit.result_deleted(result, NOW, "user_request"),
        audit.upload_expired(UPLOAD, NOW, at_completion=False),
        audit.upload_expired(UPLOAD, NOW, at_completion=True),
        audit.user_erased("alice", NOW, uploads=1, results=2, tryons=3),
        audit.tryon_requested(TRYON),  # not a counted event
        audit.result_favorite("alice", "r1", NOW, True),
    ) == {
        ("tryon_deletions_total", (("reason", "retention"), ("what", "source"))): 1,
        ("tryon_deletions_total", (("reason", "user_request"), ("what", "result"))): 1,
        ("tryon_deletions_total", (("reason", "never_completed"), ("what", "unfinished_upload"))): 1,
        ("tryon_deletions_total", (("reason", "upload_expired"), ("what", "unfinished_upload"))): 1,
        ("tryon_users_erased_total", ()): 1,
    }


def replace_result():
    return TryOnResult("r1", "t1", "alice", 0, "processed/alice/t1/0.jpg", "image/jpeg", 10, 1, 1, NOW)


# The unit of work's outbox: what the listener hears, and when.


class Listener:
    def __init__(self, fails: bool = False) -> None:
        self.heard: list[list[str]] = []
        self.fails = fails

    def __call__(self, events) -> None:
        self.heard.append([event.event for event in events])
        if self.fails:
            raise RuntimeError("listener broke")


def test_held_events_reach_the_listener_only_when_delivered_after_a_commit():
    listener = Listener()
    outbox = EventOutbox(listener)
    outbox.hold(audit.upload_issued(UPLOAD, 300))
    outbox.hold(audit.upload_validated(UPLOAD, NOW, {}))

    assert listener.heard == []  # appended is not committed
    outbox.deliver()
    outbox.deliver()  # nothing new: nothing told twice

    assert listener.heard == [["upload.issued", "upload.validated"]]


def test_discarded_events_never_reach_the_listener():
    listener = Listener()
    outbox = EventOutbox(listener)
    outbox.hold(audit.upload_issued(UPLOAD, 300))

    outbox.discard()
    outbox.deliver()

    assert listener.heard == []


def test_a_savepoints_events_stand_or_fall_with_the_enclosing_transaction():
    listener = Listener()
    outer, inner = EventOutbox(listener), EventOutbox(listener)
    outer.hold(audit.upload_issued(UPLOAD, 300))
    inner.hold(audit.upload_validated(UPLOAD, NOW, {}))

    inner.hand_to(outer)
    inner.deliver()
    assert listener.heard == []
    outer.deliver()

    assert listener.heard == [["upload.issued", "upload.validated"]]


def test_a_failing_listener_is_logged_and_never_raises(caplog):
    outbox = EventOutbox(Listener(fails=True))
    outbox.hold(audit.upload_issued(UPLOAD, 300))

    with caplog.at_level(logging.ERROR):
        outbox.deliver()

    assert "audit listener failed; the commit stands" in caplog.text


def test_without_a_listener_nothing_is_held():
    outbox = EventOutbox(None)
    outbox.hold(audit.upload_issued(UPLOAD, 300))
    outbox.deliver()  # nobody to tell, and nothing kept


# Histograms observed where things happen.


def test_a_verification_is_timed_under_the_verdict_its_own_job_committed():
    before = samples()
    with timing_verification():
        record_events([audit.upload_validated(UPLOAD, NOW, {})])
    with timing_verification():
        record_events([audit.upload_rejected(UPLOAD, NOW, "not_an_image", {})])
    with timing_verification():
        other_thread = threading.Thread(
            target=record_events, args=([audit.upload_validated(UPLOAD, NOW, {})],)
        )
        other_thread.start()
        other_thread.join()
    changes = delta(before, samples())

    counts = {
        labels: value
        for (name, labels), value in changes.items()
        if name == "tryon_verification_duration_seconds_count"
    }
    assert counts == {
        (("verdict", "verified"),): 1,
        (("verdict", "rejected"),): 1,
        (("verdict", "unsettled"),): 1,
    }


def test_queue_wait_is_enqueued_to_started_never_negative_and_bounded_by_queue():
    before = samples()
    observe_queue_wait("tryons", NOW, NOW + timedelta(seconds=3))
    observe_queue_wait("verify", NOW.replace(tzinfo=None), NOW.replace(tzinfo=None) - timedelta(seconds=1))
    observe_queue_wait("tryons-test-1234", NOW, NOW)
    observe_queue_wait("tryons", None, NOW)  # a job RQ has no enqueue time for: not observed
    changes = delta(before, samples())

    assert changes[("tryon_queue_wait_seconds_sum", (("queue", "tryons"),))] == 3
    assert changes[("tryon_queue_wait_seconds_count", (("queue", "tryons"),))] == 1
    assert changes[("tryon_queue_wait_seconds_count", (("queue", "verify"),))] == 1
    assert ("tryon_queue_wait_seconds_sum", (("queue", "verify"),)) not in changes  # clamped to 0
    assert changes[("tryon_queue_wait_seconds_count", (("queue", "other"),))] == 1


# The gauges of shared state, read once per scrape.


def parsed(text: bytes) -> dict[Key, float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


def test_shared_state_gauges_come_from_their_readers_once_per_scrape():
    reads: list[str] = []

    def unsettled():
        reads.append("database")
        return {"queued": 2}, NOW - timedelta(seconds=90)

    def depths():
        reads.append("redis")
        return {("tryons", "queued"): 4, ("verify", "queued"): 1}

    text = exposition(SharedStateCollector(queue_depths=depths, unsettled=unsettled, now=lambda: NOW))
    got = parsed(text)

    assert sorted(reads) == ["database", "redis"]
    assert got[("tryon_tryons_unsettled", (("status", "queued"),))] == 2
    assert got[("tryon_tryons_unsettled", (("status", "running"),))] == 0
    assert got[("tryon_tryons_oldest_unsettled_age_seconds", ())] == 90
    assert got[("tryon_queue_jobs", (("queue", "tryons"), ("state", "queued")))] == 4
    assert got[("tryon_dependency_up", (("of", "database"),))] == 1
    assert got[("tryon_dependency_up", (("of", "redis"),))] == 1
    assert text.count(b"# TYPE tryon_tryons_unsettled gauge") == 1
    assert b"# TYPE tryon_http_requests_total counter" in text  # this process's own metrics beside them


def test_a_dependency_that_cannot_be_read_is_reported_down_not_raised():
    def unsettled():
        raise PersistenceUnavailable("down")

    def depths():
        raise QueueUnavailable("down")

    got = parsed(exposition(SharedStateCollector(queue_depths=depths, unsettled=unsettled, now=lambda: NOW)))

    assert got[("tryon_dependency_up", (("of", "database"),))] == 0
    assert got[("tryon_dependency_up", (("of", "redis"),))] == 0
    gauges = {"tryon_tryons_unsettled", "tryon_tryons_oldest_unsettled_age_seconds", "tryon_queue_jobs"}
    assert not gauges & {name for name, _ in got}


def test_with_nothing_unsettled_the_oldest_age_is_zero():
    got = parsed(
        exposition(SharedStateCollector(queue_depths=None, unsettled=lambda: ({}, None), now=lambda: NOW))
    )

    assert got[("tryon_tryons_oldest_unsettled_age_seconds", ())] == 0


@pytest.mark.parametrize(
    ("expected", "header", "matches"),
    [
        ("s3cret", "Bearer s3cret", True),
        ("s3cret", "bearer  s3cret ", True),
        ("s3cret", "Bearer s3cre", False),
        ("s3cret", "Basic s3cret", False),
        ("s3cret", "s3cret", False),
        ("s3cret", "", False),
        (None, "Bearer None", False),
        ("", "Bearer ", False),
    ],
)
def test_only_the_configured_bearer_token_matches(expected, header, matches):
    assert bearer_matches(expected, header) is matches
