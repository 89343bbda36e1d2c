"""`make bench`: `POST /v1/uploads/{id}/complete` latency for a 12 MP selfie, beside the naive pipeline.

The web (gunicorn, gthread workers) hands each upload to one ``tryon verifier`` (an RQ worker on the
``verify`` queue, the face model loaded once) and waits for the verdict up to ``VERIFY_WAIT_SECONDS``; no
verdict in time, it answers 202 and the app polls ``GET /v1/uploads/{id}``. The bench follows a 202 the same
way (every 0.2 s), so every complete's time is end to end: POST -> verdict known, the queue hop included.

One client, like one user, uploads the same 12 MP (4032 x 3024) face JPEG (``bench.photo``) N times through
the real service on loopback (ministack S3, Redis, Postgres when it answers): ``POST /v1/uploads``, the
``PUT`` to the pre-signed URL, then the complete (followed to its verdict), which is what is timed. Meanwhile
Redis ``MONITOR`` (``bench.hop``) times the queue hop itself: the web's push of the job -> the verifier
marking it started, both stamped by Redis; the verifier's log splits each complete further. Then the web's
and the verifier's memory, a burst (``bench.verify_burst``: ``burst`` (50) completes let go at once, with
steady issuance measured while it runs), and a many-scans JPEG being verified (``bench.hostile``) beside a
quiet run. After the stack is stopped, in this process on the same bytes: the service's own pipeline
(``PillowImageSanitizer`` + ``MtcnnFaceDetector`` on its preview, showing how much of the API latency is
HTTP, S3, the queue and the database), and the naive one (full-resolution decode + MTCNN on the full
image). Targets (issues 3 and 12, 2 cores): complete p95 <= 350 ms queue hop included, the hop p95 <= 15 ms,
at least 25x faster than naive, each web worker's RSS <= 150 MB, issuance p99 <= 50 ms while the burst
runs, issuance and /healthz p99 within 2x of a quiet run while the many-scans JPEG is verified.

It is a measurement: missing a target still exits 0. It exits 1 if the stack does not start, more than
one sequential complete fails, more than 1 % of the burst's, or the in-process pipeline refuses the photo;
130 on Ctrl-C.
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench import hostile
from bench.cli import Flag, exit_code, failed, interrupted, options_from, options_parser, stop_on_sigterm
from bench.hop import Hops, HopWatch, VerifierSteps, verifier_timeline
from bench.loadgen import nearest_rank
from bench.memory import memory
from bench.photo import DEFAULT_GRAIN, HEIGHT, WIDTH, twelve_megapixel_selfie
from bench.report import error_problem
from bench.stack import WORKDIR, Stack, progress, start_stack
from bench.uploader import CONTENT_TYPE, REQUEST_ID_PREFIX, SampleFailed, Uploader
from bench.verify_burst import Burst, Processes, beside_earlier_figures, processes, run_burst

P95_TARGET_MS = 350.0
HOP_P95_TARGET_MS = 15.0
SPEED_UP_TARGET = 25.0
WORKER_RSS_TARGET_MB = 150.0
ISSUANCE_P99_TARGET_MS = 50.0
MAX_FAILED_COMPLETES = 1


@dataclass(frozen=True)
class Options:
    samples: int
    naive_samples: int
    pipeline_samples: int
    warmup: int
    users: int
    workers: int
    grain: float
    budget_seconds: float
    burst: int
    issuance_rate: float
    poll_seconds: float
    hostile_seconds: float
    hostile_rate: float
    database_url: str | None


def parse_options(argv: Sequence[str] | None = None) -> Options:
    flags: list[Flag] = [
        ("--samples", "BENCH_VERIFY_SAMPLES", 30, "timed uploads through the API, one after another"),
        ("--naive-samples", "BENCH_NAIVE_SAMPLES", 2, "naive full-resolution runs (~10+ s each); 0 skips"),
        ("--pipeline-samples", "BENCH_PIPELINE_SAMPLES", 30, "in-process runs of the service's pipeline"),
        ("--warmup", "BENCH_VERIFY_WARMUP", 2, "untimed uploads before the timed ones (shown apart)"),
        ("--users", "BENCH_VERIFY_USERS", 5, "distinct users the uploads rotate through"),
        ("--workers", "BENCH_WORKERS", 2, "gunicorn workers of the service"),
        ("--grain", "BENCH_GRAIN", DEFAULT_GRAIN, "sensor-like noise sigma in the photo; 0 for none"),
        ("--budget-seconds", "BENCH_VERIFY_BUDGET_SECONDS", 1200, "stop sampling after this long"),
        ("--burst", "BENCH_VERIFY_BURST", 50, "completes let go at once after the sequential ones; 0 skips"),
        (
            "--issuance-rate",
            "BENCH_BURST_ISSUANCE_RATE",
            20,
            "issuance req/s sent while the burst runs; 0 skips",
        ),
        ("--poll-seconds", "BENCH_POLL_SECONDS", 0.2, "after a 202, GET the upload this often (the app's)"),
        ("--hostile-seconds", "BENCH_HOSTILE_SECONDS", 10, "quiet, then many-scans JPEGs, as long; 0 skips"),
        ("--hostile-rate", "BENCH_HOSTILE_RATE", 20, "issuance and /healthz req/s each, quiet and hostile"),
    ]
    parser = options_parser("bench.verification", __doc__, flags)
    args = parser.parse_args(argv)
    options = options_from(args, Options)
    if not 1 <= options.samples <= 1000 or not 0 <= options.pipeline_samples <= 1000:
        parser.error("samples must be 1-1000 and pipeline samples 0-1000")
    if not 0 <= options.naive_samples <= 10 or not 0 <= options.warmup <= 20:
        parser.error("naive samples must be 0-10 and warm-up 0-20")
    if not (1 <= options.users <= 100 and 1 <= options.workers <= 32 and 0 <= options.grain <= 64):
        parser.error("users must be 1-100, workers 1-32, grain 0-64")
    if not 10 <= options.budget_seconds <= 7200 or not 0 <= options.burst <= 200:
        parser.error("budget must be 10-7200 s and burst 0-200")
    if not (0 <= options.issuance_rate <= 500 and 0 <= options.hostile_seconds <= 120):
        parser.error("issuance rate must be 0-500 req/s and hostile seconds 0-120")
    if not (1 <= options.hostile_rate <= 500 and 0.05 <= options.poll_seconds <= 10):
        parser.error("hostile rate must be 1-500 req/s and poll seconds 0.05-10")
    return options


@dataclass
class ServiceRun:
    complete_ms: list[float] = field(default_factory=list)
    """End to end: POST complete -> verdict known (the 200, or the poll that found it after a 202)."""
    put_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    """``duration_ms`` from the service's access log for the timed completes: the time inside Flask."""
    warmup_ms: list[float] = field(default_factory=list)
    failures: int = 0
    first_failure: str = ""
    request_ids: list[str] = field(default_factory=list)
    upload_ids: list[str] = field(default_factory=list)
    started_at: list[float] = field(default_factory=list)
    """``time.time()`` at each timed POST (to line up with the verifier's log)."""
    answered_202: int = 0
    hops: Hops = field(default_factory=Hops)
    steps: dict[str, VerifierSteps] = field(default_factory=dict)


@dataclass
class InProcessRun:
    """``total_ms`` per sample, split into ``decode_ms`` (decode/sanitise) and ``detect_ms`` (MTCNN)."""

    total_ms: list[float] = field(default_factory=list)
    decode_ms: list[float] = field(default_factory=list)
    detect_ms: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    faces: list[str] = field(default_factory=list)


def measure_service(stack: Stack, photo: bytes, options: Options, deadline: float) -> ServiceRun:
    run = ServiceRun()
    uploader = Uploader(stack, photo, options.users)
    try:
        for index in range(options.warmup + options.samples):
            if time.monotonic() > deadline:
                progress(f"time budget of {options.budget_seconds:g} s spent; stopping after {index} uploads")
                break
            warming = index < options.warmup
            label = (
                f"warm-up {index + 1}/{options.warmup}"
                if warming
                else f"complete {index - options.warmup + 1}/{options.samples}"
            )
            try:
                settled, ticket, request_id = uploader.upload(index)
            except (SampleFailed, requests.RequestException, ValueError, KeyError) as failure:
                run.failures += 1
                run.first_failure = run.first_failure or f"{type(failure).__name__}: {failure}"
                progress(f"{label}: FAILED: {failure}")
                continue
            via = f", 202 + {settled.polls} polls" if settled.answered == 202 else ""
            progress(f"{label}: {settled.ms:.0f} ms end to end{via} (PUT {ticket.put_ms:.0f} ms)")
            if warming:
                run.warmup_ms.append(settled.ms)
            else:
                run.complete_ms.append(settled.ms)
                run.put_ms.append(ticket.put_ms)
                run.request_ids.append(request_id)
                run.upload_ids.append(ticket.upload_id)
                run.started_at.append(settled.started_at)
                run.answered_202 += settled.answered == 202
    finally:
        uploader.close()
    return run


def server_durations(log: Path, since: int, request_ids: Sequence[str]) -> list[float]:
    """The access log's ``duration_ms`` of the given requests, in their order (missing ones left out)."""
    wanted = set(request_ids)
    found: dict[str, float] = {}
    for line in log.read_bytes()[since:].decode(errors="replace").splitlines():
        if '"tryon.access"' not in line or REQUEST_ID_PREFIX not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("request_id") in wanted and "duration_ms" in entry:
            found[entry["request_id"]] = float(entry["duration_ms"])
    return [found[request_id] for request_id in request_ids if request_id in found]


def measure_pipeline(photo: bytes, samples: int, deadline: float) -> InProcessRun:
    """The service's own adapters, in this process: sanitise (draft decode), then MTCNN on the preview."""
    from adapters.mtcnn_faces import MtcnnFaceDetector  # noqa: PLC0415 - loads TensorFlow
    from adapters.pillow_images.sanitizer import PillowImageSanitizer  # noqa: PLC0415
    from domain.faces import FacePolicy  # noqa: PLC0415

    run = InProcessRun()
    sanitizer, detector, policy = PillowImageSanitizer(), MtcnnFaceDetector(), FacePolicy()
    progress("in-process pipeline: loading the face model and warming it up as a web worker does ...")
    detector.warm_up()
    for index in range(samples):
        if time.monotonic() > deadline:
            progress(f"time budget spent; stopping after {index} in-process samples")
            break
        started = time.perf_counter()
        image = sanitizer.sanitize(photo, CONTENT_TYPE)
        sanitized = time.perf_counter()
        faces = detector.detect(image.preview)
        finished = time.perf_counter()
        run.decode_ms.append((sanitized - started) * 1000)
        run.detect_ms.append((finished - sanitized) * 1000)
        run.total_ms.append((finished - started) * 1000)
        refusal = policy.refusal(faces, image.preview.width, image.preview.height)
        if refusal is not None:
            run.problems.append(f"in-process sample {index + 1}: the face gate refused the photo: {refusal}")
        if index == 0:
            run.faces.append(
                f"{image.width}x{image.height} sanitised, {image.preview.width}x{image.preview.height}"
                f" preview, {len(faces)} face(s), best {max((f.confidence for f in faces), default=0):.3f}"
            )
    progress(f"  in-process pipeline: {_summary(run)}")
    return run


def measure_naive(photo: bytes, samples: int, deadline: float) -> InProcessRun:
    """Full-resolution decode (no draft) + ``MTCNN()`` (the full cascade, as the adapter) on the full image.

    Run after ``measure_pipeline``, so TensorFlow has the same thread pools as in a web worker.
    """
    import numpy as np  # noqa: PLC0415
    from mtcnn import MTCNN  # type: ignore[import-untyped]  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    run = InProcessRun()
    if samples == 0:
        return run
    progress("naive: building MTCNN() and priming it with one 512 px inference (untimed) ...")
    model: Any = MTCNN()
    model.detect_faces(np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8))
    for index in range(samples):
        if time.monotonic() > deadline:
            progress(f"time budget spent; stopping after {index} naive samples")
            break
        progress(
            f"naive {index + 1}/{samples}: full-resolution decode + MTCNN on {WIDTH}x{HEIGHT} (~10+ s) ..."
        )
        started = time.perf_counter()
        with Image.open(io.BytesIO(photo)) as opened:
            pixels = np.asarray(opened.convert("RGB"))
        decoded = time.perf_counter()
        found = model.detect_faces(pixels)
        finished = time.perf_counter()
        del pixels
        run.decode_ms.append((decoded - started) * 1000)
        run.detect_ms.append((finished - decoded) * 1000)
        run.total_ms.append((finished - started) * 1000)
        confidences = sorted((float(face["confidence"]) for face in found), reverse=True)
        run.faces.append(f"{len(found)} face(s), confidences {[round(c, 3) for c in confidences[:3]]}")
        progress(
            f"  {run.total_ms[-1]:.0f} ms (decode {run.decode_ms[-1]:.0f} ms,"
            f" MTCNN {run.detect_ms[-1]:.0f} ms); {run.faces[-1]}"
        )
    return run


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.0f}"


def _summary(run: InProcessRun) -> str:
    return (
        f"{len(run.total_ms)} samples, p50 {_ms(nearest_rank(run.total_ms, 50))} ms"
        f" (decode/sanitise p50 {_ms(nearest_rank(run.decode_ms, 50))} ms,"
        f" MTCNN p50 {_ms(nearest_rank(run.detect_ms, 50))} ms)"
    )


def table(service: ServiceRun, pipeline: InProcessRun, naive: InProcessRun) -> str:
    columns = [
        ("service complete (end to end)", service.complete_ms),
        ("in-process pipeline", pipeline.total_ms),
        ("naive full-res", naive.total_ms),
    ]
    rows: list[tuple[str, list[str]]] = [("", [name for name, _ in columns])]
    rows.append(("samples", [str(len(values)) for _, values in columns]))
    for label, p in (("p50 ms", 50.0), ("p95 ms", 95.0)):
        rows.append((label, [_ms(nearest_rank(values, p)) for _, values in columns]))
    rows.append(("max ms", [_ms(max(values, default=math.nan)) for _, values in columns]))
    rows.append(
        (
            "  of which decode p50",
            ["", _ms(nearest_rank(pipeline.decode_ms, 50)), _ms(nearest_rank(naive.decode_ms, 50))],
        )
    )
    rows.append(
        (
            "  of which MTCNN p50",
            ["", _ms(nearest_rank(pipeline.detect_ms, 50)), _ms(nearest_rank(naive.detect_ms, 50))],
        )
    )
    width = max(len(label) for label, _ in rows) + 2
    lines = [f"{label:<{width}}" + "".join(f"{cell:>24}" for cell in cells) for label, cells in rows]
    lines.insert(1, "-" * (width + 24 * len(columns)))
    return "\n".join(lines)


def _spread(values: Sequence[float]) -> str:
    return (
        f"p50 {_ms(nearest_rank(values, 50))}, p95 {_ms(nearest_rank(values, 95))},"
        f" max {_ms(max(values, default=math.nan))}"
    )


def _spread1(values: Sequence[float]) -> str:
    def one(value: float) -> str:
        return "n/a" if math.isnan(value) else f"{value:.1f}"

    return (
        f"p50 {one(nearest_rank(values, 50))}, p95 {one(nearest_rank(values, 95))},"
        f" max {one(max(values, default=math.nan))}"
    )


def splits(service: ServiceRun) -> tuple[list[float], list[float], list[float]]:
    """Per timed complete, from the verifier's log: (POST -> job taken, job taken -> verdict logged,
    verdict logged -> answer at the client), in ms. Client and verifier share the machine's clock."""
    taken, work, back = [], [], []
    for upload_id, started_at, total_ms in zip(
        service.upload_ids, service.started_at, service.complete_ms, strict=True
    ):
        step = service.steps.get(upload_id)
        if step is None:
            continue
        taken.append((step.taken - started_at) * 1000)
        if step.verdict is not None:
            work.append((step.verdict - step.taken) * 1000)
            back.append((started_at + total_ms / 1000 - step.verdict) * 1000)
    return taken, work, back


def details(photo: bytes, service: ServiceRun, pipeline: InProcessRun, naive: InProcessRun) -> list[str]:
    lines = [f"photo: {WIDTH}x{HEIGHT} JPEG q92 with EXIF (Orientation 1, GPS), {len(photo)} bytes"]
    lines.append(f"PUT to S3 (ministack) ms: {_spread(service.put_ms)}")
    lines.append(
        f"complete, time inside Flask of the POST (access log duration_ms,"
        f" {len(service.server_ms)} found) ms: {_spread(service.server_ms)}"
    )
    lines.append(
        f"completes answered 202 and followed by polls: {service.answered_202} of {len(service.complete_ms)}"
    )
    hops = service.hops.hop_ms(service.upload_ids)
    lines.append(
        f"queue hop, Redis MONITOR (the web's RPUSH of the job -> the verifier's HSET status=started, both"
        f" stamped by Redis), {len(hops)} of {len(service.upload_ids)} seen, ms: {_spread1(hops)}"
    )
    if service.hops.problem:
        lines.append(f"  MONITOR: {service.hops.problem}")
    taken, work, back = splits(service)
    lines.append(
        f"split by the verifier's log (ms stamps; {len(taken)} of {len(service.upload_ids)} found), ms:"
    )
    lines.append(
        f"  POST sent -> verifier took the job (web work before the hand-off + hop): {_spread(taken)}"
    )
    lines.append(f"  verifier took the job -> verdict logged (the verification): {_spread(work)}")
    lines.append(f"  verdict logged -> answer at the client (announce, web, HTTP): {_spread(back)}")
    if service.warmup_ms:
        lines.append(
            "warm-up completes (not in the figures): " + ", ".join(f"{v:.0f} ms" for v in service.warmup_ms)
        )
    lines.append(
        f"complete failures: {service.failures}"
        + (f" (first: {service.first_failure})" if service.failures else "")
    )
    if pipeline.faces:
        lines.append(f"in-process pipeline: {pipeline.faces[0]}")
    if naive.faces:
        lines.append(f"naive found: {naive.faces[0]}")
        lines.append(
            f"bench process peak RSS (incl. naive full-res MTCNN): {memory(os.getpid()).hwm_mb:.0f} MB"
        )
    return lines


def _mark(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def verdicts(
    service: ServiceRun,
    seen: Sequence[Processes],
    naive: InProcessRun,
    burst: Burst | None,
    found: hostile.Hostile | None,
) -> list[str]:
    p95 = nearest_rank(service.complete_ms, 95)
    lines = [
        f"complete p95 <= {P95_TARGET_MS:g} ms, end to end, queue hop included:"
        f" {_mark(p95 <= P95_TARGET_MS)} ({_ms(p95)} ms)"
    ]
    hop = nearest_rank(service.hops.hop_ms(service.upload_ids), 95)
    if math.isnan(hop):
        lines.append(
            f"queue hop p95 <= {HOP_P95_TARGET_MS:g} ms: NOT MEASURED ({service.hops.problem or 'none seen'})"
        )
    else:
        lines.append(
            f"queue hop p95 <= {HOP_P95_TARGET_MS:g} ms (Redis MONITOR): {_mark(hop <= HOP_P95_TARGET_MS)}"
            f" ({hop:.1f} ms)"
        )
    service_p50, naive_p50 = nearest_rank(service.complete_ms, 50), nearest_rank(naive.total_ms, 50)
    if math.isnan(naive_p50) or math.isnan(service_p50):
        lines.append(f">= {SPEED_UP_TARGET:g}x faster than naive: NOT MEASURED (no naive samples)")
    else:
        ratio = naive_p50 / service_p50
        lines.append(
            f">= {SPEED_UP_TARGET:g}x faster than naive: {_mark(ratio >= SPEED_UP_TARGET)} ({ratio:.1f}x, "
            f"naive median {naive_p50:.0f} ms / service median {service_p50:.0f} ms)"
        )
    workers = [worker for measured in seen for worker in measured.workers]
    if not workers:
        lines.append(f"web worker RSS <= {WORKER_RSS_TARGET_MB:g} MB: NOT MEASURED (no workers found)")
    else:
        biggest = max(workers, key=lambda worker: worker.rss_kib)
        peak = max(worker.hwm_mb for worker in workers)
        lines.append(
            f"web worker RSS <= {WORKER_RSS_TARGET_MB:g} MB: {_mark(biggest.rss_mb <= WORKER_RSS_TARGET_MB)}"
            f" ({biggest.rss_mb:.0f} MB, the largest worker seen, after the one-at-a-time completes and after"
            f" the burst; the largest peak (VmHWM) {peak:.0f} MB)"
        )
    verifiers = [measured.verifier for measured in seen if measured.verifier is not None]
    if verifiers:
        largest = max(verifiers, key=lambda verifier: verifier.rss_kib)
        lines.append(
            f"verifier RSS (no target): {largest.rss_mb:.0f} MB (peak {largest.hwm_mb:.0f} MB)"
            + "".join(
                f"; its child pid {child.pid} {child.rss_mb:.0f} MB" for child in seen[-1].verifier_children
            )
        )
    issuance = burst.issuance if burst is not None else None
    if issuance is None or not issuance.latencies_ms:
        lines.append(f"issuance p99 <= {ISSUANCE_P99_TARGET_MS:g} ms while the burst runs: NOT MEASURED")
    else:
        p99 = issuance.percentile(99)
        lines.append(
            f"issuance p99 <= {ISSUANCE_P99_TARGET_MS:g} ms while the burst runs:"
            f" {_mark(p99 <= ISSUANCE_P99_TARGET_MS)} ({p99:.1f} ms, {issuance.count} requests,"
            f" {issuance.errors} errors)"
        )
    if found is None:
        lines.append(
            f"issuance and /healthz p99 within {hostile.WITHIN:g}x of quiet, many-scans JPEG: NOT MEASURED"
        )
    else:
        for name, ratio in hostile.ratios(found).items():
            ok = not math.isnan(ratio) and ratio <= hostile.WITHIN
            shown = "n/a" if math.isnan(ratio) else f"{ratio:.2f}x"
            lines.append(
                f"{name} p99 within {hostile.WITHIN:g}x of a quiet run while many-scans JPEGs are verified:"
                f" {_mark(ok)} ({shown})"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    stop_on_sigterm()
    deadline = time.monotonic() + options.budget_seconds
    progress(f"making the {WIDTH}x{HEIGHT} face JPEG (grain sigma {options.grain:g}) ...")
    photo = twelve_megapixel_selfie(options.grain)
    progress(f"  {len(photo)} bytes ({len(photo) / 1e6:.2f} MB)")
    seen: list[Processes] = []
    burst: Burst | None = None
    found: hostile.Hostile | None = None
    try:
        with ExitStack() as stack:
            progress(f"starting the stack on loopback (logs under {WORKDIR}) ...")
            try:
                started = (
                    start_stack(  # Redis of its own: no other verifier takes its jobs, MONITOR sees ours
                        stack,
                        workers=options.workers,
                        database_url=options.database_url,
                        with_floor=False,
                        private_redis=True,
                    )
                )
                log_start = started.service_log.stat().st_size
                verifier_log = started.verifier_log
                verifier_start = verifier_log.stat().st_size if verifier_log is not None else 0
                progress(
                    f"service: {options.warmup} warm-up + {options.samples} timed uploads, one at a time, "
                    f"{options.users} users (Redis MONITOR on, for the queue hop) ..."
                )
                with HopWatch(started.redis_url) as watch:
                    service = measure_service(started, photo, options, deadline)
                service.hops = watch.hops
                seen.append(processes(started))
                if options.burst:
                    burst = run_burst(
                        started,
                        photo,
                        options.users,
                        options.burst,
                        options.issuance_rate,
                        options.poll_seconds,
                    )
                    seen.append(burst.after)
                if options.hostile_seconds:
                    found = hostile.run_hostile(
                        started, seconds=options.hostile_seconds, rate=options.hostile_rate
                    )
            except Exception as error:
                return failed(error)
            progress("stopping everything started ...")
        service.server_ms = server_durations(started.service_log, log_start, service.request_ids)
        if verifier_log is not None:
            service.steps = verifier_timeline(verifier_log, verifier_start)
        if burst is not None:
            burst.server_ms = server_durations(started.service_log, log_start, burst.request_ids)
        try:
            pipeline = measure_pipeline(photo, options.pipeline_samples, deadline)
            naive = measure_naive(photo, options.naive_samples, deadline)
        except Exception as error:
            return failed(error, " in process")
    except KeyboardInterrupt:
        return interrupted()
    print()
    print(table(service, pipeline, naive))
    print()
    for line in details(photo, service, pipeline, naive):
        print(line)
    print()
    print(beside_earlier_figures(service.complete_ms, service.answered_202, seen[0] if seen else None, burst))
    if found is not None:
        print()
        print(hostile.table(found))
    print()
    for line in verdicts(service, seen, naive, burst, found):
        print(line)
    problems = list(pipeline.problems)
    if service.failures > MAX_FAILED_COMPLETES or not service.complete_ms:
        problems.append(
            f"{service.failures} of {options.warmup + options.samples} uploads failed"
            f" (first: {service.first_failure})"
        )
    if burst is not None and (problem := error_problem("verification", burst.result)) is not None:
        problems.append(problem)
    return exit_code(problems)


if __name__ == "__main__":
    sys.exit(main())
