"""The worker's and the verifier's own /metrics (METRICS_PORT), on a real socket: Prometheus text for the
bearer of METRICS_TOKEN, 404 for anyone and anything else, and no server at all without the token."""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
import requests

from adapters.prometheus_metrics import MetricsExporter, record_events
from adapters.prometheus_metrics.exposition import EXPORTER_MAX_CONNECTIONS
from domain.model import AuditEvent
from entrypoints.bootstrap import metrics_exporter
from tests.builders.app import SETTINGS
from tests.builders.databases import T0

pytestmark = pytest.mark.integration

TOKEN = secrets.token_urlsafe(24)


@pytest.fixture
def exporter() -> Iterator[str]:
    server = MetricsExporter(0, TOKEN, host="127.0.0.1").start()  # port 0: any free port
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def test_the_bearer_of_the_token_gets_this_processs_metrics(exporter: str) -> None:
    record_events([AuditEvent("upload.issued", "u", "up", "success", T0)])

    response = requests.get(f"{exporter}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "tryon_uploads_issued_total" in response.text
    assert "tryon_queue_jobs" not in response.text  # shared state is the web's to report, once


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/metrics", {}),
        ("/metrics", {"Authorization": f"Bearer {TOKEN}x"}),
        ("/metrics", {"Authorization": f"Basic {TOKEN}"}),
        ("/", {"Authorization": f"Bearer {TOKEN}"}),
        ("/metrics/extra", {"Authorization": f"Bearer {TOKEN}"}),
    ],
    ids=["no-token", "wrong-token", "other-scheme", "root", "other-path"],
)
def test_anyone_or_anything_else_gets_404(exporter: str, path: str, headers: dict[str, str]) -> None:
    response = requests.get(f"{exporter}{path}", headers=headers, timeout=10)

    assert response.status_code == 404
    assert "tryon_" not in response.text


@pytest.mark.parametrize(
    ("port", "token"), [(None, TOKEN), (9102, None), (9102, "")], ids=["no-port", "no-token", "empty-token"]
)
def test_without_both_port_and_token_no_server_is_started(port: int | None, token: str | None) -> None:
    assert metrics_exporter(replace(SETTINGS, metrics_port=port, metrics_token=token)) is None


def test_idle_connections_hold_at_most_a_few_threads_and_a_scrape_gets_through_once_they_go(
    exporter: str,
) -> None:
    host, port = exporter.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port)), timeout=5) for _ in range(EXPORTER_MAX_CONNECTIONS)]
    try:
        one_more = socket.create_connection((host, int(port)), timeout=5)
        with one_more:
            assert one_more.recv(1) == b""  # closed at once, not given a thread of its own
    finally:
        for connection in idle:
            connection.close()

    # Their threads let go once they see the connections closed (at once, but not before this client sends).
    deadline = time.monotonic() + 5
    while True:
        try:
            response = requests.get(
                f"{exporter}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
            )
            break
        except requests.ConnectionError:
            assert time.monotonic() < deadline, "the idle connections' threads never let go"
            time.sleep(0.05)

    assert response.status_code == 200
