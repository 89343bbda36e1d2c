"""bench.scale's own logic: the two databases take turns fairly, warm-up rounds are not reported, and each
target is judged the way the issue words it (an absolute bound for /metrics, a ratio for the rest)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from bench.scale import EMPTY, SEEDED, TARGETS, BenchFailed, Side, own_ms, table, turn_about


def _side(label: str) -> Side:
    return Side(label, stack=cast(Any, None), session=cast(Any, None))


def test_turn_about_alternates_who_goes_first_and_drops_the_warm_up() -> None:
    calls: list[tuple[str, int]] = []

    def call(side: Side, index: int) -> float:
        calls.append((side.label, index))
        return float(index * 10 + (1 if side.label == SEEDED else 0))

    samples = turn_about([_side(EMPTY), _side(SEEDED)], count=3, warmup=1, call=call)

    assert calls == [
        (EMPTY, 0),
        (SEEDED, 0),
        (SEEDED, 1),
        (EMPTY, 1),
        (EMPTY, 2),
        (SEEDED, 2),
        (SEEDED, 3),
        (EMPTY, 3),
    ]
    assert samples == {EMPTY: [10.0, 20.0, 30.0], SEEDED: [11.0, 21.0, 31.0]}


def _figures(metrics_seeded: float, sweep_seeded: float) -> dict[str, dict[str, float]]:
    figures = {target.row: {EMPTY: 10.0, SEEDED: 10.0} for target in TARGETS}
    figures["/metrics scrape p50"] = {EMPTY: 1.0, SEEDED: metrics_seeded}
    figures["sweep, nothing to delete"] = {EMPTY: 500.0, SEEDED: sweep_seeded}
    return figures


def _verdicts(printed: str) -> dict[str, str]:
    rows = printed.splitlines()[2:]
    return {target.row: row.split()[-1] for target, row in zip(TARGETS, rows, strict=True)}


def test_metrics_is_judged_on_its_own_milliseconds_and_the_sweep_on_its_ratio() -> None:
    # /metrics 40x slower but under 50 ms passes; a sweep at exactly 2x passes, just over it fails.
    met = _verdicts(table(_figures(metrics_seeded=40.0, sweep_seeded=1000.0)))
    missed = _verdicts(table(_figures(metrics_seeded=50.5, sweep_seeded=1001.0)))

    assert met["/metrics scrape p50"] == "PASS"
    assert met["sweep, nothing to delete"] == "PASS"
    assert missed["/metrics scrape p50"] == "FAIL"
    assert missed["sweep, nothing to delete"] == "FAIL"
    assert missed["issuance p50"] == "PASS"


def test_a_commands_own_time_is_read_from_the_end_of_its_line() -> None:
    assert own_ms("sweep: purged 0 upload(s)' objects, ...; created 0 in 37 ms\n") == 37.0
    assert own_ms("audit export: 200 event(s) in 12 ms\n") == 12.0
    with pytest.raises(BenchFailed, match="printed no time"):
        own_ms("sweep: purged 0 upload(s)' objects")
