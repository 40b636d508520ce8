"""Rule cases as data: each YAML file in cases/ is a table of cases for one finding kind.

A case declares an inventory of `fake` sources, one or more scans (each may override source
settings, e.g. a column's type in the second scan, or `_workflows` to replace the workflows
from that scan on), and what must fire (`fires`), what must
not (`quiet`), and optionally how many findings of the kind there are (`count`). Scans go
through `run_scan` with a fixed clock, so ages and SLA boundaries are exact.
"""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from scanner.inventory import load_inventory
from scanner.model import Finding
from scanner.rules import RULES, build_context, evaluate
from scanner.rules.base import severity_table
from scanner.scan import run_scan
from scanner.store import Store

CASES = Path(__file__).parent / "cases"
ROOT = Path(__file__).resolve().parents[2]
FIXED = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
# PRODUCT.md's findings table, for when the brief is not next to the repository.
PRODUCT_KINDS = {"stale", "freshness_unknown", "unowned", "over_permissioned", "schema_drift",
                 "missing_asset", "probe_failed", "orphan_source", "access_drift", "environment_mismatch",
                 "undeclared_dependency", "unobserved_read", "index_lag"}


def _load() -> list[Any]:
    params = []
    for file in sorted(CASES.glob("*.yaml")):
        doc = yaml.safe_load(file.read_text(encoding="utf-8"))
        for case in doc["cases"]:
            params.append(pytest.param(doc["kind"], case, id=f"{file.stem}: {case['name']}"))
    return params


def _inventory_for(case: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    inventory = copy.deepcopy(case["inventory"])
    inventory.setdefault("version", 1)
    for source in inventory.get("sources", []):
        source.update(overrides.get(source["id"], {}))
    if "_workflows" in overrides:  # a later scan with the workflows' declarations changed
        inventory["workflows"] = copy.deepcopy(overrides["_workflows"])
    return inventory


def scan_case(case: dict[str, Any], directory: Path) -> list[Finding]:
    """Run the case's scans with a fixed clock and evaluate every rule after the last."""
    store = Store.open(f"sqlite:///{directory / 'state.db'}")
    scans = case.get("scans") or [{}]
    try:
        for number, overrides in enumerate(scans):
            path = directory / "ctxscan.yaml"
            path.write_text(yaml.safe_dump(_inventory_for(case, overrides or {})), encoding="utf-8")
            inventory = load_inventory([path], env={})
            moment = FIXED + timedelta(hours=number)
            run_scan(inventory, store, now=lambda moment=moment: moment)
        if case.get("lineage"):
            _ingest(store, case["lineage"], moment)
        return evaluate(build_context(inventory, store, moment))
    finally:
        store.close()


def _ingest(store: Store, events: list[dict[str, Any]], now: datetime) -> None:
    """OpenLineage run events, written compactly: `{job, type, at: -2d, inputs: [{namespace,
    name}], outputs: [...]}` (`job` is `namespace/name`, or a name in namespace `test`)."""
    from scanner.durations import parse_duration
    from scanner.lineage.openlineage import ingest, parse_event

    parsed = []
    for i, event in enumerate(events):
        namespace, _, name = event["job"].rpartition("/")
        at = now - timedelta(seconds=parse_duration(str(event.get("at", "1s")).lstrip("-")))
        parsed.append(parse_event({
            "eventType": event.get("type", "COMPLETE"), "eventTime": at.isoformat(),
            "job": {"namespace": namespace or "test", "name": name},
            "run": {"runId": f"00000000-0000-4000-8000-{i:012d}"},
            "inputs": event.get("inputs", []), "outputs": event.get("outputs", []),
        }, now))
    ingest(store, parsed)


def _subset(expected: Any, actual: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and _subset(v, actual[k])
                                                for k, v in expected.items())
    return bool(expected == actual)


def matches(finding: Finding, expected: dict[str, Any]) -> bool:
    """Whether a finding has every field the expectation gives."""
    for key, value in expected.items():
        if key == "message_contains":
            texts = value if isinstance(value, list) else [value]
            if not all(text in finding.message for text in texts):
                return False
        elif key == "message_excludes":
            if value in finding.message:
                return False
        elif key == "evidence":
            if not _subset(value, dict(finding.evidence)):
                return False
        elif getattr(finding, key) != value:
            return False
    return True


def _show(findings: list[Finding]) -> str:
    return "\n".join(f"  {f.severity} {f.kind}/{f.subkind} asset={f.asset} source={f.source} "
                     f"workflow={f.workflow} principal={f.principal}: {f.message}\n"
                     f"    evidence={dict(f.evidence)}" for f in findings) or "  (none)"


@pytest.mark.parametrize(("kind", "case"), _load())
def test_rule_case(kind: str, case: dict[str, Any], tmp_path: Path) -> None:
    found = [f for f in scan_case(case, tmp_path) if f.kind == kind]
    for expected in case.get("fires", []):
        assert any(matches(f, {"kind": kind, **expected}) for f in found), \
            f"expected {expected} to fire; {kind} findings:\n{_show(found)}"
    for expected in case.get("quiet", []):
        assert not any(matches(f, {"kind": kind, **expected}) for f in found), \
            f"expected {expected} not to fire; {kind} findings:\n{_show(found)}"
    if "count" in case:
        assert len(found) == case["count"], f"{kind} findings:\n{_show(found)}"
    for finding in found:
        # Every finding explains itself: a message, evidence, and one remediation sentence.
        assert finding.message and finding.evidence
        assert finding.remediation.endswith(".") and finding.remediation.count(". ") == 0, finding.remediation
        assert finding.severity in ("info", "low", "medium", "high", "critical")
        # Every finding lists the workflows it affects, the named one among them: what
        # `findings --workflow` filters on.
        affected = finding.evidence.get("workflows")
        assert isinstance(affected, list) and affected == sorted(set(affected)), _show([finding])
        assert finding.workflow is None or finding.workflow in affected, _show([finding])


def test_every_kind_has_a_rule_and_a_case_table() -> None:
    product = ROOT.parent / "shared" / "PRODUCT.md"
    kinds = PRODUCT_KINDS
    if product.exists():
        section = product.read_text(encoding="utf-8").split("## Findings", 1)[1].split("\n## ", 1)[0]
        kinds = set(re.findall(r"^\| `([a-z_]+)` \|", section, re.M))
        assert kinds == PRODUCT_KINDS, "PRODUCT.md's findings table changed: update PRODUCT_KINDS"
    assert set(RULES) == kinds
    tables = {yaml.safe_load(f.read_text(encoding="utf-8"))["kind"] for f in CASES.glob("*.yaml")}
    assert tables == kinds


@pytest.mark.parametrize("kind", sorted(RULES))
def test_every_rule_says_when_it_fires_and_how_to_fix_it(kind: str) -> None:
    doc = RULES[kind].__doc__ or ""
    assert "Fires" in doc and "Fix:" in doc, kind


def test_severity_table_is_documented() -> None:
    text = (ROOT / "docs" / "findings.md").read_text(encoding="utf-8")
    for kind, subkind, base, production, pilot, poc in severity_table():
        row = f"| `{kind}` | {f'`{subkind}`' if subkind else ''} | {base} | {production} | {pilot} | {poc} |"
        assert row in text, f"docs/findings.md lacks: {row}"
    import scanner.rules.base as base_module

    lines = (base_module.__doc__ or "").splitlines()
    for kind, subkind, base, production, pilot, poc in severity_table():
        assert any(line.startswith(f"| `{kind}` |") and (not subkind or f"`{subkind}`" in line)
                   and line.endswith(f"| {base} | {production} | {pilot} | {poc} |") for line in lines), kind
