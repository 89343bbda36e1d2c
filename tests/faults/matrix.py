"""The fault matrix: one row per fault a test injected and survived, printed at the end of the run."""

from __future__ import annotations

from dataclasses import dataclass, fields

HEADERS = {
    "dependency": "dependency",
    "fault": "fault, while",
    "api": "what the API answered",
    "outcome": "try-on / data once it is back",
    "sweep": "after `tryon sweep`",
}


@dataclass(frozen=True)
class Row:
    dependency: str
    fault: str
    api: str
    outcome: str
    sweep: str = "nothing orphaned"


ROWS: list[Row] = []


def record(row: Row) -> None:
    ROWS.append(row)


def render(rows: list[Row]) -> list[str]:
    names = [f.name for f in fields(Row)]
    cells = [[HEADERS[name] for name in names], *[[getattr(row, name) for name in names] for row in rows]]
    widths = [max(len(line[i]) for line in cells) for i in range(len(names))]

    def line(values: list[str]) -> str:
        return (
            "| " + " | ".join(value.ljust(width) for value, width in zip(values, widths, strict=True)) + " |"
        )

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return [line(cells[0]), rule, *(line(values) for values in cells[1:])]
