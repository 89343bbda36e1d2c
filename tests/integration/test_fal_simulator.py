"""The fal queue simulator, driven by fal's own Python client and by plain HTTP, so it stays honest."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fal_client
import fal_client.client
import pytest
import requests
from PIL import Image, ImageChops, ImageStat

from devtools.fal_simulator import Counts, FalSimulator
from tests.builders.loopback import Answer, Loopback, serve_files

pytestmark = pytest.mark.integration

KEY = "sim-test-key-5b1e"
AUTH = {"Authorization": f"Key {KEY}"}
ENDPOINT = "fal-ai/nano-banana/edit"
CAT = (Path(__file__).resolve().parents[1] / "fixtures" / "images" / "cat.jpg").read_bytes()
S3_EXPIRED = b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"


INPUTS: dict[str, Answer] = {
    "/cat.jpg": (200, "image/jpeg", CAT),
    "/expired.jpg": (403, "application/xml", S3_EXPIRED),
    "/notes.txt": (200, "text/plain", b"not an image"),
}
"""What fal downloads from: a photo, an "expired pre-signed URL" (403) and a text file."""


@pytest.fixture(scope="module")
def inputs() -> Iterator[Loopback]:
    with serve_files(INPUTS) as server:
        yield server


@pytest.fixture
def sim() -> Iterator[FalSimulator]:
    with FalSimulator(KEY) as running:
        yield running


@pytest.fixture
def fal(sim: FalSimulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[fal_client.SyncClient]:
    """fal-client 1.0.3 builds every queue URL from ``fal_client.client.QUEUE_URL_FORMAT``, always
    ``https://{FAL_QUEUE_RUN_HOST}/``: an env var cannot make it plain http, so the constant is patched."""
    monkeypatch.setenv("FAL_KEY", KEY)
    monkeypatch.setattr(fal_client.client, "QUEUE_URL_FORMAT", f"{sim.base_url}/")
    client = fal_client.SyncClient()  # a fresh one reads FAL_KEY now (the module-level one caches it)
    yield client
    client._client.close()


def edit_arguments(*urls: str, **overrides: Any) -> dict[str, Any]:
    return {"prompt": "give me a bob cut", "image_urls": list(urls), "num_images": 1, **overrides}


def submit(sim: FalSimulator, arguments: Any, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(
        f"{sim.base_url}/{ENDPOINT}", json=arguments, headers={**AUTH, **(headers or {})}, timeout=5
    )


def poll_until_completed(status_url: str, timeout: float = 10.0) -> list[str]:
    """Every status seen, one per poll, until COMPLETED."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = requests.get(status_url, headers=AUTH, timeout=5)
        seen.append(answer.json()["status"])
        assert answer.status_code == (200 if seen[-1] == "COMPLETED" else 202)
        if seen[-1] == "COMPLETED":
            return seen
        time.sleep(0.02)
    raise AssertionError(f"not COMPLETED after {timeout} s: {seen[-3:]}")


def run_to_result(
    sim: FalSimulator, arguments: Any, headers: dict[str, str] | None = None
) -> requests.Response:
    submitted = submit(sim, arguments, headers)
    assert submitted.status_code == 200, submitted.text
    poll_until_completed(submitted.json()["status_url"])
    return requests.get(submitted.json()["response_url"], headers=AUTH, timeout=5)


def job_threads(sim: FalSimulator) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"fal-simulator-job {sim.base_url}"]


def distinct(statuses: list[str]) -> list[str]:
    return [s for i, s in enumerate(statuses) if i == 0 or statuses[i - 1] != s]


# --- fal's own client ------------------------------------------------------------------------------


def test_fal_client_submits_polls_and_gets_edited_images_that_it_can_download(sim, fal, inputs):
    handle = fal.submit(
        ENDPOINT,
        edit_arguments(inputs.url("/cat.jpg"), num_images=2, output_format="jpeg"),
        start_timeout=30,
        headers={"X-Fal-Store-IO": "0"},
    )
    result = handle.get()

    assert isinstance(handle.status(), fal_client.Completed)
    assert [image["content_type"] for image in result["images"]] == ["image/jpeg", "image/jpeg"]
    for image in result["images"]:
        downloaded = requests.get(image["url"], timeout=5)
        assert downloaded.status_code == 200
        assert len(downloaded.content) == image["file_size"]
    headers = sim.submitted_headers(handle.request_id)
    assert headers["x-fal-request-timeout"] == "30.0"
    assert headers["x-fal-store-io"] == "0"
    assert sim.counts().input_downloads == 1


def test_fal_client_raises_the_content_policy_violation_detail_of_a_flagged_job(sim, fal, inputs):
    sim.fail_next_jobs("content_policy_violation")
    handle = fal.submit(ENDPOINT, edit_arguments(inputs.url("/cat.jpg")))

    with pytest.raises(fal_client.FalClientHTTPError) as caught:
        handle.get()

    assert caught.value.status_code == 422
    detail = caught.value.response.json()["detail"]
    assert [(d["type"], d["loc"]) for d in detail] == [("content_policy_violation", ["body", "prompt"])]
    assert "content_policy_violation" in str(caught.value)
    assert isinstance(handle.status(), fal_client.Completed)  # like fal: a failed job says COMPLETED


def test_fal_client_retries_429_submissions_until_the_simulator_accepts(sim, fal, inputs):
    sim.fail_next_submits(429, count=2)

    result = fal.subscribe(ENDPOINT, edit_arguments(inputs.url("/cat.jpg")))

    assert len(result["images"]) == 1
    assert sim.counts().submissions == 3


def test_fal_client_does_not_retry_a_503_and_reports_its_error_type(sim, fal, inputs):
    sim.fail_next_submits(503)

    with pytest.raises(fal_client.FalClientHTTPError) as caught:
        fal.submit(ENDPOINT, edit_arguments(inputs.url("/cat.jpg")))

    assert (caught.value.status_code, caught.value.error_type) == (503, "runner_scheduling_failure")
    assert sim.counts().submissions == 1


# --- success over plain HTTP -----------------------------------------------------------------------


def test_a_submission_answers_queue_urls_without_the_endpoint_path(sim, inputs):
    answer = submit(sim, edit_arguments(inputs.url("/cat.jpg")))

    body = answer.json()
    base = f"{sim.base_url}/fal-ai/nano-banana/requests/{body['request_id']}"
    assert answer.status_code == 200
    assert body == {
        "request_id": body["request_id"],
        "response_url": base,
        "status_url": f"{base}/status",
        "cancel_url": f"{base}/cancel",
        "queue_position": 0,
    }
    assert answer.headers["x-fal-request-id"] == body["request_id"]


@pytest.mark.parametrize("output_format", ["jpeg", "png", "webp"])
def test_a_job_returns_num_images_edited_images_served_publicly_in_the_asked_format(
    sim, inputs, output_format
):
    answer = run_to_result(
        sim, edit_arguments(inputs.url("/cat.jpg"), num_images=3, output_format=output_format)
    )

    assert answer.status_code == 200
    result = answer.json()
    assert result["description"]
    assert len(result["images"]) == 3
    source = Image.open(io.BytesIO(CAT)).convert("RGB")
    outputs = []
    for image in result["images"]:
        assert image["url"].startswith(f"{sim.base_url}/files/")
        assert image["url"].endswith(f".{output_format}")
        downloaded = requests.get(image["url"], timeout=5)  # no Authorization: public, like fal's CDN
        assert downloaded.status_code == 200
        assert downloaded.headers["Content-Type"] == image["content_type"] == f"image/{output_format}"
        assert len(downloaded.content) == image["file_size"]
        decoded = Image.open(io.BytesIO(downloaded.content))
        assert decoded.format == output_format.upper()
        assert decoded.size == (image["width"], image["height"]) == source.size
        difference = ImageStat.Stat(ImageChops.difference(decoded.convert("RGB"), source)).mean
        assert sum(difference) / 3 > 20  # visibly edited, not the input sent back
        outputs.append(downloaded.content)
    assert len(set(outputs)) == 3


def test_outputs_default_to_png_and_counters_record_each_kind_of_request(sim, inputs):
    submitted = submit(sim, {"prompt": "curls", "image_urls": [inputs.url("/cat.jpg")]})
    polls = len(poll_until_completed(submitted.json()["status_url"]))
    result = requests.get(submitted.json()["response_url"], headers=AUTH, timeout=5).json()
    requests.get(result["images"][0]["url"], timeout=5)

    assert [image["content_type"] for image in result["images"]] == ["image/png"]
    assert sim.counts() == Counts(
        submissions=1, status_polls=polls, result_fetches=1, cancels=0, input_downloads=1, file_fetches=1
    )


def test_status_goes_from_in_queue_with_its_position_to_in_progress_to_completed(sim, inputs):
    sim.set_queue_seconds(0.5)
    sim.set_work_seconds(0.3)
    first, second = (submit(sim, edit_arguments(inputs.url("/cat.jpg"))).json() for _ in range(2))

    early = requests.get(second["status_url"], headers=AUTH, timeout=5)
    too_early = requests.get(second["response_url"], headers=AUTH, timeout=5)
    statuses = poll_until_completed(second["status_url"])

    assert (first["queue_position"], second["queue_position"]) == (0, 1)
    assert early.status_code == 202
    assert early.json()["queue_position"] == 1
    assert early.json()["logs"] is None
    assert (too_early.status_code, too_early.json()) == (400, {"detail": "Request is still in progress"})
    assert distinct(statuses) == ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
    completed = requests.get(second["status_url"], headers=AUTH, timeout=5).json()
    assert completed["metrics"]["inference_time"] >= 0.3
    logs = requests.get(second["status_url"], params={"logs": "1"}, headers=AUTH, timeout=5)
    assert logs.json()["logs"] == []


# --- failures as fal reports them ------------------------------------------------------------------


def test_an_input_url_that_answers_403_completes_then_returns_a_422_file_download_error(sim, inputs):
    expired = inputs.url("/expired.jpg")
    submitted = submit(sim, edit_arguments(inputs.url("/cat.jpg"), expired))
    statuses = poll_until_completed(submitted.json()["status_url"])
    answer = requests.get(submitted.json()["response_url"], headers=AUTH, timeout=5)

    assert statuses[-1] == "COMPLETED"
    assert answer.status_code == 422
    [error] = answer.json()["detail"]
    assert (error["loc"], error["type"], error["input"]) == (
        ["body", "image_urls", 1],
        "file_download_error",
        expired,
    )
    assert error["msg"]
    assert sim.counts().input_downloads == 2


def test_an_input_that_is_not_an_image_is_a_file_download_error_too(sim, inputs):
    answer = run_to_result(sim, edit_arguments(inputs.url("/notes.txt")))

    assert answer.status_code == 422
    assert [(e["loc"], e["type"]) for e in answer.json()["detail"]] == [
        (["body", "image_urls", 0], "file_download_error")
    ]


@pytest.mark.parametrize(
    ("kind", "status", "expected"),
    [
        ("content_policy_violation", 422, [("content_policy_violation", ["body", "prompt"])]),
        ("file_download_error", 422, [("file_download_error", ["body", "image_urls", 0])]),
        ("completed_with_error", 500, None),
    ],
)
def test_an_injected_job_fault_completes_then_answers_fals_error_once(sim, inputs, kind, status, expected):
    sim.fail_next_jobs(kind)

    failed = run_to_result(sim, edit_arguments(inputs.url("/cat.jpg")))
    following = run_to_result(sim, edit_arguments(inputs.url("/cat.jpg")))

    assert failed.status_code == status
    if expected is None:
        assert failed.json() == {"detail": "Internal error", "error_type": "internal_error"}
        assert failed.headers["X-Fal-Error-Type"] == "internal_error"
    else:
        assert [(e["type"], e["loc"]) for e in failed.json()["detail"]] == expected
    assert following.status_code == 200
    assert sim.counts().input_downloads == 1  # the faulted job did no work


@pytest.mark.parametrize(
    ("status", "error_type", "body"),
    [
        (429, None, {"detail": "concurrency limit"}),
        (
            503,
            "runner_scheduling_failure",
            {"detail": "Runner unavailable", "error_type": "runner_scheduling_failure"},
        ),
        (504, "request_timeout", {"detail": "Request timed out", "error_type": "request_timeout"}),
    ],
)
def test_injected_submit_faults_answer_as_fal_does_then_submissions_succeed_again(
    sim, inputs, status, error_type, body
):
    sim.fail_next_submits(status, count=2)

    answers = [submit(sim, edit_arguments(inputs.url("/cat.jpg"))) for _ in range(3)]

    assert [a.status_code for a in answers] == [status, status, 200]
    assert answers[0].json() == body
    assert answers[0].headers.get("X-Fal-Error-Type") == error_type
    assert sim.counts().submissions == 3


def test_a_stalled_submission_times_its_client_out_while_the_next_one_is_answered_at_once(sim, inputs):
    sim.stall_next_submits(2.0)
    arguments = edit_arguments(inputs.url("/cat.jpg"))

    with pytest.raises(requests.Timeout):
        requests.post(f"{sim.base_url}/{ENDPOINT}", json=arguments, headers=AUTH, timeout=0.5)
    started = time.monotonic()
    answer = submit(sim, arguments)

    assert answer.status_code == 200
    assert time.monotonic() - started < 1.0
    assert sim.counts().submissions == 2


def test_a_submit_fault_can_carry_another_runner_error_type(sim, inputs):
    sim.fail_next_submits(503, error_type="runner_disconnected")

    answer = submit(sim, edit_arguments(inputs.url("/cat.jpg")))

    assert answer.status_code == 503
    assert answer.headers["X-Fal-Error-Type"] == answer.json()["error_type"] == "runner_disconnected"


def test_a_start_timeout_shorter_than_the_queue_wait_fails_the_job_with_a_504_request_timeout(sim, inputs):
    sim.set_queue_seconds(2.0)
    started = time.monotonic()

    answer = run_to_result(sim, edit_arguments(inputs.url("/cat.jpg")), {"X-Fal-Request-Timeout": "0.3"})

    assert time.monotonic() - started < 1.5  # failed at the deadline, not after the whole queue wait
    assert answer.status_code == 504
    assert answer.json() == {"detail": "Request timed out", "error_type": "request_timeout"}
    assert answer.headers["X-Fal-Error-Type"] == "request_timeout"
    assert answer.headers["X-Fal-Request-Timeout-Type"] == "user"
    assert sim.counts().input_downloads == 0


def test_a_start_timeout_longer_than_the_queue_wait_lets_the_job_run(sim, inputs):
    sim.set_queue_seconds(0.2)

    answer = run_to_result(sim, edit_arguments(inputs.url("/cat.jpg")), {"X-Fal-Request-Timeout": "5"})

    assert answer.status_code == 200


def test_a_start_timeout_of_a_tenth_of_a_second_or_less_is_a_bad_request(sim, inputs):
    answer = submit(sim, edit_arguments(inputs.url("/cat.jpg")), {"X-Fal-Request-Timeout": "0.1"})

    assert answer.status_code == 400
    assert answer.json()["error_type"] == "bad_request"


def test_invalid_arguments_are_accepted_then_the_job_completes_with_a_422_like_fal(sim):
    answer = run_to_result(
        sim, {"image_urls": ["http://127.0.0.1:9/x.jpg"], "num_images": 5, "output_format": "gif"}
    )

    assert answer.status_code == 422
    assert [(e["loc"], e["type"]) for e in answer.json()["detail"]] == [
        (["body", "prompt"], "missing"),
        (["body", "num_images"], "less_than_equal"),
        (["body", "output_format"], "literal_error"),
    ]
    assert sim.counts().input_downloads == 0


def test_invalid_arguments_are_refused_at_submit_when_the_simulator_is_asked_to():
    with FalSimulator(KEY, validate_on_submit=True) as strict:
        answer = submit(strict, {"prompt": "x", "image_urls": [], "num_images": 0})
        not_json = requests.post(f"{strict.base_url}/{ENDPOINT}", data=b"[1]", headers=AUTH, timeout=5)

    assert answer.status_code == 422
    assert [(e["loc"], e["type"]) for e in answer.json()["detail"]] == [
        (["body", "image_urls"], "too_short"),
        (["body", "num_images"], "greater_than_equal"),
    ]
    assert not_json.status_code == 422
    assert not_json.json()["detail"][0]["loc"] == ["body"]


# --- auth, cancel, unknown ids ---------------------------------------------------------------------


def test_a_missing_or_wrong_key_is_401_and_the_key_is_never_recorded(sim, inputs):
    arguments = edit_arguments(inputs.url("/cat.jpg"))
    url = f"{sim.base_url}/{ENDPOINT}"
    missing = requests.post(url, json=arguments, timeout=5)
    wrong = requests.post(url, json=arguments, headers={"Authorization": "Key not-the-key"}, timeout=5)
    bearer = requests.post(url, json=arguments, headers={"Authorization": f"Bearer {KEY}"}, timeout=5)
    accepted = submit(sim, arguments)
    poll = requests.get(accepted.json()["status_url"], headers={"Authorization": "Key nope"}, timeout=5)

    assert [r.status_code for r in (missing, wrong, bearer, accepted, poll)] == [401, 401, 401, 200, 401]
    assert isinstance(missing.json()["detail"], str)
    assert [seen.key_matched for seen in sim.requests_seen()] == [None, False, False, True, False]
    assert KEY not in repr(sim.requests_seen())
    assert all("authorization" not in seen.headers for seen in sim.requests_seen())
    assert sim.counts().submissions == 1


def test_cancelling_a_queued_request_ends_it_cancelled_and_a_second_cancel_says_already_completed(
    sim, inputs
):
    sim.set_queue_seconds(30)
    submitted = submit(sim, edit_arguments(inputs.url("/cat.jpg"))).json()

    cancelled = requests.put(submitted["cancel_url"], headers=AUTH, timeout=5)
    poll_until_completed(submitted["status_url"], timeout=2)
    result = requests.get(submitted["response_url"], headers=AUTH, timeout=5)
    again = requests.put(submitted["cancel_url"], headers=AUTH, timeout=5)

    assert (cancelled.status_code, cancelled.json()) == (202, {"status": "CANCELLATION_REQUESTED"})
    assert result.status_code == 499
    assert result.json() == {
        "detail": "The request was cancelled by the client",
        "error_type": "client_cancelled",
    }
    assert (again.status_code, again.json()) == (400, {"status": "ALREADY_COMPLETED"})
    assert sim.counts().input_downloads == 0
    assert sim.counts().cancels == 2


def test_cancelling_a_request_in_progress_publishes_no_images(sim, inputs):
    sim.set_work_seconds(30)
    submitted = submit(sim, edit_arguments(inputs.url("/cat.jpg"))).json()
    deadline = time.monotonic() + 5
    while requests.get(submitted["status_url"], headers=AUTH, timeout=5).json()["status"] != "IN_PROGRESS":
        assert time.monotonic() < deadline
        time.sleep(0.02)

    cancelled = requests.put(submitted["cancel_url"], headers=AUTH, timeout=5)
    poll_until_completed(submitted["status_url"], timeout=2)

    assert cancelled.status_code == 202
    assert requests.get(submitted["response_url"], headers=AUTH, timeout=5).status_code == 499


def test_unknown_request_ids_and_files_are_404(sim, inputs):
    submitted = submit(sim, edit_arguments(inputs.url("/cat.jpg"))).json()
    unknown = f"{sim.base_url}/fal-ai/nano-banana/requests/00000000-0000-0000-0000-000000000000"
    other_app = f"{sim.base_url}/fal-ai/flux/requests/{submitted['request_id']}"

    answers = [
        requests.get(f"{unknown}/status", headers=AUTH, timeout=5),
        requests.get(unknown, headers=AUTH, timeout=5),
        requests.put(f"{unknown}/cancel", headers=AUTH, timeout=5),
        requests.get(f"{other_app}/status", headers=AUTH, timeout=5),
        requests.get(f"{sim.base_url}/files/nothing.png", timeout=5),
    ]

    assert [a.status_code for a in answers] == [404] * 5
    assert answers[2].json() == {"status": "NOT_FOUND"}


# --- headers, bounds, lifecycle --------------------------------------------------------------------


def test_platform_headers_are_recorded_and_the_lifecycle_preference_expires_the_outputs(sim, inputs):
    lifecycle = json.dumps({"expiration_duration_seconds": 1})
    headers = {"X-Fal-Store-IO": "0", "X-Fal-Object-Lifecycle-Preference": lifecycle, "X-Other": "1"}
    submitted = submit(sim, edit_arguments(inputs.url("/cat.jpg")), headers).json()
    poll_until_completed(submitted["status_url"])
    url = requests.get(submitted["response_url"], headers=AUTH, timeout=5).json()["images"][0]["url"]

    fresh = requests.get(url, timeout=5)
    time.sleep(1.1)
    expired = requests.get(url, timeout=5)

    assert sim.submitted_headers(submitted["request_id"]) == {
        "x-fal-store-io": "0",
        "x-fal-object-lifecycle-preference": lifecycle,
    }
    assert (fresh.status_code, expired.status_code) == (200, 404)


def test_the_job_cap_refuses_new_work_until_an_old_job_completes_and_is_evicted(inputs):
    with FalSimulator(KEY, queue_seconds=30, max_jobs=2) as small:
        first, _second = (submit(small, edit_arguments(inputs.url("/cat.jpg"))).json() for _ in range(2))
        refused = submit(small, edit_arguments(inputs.url("/cat.jpg")))
        requests.put(first["cancel_url"], headers=AUTH, timeout=5)
        poll_until_completed(first["status_url"], timeout=2)
        accepted = submit(small, edit_arguments(inputs.url("/cat.jpg")))
        evicted = requests.get(first["status_url"], headers=AUTH, timeout=5)

    assert (refused.status_code, refused.json()) == (429, {"detail": "concurrency limit"})
    assert accepted.status_code == 200
    assert evicted.status_code == 404


def test_reset_forgets_jobs_faults_counters_and_seen_requests(sim, inputs):
    sim.set_queue_seconds(30)
    old = submit(sim, edit_arguments(inputs.url("/cat.jpg"))).json()
    sim.fail_next_submits(503)
    sim.fail_next_jobs("completed_with_error")

    sim.reset()

    assert sim.counts() == Counts()
    assert sim.requests_seen() == []
    assert requests.get(old["status_url"], headers=AUTH, timeout=5).status_code == 404
    assert run_to_result(sim, edit_arguments(inputs.url("/cat.jpg"))).status_code == 200  # no wait, no fault
    deadline = time.monotonic() + 1
    while job_threads(sim) and time.monotonic() < deadline:  # the forgotten job's thread ended too
        time.sleep(0.01)
    assert job_threads(sim) == []


def test_stop_returns_within_a_second_with_jobs_queued_and_then_refuses_connections(inputs):
    simulator = FalSimulator(KEY, queue_seconds=60).start()
    for _ in range(3):
        assert submit(simulator, edit_arguments(inputs.url("/cat.jpg"))).status_code == 200
    assert len([t for t in threading.enumerate() if t.name.endswith(simulator.base_url)]) == 4

    started = time.monotonic()
    simulator.stop()

    assert time.monotonic() - started < 1.0
    with pytest.raises(requests.ConnectionError):
        submit(simulator, edit_arguments(inputs.url("/cat.jpg")))
    assert not [t for t in threading.enumerate() if t.name.endswith(simulator.base_url)]
