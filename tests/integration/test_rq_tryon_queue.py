"""The tryons queue against the real Redis: the jobs bootstrap hands the adapter are stored under the same
dotted paths and ids as ever, so jobs queued before a deploy still run after it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rq import Queue

from adapters.rq_queue import RqTryOnQueue, expiry_job_id

pytestmark = pytest.mark.integration


def test_try_on_steps_and_selfie_expiry_are_queued_by_their_historic_paths_and_ids(
    tryon_queues: tuple[RqTryOnQueue, Queue],
) -> None:
    queue, rq = tryon_queues
    queue.advance_soon("t1")
    queue.advance_in("t2", 60)
    queue.expire_upload_at("u1", datetime.now(UTC) + timedelta(hours=1))
    queue.expire_upload_at("u1", datetime.now(UTC) + timedelta(hours=2))  # moves, does not add

    [now] = rq.get_jobs()
    later = [rq.fetch_job(job_id) for job_id in rq.scheduled_job_registry.get_job_ids()]
    assert None not in later
    assert (now.func_name, now.args) == ("entrypoints.jobs.advance_tryon", ["t1"])
    assert sorted((job.func_name, job.args, job.id == expiry_job_id("u1")) for job in later if job) == [
        ("entrypoints.jobs.advance_tryon", ["t2"], False),
        ("entrypoints.jobs.expire_upload", ["u1"], True),
    ]
