"""Plain-text tables and colours for human output; JSON goes through `dump_json`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import click

from scanner.redact import human, printable, scrub

SEVERITY_COLOURS = {"critical": "red", "high": "red", "medium": "yellow", "low": "cyan", "info": "white"}


def human_line(text: str) -> str:
    """A message for a person, safe for the terminal: every character a name could bring
    (newline, escape, bell, U+202E) is escaped and known secrets are removed; only the blank
    lines the message itself starts or ends with are kept. Tables escape cell by cell."""
    core = text.strip("\n")
    if not core:
        return text
    start = text.index(core)
    return text[:start] + human(core) + text[start + len(core):]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], max_width: int = 60,
          colours: Mapping[int, Mapping[str, str]] | None = None) -> str:
    """A left-aligned text table: whole when stdout is not a terminal (or with `--wide`); on a
    terminal, columns are cut at `max_width` and the last one wraps to the terminal's width.
    `colours` maps a column to {cell value: colour} (severity), shown only on a terminal."""
    from scanner.formats.table import layout, terminal_width

    def cell(value: Any) -> str:
        # Escaped (and secrets scrubbed) first, so the width measured is the width shown and
        # no cut or wrap can split a secret past the scrubbing.
        return printable(scrub("-" if value is None else str(value)))

    def style(column: int, raw: str, padded: str) -> str:
        colour = (colours or {}).get(column, {}).get(raw)
        return click.style(padded, fg=colour) if colour else padded

    body = [[cell(v) for v in row] for row in rows]
    return layout(headers, body, max_width, terminal_width(), style if colours else None)


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dump_json(value: Any) -> str:
    """Stable, indented JSON for scripts."""
    return scrub(json.dumps(value, indent=2, sort_keys=False, default=_default, ensure_ascii=False),
                 json_escaped=True)
