"""A many-scans JPEG being verified (issue 12): issuance and ``/healthz`` p99 beside a quiet run.

The hostile image is the one issue 12 describes: a progressive 4000 x 4000 JPEG whose last AC scan is
repeated until the file is ~1.1 MB (thousands of ~53-byte scans; ``tests/decoding_bombs.py`` builds it).
First a quiet run: issuance (``POST /v1/uploads``) and ``GET /healthz``, each at a steady rate (open loop)
for a fixed time. Then, for as long again, one attacker uploads such a JPEG and completes it, back to back
(issue + ``PUT`` + complete, followed to its verdict as the app would), while the same two loads run. The
target: both p99s within 2x of the quiet run's. The attacker's issue and ``PUT`` (to ministack, on the
same 2 cores) are part of the hostile window, as they would be.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field

import requests

from bench.loadgen import Result, nearest_rank
from bench.probes import Background, health_target, issuance_target
from bench.report import Beside, beside_earlier, by_kind
from bench.stack import Stack, progress
from bench.uploader import SampleFailed, Uploader, new_request_id

BOMB_SIZE = 1_100_000
SIDE = 4000
CODE = re.compile(r'"code"\s*:\s*"([^"]+)"')
WITHIN = 2.0
"""The target: p99 while the hostile images are verified at most this many times the quiet run's."""


def many_scans_jpeg() -> tuple[bytes, int]:
    """(the JPEG, how many scans it holds)."""
    from PIL import Image  # noqa: PLC0415

    from tests import decoding_bombs  # noqa: PLC0415 - the builders the hostile-decoding tests use

    base = decoding_bombs.progressive_jpeg(Image.new("RGB", (SIDE, SIDE), (128, 128, 128)))
    bomb = decoding_bombs.with_scans_to_size(base, BOMB_SIZE)
    return bomb, bomb.count(decoding_bombs.SOS)


@dataclass
class Hostile:
    size: int
    scans: int
    quiet: dict[str, Result]
    loud: dict[str, Result] = field(default_factory=dict)
    answers: Counter[str] = field(default_factory=Counter)
    """What each hostile complete ended as: ``HTTP 422 not_an_image``, ``verified``, ..."""
    complete_ms: list[float] = field(default_factory=list)


def _answer(error: str | None) -> str:
    if error is None:
        return "verified"
    kind, _, rest = error.partition(":")
    code = CODE.search(rest)
    return f"{kind} {code.group(1) if code else ''}".strip()


def run_hostile(stack: Stack, *, seconds: float, rate: float) -> Hostile:
    bomb, scans = many_scans_jpeg()
    loads = {"issuance": (issuance_target(stack), rate), "healthz": (health_target(stack), rate)}
    progress(f"hostile: quiet run, issuance and /healthz at {rate:g}/s each for {seconds:g} s ...")
    with Background(loads) as quiet:
        time.sleep(seconds)
    found = Hostile(size=len(bomb), scans=scans, quiet=quiet.results)
    progress(
        f"hostile: {seconds:g} s of uploading + completing a {len(bomb)}-byte JPEG with {scans} scans,"
        " back to back, the same loads meanwhile ..."
    )
    uploader = Uploader(stack, bomb, 1)
    try:
        with Background(loads) as loud:
            until = time.monotonic() + seconds
            index = 0
            while time.monotonic() < until:
                index += 1
                try:
                    ticket = uploader.prepare(index)
                except (SampleFailed, requests.RequestException, ValueError, KeyError) as failure:
                    found.answers[f"not prepared: {type(failure).__name__}"] += 1
                    continue
                settled = uploader.settle(ticket, new_request_id())
                found.answers[_answer(settled.error)] += 1
                found.complete_ms.append(settled.ms)
        found.loud = loud.results
    finally:
        uploader.close()
    progress(f"  hostile completes ended: {dict(found.answers)}")
    return found


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1f}"


def ratios(found: Hostile) -> dict[str, float]:
    """p99 while hostile / p99 quiet, per load (NaN when either is missing)."""
    out = {}
    for name, quiet in found.quiet.items():
        loud = found.loud.get(name)
        p_quiet, p_loud = quiet.percentile(99), loud.percentile(99) if loud else math.nan
        out[name] = p_loud / p_quiet if p_quiet and not math.isnan(p_quiet) else math.nan
    return out


def table(found: Hostile) -> str:
    rows: list[Beside] = [
        (f"a {found.size}-byte {SIDE}x{SIDE} progressive JPEG with {found.scans} scans", "", ""),
        (
            "  completes, ended as",
            "gunicorn WORKER TIMEOUT at 31 s",
            ", ".join(f"{k} x{v}" for k, v in sorted(found.answers.items())),
        ),
        (
            "  complete ms p50 / max (POST -> verdict)",
            "-",
            f"{_ms(nearest_rank(found.complete_ms, 50))} / {_ms(max(found.complete_ms, default=math.nan))}",
        ),
    ]
    for name, quiet in found.quiet.items():
        loud = found.loud.get(name)
        rows.append((f"  {name}, quiet: sent / errors / p50 / p99 ms", "-", _figures(quiet)))
        rows.append((f"  {name}, while hostile: sent / errors / p50 / p99 ms", "-", _figures(loud)))
    for name, ratio in ratios(found).items():
        rows.append((f"  {name} p99 hostile / quiet", "-", "n/a" if math.isnan(ratio) else f"{ratio:.2f}x"))
    return beside_earlier("many-scans JPEG being verified", 12, rows)


def _figures(result: Result | None) -> str:
    if result is None:
        return "n/a"
    return (
        f"{result.count} / {by_kind(result.error_kinds)} / {_ms(result.percentile(50))}"
        f" / {_ms(result.percentile(99))}"
    )
