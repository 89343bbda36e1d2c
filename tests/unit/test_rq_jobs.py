"""The queue adapter takes its job functions from bootstrap, and only ones RQ can find again by name."""

from __future__ import annotations

import pytest

from adapters.rq_queue import TryOnJobs, module_level
from entrypoints import jobs


def test_a_job_must_be_a_module_level_function() -> None:
    def nested(tryon_id: str) -> None: ...

    for not_findable in (lambda tryon_id: None, nested):
        with pytest.raises(TypeError, match="module-level function"):
            TryOnJobs(advance_tryon=not_findable, expire_upload=jobs.expire_upload)

    assert module_level(jobs.verify_upload) is jobs.verify_upload
