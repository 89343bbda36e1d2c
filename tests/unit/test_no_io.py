"""The unit tier's guard (tests/unit/conftest.py) is on: each kind of I/O fails the test that tries it."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable

import psycopg2
import pytest
import redis
import requests


def raw_connect() -> None:
    with socket.socket() as sock:
        sock.connect(("127.0.0.1", 6379))


def listen() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))


ATTEMPTS: dict[str, Callable[[], object]] = {
    "a Redis ping": lambda: redis.Redis(host="127.0.0.1", port=6379, socket_timeout=1).ping(),
    "a raw socket": raw_connect,
    "an HTTP request": lambda: requests.get("http://127.0.0.1:9/", timeout=1),
    "a name lookup": lambda: socket.getaddrinfo("example.com", 443),
    "a listening socket": listen,
    "a subprocess": lambda: subprocess.run([sys.executable, "-c", "pass"], check=False, timeout=5),
    "a shell command": lambda: os.system("true"),
    "Postgres": lambda: psycopg2.connect("postgresql://postgres@127.0.0.1:5432/test", connect_timeout=1),
    "SQLite": lambda: sqlite3.connect(":memory:"),
}


@pytest.mark.parametrize("attempt", ATTEMPTS.values(), ids=ATTEMPTS.keys())
def test_a_unit_test_that_tries_io_fails(attempt):
    with pytest.raises(AssertionError, match="a unit test must not"):
        attempt()
