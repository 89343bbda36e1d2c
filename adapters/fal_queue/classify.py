"""How fal's answers map to the contract's try-on error codes: one small table, tested directly."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import requests
import urllib3.exceptions

from domain.errors import GenerationFailed

_TOKEN = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # fal's error types; anything else is not echoed


@dataclass(frozen=True)
class Verdict:
    code: str
    retryable: bool
    reason: str

    def error(self) -> GenerationFailed:
        return GenerationFailed(self.reason, code=self.code, retryable=self.retryable)


def error_types(headers: Mapping[str, str], body: object) -> frozenset[str]:
    """``X-Fal-Error-Type``, the body's ``error_type`` and every ``detail[*].type`` (never messages,
    which can quote our signed input URL)."""
    found: list[object] = [value for name, value in headers.items() if name.lower() == "x-fal-error-type"]
    if isinstance(body, dict):
        found.append(body.get("error_type"))
        details = body.get("detail")
        if isinstance(details, list):
            found.extend(item.get("type") for item in details if isinstance(item, dict))
    return frozenset(t for t in found if isinstance(t, str) and _TOKEN.fullmatch(t))


_Rule = tuple[Callable[[int, frozenset[str], bool], bool], str, bool, str]

# First match wins. s: the HTTP status, t: fal's error types, r: this is the GET of a COMPLETED job's result.
# fmt: off
_RULES: tuple[_Rule, ...] = (
    # applies when
    #       code                        retryable  why
    (lambda s, t, r: s in (401, 403),
            "generation_failed",        False,     "the fal API key was refused (check FAL_API_KEY)"),
    (lambda s, t, r: s == 504 or "request_timeout" in t,
            "upstream_timeout",         True,      "the job did not start or finish in time"),
    (lambda s, t, r: "file_download_error" in t,
            "source_expired",           True,      "fal could not fetch the source image"),
    (lambda s, t, r: "content_policy_violation" in t,
            "content_policy_violation", False,     "refused by fal's content policy"),
    (lambda s, t, r: s in (408, 409, 429),
            "upstream_unavailable",     True,      "fal is busy"),
    (lambda s, t, r: r and (s >= 500 or "internal_server_error" in t),
            "generation_failed",        True,      "the job failed inside fal"),
    (lambda s, t, r: s >= 500,
            "upstream_unavailable",     True,      "fal is unavailable"),
    (lambda s, t, r: s == 422,
            "invalid_request",          False,     "fal refused the request"),
)
# fmt: on


def classify_response(
    status: int, headers: Mapping[str, str], body: object, *, job_result: bool = False
) -> Verdict:
    """A non-2xx answer from the queue. ``job_result`` is set for the GET of a COMPLETED job's
    ``response_url``: that is where a failed job shows its error, so a 5xx there is the job failing."""
    types = error_types(headers, body)
    seen = f"fal answered HTTP {status}" + (f" ({', '.join(sorted(types))})" if types else "")
    for applies, code, retryable, why in _RULES:
        if applies(status, types, job_result):
            return Verdict(code, retryable, f"{seen}: {why}")
    return Verdict("generation_failed", False, f"{seen}: unexpected answer")


def classify_download(status: int) -> Verdict:
    """A non-200 answer from the result CDN (which never sees our key)."""
    seen = f"the result host answered HTTP {status}"
    if 300 <= status < 400:
        return Verdict("generation_failed", False, f"{seen}: redirects are not followed")
    if status in (408, 429) or status >= 500:
        return Verdict("upstream_unavailable", True, f"{seen}: try again later")
    return Verdict("generation_failed", False, f"{seen}: the result is not available")


def classify_transport(error: Exception) -> Verdict:
    """A request that got no complete answer: a timeout, a refused or dropped connection."""
    name = type(error).__name__
    causes = (error, *error.args)
    if any(isinstance(c, requests.Timeout | urllib3.exceptions.TimeoutError) for c in causes):
        return Verdict("upstream_timeout", True, f"fal did not answer in time ({name})")
    if isinstance(error, requests.RequestException | urllib3.exceptions.HTTPError | OSError):
        return Verdict("upstream_unavailable", True, f"could not reach fal ({name})")
    return Verdict("generation_failed", False, f"the call to fal failed ({name})")


MALFORMED = Verdict("upstream_unavailable", True, "fal answered with malformed JSON")
