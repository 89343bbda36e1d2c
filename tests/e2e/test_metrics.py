"""GET /metrics: what each process did, in Prometheus text, for the bearer of METRICS_TOKEN only.

In-process: the real composition counts what its units of work committed. Under gunicorn (the Procfile's
`web`, 2 gthread workers): requests spread over both processes add up exactly in one scrape, and the gauges
of shared state appear once, not once per process. A real `tryon worker` serves its own on METRICS_PORT."""

from __future__ import annotations

import re
import secrets
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
import requests
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from devtools.local_stack import free_port, wait_until
from domain.model import DetectedFace
from entrypoints.http.app import create_app
from tests.builders.stack import Workers, environment, order, settled, threaded_web, verified_upload
from tests.fakes import FakeFaceDetector
from tests.inline import bootstrap_verifying_inline, inline_client

pytestmark = pytest.mark.e2e

JPEG = {"content_type": "image/jpeg", "content_length": 10}
Key = tuple[str, tuple[tuple[str, str], ...]]


def sample_list(text: str) -> list[Sample]:
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def samples(text: str) -> dict[Key, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in sample_list(text)}


def total(text: str, name: str) -> float:
    return sum(s.value for s in sample_list(text) if s.name == name)


def test_metrics_count_issued_and_rejected_uploads_and_report_the_queue(settings, dev_issuer):
    settings = replace(settings, metrics_token=secrets.token_urlsafe(24))
    client = create_app(
        bootstrap_verifying_inline(settings, detector=FakeFaceDetector()), configure_logs=False
    ).test_client()
    bearer = {"Authorization": f"Bearer {settings.metrics_token}"}
    before = samples(client.get("/metrics", headers=bearer).get_data(as_text=True))
    auth = {"Authorization": f"Bearer {dev_issuer.mint(f'user{secrets.token_hex(6)}')}"}
    for _ in range(2):
        client.post("/v1/uploads", json=JPEG, headers=auth)
    ticket = client.post("/v1/uploads", json=JPEG, headers=auth).get_json()
    requests.put(ticket["url"], data=b"0123456789", headers=ticket["headers"], timeout=10)
    completed = client.post(
        f"/v1/uploads/{ticket['upload_id']}/complete", json={"object_key": ticket["object_key"]}, headers=auth
    )
    assert completed.status_code == 422

    assert client.get("/metrics").status_code == 404

    response = client.get("/metrics", headers=bearer)

    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    got = samples(response.get_data(as_text=True))

    def grew(key: Key) -> float:
        return got.get(key, 0) - before.get(key, 0)

    assert grew(("tryon_uploads_issued_total", ())) == 3
    assert grew(("tryon_uploads_rejected_total", (("reason", "not_an_image"),))) == 1
    assert (
        grew(("tryon_verification_duration_seconds_count", (("verdict", "rejected"),))) == 0
    )  # inline: no job
    assert got[("tryon_dependency_up", (("of", "database"),))] == 1
    assert got[("tryon_dependency_up", (("of", "redis"),))] == 1
    assert ("tryon_queue_jobs", (("queue", "tryons"), ("state", "queued"))) in got
    assert got[("tryon_tryons_unsettled", (("status", "queued"),))] == 0
    assert "X-Amz" not in response.get_data(as_text=True)


ISSUES = 12
HEALTH_CHECKS = 30
STRAYS = 6
CLIENT_THREADS = 8
MAX_ROUNDS = 10


def test_under_gunicorn_two_processes_add_up_in_one_scrape(settings, dev_issuer, tmp_path: Path):
    token = secrets.token_urlsafe(24)
    env = {**environment(settings), "METRICS_TOKEN": token}
    env.pop("WEB_METRICS_DIR", None)  # gunicorn.conf.py makes a fresh one
    bearer = {"Authorization": f"Bearer {token}"}
    auth = {"Authorization": f"Bearer {dev_issuer.mint(f'user{secrets.token_hex(6)}')}"}
    log = tmp_path / "web.log"

    with threaded_web(env, log, workers=2, threads=4) as url:
        before = requests.get(f"{url}/metrics", headers=bearer, timeout=10).text

        def call(kind: str) -> str:
            if kind == "issue":  # a fresh connection each: gunicorn's processes take turns accepting
                answer = requests.post(f"{url}/v1/uploads", json=JPEG, headers=auth, timeout=30)
            elif kind == "health":
                answer = requests.get(f"{url}/healthz", timeout=30)
            else:
                answer = requests.get(f"{url}/no-such-page/{secrets.token_hex(8)}", timeout=30)
            return f"{kind} {answer.status_code}"

        tasks = ["issue"] * ISSUES + ["health"] * HEALTH_CHECKS + ["stray"] * STRAYS
        metrics_dir = multiprocess_directory(log.read_text(errors="replace"))
        answers: Counter[str] = Counter()
        rounds = 0
        # Which process accepts a connection is up to the kernel: send rounds until both have answered some.
        while rounds < MAX_ROUNDS:
            rounds += 1
            with ThreadPoolExecutor(CLIENT_THREADS) as pool:
                answers += Counter(pool.map(call, tasks))
            processes_that_counted = pids_with_samples(metrics_dir, "tryon_http_requests_total")
            if len(processes_that_counted) == 2:
                break
        assert requests.get(f"{url}/metrics", timeout=10).status_code == 404
        after = requests.get(f"{url}/metrics", headers=bearer, timeout=10).text

    assert len(processes_that_counted) == 2, processes_that_counted  # both processes answered some
    expected = {"issue 201": ISSUES, "health 200": HEALTH_CHECKS, "stray 404": STRAYS}
    assert answers == Counter({answer: count * rounds for answer, count in expected.items()})
    sent = len(tasks) * rounds + 2  # and the first scrape, and the refused one
    assert total(after, "tryon_http_requests_total") - total(before, "tryon_http_requests_total") == sent
    grown = Counter(samples(after)) - Counter(samples(before))
    assert (
        grown[("tryon_http_requests_total", (("method", "GET"), ("route", "/healthz"), ("status", "200")))]
        == HEALTH_CHECKS * rounds
    )
    assert (
        grown[("tryon_http_requests_total", (("method", "GET"), ("route", "unmatched"), ("status", "404")))]
        == STRAYS * rounds
    )
    assert grown[("tryon_uploads_issued_total", ())] == ISSUES * rounds
    for gauge in ("tryon_dependency_up", "tryon_tryons_unsettled", "tryon_queue_jobs"):
        assert after.count(f"# TYPE {gauge} gauge") == 1, gauge
    listed = [(s.name, tuple(sorted(s.labels.items()))) for s in sample_list(after)]
    assert listed.count(("tryon_dependency_up", (("of", "database"),))) == 1
    assert listed.count(("tryon_tryons_oldest_unsettled_age_seconds", ())) == 1
    assert not metrics_dir.exists()  # gunicorn.conf.py removes the directory it made when gunicorn exits


def multiprocess_directory(log: str) -> Path:
    found = re.search(r"prometheus multiprocess directory: (\S+)", log)
    assert found, log[-2000:]
    return Path(found[1])


def pids_with_samples(directory: Path, sample_name: str) -> set[str]:
    """The processes whose value files hold a non-zero ``sample_name`` (files: ``<type>_<pid>.db``)."""
    pids = set()
    for path in directory.glob("counter_*.db"):
        if any_positive(path, sample_name):
            pids.add(path.stem.split("_", 1)[1])
    return pids


def any_positive(path: Path, sample_name: str) -> bool:
    values: Iterable[tuple[str, float, float, int]] = MmapedDict.read_all_values_from_file(str(path))
    return any(f'"{sample_name}"' in key and value > 0 for key, value, _, _ in values)


def test_the_worker_serves_its_own_metrics_on_metrics_port(tryon_settings, auth, tmp_path: Path):
    client = inline_client(tryon_settings, detector=FakeFaceDetector([DetectedFace(0, 0, 300, 300, 0.99)]))
    token, port = secrets.token_urlsafe(24), free_port()
    pool = Workers(tryon_settings, tmp_path)
    pool.start({"METRICS_PORT": str(port), "METRICS_TOKEN": token})
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_until(
            lambda: answers(url, token), timeout=60, what="the worker's metrics", process=pool.processes[0]
        )
        tryon_id = order(client, auth, verified_upload(client, auth))
        assert settled(client, auth, tryon_id)["status"] == "succeeded", pool.logs()
        got = samples(requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10).text)
        refused = requests.get(url, timeout=10).status_code
    finally:
        pool.stop_all()

    assert refused == 404
    assert got[("tryon_tryons_settled_total", (("code", ""), ("status", "succeeded")))] == 1
    assert got[("tryon_fal_attempts_total", (("code", ""), ("outcome", "submitted")))] == 1
    assert got[("tryon_fal_generation_seconds_count", ())] == 1
    assert got[("tryon_fal_request_seconds_count", (("call", "submit"),))] == 1
    assert got[("tryon_queue_wait_seconds_count", (("queue", "tryons"),))] >= 1
    assert ("tryon_uploads_issued_total", ()) in got  # the worker's own: it issued none
    assert got[("tryon_uploads_issued_total", ())] == 0
    assert "metrics exporter listening" in pool.logs()


def answers(url: str, token: str) -> bool:
    try:
        return requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=2).status_code == 200
    except requests.RequestException:
        return False
