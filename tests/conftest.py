"""Real counterparts for integration and e2e tests, started on loopback when they are not running.

Nothing is skipped for want of a service: a missing one fails the run with a message saying why.

After a run that includes tests with real dependencies (integration, e2e, faults), the leak scan
(tests/leaks.py) looks for signed URLs, bearer tokens, fal keys and bucket names in every log line, database
row and Redis value those tests left; any finding fails the run. The unit tier (fakes, no I/O: see
tests/unit/conftest.py) is not watched, and a run of the unit tier alone starts no scan at all.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.dev_issuer import DevJwtIssuer
from devtools.local_stack import EMULATOR_CREDENTIALS, redis_answers, start_ministack, start_redis
from tests import leaks
from tests.builders.databases import POSTGRES_URL
from tests.builders.stack import provisioned_buckets

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
LEAK_REPORT = pytest.StashKey[leaks.Report]()


UNIT_TIER = Path(__file__).parent / "unit"
UNWATCHED: set[str] = set()  # the node ids of this run's unit tests


def pytest_collection_finish(session: pytest.Session) -> None:
    UNWATCHED.update(item.nodeid for item in session.items if UNIT_TIER in item.path.parents)
    if not session.config.option.collectonly and len(UNWATCHED) < len(session.items):
        leaks.start_session(session.config)


def pytest_runtest_logstart(nodeid: str) -> None:
    leaks.on_test_start(nodeid, watched=nodeid not in UNWATCHED)


def pytest_runtest_logfinish() -> None:
    leaks.on_test_end()


@pytest.hookimpl(trylast=True)  # after the session fixtures' teardown: workers stopped, logs complete
def pytest_sessionfinish(session: pytest.Session) -> None:
    report = leaks.finish_session(POSTGRES_URL)
    if report is None:
        return
    session.config.stash[LEAK_REPORT] = report
    if report.findings:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    report = config.stash.get(LEAK_REPORT, None)
    if report is not None:
        for line in report.lines():
            terminalreporter.write_line(line, red=bool(report.findings), green=not report.findings)


@pytest.fixture(scope="session")
def ministack_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An enforcing S3 emulator (SigV4, expiry, signed headers, checksums) on a free port."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in EMULATOR_CREDENTIALS.items():
            patch.setenv(name, value)
        patch.delenv("AWS_SESSION_TOKEN", raising=False)
        patch.delenv("AWS_PROFILE", raising=False)
        server = start_ministack(log_path=tmp_path_factory.mktemp("ministack") / "ministack.log")
        try:
            yield server.url
        finally:
            server.stop()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if redis_answers(TEST_REDIS_URL):
        yield TEST_REDIS_URL
        leaks.keep_redis(TEST_REDIS_URL, "at the end of the session", in_test=False)
        return
    with start_redis() as server:
        yield server.url
        leaks.keep_redis(server.url, "at the end of the session", in_test=False)


@pytest.fixture(scope="session")
def dev_issuer() -> Iterator[DevJwtIssuer]:
    with DevJwtIssuer() as issuer:
        yield issuer


@pytest.fixture
def auth(dev_issuer: DevJwtIssuer) -> dict[str, str]:
    """The headers of a new user, with a bearer token from the dev issuer."""
    return {"Authorization": f"Bearer {dev_issuer.mint(f'user{secrets.token_hex(6)}')}"}


@pytest.fixture
def buckets(ministack_url: str) -> tuple[str, str]:
    """A fresh, provisioned (private, encrypted) uploads/processed pair per test."""
    return provisioned_buckets(ministack_url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tryon.db'}"
