"""What the command lines of ``bench.issuance``, ``bench.verification`` and ``bench.tryons`` share.

Numeric flags whose defaults come from the environment (a flag given on the command line still wins),
``--database-url``, ``kill`` (SIGTERM) stopping a run like Ctrl-C, and the exit codes: 1 when the run
failed, 130 when it was interrupted (everything started has been stopped by then).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import fields
from types import FrameType
from typing import TYPE_CHECKING, TypeVar

from bench.stack import progress

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Options = TypeVar("Options", bound="DataclassInstance")

Flag = tuple[str, str, float, str]
"""``(--flag, $ENV, default, help)``: a number, read as a float."""

FAILED = 1
INTERRUPTED = 130


def env_number(name: str, default: float) -> float:
    """A numeric default from the environment (a flag given on the command line still wins)."""
    raw = os.environ.get(name, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from None


def options_parser(module: str, doc: str, flags: Sequence[Flag]) -> argparse.ArgumentParser:
    """``python -m <module>``, described by the first line of ``doc``: ``flags``, then ``--database-url``."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.split("\n", maxsplit=1)[0])
    for flag, env, default, text in flags:
        parser.add_argument(flag, type=float, default=env_number(env, default), help=f"{text} (${env})")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL") or None,
        help="DATABASE_URL for the service; default a fresh Postgres database, else SQLite",
    )
    return parser


def options_from(args: argparse.Namespace, options: type[Options]) -> Options:
    """The ``options`` dataclass, each field the parsed flag of its name; a field declared ``int`` takes the
    whole part of its flag (the numeric flags are read as floats)."""
    values = {}
    for field in fields(options):
        value = getattr(args, field.name)
        values[field.name] = int(value) if field.type in ("int", int) else value
    return options(**values)


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def stop_on_sigterm() -> None:
    """``kill`` stops what was started, like Ctrl-C: SIGTERM raises KeyboardInterrupt."""
    signal.signal(signal.SIGTERM, _interrupt)


def failed(error: Exception, where: str = "") -> int:
    """Say why the run stopped; the exit code of a failed run."""
    progress(f"FAILED{where}: {type(error).__name__}: {error}")
    return FAILED


def exit_code(problems: Sequence[str]) -> int:
    """Print each problem that makes the run's figures not worth reading; 1 if there was any, else 0."""
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    return FAILED if problems else 0


def interrupted() -> int:
    """Say so; the exit code of an interrupted run."""
    print("\n[bench] interrupted; everything started has been stopped", file=sys.stderr)
    return INTERRUPTED
