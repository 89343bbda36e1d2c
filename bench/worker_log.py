"""The jobs an RQ worker ran, read back from its JSON log lines (``entrypoints.logs``: each has ``ts``).

RQ logs, at INFO: ``Worker <name>: <queue>: <description> (<job id>)`` when it has dequeued a job (in the
worker, before it forks the work horse); ``Successfully completed <description> job in <h:mm:ss.f>s ...``
(the job body's own time, ``ended_at - started_at``) and ``Worker <name>: <queue>: Job OK (<job id>)``
in the work horse once the result is handled. So a step's ``seconds`` (dequeued -> Job OK) is what one
job costs the worker: fork, RQ's bookkeeping in Redis and the job itself.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_JOB_OK = re.compile(r"^Worker \S+: [\w.-]+: Job OK \((?P<job>[\w-]+)\)$")
_TAKEN = re.compile(r"^Worker \S+: (?P<queue>[\w.-]+): (?P<description>.+) \((?P<job>[\w-]+)\)$")
_PERFORMED = re.compile(r"^Successfully completed (?P<description>.+) job in (?P<taken>[\d:.]+)s on worker")
_TRYON = re.compile(r"advance_tryon\('(?P<id>[^']+)'\)")


@dataclass
class Step:
    job_id: str
    queue: str
    description: str
    taken_at: float
    """Epoch seconds (the log's ``ts``, millisecond resolution)."""
    ended_at: float | None = None
    perform_seconds: float | None = None

    @property
    def tryon_id(self) -> str | None:
        found = _TRYON.search(self.description)
        return found["id"] if found else None

    @property
    def seconds(self) -> float | None:
        return None if self.ended_at is None else self.ended_at - self.taken_at


def _duration(text: str) -> float:
    """``0:00:00.012345`` (a timedelta's str) in seconds."""
    hours, minutes, seconds = text.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def read_steps(log: Path) -> list[Step]:
    """Every job the log shows being dequeued, in order, with its end when the log has it."""
    steps: list[Step] = []
    by_job: dict[str, Step] = {}
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
            message = _ANSI.sub("", str(entry["msg"]))
            at = datetime.fromisoformat(str(entry["ts"])).timestamp()
        except (ValueError, KeyError):
            continue
        if ok := _JOB_OK.match(message):
            if (step := by_job.get(ok["job"])) is not None:
                step.ended_at = at
        elif performed := _PERFORMED.match(message):
            # One job at a time per worker: it belongs to the latest step with that description.
            for step in reversed(steps):
                if step.description == performed["description"] and step.perform_seconds is None:
                    step.perform_seconds = _duration(performed["taken"])
                    break
        elif taken := _TAKEN.match(message):
            step = Step(taken["job"], taken["queue"], taken["description"], at)
            steps.append(step)
            by_job[step.job_id] = step
    return steps
