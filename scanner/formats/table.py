"""Human tables sized to where they go: whole on a pipe or a file, fitted and wrapped on a terminal."""

from __future__ import annotations

import shutil
import sys
import textwrap
from collections.abc import Callable, Sequence

MIN_LAST = 24          # narrowest the wrapped last column gets before the table just overflows
WIDE = {"on": False}   # `--wide`: never fit to the terminal (set once by the CLI)


def terminal_width() -> int | None:
    """The width to fit to: the terminal's (COLUMNS wins, as shells set it), or None when
    stdout is not a terminal (a pipe, a file) or `--wide` was given: then nothing is cut."""
    if WIDE["on"] or not sys.stdout.isatty():
        return None
    return shutil.get_terminal_size((80, 24)).columns


def layout(headers: Sequence[str], body: Sequence[Sequence[str]], max_width: int | None = 60,
           width: int | None = None, style: Callable[[int, str, str], str] | None = None) -> str:
    """Left-aligned columns of already-escaped cells.

    With `width` (a terminal): every column but the last is cut at `max_width` with an
    ellipsis, and the last column wraps into what is left of the line. Without it: nothing
    is cut or wrapped. `style(column, raw, padded)` may colour a padded cell (after widths
    are measured, so escape codes never count as width).
    """
    columns = len(headers)
    rows = [list(row) for row in body]
    if width is not None and max_width is not None:
        for row in rows:
            for i in range(columns - 1):
                if len(row[i]) > max_width:
                    row[i] = row[i][: max_width - 1] + "…"
    widths = [len(h) for h in headers]
    for row in rows:
        for i, value in enumerate(row[:-1] if columns > 1 else row):
            widths[i] = max(widths[i], len(value))
    if columns:
        widths[-1] = max([len(headers[-1])] + [len(row[-1]) for row in rows])
    wrap_at = None
    if width is not None and columns:
        used = sum(widths[:-1]) + 2 * (columns - 1)
        wrap_at = max(MIN_LAST, width - used)
        widths[-1] = min(widths[-1], wrap_at)

    def render(cells: Sequence[str], header: bool = False) -> list[str]:
        last = cells[-1] if cells else ""
        pieces = (textwrap.wrap(last, wrap_at, break_on_hyphens=False) or [""]) if wrap_at else [last]
        out = []
        for n, piece in enumerate(pieces):
            parts = []
            for i in range(columns - 1):
                raw = cells[i] if n == 0 else ""
                padded = raw.ljust(widths[i])
                parts.append(style(i, raw, padded) if style and raw and not header else padded)
            parts.append(style(columns - 1, piece, piece) if style and piece and not header else piece)
            out.append("  ".join(parts).rstrip())
        return out

    lines = render([h.upper() for h in headers], header=True)
    for row in rows:
        lines += render(row)
    return "\n".join(lines)
