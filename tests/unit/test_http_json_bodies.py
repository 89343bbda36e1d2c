"""Hostile JSON bodies (deeply nested, truncated, not JSON) are 400 problems, never a 500."""

from __future__ import annotations

import logging
import time

import pytest

from entrypoints.http.json_bodies import MAX_JSON_DEPTH, nested_deeper_than
from tests.builders.app import AUTH, assert_problem, build_app
from tests.fakes import FakeStore

JSON = {**AUTH, "Content-Type": "application/json"}
ROUTES = ["/v1/uploads", "/v1/tryons", "/v1/uploads/u1/complete"]


def arrays(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def objects(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.fixture
def client():
    return build_app(FakeStore()).test_client()


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    "body",
    [arrays(30_000), objects(10_000), b'{"content_type": ' + arrays(33) + b"}"],
    ids=["arrays-30000-deep", "objects-10000-deep", "33-deep-inside-a-field"],
)
def test_a_deeply_nested_body_is_a_400_problem_and_nothing_is_logged_as_an_error(client, caplog, route, body):
    with caplog.at_level(logging.WARNING):
        response = client.post(route, data=body, headers=JSON)

    problem = assert_problem(response, 400, "bad_request")
    assert str(MAX_JSON_DEPTH) in problem["detail"]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_objects_30000_deep_do_not_fit_in_the_body_cap_and_are_refused_unread(client, caplog):
    with caplog.at_level(logging.WARNING):
        response = client.post("/v1/tryons", data=objects(30_000), headers=JSON)

    assert_problem(response, 413, "payload_too_large")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    "body",
    [
        b'{"content_type": "image/jpeg", "content_length": 1',
        b"[[[",
        b'{"a": "unterminated',
        b"\xff\xfe",
        b"{,}",
    ],
    ids=["truncated", "unclosed-arrays", "unterminated-string", "not-utf8", "invalid"],
)
def test_truncated_or_invalid_json_is_a_400_problem(client, caplog, route, body):
    with caplog.at_level(logging.WARNING):
        response = client.post(route, data=body, headers=JSON)

    assert_problem(response, 400, "bad_request")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_a_reasonable_body_still_goes_through(client):
    body = b'{"content_type": "image/jpeg", "content_length": 10, "checksum_sha256": "' + b"A" * 43 + b'="}'
    assert client.post("/v1/uploads", data=body, headers=JSON).status_code == 201


@pytest.mark.parametrize(
    ("body", "deeper"),
    [
        (arrays(MAX_JSON_DEPTH), False),
        (arrays(MAX_JSON_DEPTH + 1), True),
        (b"[]" * 20_000, False),
        (b'["' + b"[" * 1000 + b'"]', False),
        (b'["\\"' + b"[" * 1000 + b'"]', False),
        (b'["\\\\"' + b"[" * 40 + b"]" * 40 + b"]", True),
        (b'{"a": "}}}}' + b'"' + b', "b": ' + arrays(40) + b"}", True),
        (b'"' + b"[" * 1000, False),
    ],
    ids=[
        "at-the-limit",
        "one-past",
        "wide-not-deep",
        "brackets-in-a-string",
        "escaped-quote-in-a-string",
        "escaped-backslash-ends-the-string",
        "closers-in-a-string",
        "unterminated-string",
    ],
)
def test_depth_is_measured_outside_strings(body, deeper):
    assert nested_deeper_than(body, MAX_JSON_DEPTH) is deeper


def test_measuring_a_64_kib_body_is_cheap():
    worst = [b"[]" * 32_768, b'"\\"' * 21_845, arrays(32_768), b'{"a":1}' * 9362]
    started = time.perf_counter()
    for body in worst:
        nested_deeper_than(body, MAX_JSON_DEPTH)
    assert time.perf_counter() - started < 0.5
