"""The `tryon` console script's own decisions (the commands' work is tested where it is built)."""

from __future__ import annotations

import os
import sys

import pytest

from entrypoints import cli


def test_demo_without_devtools_says_so_and_exits_2(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    # A production wheel ships no devtools/: importing it fails as it would there.
    monkeypatch.setitem(sys.modules, "devtools.demo", None)

    assert cli.main(["demo"]) == 2

    assert "the demo needs devtools/" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["worker", "verifier", "sweep"])
def test_a_prometheus_directory_meant_for_the_web_is_dropped(
    monkeypatch: pytest.MonkeyPatch, capsys, command: str
) -> None:
    """Set for every process type, it would make this process keep its counters in the web's files (or crash
    on a missing directory at the first count)."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/nonexistent/web-metrics")
    monkeypatch.delenv("DATABASE_URL", raising=False)  # the command stops at its settings: no I/O

    assert cli.main([command]) == 2  # configuration refused, before any work

    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
