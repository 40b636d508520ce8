"""Findings as CSV (RFC 4180, one row a finding, a header row first)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

COLUMNS = ("fingerprint", "status", "severity", "kind", "subkind", "subject", "source", "asset",
           "workflow", "principal", "message", "remediation", "first_seen", "last_seen",
           "resolved_at", "times_opened", "accepted_reason", "accepted_until", "evidence")


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """A cell; text a spreadsheet would run as a formula (a table named `=HYPERLINK(...)`) is
    prefixed with a quote, as OWASP advises for CSV exports."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value


def findings_csv(findings: Sequence[dict[str, Any]]) -> str:
    """One row a finding; evidence as a JSON cell, accepted findings with their reason and expiry."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for finding in findings:
        accepted = finding.get("accepted") or {}
        row = {**finding, "accepted_reason": accepted.get("reason"), "accepted_until": accepted.get("expires"),
               "evidence": json.dumps(finding.get("evidence") or {}, sort_keys=True, default=str)}
        writer.writerow([_cell(row.get(c)) for c in COLUMNS])
    return out.getvalue()
