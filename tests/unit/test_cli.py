"""The `tryon` console script's own decisions (the commands' work is tested where it is built)."""

from __future__ import annotations

import sys

import pytest

from entrypoints import cli


def test_demo_without_devtools_says_so_and_exits_2(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    # A production wheel ships no devtools/: importing it fails as it would there.
    monkeypatch.setitem(sys.modules, "devtools.demo", None)

    assert cli.main(["demo"]) == 2

    assert "the demo needs devtools/" in capsys.readouterr().err
