"""The worker's periodic chains against the real Redis: a run re-schedules itself, by the same dotted path,
on the queue and connection RQ ran it with."""

from __future__ import annotations

import secrets

import pytest
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer

from adapters.redis_store import connect_redis
from entrypoints import jobs, worker

pytestmark = pytest.mark.integration


def test_a_reconcile_run_schedules_the_next_one_on_its_own_queue(redis_url: str, monkeypatch) -> None:
    monkeypatch.setattr(jobs, "reconcile", lambda: 0)
    connection = connect_redis(redis_url)
    name = f"maintenance-test-{secrets.token_hex(4)}"
    queue = Queue(name, connection=connection, serializer=JSONSerializer)
    try:
        first = queue.enqueue(worker.reconcile_and_reschedule, job_id="tryon-reconciler-1", result_ttl=0)

        SimpleWorker([queue], connection=connection, serializer=JSONSerializer).work(burst=True)

        [next_id] = queue.scheduled_job_registry.get_job_ids()
        following = queue.fetch_job(next_id)
        assert following is not None and following.id != first.id
        assert next_id.startswith("tryon-reconciler-")
        assert following.func_name == "entrypoints.worker.reconcile_and_reschedule"
    finally:
        queue.empty()
        for job_id in queue.scheduled_job_registry.get_job_ids():
            queue.scheduled_job_registry.remove(job_id, delete_job=True)
