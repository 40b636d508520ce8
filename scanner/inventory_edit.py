"""Text edits to an inventory file that keep its comments and layout (no YAML round trip)."""

from __future__ import annotations

import json
import re
from datetime import date

_TOP_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\s*:")
_ACCEPT = re.compile(r"^accept\s*:\s*(?P<rest>.*)$")


def accept_entry(fingerprint: str, kind: str, subject: str, until: date, reason: str, indent: str = "  ") -> str:
    """One `accept:` list item as flow YAML, preceded by a comment naming what it accepts."""
    # JSON strings are valid YAML double-quoted scalars (json escapes control characters).
    return (f"{indent}# {kind} on {json.dumps(subject)[1:-1]}\n"
            f"{indent}- {{fingerprint: {json.dumps(fingerprint)}, reason: {json.dumps(reason)}, "
            f"expires: {until.isoformat()}}}\n")


def append_accept(text: str, fingerprint: str, kind: str, subject: str, until: date, reason: str) -> str:
    """The file's text with one more `accept:` entry: at the end of its top-level `accept:` block
    (with that block's indentation), or in a new block at the end of the file."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if _ACCEPT.match(line)), None)
    if start is None:
        joined = text if text.endswith("\n") or not text else text + "\n"
        return joined + "accept:\n" + accept_entry(fingerprint, kind, subject, until, reason)
    rest = _ACCEPT.match(lines[start]).group("rest").split("#", 1)[0].strip()  # type: ignore[union-attr]
    if rest in ("[]", "", "~", "null"):
        if rest:
            lines[start] = "accept:\n"
    else:
        raise ValueError(f"line {start + 1}: `accept:` is written in flow style ({rest[:30]}); "
                         "write it as a block list (one `- {...}` a line) to let ctxscan append to it")
    end = start + 1
    indent = "  "
    last_item = start
    while end < len(lines):
        line = lines[end]
        if line.strip() and not line.startswith((" ", "\t", "-", "#")) and _TOP_KEY.match(line):
            break
        stripped = line.lstrip(" ")
        if stripped.startswith("- "):
            indent = line[: len(line) - len(stripped)]
        if line.strip() and not stripped.startswith("#"):
            last_item = end
        end += 1
    insert_at = last_item + 1
    if insert_at > 0 and not lines[insert_at - 1].endswith("\n"):
        lines[insert_at - 1] += "\n"
    lines.insert(insert_at, accept_entry(fingerprint, kind, subject, until, reason, indent))
    return "".join(lines)
