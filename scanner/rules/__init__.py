"""Finding rules: one small pure function per kind, over the context of the newest scan."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from scanner.inventory import Inventory
from scanner.model import Finding
from scanner.rules.base import RuleContext
from scanner.rules.freshness_unknown import freshness_unknown
from scanner.rules.missing_asset import missing_asset
from scanner.rules.orphan_source import orphan_source
from scanner.rules.over_permissioned import over_permissioned
from scanner.rules.probe_failed import probe_failed
from scanner.rules.schema_drift import schema_drift
from scanner.rules.stale import stale
from scanner.rules.unowned import unowned
from scanner.store import Store

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
}


def build_context(inventory: Inventory, store: Store, now: datetime) -> RuleContext:
    """The newest snapshots and outcomes of the inventory's sources, read from the store."""
    source_ids = list(inventory.sources)
    snapshots = store.latest_snapshots(source_ids)
    previous = {}
    for source_id in snapshots:
        history = store.snapshot_history(source_id, limit=2)
        if len(history) == 2:
            previous[source_id] = history[1]
    return RuleContext(inventory=inventory, snapshots=snapshots,
                       results=store.latest_results(source_ids), now=now, previous=previous)


def evaluate(ctx: RuleContext) -> list[Finding]:
    """Every finding that fires, deduplicated by fingerprint."""
    found: dict[str, Finding] = {}
    for rule in RULES.values():
        for finding in rule(ctx):
            found.setdefault(finding.fingerprint, finding)
    return list(found.values())
