"""The README's layout section is the map a newcomer reads first: it must name every module of every room, and
nothing that is not there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROOMS = ("domain", "adapters", "entrypoints", "devtools")
NOT_LISTED = {"__init__", "__pycache__"}


def layout_block() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Layout (hexagonal)", 1)[1]
    return section.split("```", 2)[1].strip("\n").splitlines()


def listed() -> dict[str, set[str]]:
    """Top-level entries under "" and each room's entries (two-space indented, first word) under its name."""
    entries: dict[str, set[str]] = {"": set()}
    room = ""
    for line in layout_block():
        if line and not line.startswith(" "):
            room = line.split()[0].rstrip("/")
            entries[""].add(room)
            entries[room] = set()
        elif line.startswith("  ") and not line.startswith("   "):
            entries[room].add(line.split()[0])
    return entries


def on_disk(room: str) -> set[str]:
    names = set()
    for path in (ROOT / room).iterdir():
        if path.stem in NOT_LISTED:
            continue
        if path.is_dir() and (path / "__init__.py").exists():
            names.add(path.name + "/")
        elif path.suffix == ".py":
            names.add(path.stem)
    return names


def test_every_room_lists_exactly_its_modules() -> None:
    entries = listed()
    for room in ROOMS:
        assert entries[room] == on_disk(room), room


def test_the_http_package_lists_exactly_its_modules() -> None:
    block = "\n".join(layout_block())
    described = block.split("  http/", 1)[1].split("\n", 1)
    words = set(re.findall(r"[a-z_]+", described[0] + described[1].split("\ndevtools/", 1)[0]))
    modules = {p.stem for p in (ROOT / "entrypoints" / "http").glob("*.py")} - NOT_LISTED
    assert modules <= words, modules - words


def test_every_top_level_folder_is_on_the_map() -> None:
    folders = {
        p.name
        for p in ROOT.iterdir()
        if p.is_dir()
        and not p.name.startswith(".")
        and p.name not in {"var", "build", "demo-output"}
        and not p.name.endswith(".egg-info")
    }
    top = {entry.split("/")[0] for entry in listed()[""]}
    assert folders == top
    for entry in listed()[""]:
        assert (ROOT / entry).is_dir(), entry
