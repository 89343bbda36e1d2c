"""Resident memory of a process and of its children, read from /proc (Linux only)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class Memory:
    pid: int
    rss_kib: int
    """VmRSS: resident now."""
    hwm_kib: int
    """VmHWM: the most it has been resident."""

    @property
    def rss_mb(self) -> float:
        return self.rss_kib * 1024 / 1e6

    @property
    def hwm_mb(self) -> float:
        return self.hwm_kib * 1024 / 1e6


def memory(pid: int) -> Memory:
    fields: dict[str, int] = {}
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])  # "123456 kB"
    return Memory(pid=pid, rss_kib=fields.get("VmRSS", 0), hwm_kib=fields.get("VmHWM", 0))


def children(pid: int) -> list[int]:
    """The live child processes of ``pid``, found by scanning every ``/proc/<pid>/stat`` for its parent."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it exited while we looked
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")".
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)
