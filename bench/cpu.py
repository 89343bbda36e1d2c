"""CPU time of a process (with its reaped children) and of the whole machine, read from /proc (Linux only)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from bench.memory import PROC

TICKS = os.sysconf("SC_CLK_TCK")


def process_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime: the process's CPU plus that of the children it has waited for
    (an RQ worker waits for each work horse, so every finished job is in it). NaN once it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return float("nan")
    # "pid (comm) state ppid ...": comm may hold spaces, so split after the last ")"; utime is field 14.
    fields = stat.rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / TICKS


@dataclass(frozen=True)
class MachineTicks:
    busy: int
    total: int


def machine_ticks() -> MachineTicks:
    """The first line of /proc/stat, all CPUs together: busy = everything but idle and iowait."""
    values = [int(v) for v in (PROC / "stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return MachineTicks(busy=sum(values) - idle, total=sum(values))


def busy_fraction(start: MachineTicks, end: MachineTicks) -> float:
    total = end.total - start.total
    return (end.busy - start.busy) / total if total > 0 else float("nan")
