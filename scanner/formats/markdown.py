"""Findings and readiness cards as GitHub-flavoured Markdown tables (for PR comments, wikis)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _cell(value: Any) -> str:
    """A table cell: HTML markup and pipes escaped (a name such as `<img onerror=...>` stays
    text where Markdown renders HTML), newlines as <br>, backticks kept literal."""
    text = "" if value is None else str(value)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("\r\n", "\n").replace("\n", "<br>")
    return text


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def findings_markdown(findings: Sequence[dict[str, Any]]) -> str:
    """A heading with the counts by severity, then one table row a finding."""
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding["severity"]] = counts.get(finding["severity"], 0) + 1
    order = ("critical", "high", "medium", "low", "info")
    summary = ", ".join(f"{counts[s]} {s}" for s in order if s in counts) or "none"
    lines = [f"## ctxscan findings ({len(findings)}: {summary})", ""]
    if findings:
        rows = [[f["severity"], f["status"], f["kind"] + (f"/{f['subkind']}" if f.get("subkind") else ""),
                 f["subject"], f["message"], f.get("remediation") or "", f["fingerprint"][:12]]
                for f in findings]
        lines += _table(["severity", "status", "kind", "subject", "message", "remediation", "id"], rows)
    return "\n".join(lines) + "\n"


def readiness_markdown(cards: Sequence[dict[str, Any]]) -> str:
    """One section a workflow: its verdict, then a table of its checks."""
    lines = ["## ctxscan readiness", ""]
    for card in cards:
        verdict = "READY" if card["ready"] else "NOT READY"
        held = sum(1 for c in card["checks"] if c["ok"])
        lines += [f"### {_cell(card['workflow'])} ({card['stage']}, owner {_cell(card['owner'] or '-')}): "
                  f"{verdict}, {held}/{len(card['checks'])} checks hold", ""]
        lines += _table(["check", "", "reason"],
                        [[c["title"], "✅" if c["ok"] else "❌", c["reason"]] for c in card["checks"]])
        lines.append("")
    return "\n".join(lines)
