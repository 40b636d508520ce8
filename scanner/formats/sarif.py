"""Findings as SARIF 2.1.0, each result at the inventory entry of its subject (for code scanning)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scanner.formats.locate import EntryLocation, locate

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
# SARIF levels: error, warning, note. GitHub code scanning also reads `security-severity`.
LEVELS = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0", "info": "0.0"}


def _uri(file: str, root: Path) -> tuple[str, str | None]:
    """A URI relative to the working folder (%SRCROOT%) when the file is inside it, else absolute."""
    path = Path(file).resolve()
    try:
        return path.relative_to(root).as_posix(), "%SRCROOT%"
    except ValueError:
        return path.as_uri(), None


def findings_sarif(findings: Sequence[dict[str, Any]], locations: Mapping[str, EntryLocation],
                   rule_help: Mapping[str, str], tool_version: str, root: str | None = None) -> dict[str, Any]:
    """One run of the `ctxscan` driver: a rule per finding kind, a result per finding.

    A finding whose subject is declared in the inventory points at that entry (file, line,
    column); one whose subject is only discovered (an undeclared table) points at the entry of
    its source or workflow; `partialFingerprints` carries the finding's fingerprint so code
    scanning tracks it across runs.
    """
    base = Path(root or os.getcwd()).resolve()
    kinds = sorted({f["kind"] for f in findings})
    rules = [{"id": kind, "name": kind, "shortDescription": {"text": rule_help.get(kind, kind)},
              "fullDescription": {"text": rule_help.get(kind, kind)},
              "properties": {"tags": ["ctxscan", "data-context"]}}
             for kind in kinds]
    index = {kind: i for i, kind in enumerate(kinds)}
    results = []
    for finding in findings:
        at = locate(finding, locations)
        location: dict[str, Any] = {}
        if at is not None:
            uri, base_id = _uri(at.file, base)
            artifact: dict[str, Any] = {"uri": uri}
            if base_id:
                artifact["uriBaseId"] = base_id
            physical: dict[str, Any] = {"artifactLocation": artifact}
            if at.line:
                region: dict[str, Any] = {"startLine": at.line}
                if at.column:
                    region["startColumn"] = at.column
                physical["region"] = region
            location = {"physicalLocation": physical,
                        "logicalLocations": [{"name": finding["subject"], "kind": "resource",
                                              "fullyQualifiedName": at.entry or finding["subject"]}]}
        else:
            location = {"logicalLocations": [{"name": finding["subject"], "kind": "resource"}]}
        text = finding["message"] + (f" Fix: {finding['remediation']}" if finding.get("remediation") else "")
        result: dict[str, Any] = {
            "ruleId": finding["kind"],
            "ruleIndex": index[finding["kind"]],
            "level": LEVELS.get(finding["severity"], "warning"),
            "message": {"text": text},
            "locations": [location],
            "partialFingerprints": {"ctxscanFingerprint/v1": finding["fingerprint"]},
            "properties": {"severity": finding["severity"], "security-severity":
                           SECURITY_SEVERITY.get(finding["severity"], "5.0"),
                           "status": finding["status"], "subkind": finding.get("subkind"),
                           "subject": finding["subject"], "first_seen": finding.get("first_seen"),
                           "last_seen": finding.get("last_seen")},
        }
        if finding["status"] != "open":
            # Accepted in the inventory, or resolved: suppressed rather than dropped, so the
            # reviewer sees why it no longer counts.
            justification = (finding.get("accepted") or {}).get("reason") or finding["status"]
            result["suppressions"] = [{"kind": "external", "justification": justification}]
        results.append(result)
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "ctxscan", "version": tool_version, "semanticVersion": tool_version, "rules": rules}},
            "originalUriBaseIds": {"%SRCROOT%": {"uri": base.as_uri() + "/"}},
            "results": results,
        }],
    }
