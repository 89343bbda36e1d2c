"""The leak scan (tests/leaks.py) finds a secret planted in each kind of haystack and passes redacted forms.

Everything planted here stays out of the session's own scan: files go to a directory outside the basetemp,
records to a logger that does not propagate, Redis values to a private server, Postgres rows to a schema
dropped at once and holding only a random secret that only this test looks for.
"""

from __future__ import annotations

import ast
import base64
import json
import logging
import re
import secrets
import sqlite3
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from devtools.fal_simulator import DEFAULT_KEY
from devtools.local_stack import start_redis
from domain.scrubbing import REDACTED, Scrubber
from tests import leaks
from tests.builders.databases import postgres_admin
from tests.builders.stack import new_bucket_name

pytestmark = pytest.mark.integration

TESTS = Path(__file__).resolve().parents[1]
SIGNATURE = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
SIGNED_URL = (
    "http://127.0.0.1:4599/photos/uploads/u1/a1?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    f"&X-Amz-Credential=AKIAEXAMPLE%2F20261128%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature={SIGNATURE}"
)
JWT = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1c2VyMSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
BUCKET = new_bucket_name("uploads")


@pytest.fixture
def outside() -> Iterator[Path]:
    """A directory outside this run's basetemp, so the session scan never sees what is planted here."""
    with tempfile.TemporaryDirectory(prefix="leak-scan-test-") as directory:
        yield Path(directory)


def found(haystacks: list[leaks.Haystack], *extra: leaks.Needle) -> list[str]:
    return [finding.what for finding in leaks.scan(haystacks, (*leaks.NEEDLES, *extra))]


@pytest.mark.parametrize(
    ("line", "what"),
    [
        (f"PUT {SIGNED_URL} failed", "a signed query string"),
        ("retrying X-Amz-Signature%3Ddeadbeef in a redirect", "a signed query string"),
        ('{"fields": {"X-Amz-Security-Token": "IQoJb3JpZ2luX2VjEJr"}}', "a signed query string"),
        (f"authenticating {JWT}", "a bearer token (JWT)"),
        (f"Authorization: Key {DEFAULT_KEY}", "a fal key"),
        ("fal-test-key was refused", "a fal key"),
        (f"head_object on {BUCKET} failed", "a bucket name"),
        ("no such bucket hf-no-such-bucket", "a bucket name"),
    ],
)
def test_a_secret_planted_in_a_log_file_is_found_and_not_shown(outside, line, what):
    (outside / "test_x0").mkdir()
    (outside / "test_x0" / "worker-0.log").write_text(f"starting\n{line}\n")

    haystacks, unreadable = leaks.basetemp_haystacks(outside)
    findings = leaks.scan(haystacks, leaks.NEEDLES)

    assert unreadable == []
    assert [(f.what, f.where) for f in findings] == [(what, "test_x0/worker-0.log")]
    for secret in (SIGNATURE, "deadbeef", "IQoJb3JpZ2luX2VjEJr", JWT, DEFAULT_KEY, "fal-test-key", BUCKET):
        assert secret not in str(findings[0])
    assert f"<<{what}>>" in findings[0].excerpt


@pytest.mark.parametrize(
    "line",
    [
        Scrubber()(f"PUT {SIGNED_URL} failed with Authorization: Bearer {JWT}"),
        f"params X-Amz-Signature={REDACTED}&X-Amz-Credential={REDACTED}",
        "params X-Amz-Signature=%3Credacted%3E",
        json.dumps({"X-Amz-Signature": REDACTED, "X-Amz-Security-Token": REDACTED}),
        "the URL has no X-Amz-Signature, X-Amz-Credential or X-Amz-Security-Token",
        Scrubber([BUCKET, DEFAULT_KEY])(f"bucket {BUCKET} with key {DEFAULT_KEY}"),
        "upload 3f2a issued to user1 (image/jpeg, 2481733 bytes) in uploads/user1/3f2a",
    ],
)
def test_redacted_forms_and_ordinary_text_are_not_flagged(line):
    assert found([leaks.Haystack("log", "file", "a log", [line])]) == []


def test_a_secret_planted_in_a_sqlite_row_is_found_but_not_in_an_emulators_directory(outside):
    for directory in ("test_y0/nested", "ministack0"):
        (outside / directory).mkdir(parents=True)
        database = sqlite3.connect(outside / directory / "tryon.db")
        database.execute("CREATE TABLE audit_events (id INTEGER PRIMARY KEY, details TEXT, blob BLOB)")
        database.execute("INSERT INTO audit_events (details) VALUES ('{}')")
        database.execute(
            "INSERT INTO audit_events (details, blob) VALUES (?, ?)", ("{}", f"on {BUCKET}".encode())
        )
        database.commit()
        database.close()

    haystacks, _ = leaks.basetemp_haystacks(outside)

    assert [(h.kind, h.where, len(h.items)) for h in haystacks] == [("row", "test_y0/nested/tryon.db", 2)]
    assert found(haystacks) == ["a bucket name"]


@pytest.mark.postgres
def test_a_secret_planted_in_a_postgres_row_is_found_before_the_schema_is_dropped():
    secret = f"planted-{secrets.token_hex(16)}"  # only this test looks for it
    schema = f"leak_scan_{secrets.token_hex(6)}"
    admin = postgres_admin()
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE SCHEMA "{schema}"')
            cursor.execute(f'CREATE TABLE "{schema}".tryons (id TEXT, error TEXT, data BYTEA)')
            cursor.execute(
                f'INSERT INTO "{schema}".tryons VALUES (%s, %s, %s), (%s, %s, %s)',
                ("t1", None, None, "t2", "fal said no", f"key {secret}".encode()),
            )
        rows = leaks.postgres_rows(admin, schema)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()

    haystack = leaks.Haystack("row", "schema", schema, rows)
    assert len(rows) == 2
    assert found([haystack], leaks.Needle("the planted secret", re.compile(secret))) == ["the planted secret"]


def test_a_secret_planted_in_redis_is_found_even_compressed_or_base64_encoded():
    with start_redis() as server:  # a private server: the test database is the session scan's
        client = redis.Redis.from_url(server.url)
        client.set("plain", f"GET {SIGNED_URL}")
        client.hset("rq:job:1", mapping={"data": zlib.compress(f'["{BUCKET}"]'.encode()), "status": "ok"})
        client.rpush("rq:queue:tryons", "job-1", f"Key {DEFAULT_KEY}")
        client.sadd("tokens", JWT)
        client.xadd("rq:results:1", {"exc_string": base64.b64encode(zlib.compress(b"in hf-anything"))})
        client.set("clean", f"X-Amz-Signature={REDACTED}")
        values = leaks.redis_values(client)
        client.close()

    assert len(values) == 8
    haystack = leaks.Haystack("redis", "snapshot", "a snapshot", values)
    assert sorted(found([haystack])) == [
        "a bearer token (JWT)",
        "a bucket name",
        "a bucket name",
        "a fal key",
        "a signed query string",
    ]


def test_a_secret_planted_in_a_log_record_is_found_after_the_generic_scrubbing(outside):
    tap = leaks.LogTap(outside / "in-process.log")
    planted = logging.getLogger("tests.integration.test_leak_scan.planted")
    planted.propagate = False  # the session's own tap must not see it
    planted.addHandler(tap)
    try:
        planted.warning("stored %s in %s", JWT, BUCKET)
        planted.info("the session token cookie is better-auth.session_token=%s", "abc.def")
        planted.debug("below the production level: %s", SIGNED_URL)
    finally:
        planted.removeHandler(tap)
        tap.close()

    haystack = leaks.in_process_log(outside / "in-process.log")

    assert len(haystack.items) == 2
    assert found([haystack]) == ["a bucket name"]  # the JWT and the cookie were scrubbed, as in production


def test_the_tap_sees_info_records_that_tests_do_not_see_through_caplog(caplog):
    path = leaks.tap_path()
    assert path is not None, "the session tap is installed by tests/conftest.py"
    probe, root = logging.getLogger("tests.integration.test_leak_scan.probe"), logging.getLogger()
    level, marker = root.level, secrets.token_hex(8)
    root.setLevel(logging.WARNING)  # as in a plain pytest run
    try:
        probe.info("probe %s", marker)
        probe.warning("probe warning %s", marker)
        seen = [record.levelname for record in caplog.records]
        with caplog.at_level(logging.INFO):
            probe.info("probe again")
        seen_at_info = [record.levelname for record in caplog.records]
        restored = root.level
    finally:
        root.setLevel(level)

    assert (seen, seen_at_info, restored) == (["WARNING"], ["WARNING", "INFO"], logging.WARNING)
    assert [marker in line for line in path.read_text().splitlines()[-3:-1]] == [True, True]


def test_registered_session_tokens_are_needles():
    collector = leaks.Collector()
    token = secrets.token_urlsafe(24)
    collector.session_tokens.add(token)
    haystack = leaks.Haystack("row", "sqlite", "a db", [f"sessions: {token}.c2lnbmF0dXJl"])

    assert [f.what for f in leaks.scan([haystack], collector.needles())] == [leaks.SESSION_TOKEN]


def configured_fal_keys(tree: ast.AST) -> set[str]:
    """String constants a test passes as a fal key (``api_key=``, ``FAL_API_KEY``, ``FAL_KEY``)."""
    constants = {
        target.id: node.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }

    def value(node: ast.expr | None) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        return constants.get(node.id) if isinstance(node, ast.Name) else None

    names = {"api_key", "fal_api_key", "FAL_API_KEY", "FAL_KEY"}
    keys: list[str | None] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg in names:
            keys.append(value(node.value))
        elif isinstance(node, ast.Dict):
            keys += [value(v) for k, v in zip(node.keys, node.values, strict=True) if value(k) in names]
        elif (
            isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "setenv" and len(node.args) > 1
        ):
            keys += [value(node.args[1])] if value(node.args[0]) in names else []
    return {key for key in keys if key}


def test_every_fal_key_and_bucket_name_the_tests_use_is_a_needle():
    fal_keys: set[str] = set()
    buckets: set[str] = set()
    for path in TESTS.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        fal_keys |= configured_fal_keys(tree)
        buckets |= {
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and re.fullmatch(r"hf-[a-z0-9-]+", node.value)
        }
    searched = {key for key in fal_keys if len(key) >= 3}  # "k" cannot be looked for

    assert searched and buckets
    assert sorted(key for key in searched if key not in leaks.FAL_KEYS) == []
    assert (
        sorted(b for b in buckets if found([leaks.Haystack("log", "file", "", [b])]) != ["a bucket name"])
        == []
    )
