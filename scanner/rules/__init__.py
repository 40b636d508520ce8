"""Finding rules: one small pure function per kind, over the context of the newest scan."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from scanner.inventory import Inventory
from scanner.model import Finding
from scanner.rules.base import RuleContext
from scanner.rules.probe_failed import probe_failed
from scanner.rules.stale import stale
from scanner.store import Store

Rule = Callable[[RuleContext], Iterable[Finding]]

# Kind -> rule. Every kind PRODUCT.md lists has exactly one entry here.
RULES: dict[str, Rule] = {
    "probe_failed": probe_failed,
    "stale": stale,
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
