"""The fal adapter's error table, its host rules and its secrecy, without any network."""

from __future__ import annotations

import io
from typing import Any

import pytest
import requests
import urllib3
import urllib3.exceptions

from adapters.fal_queue import (
    FalQueueGenerator,
    Origin,
    ResultHosts,
    classify_download,
    classify_response,
    classify_transport,
    origin_of,
    sniff_image_type,
)
from domain.errors import GenerationFailed
from domain.model import GeneratedImage, GenerationRequest, SignedUrl, Submission

KEY = "fal-key-7f3a9c:0b1e5d2a4c6f8e9d"
QUEUE = "https://queue.fal.run"
SIGNED = "https://bucket.s3.amazonaws.com/uploads/u1/a1?X-Amz-Signature=deadbeefcafe&X-Amz-Credential=AKIA"


def detail(*types: str) -> dict[str, Any]:
    return {"detail": [{"loc": ["body", "image_urls", 0], "msg": f"see {SIGNED}", "type": t} for t in types]}


# (status, headers, body, job_result) -> (code, retryable)
TABLE = [
    (429, {}, None, False, "upstream_unavailable", True),
    (500, {}, None, False, "upstream_unavailable", True),
    (502, {}, {"detail": "bad gateway"}, False, "upstream_unavailable", True),
    (503, {"X-Fal-Error-Type": "runner_scheduling_failure"}, None, False, "upstream_unavailable", True),
    (504, {}, None, False, "upstream_timeout", True),
    (504, {}, None, True, "upstream_timeout", True),
    (503, {"x-fal-error-type": "request_timeout"}, None, False, "upstream_timeout", True),
    (500, {}, {"detail": "timed out", "error_type": "request_timeout"}, True, "upstream_timeout", True),
    (408, {}, None, False, "upstream_unavailable", True),
    (409, {}, None, False, "upstream_unavailable", True),
    (429, {}, None, True, "upstream_unavailable", True),
    (422, {}, detail("file_download_error"), False, "source_expired", True),
    (422, {}, detail("file_download_error"), True, "source_expired", True),
    (422, {}, detail("content_policy_violation"), True, "content_policy_violation", False),
    (422, {}, detail("value_error", "content_policy_violation"), False, "content_policy_violation", False),
    (422, {}, detail("image_too_large"), True, "invalid_request", False),
    (422, {}, detail("value_error.missing"), False, "invalid_request", False),
    (422, {}, None, False, "invalid_request", False),
    (401, {}, None, False, "generation_failed", False),
    (403, {}, {"detail": "forbidden"}, True, "generation_failed", False),
    (500, {}, None, True, "generation_failed", True),
    (503, {}, None, True, "generation_failed", True),
    (400, {}, {"detail": "boom", "error_type": "internal_server_error"}, True, "generation_failed", True),
    (400, {}, {"detail": "bad"}, True, "generation_failed", False),
    (404, {}, None, True, "generation_failed", False),
    (400, {}, {"detail": "bad"}, False, "generation_failed", False),
    (404, {}, None, False, "generation_failed", False),
    (302, {"Location": "https://elsewhere"}, None, False, "generation_failed", False),
]


@pytest.mark.parametrize(("status", "headers", "body", "job_result", "code", "retryable"), TABLE)
def test_the_classification_table(status, headers, body, job_result, code, retryable):
    verdict = classify_response(status, headers, body, job_result=job_result)

    assert (verdict.code, verdict.retryable) == (code, retryable)
    error = verdict.error()
    assert isinstance(error, GenerationFailed)
    assert (error.code, error.retryable) == (code, retryable)
    assert str(status) in error.detail


def test_a_refused_key_is_reported_as_an_operator_problem():
    assert "FAL_API_KEY" in classify_response(401, {}, None).reason


def test_fal_messages_are_never_echoed_only_their_types():
    reason = classify_response(422, {}, detail("file_download_error")).reason

    assert "file_download_error" in reason
    assert "amazonaws" not in reason
    assert "deadbeef" not in reason


def test_error_types_that_are_not_plain_tokens_are_not_echoed():
    body = {"detail": [{"type": f"x {SIGNED}"}], "error_type": ["list"]}
    reason = classify_response(400, {"X-Fal-Error-Type": "a" * 200}, body).reason

    assert "amazonaws" not in reason
    assert "a" * 100 not in reason


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (requests.ConnectTimeout("connect"), "upstream_timeout"),
        (requests.ReadTimeout("read"), "upstream_timeout"),
        (
            requests.ConnectionError(
                urllib3.exceptions.ReadTimeoutError(urllib3.HTTPConnectionPool("h"), "/", "slow")
            ),
            "upstream_timeout",
        ),
        (requests.ConnectionError("refused"), "upstream_unavailable"),
        (requests.exceptions.ChunkedEncodingError("cut"), "upstream_unavailable"),
        (urllib3.exceptions.ProtocolError("reset"), "upstream_unavailable"),
        (ConnectionResetError(), "upstream_unavailable"),
    ],
)
def test_transport_failures_are_retryable(error, code):
    verdict = classify_transport(error)

    assert (verdict.code, verdict.retryable) == (code, True)


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (301, "generation_failed", False),
        (302, "generation_failed", False),
        (307, "generation_failed", False),
        (403, "generation_failed", False),
        (404, "generation_failed", False),
        (429, "upstream_unavailable", True),
        (503, "upstream_unavailable", True),
    ],
)
def test_download_failures(status, code, retryable):
    verdict = classify_download(status)

    assert (verdict.code, verdict.retryable) == (code, retryable)


DEFAULT_HOSTS = ResultHosts(("fal.media", "*.fal.media"))


@pytest.mark.parametrize(
    "url",
    [
        "https://fal.media/files/a.jpg",
        "https://v3.fal.media/files/penguin/x.jpeg",
        "https://a.b.fal.media/x",
        "https://FAL.Media/x",
        "https://fal.media:443/x",
        "https://v3.fal.media/x?download=1#frag",
    ],
)
def test_result_hosts_allow_fal_media_over_https(url):
    assert DEFAULT_HOSTS.allows(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://fal.media/x",
        "http://v3.fal.media/x",
        "ftp://fal.media/x",
        "//fal.media/x",
        "fal.media/x",
        "",
        "https://fal.media.evil.com/x",
        "https://evilfal.media/x",
        "https://fal-media.com/x",
        "https://evil.com/fal.media/x",
        "https://evil.com/?u=https://fal.media/x",
        "https://fal.media@evil.com/x",
        "https://v3.fal.media:443@evil.com/x",
        "https://evil.com@fal.media/x",
        "https://user:pass@v3.fal.media/x",
        "https://fal.media\\@evil.com/x",
        "https://fal.media%2F@evil.com/x",
        "https://fal%2Emedia/x",
        "https://fal.media./x",
        "https://fal.media:8443/x",
        "https://v3.fal.media:80/x",
        "https://fal.media:99999/x",
        "https://fal.media:abc/x",
        "https://fal.media /x",
        "https://fal.media\t.evil.com/x",
        "https://fal.media\n/x",
        "https://f\u0430l.media/x",  # Cyrillic a
        "https://*.fal.media/x",
        "https://.fal.media/x",
    ],
)
def test_result_hosts_refuse_lookalikes_userinfo_ports_and_odd_urls(url):
    assert not DEFAULT_HOSTS.allows(url)


def test_a_wildcard_does_not_cover_the_bare_suffix():
    hosts = ResultHosts(("*.fal.media",))

    assert hosts.allows("https://v3.fal.media/x")
    assert not hosts.allows("https://fal.media/x")


def test_an_entry_with_a_scheme_allows_exactly_that_scheme_host_and_port():
    hosts = ResultHosts(("http://127.0.0.1:8123",))

    assert hosts.allows("http://127.0.0.1:8123/files/a.jpg")
    assert not hosts.allows("https://127.0.0.1:8123/files/a.jpg")
    assert not hosts.allows("http://127.0.0.1:8124/files/a.jpg")
    assert not hosts.allows("http://127.0.0.1/files/a.jpg")
    assert not hosts.allows("http://localhost:8123/files/a.jpg")
    assert not hosts.allows("http://127.0.0.1:8123@evil.com/x")


def test_scheme_entries_may_use_wildcards_and_default_ports():
    hosts = ResultHosts(("https://*.cdn.test", "http://files.test"))

    assert hosts.allows("https://a.cdn.test/x")
    assert not hosts.allows("http://a.cdn.test/x")
    assert hosts.allows("http://files.test:80/x")
    assert not hosts.allows("http://files.test:8080/x")


@pytest.mark.parametrize(
    "entry",
    ["", "fal.media/files", "https://user@fal.media", "*.", "ftp://fal.media", "fal.media?x=1", "a b"],
)
def test_unusable_result_host_entries_are_refused(entry):
    with pytest.raises(ValueError, match="result host"):
        ResultHosts((entry,))


def test_origins_normalise_case_and_default_ports():
    assert origin_of("HTTPS://Queue.Fal.Run/x") == Origin("https", "queue.fal.run", 443)
    assert origin_of("https://queue.fal.run:443/y") == origin_of("https://queue.fal.run")
    assert origin_of("http://[::1]:8080/") == Origin("http", "::1", 8080)
    assert origin_of("https://k@queue.fal.run/") is None


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "image/png"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", None),
        (b"GIF89a", None),
        (b"<html>", None),
        (b"", None),
    ],
)
def test_image_types_are_sniffed_from_magic_bytes(data, content_type):
    assert sniff_image_type(data) == content_type


class CannedSession(requests.Session):
    """Answers every request with one canned response (or raises one error), recording the calls."""

    def __init__(self, answer: requests.Response | Exception) -> None:
        super().__init__()
        self.answer = answer
        self.calls: list[tuple[Any, ...]] = []

    def request(self, *args, **kwargs):
        self.calls.append((*args, kwargs))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def canned(status: int, body: bytes, headers: dict[str, str] | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers or {})
    response.raw = urllib3.HTTPResponse(body=io.BytesIO(body), preload_content=False, headers=headers)
    return response


def generator(answer: requests.Response | Exception) -> tuple[FalQueueGenerator, CannedSession]:
    session = CannedSession(answer)
    return FalQueueGenerator(api_key=KEY, session=session), session


SUBMISSION = Submission(
    "r1",
    f"{QUEUE}/fal-ai/nano-banana/requests/r1/status",
    f"{QUEUE}/fal-ai/nano-banana/requests/r1",
    f"{QUEUE}/fal-ai/nano-banana/requests/r1/cancel",
)


def assert_secret_free(error: BaseException) -> None:
    for text in (str(error), repr(error), getattr(error, "detail", "")):
        assert KEY not in text
        assert "deadbeef" not in text
        assert "amazonaws" not in text
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__


def test_the_key_is_not_in_the_generators_repr():
    fal, _ = generator(canned(200, b"{}"))

    assert KEY not in repr(fal)
    assert KEY not in str(fal)
    assert "queue.fal.run" in repr(fal)


def test_the_key_never_reaches_an_error_even_if_fal_echoes_it():
    token_like_key = "fal_plain_key_0b1e5d2a4c6f"  # passes the error-type filter: the scrubber stops it
    fal = FalQueueGenerator(
        api_key=token_like_key,
        session=CannedSession(canned(503, b"{}", {"X-Fal-Error-Type": token_like_key})),
    )

    with pytest.raises(GenerationFailed) as caught:
        fal.state(SUBMISSION)

    assert caught.value.code == "upstream_unavailable"
    assert token_like_key not in str(caught.value)
    assert "<redacted>" in str(caught.value)


def test_transport_errors_naming_a_signed_url_are_not_chained():
    fal, _ = generator(requests.ConnectionError(f"Max retries exceeded with url: {SIGNED} Key {KEY}"))

    with pytest.raises(GenerationFailed) as caught:
        fal.submit(GenerationRequest(prompt="bob cut", image_url=SignedUrl(SIGNED)))

    assert caught.value.code == "upstream_unavailable"
    assert caught.value.retryable
    assert_secret_free(caught.value)


def test_a_foreign_status_url_is_refused_before_any_request():
    fal, session = generator(canned(200, b'{"status": "COMPLETED"}'))
    foreign = Submission(
        "r1", "https://evil.test/status", "https://queue.fal.run.evil.test/r", "http://queue.fal.run/c"
    )

    for call in (fal.state, fal.result, fal.cancel):
        with pytest.raises(GenerationFailed) as caught:
            call(foreign)
        assert (caught.value.code, caught.value.retryable) == ("generation_failed", False)
        assert "queue host" in caught.value.detail
        assert_secret_free(caught.value)
    assert session.calls == []


def test_a_download_outside_the_result_hosts_is_refused_before_any_request():
    fal, session = generator(canned(200, b"\xff\xd8\xff"))

    with pytest.raises(GenerationFailed) as caught:
        fal.download(GeneratedImage(url="https://queue.fal.run/img.jpg"), 1000)

    assert (caught.value.code, caught.value.retryable) == ("generation_failed", False)
    assert session.calls == []


def test_malformed_json_is_retryable():
    fal, _ = generator(canned(200, b"[" * 100_000))

    with pytest.raises(GenerationFailed) as caught:
        fal.result(SUBMISSION)

    assert (caught.value.code, caught.value.retryable) == ("upstream_unavailable", True)


@pytest.mark.parametrize(
    "settings",
    [
        {"api_key": ""},
        {"queue_url": "queue.fal.run"},
        {"queue_url": "https://k@queue.fal.run"},
        {"model": "../admin"},
        {"model": "fal-ai/../x"},
        {"timeout_seconds": 0},
        {"result_hosts": ()},
    ],
)
def test_unusable_settings_are_refused_at_construction(settings):
    with pytest.raises(ValueError) as caught:
        FalQueueGenerator(**({"api_key": KEY} | settings))

    assert KEY not in str(caught.value)
