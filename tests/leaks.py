"""The leak scan after a run with real dependencies (issue 7, item 4): no signed query string, bearer
token, fal key or bucket name in any log line, database row or Redis value the tests with real dependencies
(integration, e2e, faults) left behind; the unit tier, on fakes, is not watched (issue 13).

Haystacks, all of this run only:

* log lines of our processes: every in-process log record (``LogTap``, a root handler that formats each
  record with ``JsonFormatter(Scrubber())``, the generic scrubbing production always applies, and nothing of
  the per-deployment bucket names and fal key), every ``*.log`` file under this run's basetemp (workers,
  gunicorn) and the output of the CLI runs the tests hand over with ``keep_output``;
* database rows: every SQLite database under the basetemp, every Postgres schema a test drops (handed over
  with ``keep_postgres_schema`` just before) and every schema of the Postgres test database at the end;
* Redis values: a snapshot before each ``flushdb`` (``keep_redis``) and one of the test database at the end.

The emulators' own logs and state (ministack, the fal simulator, the Better Auth server, the dev JWT issuer)
are not scanned: they are the remote side (S3, fal, the auth server), which sees signed URLs, keys and tokens
by design.

A test that logs or stores a secret on purpose, to prove it is scrubbed, must keep it out of these haystacks:
log on a logger that does not propagate to the root, write under a directory outside the basetemp.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import re
import sqlite3
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psycopg2
import psycopg2.extensions
import psycopg2.sql
import pytest
import redis

from devtools.fal_simulator import DEFAULT_KEY
from domain.scrubbing import REDACTED, Scrubber
from entrypoints.logs import JsonFormatter

Kind = Literal["log", "row", "redis"]
Source = Literal["file", "output", "sqlite", "schema", "snapshot"]


@dataclass(frozen=True)
class Needle:
    what: str
    pattern: re.Pattern[str]


def _literals(values: Iterable[str]) -> str:
    return "|".join(re.escape(value) for value in sorted(set(values), key=len, reverse=True))


#: Every fal key the tests configure. ``KEY = "k"`` in tests/integration/test_fal_queue_adapter.py is too
#: short to look for (it is in every word); tests/integration/test_leak_scan.py checks this list is complete.
FAL_KEYS = (
    DEFAULT_KEY,  # the fal simulator's key: e2e try-ons, tests/faults, the demo
    "fal-test-key",  # tests/e2e/test_processes.py
    "sim-test-key-5b1e",  # tests/integration/test_fal_simulator.py
    "fal-key-7f3a9c:0b1e5d2a4c6f8e9d",  # tests/unit/test_fal_errors.py
    "fal_plain_key_0b1e5d2a4c6f",  # tests/unit/test_fal_errors.py
    "fal-secret-key",  # tests/unit/test_settings.py
    "fal-key-settings-test",  # tests/unit/test_webhook_settings.py
    "fal-key-123",  # tests/unit/test_scrubbing.py
    "fal_abcdefgh:123456",  # tests/unit/test_scrubbing.py
)

#: Every fixed bucket name the tests use; tests/conftest.py ``new_bucket_name`` makes ``hf-<role>-<8 hex>``.
BUCKET_NAMES = (
    "hf-uploads",  # tests/unit/test_settings.py; a prefix of hf-uploads-test, -moto, -prod
    "hf-processed",  # tests/unit/test_settings.py; a prefix of hf-processed-test, -prod
    "hf-bucket",  # tests/integration/test_s3_adapters.py
    "hf-anything",  # tests/integration/test_s3_adapters.py
    "hf-no-such-bucket",  # tests/integration/test_s3_upload_storage.py
)

_NOT_REDACTED = rf"(?!{re.escape(REDACTED)}|%3Credacted%3E)"

NEEDLES = (
    Needle(
        "a signed query string",
        re.compile(
            # name=value in a query, URL-encoded (name%3Dvalue), or a header / JSON field ("name": "value")
            r"X-Amz-(?:Signature|Credential|Security-Token)(?:=|%3D|[\"']?\s*[:=]\s*[\"']?)"
            rf"{_NOT_REDACTED}[^\s&\"'<>\\]+",
            re.IGNORECASE,
        ),
    ),
    Needle("a bearer token (JWT)", re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")),
    Needle("a fal key", re.compile(_literals(FAL_KEYS))),
    Needle("a bucket name", re.compile(rf"\bhf-[a-z]+-[0-9a-f]{{8}}\b|{_literals(BUCKET_NAMES)}")),
)

SESSION_TOKEN = "a bearer token (Better Auth session token)"


@dataclass(frozen=True)
class Haystack:
    kind: Kind
    source: Source
    where: str
    items: Sequence[str]
    #: Per item, the test it came from (the in-process log); otherwise ``where`` says it.
    tests: Sequence[str] | None = None


@dataclass(frozen=True)
class Finding:
    what: str
    where: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.what} in {self.where}: {self.excerpt}"


@dataclass
class Collector:
    """What the tests hand over during the run (rows before a DROP, Redis before a flush, CLI output)."""

    haystacks: list[Haystack] = field(default_factory=list)
    session_tokens: set[str] = field(default_factory=set)
    current_test: str = "(outside any test)"

    def keep(
        self, kind: Kind, source: Source, where: str, items: Sequence[str], *, in_test: bool = True
    ) -> None:
        where = f"{where} ({self.current_test})" if in_test else where
        self.haystacks.append(Haystack(kind, source, where, tuple(items)))

    def needles(self) -> tuple[Needle, ...]:
        if not self.session_tokens:
            return NEEDLES
        return (*NEEDLES, Needle(SESSION_TOKEN, re.compile(_literals(self.session_tokens))))


COLLECTOR = Collector()


def register_session_token(token: str) -> None:
    """A Better Auth session token a test obtained: its bare form is in every signed and cookie form."""
    COLLECTOR.session_tokens.add(token)


def keep_output(what: str, *texts: str | bytes | None) -> None:
    """The output of one of our processes the test captured instead of writing it to a file."""
    lines = [line for text in texts for line in _text(text).splitlines()]
    COLLECTOR.keep("log", "output", what, lines)


def keep_postgres_schema(connection: psycopg2.extensions.connection, schema: str) -> None:
    """Call just before ``DROP SCHEMA``: the rows would otherwise never be scanned."""
    COLLECTOR.keep(
        "row", "schema", f"Postgres schema {schema} before it was dropped", postgres_rows(connection, schema)
    )


def keep_redis(url: str, when: str = "before a flush", *, in_test: bool = True) -> None:
    """Call just before ``flushdb`` or stopping a server (the values would otherwise never be scanned)."""
    values = redis_values(redis.Redis.from_url(url))
    COLLECTOR.keep("redis", "snapshot", f"Redis {when}", values, in_test=in_test)


# Reading the haystacks ---------------------------------------------------------------------------------


def _text(raw: str | bytes | memoryview | None) -> str:
    if raw is None:
        return ""
    if isinstance(raw, str):
        return raw
    return bytes(raw).decode("utf-8", errors="replace")


def readable(raw: str | bytes | memoryview | None) -> str:
    """A value as text, plus what it holds compressed or base64-encoded (RQ stores job data so)."""
    if not isinstance(raw, bytes | memoryview):
        return _text(raw)
    forms = [bytes(raw)]
    with contextlib.suppress(binascii.Error, ValueError):
        forms.append(base64.b64decode(forms[0], validate=True))
    for form in list(forms):
        with contextlib.suppress(zlib.error):
            forms.append(zlib.decompress(form))
    return " ".join(_text(form) for form in forms)


def _cells(row: Iterable[object]) -> str:
    return " | ".join(readable(cell) if isinstance(cell, bytes | memoryview) else str(cell) for cell in row)


def sqlite_rows(path: Path) -> list[str]:
    connection = sqlite3.connect(path, timeout=5)
    try:
        tables = [
            name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        return [
            f"{table}: {_cells(row)}"
            for table in tables
            for row in connection.execute(f'SELECT * FROM "{table}"')  # names from sqlite_master
        ]
    finally:
        connection.close()


def postgres_rows(connection: psycopg2.extensions.connection, schema: str) -> list[str]:
    rows: list[str] = []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = %s AND table_type = 'BASE TABLE' ORDER BY table_name",
            (schema,),
        )
        tables = [name for (name,) in cursor.fetchall()]
        for table in tables:
            query = psycopg2.sql.SQL("SELECT * FROM {}.{}").format(
                psycopg2.sql.Identifier(schema), psycopg2.sql.Identifier(table)
            )
            cursor.execute(query)
            rows += [f"{schema}.{table}: {_cells(row)}" for row in cursor.fetchall()]
    return rows


def postgres_schemas(connection: psycopg2.extensions.connection) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname <> 'information_schema'"
            " AND nspname NOT LIKE 'pg\\_%' ORDER BY nspname"
        )
        return [name for (name,) in cursor.fetchall()]


def redis_values(client: redis.Redis) -> list[str]:
    """Every value of every key, one item per string, hash field, list/set/zset member or stream entry."""
    connection: Any = client  # redis-py types its answers as "maybe awaitable"
    values: list[str] = []
    for key in connection.scan_iter(count=1000):
        name, kind = _text(key), _text(connection.type(key))
        members: list[str | bytes]
        if kind == "string":
            members = [connection.get(key)]
        elif kind == "hash":
            members = [f"{_text(f)}={readable(v)}" for f, v in connection.hgetall(key).items()]
        elif kind == "list":
            members = connection.lrange(key, 0, -1)
        elif kind == "set":
            members = list(connection.smembers(key))
        elif kind == "zset":
            members = connection.zrange(key, 0, -1)
        elif kind == "stream":
            members = [
                " ".join(f"{_text(f)}={readable(v)}" for f, v in entry.items())
                for _, entry in connection.xrange(key)
            ]
        else:
            members = [f"<{kind}>"]
        values += [f"{name}: {readable(member)}" for member in members]
    return values


# The scan ----------------------------------------------------------------------------------------------

_GENERIC = Scrubber()
_TOKENISH = r"[A-Za-z0-9_.%+/=:-]+"


def masked(text: str, needles: Sequence[Needle]) -> str:
    """Text safe to print: generically scrubbed, and every needle named instead of shown."""
    text = _GENERIC(text)
    for needle in needles:
        text = needle.pattern.sub(f"<{needle.what}>", text)
    return text


def _excerpt(text: str, start: int, end: int, what: str, needles: Sequence[Needle]) -> str:
    """The match named, with some context; a token cut by the window's edge is left out, not half shown."""
    first, last = max(0, start - 60), min(len(text), end + 60)
    before, after = text[first:start], text[end:last]
    if first > 0:
        before = re.sub(f"^{_TOKENISH}", "", before)
    if last < len(text):
        after = re.sub(f"{_TOKENISH}$", "", after)
    return f"…{masked(before, needles)}<<{what}>>{masked(after, needles)}…"


def scan(haystacks: Iterable[Haystack], needles: Sequence[Needle]) -> list[Finding]:
    """One finding per needle found in an item (a line, a row, a value); none of them shows the secret."""
    findings: list[Finding] = []
    for haystack in haystacks:
        for index, item in enumerate(haystack.items):
            for needle in needles:
                match = needle.pattern.search(item)
                if match is None:
                    continue
                where = haystack.where
                if haystack.tests is not None:
                    where = f"{where} ({haystack.tests[index]})"
                excerpt = _excerpt(item, match.start(), match.end(), needle.what, needles)
                findings.append(Finding(needle.what, masked(where, needles), excerpt))
    return findings


# The in-process log ------------------------------------------------------------------------------------

TAP_LEVEL = logging.INFO
#: Loggers of the emulators that run in process: the remote side, not ours.
EMULATOR_LOGGERS = ("devtools.fal_simulator", "devtools.dev_issuer")
#: Directories of the emulators' own logs and state under the basetemp (tests/conftest.py,
#: tests/better_auth_server.py, tests/integration/test_*): the remote side, not ours.
EMULATOR_DIRS = re.compile(r"^(ministack|better-auth)")
TAP_FILE = "in-process.log"


class LogTap(logging.Handler):
    """Writes every in-process record as production would (INFO and up, JSON, generically scrubbed),
    one ``<test id>\\t<json>`` line each."""

    def __init__(self, path: Path) -> None:
        super().__init__(TAP_LEVEL)
        self.path = path
        self.setFormatter(JsonFormatter(Scrubber()))
        self._file = path.open("a", encoding="utf-8")

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(EMULATOR_LOGGERS):
            return
        try:
            line = self.format(record)
            self._file.write(f"{COLLECTOR.current_test}\t{line}\n")
            self._file.flush()
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self._file.close()
        super().close()


class _AsConfigured(logging.Filter):
    """For pytest's handlers (caplog, the report sections): only what the configured levels let through, so
    tests see exactly what they saw without the tap."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.getLogger(record.name).getEffectiveLevel()


_is_enabled_for: Callable[[logging.Logger, int], bool] = logging.Logger.isEnabledFor


def _enabled_for_the_tap(logger: logging.Logger, level: int) -> bool:
    """Logger.isEnabledFor, but INFO and up is on wherever the level comes from the root logger (WARNING in
    tests, INFO in production): the records reach the tap; ``_AsConfigured`` keeps them from pytest."""
    if _is_enabled_for(logger, level):
        return True
    if level < TAP_LEVEL or logger.disabled or logger.manager.disable >= level:
        return False
    node: logging.Logger | None = logger
    while node is not None and node is not logging.root:
        if node.level:
            return False  # the level is the logger's own (say botocore at WARNING): respected
        node = node.parent
    logger._cache[level] = True  # type: ignore[attr-defined]  # cleared with the rest on any setLevel
    return True


def _use_is_enabled_for(method: Callable[[logging.Logger, int], bool]) -> None:
    setattr(logging.Logger, "isEnabledFor", method)  # noqa: B010 - mypy refuses assigning to a method
    logging.root.setLevel(logging.root.level)  # clears every logger's isEnabledFor cache


_PYTEST_HANDLERS = ("caplog_handler", "report_handler", "log_file_handler", "log_cli_handler")


@dataclass
class _Tapping:
    basetemp: Path
    tap: LogTap
    pytest_handlers: list[logging.Handler]

    def attach(self) -> None:
        """Again at every watched test: a test that configures logging replaces the root's handlers."""
        if logging.Logger.isEnabledFor is not _enabled_for_the_tap:
            _use_is_enabled_for(_enabled_for_the_tap)
        if self.tap not in logging.root.handlers:
            logging.root.addHandler(self.tap)

    def detach(self) -> None:
        """For a test the scan does not watch: its logging is exactly as without the scan."""
        if logging.Logger.isEnabledFor is not _is_enabled_for:
            _use_is_enabled_for(_is_enabled_for)
        logging.root.removeHandler(self.tap)

    def stop(self) -> None:
        _use_is_enabled_for(_is_enabled_for)
        logging.root.removeHandler(self.tap)
        self.tap.close()
        for handler in self.pytest_handlers:
            for installed in [f for f in handler.filters if isinstance(f, _AsConfigured)]:
                handler.removeFilter(installed)


_TAPPING: _Tapping | None = None


def start_session(config: pytest.Config) -> None:
    """Tap the in-process log into this run's basetemp, from now to ``finish_session``."""
    global _TAPPING  # noqa: PLW0603 - one scan per pytest session
    factory = getattr(config, "_tmp_path_factory", None)
    assert isinstance(factory, pytest.TempPathFactory), "the leak scan needs pytest's tmp_path plugin"
    basetemp = factory.getbasetemp()
    (basetemp / "leak-scan").mkdir(exist_ok=True)
    plugin = config.pluginmanager.get_plugin("logging-plugin")
    handlers = [getattr(plugin, name, None) for name in _PYTEST_HANDLERS]
    tapping = _Tapping(
        basetemp,
        LogTap(basetemp / "leak-scan" / TAP_FILE),
        [handler for handler in handlers if isinstance(handler, logging.Handler)],
    )
    for handler in tapping.pytest_handlers:
        handler.addFilter(_AsConfigured())
    tapping.attach()
    _TAPPING = tapping


def tap_path() -> Path | None:
    """Where the in-process log is being written (None outside a tapped pytest session)."""
    return _TAPPING.tap.path if _TAPPING is not None else None


def on_test_start(nodeid: str, *, watched: bool = True) -> None:
    """A test begins; only a watched one (a test with real dependencies) reaches the tap."""
    COLLECTOR.current_test = nodeid
    if _TAPPING is not None:
        if watched:
            _TAPPING.attach()
        else:
            _TAPPING.detach()


def on_test_end() -> None:
    COLLECTOR.current_test = "(between tests)"


def in_process_log(path: Path) -> Haystack:
    tests, lines = [], []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        test, _, text = line.partition("\t")
        tests.append(test)
        lines.append(text)
    return Haystack("log", "file", "the in-process log", lines, tests)


def _ours(basetemp: Path) -> Iterator[Path]:
    """Every file under the basetemp but the emulators' and the scan's own; not following pytest's
    ``<name>current`` symlinks (to a directory already scanned)."""
    for child in sorted(basetemp.iterdir()):
        if child.is_symlink() or child.name == "leak-scan" or EMULATOR_DIRS.match(child.name):
            continue
        if child.is_dir():
            yield from (p for p in sorted(child.rglob("*")) if p.is_file() and not p.is_symlink())
        elif child.is_file():
            yield child


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            return file.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def basetemp_haystacks(basetemp: Path) -> tuple[list[Haystack], list[str]]:
    """The log files and SQLite databases under the basetemp; and those that could not be read."""
    found: list[Haystack] = []
    unreadable: list[str] = []
    for path in _ours(basetemp):
        where = str(path.relative_to(basetemp))
        if path.suffix == ".log":
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            found.append(Haystack("log", "file", where, lines))
        elif _is_sqlite(path):
            try:
                found.append(Haystack("row", "sqlite", where, sqlite_rows(path)))
            except sqlite3.Error as error:
                unreadable.append(f"{where} ({error})")
    return found, unreadable


def postgres_haystacks(url: str) -> list[Haystack]:
    connection = psycopg2.connect(url, connect_timeout=5)
    try:
        return [
            Haystack(
                "row", "schema", f"Postgres schema {schema} at the end", postgres_rows(connection, schema)
            )
            for schema in postgres_schemas(connection)
        ]
    finally:
        connection.close()


@dataclass(frozen=True)
class Report:
    findings: list[Finding]
    summary: str

    def lines(self, limit: int = 200) -> list[str]:
        shown = [f"  {finding}" for finding in self.findings[:limit]]
        if len(self.findings) > limit:
            shown.append(f"  … and {len(self.findings) - limit} more")
        return [self.summary, *shown]


def summarize(haystacks: Sequence[Haystack], findings: Sequence[Finding], notes: Sequence[str]) -> str:
    def items(kind: Kind) -> str:
        return f"{sum(len(h.items) for h in haystacks if h.kind == kind):,}"

    def sources(source: Source) -> str:
        return f"{sum(1 for h in haystacks if h.source == source):,}"

    seen = (
        f"{items('log')} log lines in {sources('file')} files and {sources('output')} captured outputs,"
        f" {items('row')} rows in {sources('sqlite')} SQLite databases and {sources('schema')} Postgres"
        f" schemas, {items('redis')} Redis values in {sources('snapshot')} snapshots"
    )
    verdict = (
        f"{len(findings)} leak(s) found:"
        if findings
        else "no signed URL, bearer token, fal key or bucket name"
    )
    extra = f" ({'; '.join(notes)})" if notes else ""
    return f"leak scan after the tests with real dependencies: {seen} — {verdict}{extra}"


def finish_session(postgres_url: str) -> Report | None:
    """Stop tapping, then scan every haystack of this run (None if ``start_session`` was not called)."""
    global _TAPPING
    tapping, _TAPPING = _TAPPING, None
    if tapping is None:
        return None
    tapping.stop()
    on_disk, unreadable = basetemp_haystacks(tapping.basetemp)
    haystacks = [in_process_log(tapping.tap.path), *COLLECTOR.haystacks, *on_disk]
    notes = [f"not readable: {', '.join(unreadable)}"] if unreadable else []
    try:
        haystacks += postgres_haystacks(postgres_url)
    except psycopg2.OperationalError as error:
        notes.append(f"Postgres not scanned: {str(error).strip().splitlines()[0]}")
    needles = COLLECTOR.needles()
    findings = scan(haystacks, needles)
    return Report(findings, summarize(haystacks, findings, [masked(note, needles) for note in notes]))
