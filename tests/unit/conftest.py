"""The unit tier does no I/O: while a module here is imported or a test set up, run or torn down, opening
a network connection or a database, resolving a name, listening on a port or starting a process fails it at
once. (Reading the repository's own files, such as the IAM documents, is allowed; nothing writes.)

What needs a real counterpart (a server, a database, a subprocess) belongs in tests/integration or
tests/e2e; here every port is a fake from tests/fakes.py.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess
from collections.abc import Callable, Generator, Iterator
from typing import NoReturn

import psycopg2
import pytest


class UnitTestDidIO(AssertionError):
    """Raised instead of the I/O; an AssertionError so that no ``except OSError`` swallows it."""


def _refuse(what: str) -> Callable[..., NoReturn]:
    def refuse(*_args: object, **_kwargs: object) -> NoReturn:
        raise UnitTestDidIO(
            f"a unit test must not {what}: use a fake (tests/fakes.py), or move the test to tests/integration"
        )

    return refuse


FORBIDDEN: list[tuple[object, str, str]] = [
    (socket.socket, "connect", "open a network connection"),
    (socket.socket, "connect_ex", "open a network connection"),
    (socket.socket, "bind", "listen on a socket"),
    (socket, "create_connection", "open a network connection"),
    (socket, "getaddrinfo", "resolve a host name"),
    (subprocess.Popen, "__init__", "start a process"),
    (os, "fork", "start a process"),
    (os, "posix_spawn", "start a process"),
    (os, "posix_spawnp", "start a process"),
    (os, "system", "start a process"),
    # libpq and SQLite open their sockets and files in C, below the socket module
    (psycopg2, "connect", "open a database"),
    (sqlite3, "connect", "open a database"),
]


@contextlib.contextmanager
def _no_io() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for owner, name, what in FORBIDDEN:
            patch.setattr(owner, name, _refuse(what))
        yield


# Around the import of each module and each phase of each test, not a fixture: a module- or session-scoped
# fixture a unit test asks for is guarded too.
@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    with _no_io():
        return (yield)


@pytest.hookimpl(wrapper=True)
def _guarded_phase(item: pytest.Item) -> Generator[None, None, None]:
    with _no_io():
        return (yield)


pytest_runtest_setup = pytest_runtest_call = _guarded_phase


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    """The session's last teardown also finalises the session-scoped fixtures other tiers used (their Redis,
    their Postgres schema): those may do I/O, so the last item's teardown is not guarded."""
    if nextitem is None:
        return (yield)
    with _no_io():
        return (yield)
