"""Finding rules: one small pure function per kind, over the context of the newest scan."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from scanner.inventory import Inventory
from scanner.model import Finding, SourceSnapshot
from scanner.rules.access_drift import access_drift
from scanner.rules.base import RuleContext
from scanner.rules.environment_mismatch import environment_mismatch
from scanner.rules.freshness_unknown import freshness_unknown
from scanner.rules.index_lag import index_lag
from scanner.rules.missing_asset import missing_asset
from scanner.rules.orphan_source import orphan_source
from scanner.rules.over_permissioned import over_permissioned
from scanner.rules.probe_failed import probe_failed
from scanner.rules.schema_drift import schema_drift
from scanner.rules.stale import stale
from scanner.rules.undeclared_dependency import undeclared_dependency
from scanner.rules.unobserved_read import unobserved_read
from scanner.rules.unowned import unowned
from scanner.store import SEVERITY_RANK, Store, StoredFinding

Rule = Callable[[RuleContext], Iterable[Finding]]

# Kind -> rule. Every kind PRODUCT.md lists has exactly one entry here.
RULES: dict[str, Rule] = {
    "stale": stale,
    "freshness_unknown": freshness_unknown,
    "unowned": unowned,
    "over_permissioned": over_permissioned,
    "schema_drift": schema_drift,
    "missing_asset": missing_asset,
    "probe_failed": probe_failed,
    "orphan_source": orphan_source,
    "access_drift": access_drift,
    "environment_mismatch": environment_mismatch,
    "index_lag": index_lag,
    "undeclared_dependency": undeclared_dependency,
    "unobserved_read": unobserved_read,
}


def build_context(inventory: Inventory, store: Store, now: datetime,
                  known: Mapping[int, SourceSnapshot] | None = None) -> RuleContext:
    """The newest and the previous snapshot and the newest outcome of each source.

    `known` maps stored result ids to snapshots the caller already holds in memory (a scan
    that just probed them): those are not read back and decoded from the store again.
    """
    source_ids = list(inventory.sources)
    known = known or {}
    recent = store.recent_snapshot_ids(source_ids, limit=2)
    decoded = store.snapshots_by_id((i for ids in recent.values() for i in ids if i not in known),
                                    {i: source_id for source_id, ids in recent.items() for i in ids})
    by_id = {**decoded, **known}
    snapshots: dict[str, SourceSnapshot] = {}
    previous: dict[str, SourceSnapshot] = {}
    for source_id, ids in recent.items():
        if ids and ids[0] in by_id:
            snapshots[source_id] = by_id[ids[0]]
        if len(ids) > 1 and ids[1] in by_id:
            previous[source_id] = by_id[ids[1]]
    from scanner.lineage.observed import load_observed

    return RuleContext(inventory=inventory, snapshots=snapshots,
                       results=store.latest_results(source_ids), now=now, previous=previous, store=store,
                       lineage=load_observed(inventory, store))


def evaluate(ctx: RuleContext) -> list[Finding]:
    """Every finding that fires, deduplicated by fingerprint."""
    found: dict[str, Finding] = {}
    for rule in RULES.values():
        for finding in rule(ctx):
            found.setdefault(finding.fingerprint, finding)
    return list(found.values())


# Kinds whose verdict changes with the clock alone: a query re-judges them at its own time.
TIME_KINDS = ("stale", "freshness_unknown")  # an unchanged-counters bound turns into stale


def judge_now(inventory: Inventory, store: Store, now: datetime,
              stored: Sequence[StoredFinding] | None = None) -> list[StoredFinding]:
    """The stored findings with the time-dependent ones judged at `now`, not at the scan.

    An asset fresh at the last scan may be stale an hour later with nothing scanned since:
    `findings`, `--fail-on` and the exports ask at their own time. An open finding takes the
    current severity, sub-kind, message and evidence; one that fires now but is not open in
    the store (new since the scan, or resolved earlier) is shown open as of now, and an open
    one of those kinds that no longer fires is shown resolved. The store itself changes only
    at the next scan.
    """
    stored = list(store.findings(None) if stored is None else stored)
    if not store.scans(1):
        return stored
    ctx = build_context(inventory, store, now)
    fresh: dict[str, Finding] = {}
    for kind in TIME_KINDS:
        for judged in RULES[kind](ctx):
            fresh.setdefault(judged.fingerprint, judged)
    out: list[StoredFinding] = []
    for old in stored:
        finding = fresh.pop(old.fingerprint, None)
        if finding is None:
            if old.kind in TIME_KINDS and old.status == "open":
                # no longer true at this time (a lower bound that became `stale`)
                old = replace(old, status="resolved", resolved_at=now)
            out.append(old)
            continue
        reopened = old.status != "open"
        out.append(replace(old, severity=finding.severity, subkind=finding.subkind, message=finding.message,
                           evidence=dict(finding.evidence), workflow=finding.workflow, status="open",
                           last_seen=now, resolved_at=None,
                           times_opened=old.times_opened + (1 if reopened else 0)))
    for finding in fresh.values():
        out.append(StoredFinding(
            fingerprint=finding.fingerprint, kind=finding.kind, subkind=finding.subkind,
            severity=finding.severity, status="open", source=finding.source, asset=finding.asset,
            workflow=finding.workflow, principal=finding.principal, message=finding.message,
            remediation=finding.remediation, evidence=dict(finding.evidence), first_seen=now,
            last_seen=now, resolved_at=None, times_opened=1))
    out.sort(key=lambda f: (-SEVERITY_RANK.get(f.severity, 0), f.kind, f.source or "",
                            f.asset or "", f.workflow or "", f.fingerprint))
    return out
