"""Fixtures of the fault matrix: the stack behind proxies, fresh users, and the table at the end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.mtcnn_faces import MtcnnFaceDetector
from devtools.fal_simulator import FalSimulator
from devtools.local_stack import start_redis
from tests import leaks
from tests.builders.databases import POSTGRES_URL, migrated_postgres_schema
from tests.builders.stack import Workers, on_simulator, provisioned_buckets, stack_settings
from tests.faults import matrix
from tests.faults.proxy import ChaosProxy
from tests.faults.stack import FaultStack, host_port, proxied


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if matrix.ROWS:
        terminalreporter.section(f"fault matrix: {len(matrix.ROWS)} faults injected into real dependencies")
        for line in matrix.render(matrix.ROWS):
            terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A freshly migrated schema of its own on the running Postgres, reached directly."""
    with migrated_postgres_schema("tryon_faults") as url:
        yield url


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A Redis server of its own: the suite's shared one is flushed by other tests (and other runs),
    which would drop this module's queued jobs and scheduler locks."""
    with start_redis() as server:
        yield server.url
        leaks.keep_redis(server.url, "before its server stops", in_test=False)


@pytest.fixture(scope="module")
def stack(ministack_url, redis_url, dev_issuer, postgres_url) -> Iterator[FaultStack]:
    buckets = provisioned_buckets(ministack_url)
    detector = MtcnnFaceDetector()
    detector.warm_up()
    proxies = [
        ChaosProxy(*host_port(ministack_url, 80)),
        ChaosProxy(*host_port(redis_url, 6379)),
        ChaosProxy(*host_port(POSTGRES_URL, 5432)),
    ]
    with FalSimulator() as simulator:
        direct = on_simulator(
            stack_settings(
                buckets,
                better_auth_url=dev_issuer.base_url,
                database_url=postgres_url,
                redis_url=redis_url,
                s3_endpoint_url=ministack_url,
            ),
            simulator,
        )
        world = FaultStack(
            settings=proxied(direct, *proxies),
            s3=proxies[0],
            redis=proxies[1],
            postgres=proxies[2],
            simulator=simulator,
            detector=detector,
            direct_s3_url=ministack_url,
            direct_postgres_url=postgres_url,
            direct_redis_url=redis_url,
        )
        try:
            yield world
        finally:
            world.close()


@pytest.fixture
def faults(stack: FaultStack) -> Iterator[FaultStack]:
    """The stack with every dependency up and the simulator reset; afterwards too, whatever happened."""
    stack.all_up()
    stack.simulator.reset()
    # A try-on a failed test left unsettled must not be picked up (and counted) by the next test.
    stack.rows("UPDATE tryons SET status = 'failed' WHERE status NOT IN ('succeeded', 'failed')")
    yield stack
    stack.all_up()


@pytest.fixture
def workers(faults: FaultStack, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(faults.settings, tmp_path)
    yield pool
    faults.all_up()
    pool.stop_all()
