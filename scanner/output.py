"""Plain-text tables and colours for human output; JSON goes through `dump_json`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from scanner.redact import printable

SEVERITY_COLOURS = {"critical": "red", "high": "red", "medium": "yellow", "low": "cyan", "info": "white"}


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], max_width: int = 60) -> str:
    """A left-aligned text table; long cells are cut with an ellipsis."""
    def cell(value: Any) -> str:
        text = "-" if value is None else str(value)
        text = printable(text)
        return text if len(text) <= max_width else text[: max_width - 1] + "…"

    body = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in body:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    lines = ["  ".join(h.upper().ljust(widths[i]) for i, h in enumerate(headers)).rstrip()]
    for row in body:
        lines.append("  ".join(v.ljust(widths[i]) for i, v in enumerate(row)).rstrip())
    return "\n".join(lines)


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dump_json(value: Any) -> str:
    """Stable, indented JSON for scripts."""
    return json.dumps(value, indent=2, sort_keys=False, default=_default, ensure_ascii=False)
