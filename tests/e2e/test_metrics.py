"""GET /metrics counts what happened, from the database and Redis, in Prometheus text format."""

from __future__ import annotations

import secrets
from dataclasses import replace

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from entrypoints.http.app import create_app
from tests.fakes import FakeFaceDetector
from tests.inline import bootstrap_verifying_inline

pytestmark = pytest.mark.e2e


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_issued_and_rejected_uploads_and_report_the_queue(settings, dev_issuer):
    settings = replace(settings, metrics_token=secrets.token_urlsafe(24))
    client = create_app(
        bootstrap_verifying_inline(settings, detector=FakeFaceDetector()), configure_logs=False
    ).test_client()
    auth = {"Authorization": f"Bearer {dev_issuer.mint(f'user{secrets.token_hex(6)}')}"}
    for _ in range(2):
        client.post("/v1/uploads", json={"content_type": "image/jpeg", "content_length": 10}, headers=auth)
    ticket = client.post(
        "/v1/uploads", json={"content_type": "image/jpeg", "content_length": 10}, headers=auth
    ).get_json()
    requests.put(ticket["url"], data=b"0123456789", headers=ticket["headers"], timeout=10)
    assert (
        client.post(
            f"/v1/uploads/{ticket['upload_id']}/complete",
            json={"object_key": ticket["object_key"]},
            headers=auth,
        ).status_code
        == 422
    )

    assert client.get("/metrics").status_code == 404

    response = client.get("/metrics", headers={"Authorization": f"Bearer {settings.metrics_token}"})

    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    got = samples(response.get_data(as_text=True))
    assert got[("tryon_uploads_issued_total", ())] == 3
    assert got[("tryon_uploads_rejected_total", (("reason", "not_an_image"),))] == 1
    assert got[("tryon_dependency_up", (("of", "database"),))] == 1
    assert got[("tryon_dependency_up", (("of", "redis"),))] == 1
    assert ("tryon_queue_jobs", (("state", "queued"),)) in got
    assert "X-Amz" not in response.get_data(as_text=True)
