"""What every rule gets and returns: the evaluation context, fingerprints and severities."""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from scanner.inventory import Inventory, ReadDeclaration, WorkflowConfig
from scanner.model import Asset, SourceSnapshot
from scanner.store import SourceResult

SEVERITIES = ("info", "low", "medium", "high", "critical")
STAGE_SHIFT = {"production": 1, "pilot": 0, "poc": -1, None: -1}
STAGE_RANK = {"production": 2, "pilot": 1, "poc": 0}


@dataclass(frozen=True)
class RuleContext:
    """The inventory, the newest snapshot and outcome of each source, and the time."""

    inventory: Inventory
    snapshots: Mapping[str, SourceSnapshot]
    results: Mapping[str, SourceResult]
    now: datetime
    # The snapshot before the newest one, per source, for drift.
    previous: Mapping[str, SourceSnapshot] = field(default_factory=dict)

    def read_matches(self, read: ReadDeclaration) -> list[Asset]:
        """The assets of the newest snapshot that a read declaration names."""
        snapshot = self.snapshots.get(read.source)
        if snapshot is None:
            return []
        if not read.is_glob:
            asset = snapshot.asset(read.path)
            return [asset] if asset else []
        return [a for a in snapshot.assets if fnmatch.fnmatchcase(a.path, read.path)]

    def readers(self) -> Iterator[tuple[WorkflowConfig, ReadDeclaration, Asset]]:
        """Every (workflow, read, asset) triple the newest snapshots resolve."""
        for workflow in self.inventory.workflows.values():
            for read in workflow.reads:
                for asset in self.read_matches(read):
                    yield workflow, read, asset


def fingerprint(kind: str, *parts: object) -> str:
    """A stable id for a finding: same kind and subject, same fingerprint, across scans."""
    text = "\x1f".join([kind, *("" if p is None else str(p) for p in parts)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def severity_for(base: str, stage: str | None) -> str:
    """Shift a kind's base severity by the stage of the most critical workflow affected."""
    index = SEVERITIES.index(base) + STAGE_SHIFT.get(stage, 0)
    return SEVERITIES[max(1, min(len(SEVERITIES) - 1, index))]


def most_critical_stage(workflows: list[WorkflowConfig]) -> str | None:
    """The highest stage among workflows, or None when there are none."""
    if not workflows:
        return None
    return max((w.stage for w in workflows), key=lambda s: STAGE_RANK.get(s, 0))
