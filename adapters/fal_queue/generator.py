"""``FalQueueGenerator``: submits try-ons to fal.ai's queue, polls them and fetches their outputs."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import requests
from requests.auth import AuthBase

from adapters.fal_queue.classify import (
    MALFORMED,
    Verdict,
    classify_download,
    classify_response,
    classify_transport,
)
from adapters.fal_queue.transport import KeyAuth, NoAuth, read_capped
from adapters.fal_queue.urls import ResultHosts, origin_of, sniff_image_type
from domain.errors import GenerationFailed
from domain.model import DownloadedImage, GeneratedImage, GenerationRequest, JobState, Submission
from domain.ports import ImageGenerator
from domain.scrubbing import Scrubber

log = logging.getLogger(__name__)

_CONNECT_TIMEOUT = 3.0
_MAX_JSON_BYTES = 1024 * 1024
_MODEL = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*(?:/[A-Za-z0-9_-][A-Za-z0-9._-]*)*")
_STATES = {"IN_QUEUE": JobState.QUEUED, "IN_PROGRESS": JobState.RUNNING, "COMPLETED": JobState.COMPLETED}
_JSON_TOO_LARGE = Verdict("upstream_unavailable", True, "fal's answer was unreasonably large")
CallObserver = Callable[[str, float], None]
"""Told each queue call's name (``submit``, ``status``, ``result``, ``cancel``) and seconds (metrics)."""
_FOREIGN_QUEUE_URL = Verdict(
    "generation_failed", False, "fal handed out a URL outside the queue host: the key is never sent there"
)


class FalQueueGenerator(ImageGenerator):
    """fal.ai's queue API. The key only ever goes to the ``queue_url`` origin (scheme, host and port);
    outputs are fetched only from ``result_hosts``, without a credential, streamed under a byte cap.
    Every call has a connect timeout and a total deadline of ``timeout_seconds``; ``observe`` (if given) is
    told how long each queue call took, whatever its outcome."""

    def __init__(
        self,
        *,
        api_key: str,
        queue_url: str = "https://queue.fal.run",
        model: str = "fal-ai/nano-banana/edit",
        result_hosts: tuple[str, ...] = ("fal.media", "*.fal.media"),
        timeout_seconds: float = 10.0,
        session: requests.Session | None = None,
        result_lifetime_seconds: int = 3600,
        webhook_url: str | None = None,
        observe: CallObserver | None = None,
    ) -> None:
        origin = origin_of(queue_url)
        if not api_key:
            raise ValueError("a fal API key is required")
        if origin is None:
            raise ValueError("the fal queue URL must be a plain http(s) URL")
        if not _MODEL.fullmatch(model):
            raise ValueError("the fal model must be a path such as fal-ai/nano-banana/edit")
        if timeout_seconds <= 0 or result_lifetime_seconds <= 0:
            raise ValueError("timeouts and lifetimes must be positive")
        self._key = KeyAuth(api_key)
        self._scrub = Scrubber([api_key])
        self._origin = origin
        self._queue_url = queue_url.rstrip("/")
        self._model = model
        self._result_hosts = ResultHosts(result_hosts)
        self._timeout = timeout_seconds
        self._timeouts = (min(_CONNECT_TIMEOUT, timeout_seconds), timeout_seconds)
        self._session = session if session is not None else requests.Session()
        self._lifetime = result_lifetime_seconds
        # fal calls this back when a request finishes; it carries no secret (fal signs its calls).
        self._webhook = {"fal_webhook": webhook_url} if webhook_url else {}
        self._observe = observe

    def __repr__(self) -> str:
        return f"FalQueueGenerator(queue_url={self._queue_url!r}, model={self._model!r})"

    def submit(self, request: GenerationRequest) -> Submission:
        payload = {
            "prompt": request.prompt,
            "image_urls": [str(request.image_url)],
            "num_images": request.num_images,
            "output_format": request.output_format,
        }
        headers = {
            "X-Fal-Request-Timeout": str(request.start_deadline_seconds),
            "X-Fal-Store-IO": "0",
            "X-Fal-Object-Lifecycle-Preference": json.dumps({"expiration_duration_seconds": self._lifetime}),
        }
        url = f"{self._queue_url}/{self._model}"
        body = self._call("submit", "POST", url, json=payload, headers=headers, params=self._webhook)
        names = ("request_id", "status_url", "response_url", "cancel_url")
        fields = [value for value in map(body.get, names) if isinstance(value, str) and value]
        if len(fields) != len(names):
            raise self._fail(MALFORMED)
        return Submission(*fields)

    def state(self, submission: Submission) -> JobState:
        status = self._call("status", "GET", submission.status_url).get("status")
        if not isinstance(status, str):
            raise self._fail(MALFORMED)
        if status not in _STATES:
            raise self._fail(Verdict("generation_failed", False, "fal reported an unknown job status"))
        return _STATES[status]

    def result(self, submission: Submission) -> list[GeneratedImage]:
        images = self._call("result", "GET", submission.response_url, job_result=True).get("images")
        if not isinstance(images, list) or not all(
            isinstance(item, dict) and isinstance(item.get("url"), str) for item in images
        ):
            raise self._fail(MALFORMED)
        if not images:
            raise self._fail(Verdict("generation_failed", True, "fal finished the job without an image"))
        return [
            GeneratedImage(
                url=item["url"],
                content_type=_str(item.get("content_type")),
                width=_int(item.get("width")),
                height=_int(item.get("height")),
            )
            for item in images
        ]

    def cancel(self, submission: Submission) -> None:
        """Best effort: only a cancel URL outside the queue host raises; other failures are logged."""
        self._require_queue_origin(submission.cancel_url)
        try:
            status, _, body = self._exchange("cancel", "PUT", submission.cancel_url)
        except GenerationFailed as failure:
            status, body = 0, failure.detail
        already_done = status == 400 and isinstance(body, dict) and body.get("status") == "ALREADY_COMPLETED"
        if status not in (200, 202) and not already_done:
            problem = f"HTTP {status}" if status else body
            log.warning(
                "cancelling fal request %s failed (ignored): %s", self._scrub(submission.request_id), problem
            )

    def download(self, image: GeneratedImage, max_bytes: int) -> DownloadedImage:
        if not self._result_hosts.allows(image.url):
            raise GenerationFailed("the result URL is not on an allowed result host", retryable=False)
        deadline = time.monotonic() + self._timeout
        with self._send("GET", image.url, NoAuth()) as response:
            if response.status_code != 200:
                raise self._fail(classify_download(response.status_code))
            too_large = Verdict("generation_failed", False, f"the result is larger than {max_bytes} bytes")
            data = read_capped(response, max_bytes, too_large, deadline)
        content_type = sniff_image_type(data)
        if content_type is None:
            raise GenerationFailed("the result is not a JPEG, PNG or WebP image", retryable=False)
        return DownloadedImage(data=data, content_type=content_type)

    def _call(
        self, call: str, method: str, url: str, *, job_result: bool = False, **kwargs: Any
    ) -> dict[str, Any]:
        status, headers, body = self._exchange(call, method, url, **kwargs)
        if not 200 <= status < 300:
            raise self._fail(classify_response(status, headers, body, job_result=job_result))
        if not isinstance(body, dict):
            raise self._fail(MALFORMED)
        return body

    def _exchange(
        self, call: str, method: str, url: str, **kwargs: Any
    ) -> tuple[int, dict[str, str], object]:
        """One authenticated call to the queue: status, headers and the parsed body (None if not JSON)."""
        self._require_queue_origin(url)
        started = time.monotonic()
        deadline = started + self._timeout
        try:
            with self._send(method, url, self._key, **kwargs) as response:
                data = read_capped(response, _MAX_JSON_BYTES, _JSON_TOO_LARGE, deadline)
                status, headers = response.status_code, dict(response.headers)
        finally:
            if self._observe is not None:
                self._observe(call, time.monotonic() - started)
        try:
            return status, headers, json.loads(data)
        except (ValueError, RecursionError):
            return status, headers, None

    def _require_queue_origin(self, url: str) -> None:
        if origin_of(url) != self._origin:
            raise self._fail(_FOREIGN_QUEUE_URL)

    def _send(self, method: str, url: str, auth: AuthBase, **kwargs: Any) -> requests.Response:
        try:
            return self._session.request(
                method, url, auth=auth, timeout=self._timeouts, allow_redirects=False, stream=True, **kwargs
            )
        except requests.RequestException as error:  # its message names the URL: not chained
            raise self._fail(classify_transport(error)) from None

    def _fail(self, verdict: Verdict) -> GenerationFailed:
        return GenerationFailed(self._scrub(verdict.reason), code=verdict.code, retryable=verdict.retryable)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
