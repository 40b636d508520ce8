"""Findings as OCSF Detection Finding events (class 2004, OCSF 1.5.0), the shape Prowler emits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

OCSF_VERSION = "1.5.0"
CLASS_UID = 2004            # Findings / Detection Finding
CATEGORY_UID = 2            # Findings
ACTIVITY_CREATE, ACTIVITY_CLOSE = 1, 3
SEVERITY_IDS = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
SEVERITY_NAMES = {1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
# status_id: 1 New, 3 Suppressed (accepted in the inventory), 4 Resolved.
STATUS_IDS = {"open": 1, "accepted": 3, "resolved": 4}
STATUS_NAMES = {1: "New", 3: "Suppressed", 4: "Resolved"}


def _millis(value: str | None) -> int | None:
    if not value:
        return None
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


def _resources(finding: dict[str, Any]) -> list[dict[str, Any]]:
    resources = []
    if finding.get("asset"):
        resources.append({"uid": finding["asset"], "name": finding["asset"], "type": "asset",
                          "namespace": finding.get("source")})
    elif finding.get("source"):
        resources.append({"uid": finding["source"], "name": finding["source"], "type": "source"})
    if finding.get("workflow"):
        resources.append({"uid": finding["workflow"], "name": finding["workflow"], "type": "workflow"})
    if finding.get("principal"):
        resources.append({"uid": finding["principal"], "name": finding["principal"], "type": "principal",
                          "namespace": finding.get("source")})
    return resources


def finding_ocsf(finding: dict[str, Any], product_version: str) -> dict[str, Any]:
    """One finding as one Detection Finding event."""
    status_id = STATUS_IDS.get(finding["status"], 1)
    activity_id = ACTIVITY_CLOSE if finding["status"] == "resolved" else ACTIVITY_CREATE
    severity_id = SEVERITY_IDS.get(finding["severity"], 0)
    kind = finding["kind"] + (f"/{finding['subkind']}" if finding.get("subkind") else "")
    event: dict[str, Any] = {
        "message": finding["message"],
        "metadata": {
            "version": OCSF_VERSION,
            "product": {"name": "ctxscan", "vendor_name": "ctxscan", "version": product_version},
            "event_code": kind,
            "uid": finding["fingerprint"],
        },
        "severity_id": severity_id,
        "severity": SEVERITY_NAMES.get(severity_id, "Unknown"),
        "status_id": status_id,
        "status": STATUS_NAMES[status_id],
        "activity_id": activity_id,
        "activity_name": "Close" if activity_id == ACTIVITY_CLOSE else "Create",
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "class_uid": CLASS_UID,
        "class_name": "Detection Finding",
        "type_uid": CLASS_UID * 100 + activity_id,
        "type_name": f"Detection Finding: {'Close' if activity_id == ACTIVITY_CLOSE else 'Create'}",
        "time": _millis(finding.get("last_seen")),
        "time_dt": finding.get("last_seen"),
        "finding_info": {
            "uid": finding["fingerprint"],
            "title": f"{kind}: {finding['subject']}",
            "desc": finding["message"],
            "types": [kind],
            "first_seen_time": _millis(finding.get("first_seen")),
            "first_seen_time_dt": finding.get("first_seen"),
            "last_seen_time": _millis(finding.get("last_seen")),
            "last_seen_time_dt": finding.get("last_seen"),
        },
        "resources": _resources(finding),
        "unmapped": {"evidence": finding.get("evidence") or {}, "times_opened": finding.get("times_opened"),
                     "resolved_at": finding.get("resolved_at"), "accepted": finding.get("accepted")},
    }
    if finding.get("remediation"):
        event["remediation"] = {"desc": finding["remediation"]}
    if finding.get("resolved_at"):
        event["end_time"] = _millis(finding["resolved_at"])
    return event


def findings_ocsf(findings: Sequence[dict[str, Any]], product_version: str) -> list[dict[str, Any]]:
    """Every finding as a Detection Finding event: a JSON array, as Prowler writes its OCSF output."""
    return [finding_ocsf(finding, product_version) for finding in findings]
