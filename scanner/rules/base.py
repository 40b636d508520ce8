"""What every rule gets and returns: the evaluation context, fingerprints and severities.

Severity
--------
A finding's severity is its kind's base severity, shifted by the stage of the most critical
workflow it affects (the workflows that read the asset or source, and every workflow those
feed, transitively): `production` raises it one step, `pilot` keeps it, `poc` lowers it one
step, and so does "no workflow at all". The result stays between `low` and `critical`;
`info` kinds stay `info`.

| kind | sub-kind | base | production | pilot | poc / none |
|---|---|---|---|---|---|
| `stale` | (past `max_age`) | high | critical | high | medium |
| `stale` | `warning` (past `warn_after`) | low | medium | low | low |
| `freshness_unknown` | | medium | high | medium | low |
| `unowned` | | medium | high | medium | low |
| `over_permissioned` | `write_access` | high | critical | high | medium |
| `over_permissioned` | `undeclared_read` | medium | high | medium | low |
| `over_permissioned` | `privileged_principal` | high | critical | high | medium |
| `over_permissioned` | `public_access` | high | critical | high | medium |
| `schema_drift` | | high | critical | high | medium |
| `missing_asset` | | high | critical | high | medium |
| `probe_failed` | | high | critical | high | medium |
| `orphan_source` | | info | info | info | info |
| `access_drift` | `gained_write` | high | critical | high | medium |
| `access_drift` | `gained_privileged` | high | critical | high | medium |
| `access_drift` | `gained_read` | medium | high | medium | low |
| `access_drift` | `lost_access` | high | critical | high | medium |
| `access_drift` | `became_public` | critical | critical | critical | critical |
| `access_drift` | `environment` | medium | high | medium | low |
| `environment_mismatch` | | high | critical | high | medium |
| `index_lag` | | high | critical | high | medium |
| `index_lag` | `count_ratio` | medium | high | medium | low |
| `undeclared_dependency` | | medium | high | medium | low |
| `unobserved_read` | | info | info | info | info |
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any

from scanner.inventory import Inventory, ReadDeclaration, WorkflowConfig
from scanner.model import Asset, SourceSnapshot
from scanner.store import SourceResult, Store, StoredFinding

if TYPE_CHECKING:
    from scanner.lineage.observed import ObservedLineage

SEVERITIES = ("info", "low", "medium", "high", "critical")
STAGE_SHIFT = {"production": 1, "pilot": 0, "poc": -1, None: -1}
STAGE_RANK = {"production": 2, "pilot": 1, "poc": 0}

# Base severity per kind, or per `kind/subkind` where the sub-kinds differ.
BASE_SEVERITY: dict[str, str] = {
    "stale": "high",
    "stale/warning": "low",
    "freshness_unknown": "medium",
    "unowned": "medium",
    "over_permissioned/write_access": "high",
    "over_permissioned/undeclared_read": "medium",
    "over_permissioned/privileged_principal": "high",
    "over_permissioned/public_access": "high",
    "schema_drift": "high",
    "missing_asset": "high",
    "probe_failed": "high",
    "orphan_source": "info",
    "access_drift/gained_write": "high",
    "access_drift/gained_privileged": "high",
    "access_drift/gained_read": "medium",
    "access_drift/lost_access": "high",
    "access_drift/became_public": "critical",
    "access_drift/environment": "medium",
    "environment_mismatch": "high",
    "index_lag": "high",
    "index_lag/count_ratio": "medium",
    "undeclared_dependency": "medium",
    "unobserved_read": "info",
}


@dataclass(frozen=True)
class RuleContext:
    """The inventory, the newest snapshot and outcome of each source, and the time."""

    inventory: Inventory
    snapshots: Mapping[str, SourceSnapshot]
    results: Mapping[str, SourceResult]
    now: datetime
    # The snapshot before the newest one, per source, for drift.
    previous: Mapping[str, SourceSnapshot] = field(default_factory=dict)
    # The store the context came from: rules whose findings stay open until a change is
    # reverted (drift) read what is open there.
    store: Store | None = field(default=None, compare=False, repr=False)
    # What OpenLineage observed, mapped onto the inventory (scanner.lineage.observed); None: nothing.
    lineage: ObservedLineage | None = None

    def open_findings(self, kind: str) -> list[StoredFinding]:
        """The stored findings of a kind that are open now (none without a store)."""
        if kind not in self._open_findings:
            self._open_findings[kind] = self.store.findings("open", kinds=[kind]) if self.store is not None else []
        return list(self._open_findings[kind])

    @cached_property
    def _open_findings(self) -> dict[str, list[StoredFinding]]:
        return {}

    def memo(self, name: str) -> dict[Any, Any]:
        """A cache for one derived value per subject (an asset's requirements), kept as long
        as this context: rules that ask the same question of an asset compute it once."""
        return self._memos.setdefault(name, {})

    @cached_property
    def _memos(self) -> dict[str, dict[Any, Any]]:
        return {}

    def stored_findings(self, kind: str) -> list[StoredFinding]:
        """The stored findings of a kind, open or resolved (none without a store): a change
        seen once stays true until reverted, whatever the next scan sees, and a revert is
        not a new change."""
        if kind not in self._stored_findings:
            self._stored_findings[kind] = self.store.findings(None, kinds=[kind]) if self.store is not None else []
        return list(self._stored_findings[kind])

    @cached_property
    def _stored_findings(self) -> dict[str, list[StoredFinding]]:
        return {}

    def read_matches(self, read: ReadDeclaration) -> list[Asset]:
        """The assets of the newest snapshot that a read declaration names."""
        snapshot = self.snapshots.get(read.source)
        if snapshot is None:
            return []
        if not read.is_glob:
            asset = self.asset(read.source, read.path) or self._folder_of(read)
            return [asset] if asset else []
        key = (read.source, read.path)
        if key not in self._glob_matches:
            pattern = _glob(read.path)
            found = [a for a in snapshot.assets if pattern.match(a.path)]
            folder = None if found else self._folder_of(read)
            self._glob_matches[key] = found or ([folder] if folder else [])
        return list(self._glob_matches[key])

    def _folder_of(self, read: ReadDeclaration) -> Asset | None:
        """The folder asset a read names something inside of (`kb:articles/*`,
        `kb:articles/faq.md`): files under a folder asset are that asset."""
        head = folder_prefix(read.path)
        asset = self.asset(read.source, head) if head else None
        return asset if asset is not None and asset.kind == "folder" else None

    @cached_property
    def _glob_matches(self) -> dict[tuple[str, str], list[Asset]]:
        return {}

    @cached_property
    def assets_by_path(self) -> Mapping[str, Mapping[str, Asset]]:
        """source -> path -> asset of the newest snapshots (a snapshot's own lookup is linear)."""
        return {source_id: {a.path: a for a in snapshot.assets}
                for source_id, snapshot in self.snapshots.items()}

    def asset(self, source_id: str, path: str) -> Asset | None:
        """One asset of a source's newest snapshot, or None."""
        return self.assets_by_path.get(source_id, {}).get(path)

    def readers(self) -> Iterator[tuple[WorkflowConfig, ReadDeclaration, Asset]]:
        """Every (workflow, read, asset) triple the newest snapshots resolve."""
        for workflow in self.inventory.workflows.values():
            for read in workflow.reads:
                for asset in self.read_matches(read):
                    yield workflow, read, asset

    # -- indexes, computed once per context -----------------------------------------------
    @cached_property
    def read_index(self) -> Mapping[tuple[str, str], list[tuple[WorkflowConfig, ReadDeclaration]]]:
        """(source, asset path) -> every (workflow, read) that resolves to that asset."""
        index: dict[tuple[str, str], list[tuple[WorkflowConfig, ReadDeclaration]]] = {}
        for workflow, read, asset in self.readers():
            index.setdefault((read.source, asset.path), []).append((workflow, read))
        # A read of one named asset counts even before a scan has found it, so its SLA and
        # readers are known for a source that was never scanned or failed.
        for workflow in self.inventory.workflows.values():
            for read in workflow.reads:
                if read.is_glob:
                    continue
                pairs = index.setdefault((read.source, read.path), [])
                if not any(w.id == workflow.id and r is read for w, r in pairs):
                    pairs.append((workflow, read))
        return index

    @cached_property
    def downstream(self) -> Mapping[str, Mapping[str, tuple[str, ...]]]:
        """workflow -> every workflow it feeds, transitively, with the shortest path to it."""
        result: dict[str, dict[str, tuple[str, ...]]] = {}
        for start in self.inventory.workflows:
            paths = dict(self.feed_paths((start,)))
            paths.pop(start, None)
            result[start] = paths
        return result

    def feed_paths(self, starts: Iterable[str]) -> Mapping[str, tuple[str, ...]]:
        """workflow -> its path from the nearest of `starts` through feeds (a start: itself).

        Breadth first, each level in id order, the first parent found wins: the rule
        `ctxscan feeds` follows, so a finding's `fed via` and `feeds`/`depends` name the same
        path for the same tie.
        """
        key = frozenset(starts)
        cached = self._feed_paths.get(key)
        if cached is not None:
            return cached
        workflows = self.inventory.workflows
        paths: dict[str, tuple[str, ...]] = {s: (s,) for s in sorted(key) if s in workflows}
        frontier = sorted(paths)
        while frontier:
            following: list[str] = []
            for node in frontier:
                for target in sorted(set(workflows[node].feeds)):
                    if target in workflows and target not in paths:
                        paths[target] = paths[node] + (target,)
                        following.append(target)
            frontier = sorted(following)
        self._feed_paths[key] = paths
        return paths

    @cached_property
    def _feed_paths(self) -> dict[frozenset[str], dict[str, tuple[str, ...]]]:
        return {}

    def upstream_readers(self, workflow_id: str, readers: Iterable[str]) -> bool:
        """Whether any of `readers` (other than the workflow) feeds it, transitively."""
        return any(workflow_id in self.downstream.get(r, {}) for r in readers if r != workflow_id)

    def asset_readers(self, source_id: str, path: str) -> list[tuple[WorkflowConfig, ReadDeclaration]]:
        """The (workflow, read) pairs that read one asset directly."""
        return self.read_index.get((source_id, path), [])

    def with_downstream(self, workflows: Iterable[WorkflowConfig]) -> list[WorkflowConfig]:
        """The workflows and every workflow they feed, transitively, without duplicates."""
        seen: dict[str, WorkflowConfig] = {}
        for workflow in workflows:
            seen.setdefault(workflow.id, workflow)
            for target in self.downstream.get(workflow.id, {}):
                seen.setdefault(target, self.inventory.workflows[target])
        return list(seen.values())

    def affected_by_asset(self, source_id: str, path: str) -> list[WorkflowConfig]:
        """Workflows an asset reaches: its direct readers, the readers of every asset derived
        from it (`derived_from`, transitively), and everything they feed."""
        readers = [w for w, _ in self.asset_readers(source_id, path)]
        readers += [w for w, _, _ in self.derived_readers(source_id, path)]
        return self.with_downstream(readers)

    @cached_property
    def sla_cache(self) -> dict[tuple[str, str], object]:
        """Per-asset SLA requirements, computed once per context (scanner.rules.sla)."""
        return {}

    @cached_property
    def derived_children(self) -> Mapping[tuple[str, str], list[tuple[str, str]]]:
        """(source, path) -> the assets declared `derived_from` it directly."""
        if not any(o.derived_from for s in self.inventory.sources.values() for o in s.assets):
            return {}
        from scanner.lineage.assets import derived_children

        return derived_children(self.inventory.sources, self.assets_by_path)

    def derived_assets(self, source_id: str, path: str) -> Mapping[tuple[str, str], tuple[str, ...]]:
        """Every asset derived from this one, transitively, with the chain of asset ids to it."""
        if not self.derived_children or (source_id, path) not in self.derived_children:
            return {}
        found = self._derived_cache.get((source_id, path))
        if found is None:
            from scanner.lineage.assets import downstream_assets

            found = self._derived_cache[(source_id, path)] = downstream_assets(self.derived_children,
                                                                               (source_id, path))
        return found

    @cached_property
    def _derived_cache(self) -> dict[tuple[str, str], Mapping[tuple[str, str], tuple[str, ...]]]:
        return {}

    def derived_readers(self, source_id: str,
                        path: str) -> list[tuple[WorkflowConfig, ReadDeclaration, tuple[str, ...]]]:
        """(workflow, read, chain of asset ids) for each read of an asset derived from this one."""
        result = []
        for (derived_source, derived_path), chain in self.derived_assets(source_id, path).items():
            for workflow, read in self.asset_readers(derived_source, derived_path):
                result.append((workflow, read, chain))
        return result

    def affected_by_source(self, source_id: str) -> list[WorkflowConfig]:
        """Workflows a source reaches: those declaring a read from it and everything they feed."""
        return self.with_downstream(w for w in self.inventory.workflows.values()
                                    if any(r.source == source_id for r in w.reads))


def folder_prefix(path: str) -> str | None:
    """The first segment of a path with a `/` in it (`articles` of `articles/*`), or None:
    the folder asset it would lie inside, on a source whose assets are folders."""
    head, sep, _ = path.partition("/")
    return head if sep and head and not any(c in head for c in "*?[") else None


@lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern))


def fingerprint(kind: str, *parts: object) -> str:
    """A stable id for a finding: same kind and subject, same fingerprint, across scans."""
    text = "\x1f".join([kind, *("" if p is None else str(p) for p in parts)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# Severities that no stage shifts: an asset that became public is critical for anyone.
UNSHIFTED = frozenset({"access_drift/became_public"})


def severity_for(base: str, stage: str | None) -> str:
    """Shift a base severity by the stage of the most critical workflow affected."""
    if base == "info":
        return "info"
    index = SEVERITIES.index(base) + STAGE_SHIFT.get(stage, 0)
    return SEVERITIES[max(1, min(len(SEVERITIES) - 1, index))]


def base_severity(kind: str, subkind: str | None = None) -> str:
    """The table's base severity of a kind (or of one of its sub-kinds)."""
    return BASE_SEVERITY.get(f"{kind}/{subkind}") or BASE_SEVERITY[kind]


def severity_of(kind: str, stage: str | None, subkind: str | None = None) -> str:
    """The severity of a finding of this kind on something whose most critical workflow is `stage`."""
    if f"{kind}/{subkind}" in UNSHIFTED:
        return base_severity(kind, subkind)
    return severity_for(base_severity(kind, subkind), stage)


def most_critical_stage(workflows: Iterable[WorkflowConfig]) -> str | None:
    """The highest stage among workflows, or None when there are none."""
    stages = [w.stage for w in workflows]
    if not stages:
        return None
    return max(stages, key=lambda s: STAGE_RANK.get(s, 0))


def most_critical(workflows: Iterable[WorkflowConfig]) -> WorkflowConfig | None:
    """The workflow with the highest stage (ties: the first id in order), or None."""
    ordered = sorted(workflows, key=lambda w: (-STAGE_RANK.get(w.stage, 0), w.id))
    return ordered[0] if ordered else None


def workflow_ids(workflows: Iterable[WorkflowConfig]) -> list[str]:
    """The sorted, distinct ids of the workflows a finding affects: its `evidence["workflows"]`.

    Every rule stores it (the direct readers and every workflow they feed, or the workflow
    itself and what it feeds), so `findings --workflow X` finds each finding that touches X,
    not only the one whose `workflow` field names it.
    """
    return sorted({w.id for w in workflows})


def severity_table() -> list[tuple[str, str, str, str, str, str]]:
    """(kind, sub-kind, base, production, pilot, poc) rows of the documented table."""
    rows = []
    for key, base in BASE_SEVERITY.items():
        kind, _, subkind = key.partition("/")
        rows.append((kind, subkind, base, severity_of(kind, "production", subkind or None),
                     severity_of(kind, "pilot", subkind or None), severity_of(kind, "poc", subkind or None)))
    return rows
