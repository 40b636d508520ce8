"""Human tables sized to where they go: whole on a pipe or a file, fitted and wrapped on a terminal."""

from __future__ import annotations

import shutil
import sys
import textwrap
from collections.abc import Callable, Sequence

MIN_LAST = 24          # narrowest the wrapped last column gets before the table just overflows
MIN_CUT = 8            # narrowest another column is cut to, to make room for the last one
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

    With `width` (a terminal), when a line would not fit, the widest of the other columns are
    cut with an ellipsis first (never below their header), and the last column wraps into
    what is left of the line. `max_width` is kept for callers' sake; the terminal decides. Without it: nothing
    is cut or wrapped. `style(column, raw, padded)` may colour a padded cell (after widths
    are measured, so escape codes never count as width).
    """
    columns = len(headers)
    rows = [list(row) for row in body]
    widths = [max([len(headers[i])] + [len(row[i]) for row in rows]) for i in range(columns)]
    wrap_at = None
    if width is not None and columns:
        fixed = widths[:-1]
        gaps = 2 * (columns - 1)
        # Too wide for the terminal: narrow the widest of the other columns first, down to
        # their header (at least MIN_CUT), so the last column keeps room to wrap in.
        while fixed and sum(fixed) + gaps + MIN_LAST > width:
            widest = max(range(len(fixed)), key=lambda i: fixed[i])
            floor = max(MIN_CUT, len(headers[widest]))
            if fixed[widest] <= floor:
                break
            fixed[widest] = max(floor, fixed[widest] - (sum(fixed) + gaps + MIN_LAST - width))
        for row in rows:
            for i, limit in enumerate(fixed):
                if len(row[i]) > limit:
                    row[i] = row[i][: limit - 1] + "…"
        widths[:-1] = fixed
        wrap_at = max(MIN_LAST, width - sum(fixed) - gaps)
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
