"""The simulated queue itself: jobs and output files in memory (bounded), one daemon thread per live job."""

from __future__ import annotations

import json
import math
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import Any

from devtools.fal_simulator.faults import Faults
from devtools.fal_simulator.jobs import (
    CANCELLED,
    CONTENT_TYPES,
    DEFAULT_OUTPUT_FORMAT,
    INTERNAL_ERROR,
    DownloadFailed,
    Job,
    JobState,
    Reply,
    content_policy_violation,
    download_image,
    edit,
    file_download_error,
    infrastructure_error,
    model_error,
    request_timeout,
    validation_errors,
)

from .webhooks import Webhooks  # relative: survives the package's move to devtools/

MAX_FILE_BYTES = 256 * 1024 * 1024
NOT_FOUND = Reply(404, {"detail": "Request not found"})
Output = tuple[bytes, int, int]


@dataclass(frozen=True)
class Counts:
    submissions: int = 0
    status_polls: int = 0
    result_fetches: int = 0
    cancels: int = 0
    input_downloads: int = 0
    file_fetches: int = 0


@dataclass(frozen=True)
class StoredFile:
    data: bytes
    content_type: str
    expires_at: float | None


class Engine:
    def __init__(self, queue_seconds: float, work_seconds: float, validate_on_submit: bool, max_jobs: int):
        self.defaults = (queue_seconds, work_seconds)
        self.queue_seconds, self.work_seconds = self.defaults
        self.validate_on_submit = validate_on_submit
        self.max_jobs = max_jobs
        self.base_url = ""
        self.lock = threading.Lock()
        self.faults = Faults()
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.files: OrderedDict[str, StoredFile] = OrderedDict()
        self.file_bytes = 0
        self.counters = dict.fromkeys((f.name for f in fields(Counts)), 0)
        self.sequence = 0
        self.threads: dict[threading.Thread, Job] = {}  # the live jobs, each with its thread
        self.stopping = threading.Event()
        self.webhooks = Webhooks(self.stopping)

    def count(self, name: str) -> None:
        with self.lock:
            self.counters[name] += 1

    def reset(self) -> None:
        self.faults.clear()
        self.webhooks.reset()
        with self.lock:
            live = list(self.threads.values())
            for job in live:
                job.cancel_requested = True  # forgotten: its thread ends now, publishing nothing
            self.jobs.clear()
            self.files.clear()
            self.file_bytes = 0
            self.counters = dict.fromkeys(self.counters, 0)
            self.queue_seconds, self.work_seconds = self.defaults
        for job in live:
            job.wake.set()

    def stop(self) -> None:
        """Wake every job so its thread ends; a thread stuck in a download is a daemon and left behind."""
        self.stopping.set()
        self.webhooks.wake()
        with self.lock:
            live = dict(self.threads)
        for job in live.values():
            job.wake.set()
        deadline = time.monotonic() + 0.5
        for worker in live:
            worker.join(max(0.0, deadline - time.monotonic()))

    # -- the queue API ----------------------------------------------------------------------------------

    def submit(self, app: str, headers: dict[str, str], body: bytes, webhook_url: str | None = None) -> Reply:
        self.count("submissions")
        if stall := self.faults.next_stall():
            time.sleep(stall)  # a queue that accepts the connection and answers too late
        if (failure := self.faults.next_submit()) is not None:
            return failure
        try:
            arguments = json.loads(body)
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            msg = "Input should be a valid dictionary or object to extract fields from"
            return Reply(422, {"detail": [model_error(["body"], msg, "model_attributes_type")]})
        if self.validate_on_submit and (errors := validation_errors(arguments)):
            return Reply(422, {"detail": errors})
        start_timeout = _float_or_nan(headers.get("x-fal-request-timeout", "inf"))
        if not start_timeout > 0.1:
            return infrastructure_error(400, "bad_request", "Invalid X-Fal-Request-Timeout header")
        with self.lock:
            if not self._make_room():
                return Reply(429, {"detail": "concurrency limit"})
            self.sequence += 1
            job = Job(
                request_id=str(uuid.uuid4()),
                app=app,
                arguments=arguments,
                platform_headers={k: v for k, v in headers.items() if k.startswith("x-fal-")},
                sequence=self.sequence,
                submitted_at=time.monotonic(),
                queue_seconds=self.queue_seconds,
                work_seconds=self.work_seconds,
                start_timeout=None if math.isinf(start_timeout) else start_timeout,
                fault=self.faults.next_job(),
                output_ttl=_lifecycle_ttl(headers.get("x-fal-object-lifecycle-preference")),
            )
            self.jobs[job.request_id] = job
            if webhook_url:
                self.webhooks.expect(job.request_id, webhook_url)
            position = self._position(job)
            name = f"fal-simulator-job {self.base_url}"
            worker = threading.Thread(target=self._run, args=(job,), name=name, daemon=True)
            self.threads[worker] = job
        worker.start()
        answer = {"request_id": job.request_id, **self._urls(job), "queue_position": position}
        return Reply(200, answer, {"x-fal-request-id": job.request_id})

    def status(self, app: str, request_id: str, with_logs: bool) -> Reply:
        self.count("status_polls")
        with self.lock:
            job = self._job(app, request_id)
            if job is None:
                return NOT_FOUND
            state, position, inference_time = job.state, self._position(job), job.inference_time
        body: dict[str, Any] = {"status": state.value, "request_id": request_id, **self._urls(job)}
        body["logs"] = [] if with_logs else None
        if state is JobState.IN_QUEUE:
            body["queue_position"] = position
        if state is JobState.COMPLETED:
            body["metrics"] = {"inference_time": inference_time}
        return Reply(200 if state is JobState.COMPLETED else 202, body)

    def result(self, app: str, request_id: str) -> Reply:
        self.count("result_fetches")
        with self.lock:
            job = self._job(app, request_id)
            if job is None:
                return NOT_FOUND
            if job.state is not JobState.COMPLETED:
                return Reply(400, {"detail": "Request is still in progress"})
            return job.failure or Reply(200, job.result)

    def cancel(self, app: str, request_id: str) -> Reply:
        self.count("cancels")
        with self.lock:
            job = self._job(app, request_id)
            if job is None:
                return Reply(404, {"status": "NOT_FOUND"})
            if job.state is JobState.COMPLETED:
                return Reply(400, {"status": "ALREADY_COMPLETED"})
            job.cancel_requested = True
        job.wake.set()
        return Reply(202, {"status": "CANCELLATION_REQUESTED"})

    def file(self, name: str) -> StoredFile | None:
        self.count("file_fetches")
        with self.lock:
            stored = self.files.get(name)
            if stored is not None and stored.expires_at is not None and stored.expires_at <= time.monotonic():
                self._drop_file(name)
                return None
            return stored

    # -- bookkeeping (callers hold the lock) ------------------------------------------------------------

    def _job(self, app: str, request_id: str) -> Job | None:
        job = self.jobs.get(request_id)
        return job if job is not None and job.app == app else None

    def _make_room(self) -> bool:
        """Evict the oldest completed jobs (and their files) until a new one fits."""
        while len(self.jobs) >= self.max_jobs:
            done = next((j for j in self.jobs.values() if j.state is JobState.COMPLETED), None)
            if done is None:
                return False
            del self.jobs[done.request_id]
            for name in done.files:
                self._drop_file(name)
        return True

    def _position(self, job: Job) -> int:
        queued = (j for j in self.jobs.values() if j.state is JobState.IN_QUEUE)
        return sum(1 for j in queued if j.sequence < job.sequence)

    def _urls(self, job: Job) -> dict[str, str]:
        response_url = f"{self.base_url}/{job.app}/requests/{job.request_id}"
        return {
            "response_url": response_url,
            "status_url": f"{response_url}/status",
            "cancel_url": f"{response_url}/cancel",
        }

    def _drop_file(self, name: str) -> None:
        stored = self.files.pop(name, None)
        self.file_bytes -= len(stored.data) if stored else 0

    # -- one job's life ---------------------------------------------------------------------------------

    def _run(self, job: Job) -> None:
        try:
            timed_out = job.start_timeout is not None and job.start_timeout < job.queue_seconds
            waited = min(job.queue_seconds, job.start_timeout or math.inf)
            if self._interrupted(job, job.submitted_at + waited):
                return
            if timed_out:
                self._finish(job, request_timeout(), None)
                return
            with self.lock:
                job.state = JobState.IN_PROGRESS
            started = time.monotonic()
            try:
                outcome = self._work(job)
            except Exception:  # a crashing runner is fal's 500, never a job stuck IN_PROGRESS
                outcome = INTERNAL_ERROR
            if not self._interrupted(job, started + job.work_seconds):
                self._finish(job, outcome, time.monotonic() - started)
        finally:
            with self.lock:
                self.threads.pop(threading.current_thread(), None)
            if job.state is JobState.COMPLETED:
                self.webhooks.finished(job)  # POSTs in this thread, if the job asked for a webhook

    def _interrupted(self, job: Job, until: float) -> bool:
        """Sleep until ``until`` unless woken; True when the simulator stops or the job was cancelled."""
        job.wake.wait(max(0.0, until - time.monotonic()))
        if self.stopping.is_set():
            return True
        if job.cancel_requested:
            self._finish(job, CANCELLED, None)
            return True
        return False

    def _work(self, job: Job) -> Reply | list[Output]:
        arguments = job.arguments
        if errors := validation_errors(arguments):
            return Reply(422, {"detail": errors})
        if job.fault == "content_policy_violation":
            return content_policy_violation(arguments["prompt"])
        if job.fault == "file_download_error":
            return file_download_error(0, arguments["image_urls"][0])
        if job.fault == "completed_with_error":
            return INTERNAL_ERROR
        sources = []
        for index, url in enumerate(arguments["image_urls"]):
            self.count("input_downloads")
            try:
                sources.append(download_image(url))
            except DownloadFailed:
                return file_download_error(index, url)
        output_format = arguments.get("output_format", DEFAULT_OUTPUT_FORMAT)
        return [edit(sources[0], index, output_format) for index in range(arguments.get("num_images", 1))]

    def _finish(self, job: Job, outcome: Reply | list[Output], inference_time: float | None) -> None:
        with self.lock:
            if job.state is JobState.COMPLETED:
                return
            job.state, job.inference_time = JobState.COMPLETED, inference_time
            job.completed_at = time.monotonic()
            if self.jobs.get(job.request_id) is not job:  # forgotten by reset(): publish nothing
                outcome = INTERNAL_ERROR
            if isinstance(outcome, Reply):
                job.failure = outcome
                return
            fmt = job.arguments.get("output_format", DEFAULT_OUTPUT_FORMAT)
            expires_at = None if job.output_ttl is None else time.monotonic() + job.output_ttl
            images = []
            for index, (data, width, height) in enumerate(outcome):
                name = f"{secrets.token_urlsafe(16)}.{fmt}"
                self.files[name] = StoredFile(data, CONTENT_TYPES[fmt], expires_at)
                self.file_bytes += len(data)
                job.files.append(name)
                url = f"{self.base_url}/files/{name}"
                images.append(
                    {
                        "url": url,
                        "content_type": CONTENT_TYPES[fmt],
                        "file_name": f"output_{index}.{fmt}",
                        "file_size": len(data),
                        "width": width,
                        "height": height,
                    }
                )
            while self.file_bytes > MAX_FILE_BYTES and len(self.files) > 1:
                self._drop_file(next(iter(self.files)))
            job.result = {"images": images, "description": "Edited by the fal simulator."}


def _float_or_nan(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return math.nan


def _lifecycle_ttl(value: str | None) -> float | None:
    """``X-Fal-Object-Lifecycle-Preference: {"expiration_duration_seconds": N}``: outputs vanish after N s."""
    try:
        seconds = json.loads(value or "null")["expiration_duration_seconds"]
    except (ValueError, TypeError, KeyError):
        return None
    return float(seconds) if isinstance(seconds, int | float) and seconds > 0 else None
