"""`tryon`: the console script behind the Procfile's worker and release processes, and operators' tools."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from entrypoints.settings import Settings, SettingsError


def _migrate(settings: Settings, _: argparse.Namespace) -> int:
    from entrypoints.bootstrap import schema_migrator

    applied = schema_migrator(settings)()
    print(
        f"migrations applied: {len(applied)}" + (f" ({', '.join(applied)})" if applied else " (up to date)")
    )
    return 0


def _provision(settings: Settings, _: argparse.Namespace) -> int:
    from domain.errors import StorageUnavailable
    from entrypoints.bootstrap import bucket_plans

    for plan in bucket_plans(settings):
        try:
            report = plan.ensure()
        except StorageUnavailable as error:
            cause = error.__cause__
            code = getattr(cause, "response", {}).get("Error", {}).get("Code") or type(cause).__name__
            print(f"tryon: {plan.role} bucket: {error}: {code}", file=sys.stderr)
            return 1
        except ValueError as error:
            print(f"tryon: configuration refused: {error}", file=sys.stderr)
            return 2
        print(f"{plan.role} bucket: {report.summary()}")
    return 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from entrypoints.worker import run_worker

    try:
        return run_worker(settings, burst=args.burst)
    except SettingsError as error:
        print(f"tryon: configuration refused: {error}", file=sys.stderr)
        return 2


def _verifier(settings: Settings, args: argparse.Namespace) -> int:
    from entrypoints.verifier import run_verifier

    return run_verifier(settings, burst=args.burst)


def _sweep(settings: Settings, _: argparse.Namespace) -> int:
    from entrypoints.bootstrap import bootstrap

    services = bootstrap(settings)
    try:
        started = time.perf_counter()
        summary = services.sweeper.sweep().summary()
        print(f"sweep: {summary} in {(time.perf_counter() - started) * 1000:.0f} ms")
    finally:
        services.end_request()
    return 0


def _audit_export(settings: Settings, args: argparse.Namespace) -> int:
    from entrypoints.audit_export import ExportError, export_audit
    from entrypoints.bootstrap import audit_trail

    started = time.perf_counter()
    try:
        printed = export_audit(
            audit_trail(settings), sys.stdout, since=args.since, user=args.user, until=args.until
        )
    except ExportError as error:
        print(f"tryon: {error}", file=sys.stderr)
        return 2
    elapsed_ms = (time.perf_counter() - started) * 1000
    print(f"audit export: {printed} event(s) in {elapsed_ms:.0f} ms", file=sys.stderr)  # stdout is the data
    return 0


def _audit_prune(settings: Settings, _: argparse.Namespace) -> int:
    from domain.audit_retention import summary
    from domain.errors import DomainError
    from entrypoints.bootstrap import audit_pruner

    def progress(removed: int) -> None:
        print(f"audit prune: {removed} event(s) deleted so far", file=sys.stderr, flush=True)

    try:
        report = audit_pruner(settings)(progress)
    except DomainError as error:  # the database is unavailable, or the SQLite trigger is missing
        print(f"tryon: {error}", file=sys.stderr)
        return 1
    print(f"audit prune: {summary(report)} (older than {settings.audit_retention_days} days)")
    return 0


def _demo(_: Settings | None, args: argparse.Namespace) -> int:
    # The one production import of devtools/ (declared in setup.cfg's production-without-devtools contract):
    # the walk-through lives with the stand-ins, which a production wheel does not ship.
    try:
        from devtools.demo import run_demo
    except ModuleNotFoundError as error:
        if error.name not in ("devtools", "devtools.demo"):
            raise
        print(
            "tryon: the demo needs devtools/, which ships only in the source checkout: "
            "run `make demo` from the repository",
            file=sys.stderr,
        )
        return 2
    return run_demo()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tryon", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="create or upgrade the schema (idempotent)").set_defaults(
        run=_migrate
    )
    commands.add_parser("provision", help="create and harden both buckets (idempotent)").set_defaults(
        run=_provision
    )
    worker = commands.add_parser("worker", help="run an RQ worker with its scheduler")
    worker.add_argument("--burst", action="store_true", help="exit once the queues are empty")
    worker.set_defaults(run=_worker)
    verifier = commands.add_parser(
        "verifier", help="run an RQ worker on the verify queue (loads the face model)"
    )
    verifier.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    verifier.set_defaults(run=_verifier)
    commands.add_parser("sweep", help="one retention and cleanup pass; prints counts").set_defaults(
        run=_sweep
    )
    audit = commands.add_parser("audit", help="the audit trail")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    export = audit_commands.add_parser("export", help="print events as JSON lines, in the order appended")
    export.add_argument("--since", help="only events at or after this ISO 8601 time")
    export.add_argument("--until", help="only events before this ISO 8601 time")
    export.add_argument("--user", help="only events whose actor is this user id")
    export.set_defaults(run=_audit_export)
    audit_commands.add_parser(
        "prune",
        help="remove events older than AUDIT_RETENTION_DAYS: on Postgres whole monthly partitions (what the"
        " sweep does); on SQLite the rows, in batches, each lifting the append-only trigger only inside its"
        " own transaction; prints what it removed",
    ).set_defaults(run=_audit_prune)
    commands.add_parser("demo", help="run the end-to-end walk-through on loopback").set_defaults(
        run=_demo, needs_settings=False
    )
    return parser


WEB_ONLY_ENVIRONMENT = ("PROMETHEUS_MULTIPROC_DIR",)
"""gunicorn.conf.py sets it for the web's processes. Inherited by one of these commands (a config var set for
every process type), it would make prometheus_client keep this process's values in files there: a crash if
the directory is missing, and counts reported twice if the web sums the same directory."""


def main(argv: Sequence[str] | None = None) -> int:
    for name in WEB_ONLY_ENVIRONMENT:  # before anything imports prometheus_client
        os.environ.pop(name, None)
    args = build_parser().parse_args(argv)
    settings = None
    if getattr(args, "needs_settings", True):
        try:
            settings = Settings.from_env()
        except SettingsError as error:
            print(f"tryon: configuration refused: {error}", file=sys.stderr)
            return 2
    return int(args.run(settings, args))


if __name__ == "__main__":
    sys.exit(main())
