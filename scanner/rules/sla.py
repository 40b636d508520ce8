"""The effective freshness SLA of an asset, and which declaration set it.

The SLA is the strictest `max_age` among every workflow the asset feeds: a workflow that
reads it directly contributes that read's `max_age`; a workflow it reaches through `feeds`
(A reads it, A feeds B) contributes the strictest `max_age` among B's own reads, since B's
answers are only as fresh as what reaches it. When no workflow says, the source's per-asset
override (`assets:` entry) applies, else the source's `freshness.max_age` (which falls back
to `defaults.max_age`). The warning level is the `warn_after` that comes with the winning
declaration, else the override's, else the source's, when it is shorter than the SLA.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Collection
from dataclasses import dataclass

from scanner.inventory import WorkflowConfig
from scanner.plugins import AssetOverride, SourceConfig
from scanner.rules.base import RuleContext

ORIGIN_READ = "read"              # a direct read's max_age
ORIGIN_DOWNSTREAM = "downstream"  # a workflow fed transitively
ORIGIN_ASSET = "asset"            # the source's per-asset override
ORIGIN_SOURCE = "source"          # the source's freshness.max_age (or defaults.max_age)


@dataclass(frozen=True)
class EffectiveSla:
    """How old an asset may be, and who said so."""

    max_age: float | None
    warn_after: float | None
    origin: str
    set_by: str | None = None          # the workflow whose declaration won, if any
    path: tuple[str, ...] = ()         # reader -> ... -> set_by, through feeds

    def describe(self) -> str:
        """`workflow B (via A -> B)`, `workflow A`, `the asset override`, `source crm`."""
        if self.origin == ORIGIN_DOWNSTREAM:
            return f"workflow {self.set_by} (fed via {' -> '.join(self.path)})"
        if self.origin == ORIGIN_READ:
            return f"workflow {self.set_by}"
        if self.origin == ORIGIN_ASSET:
            return "the source's asset override"
        return "the source's freshness.max_age"


def asset_override(source: SourceConfig, path: str) -> AssetOverride | None:
    """The `assets:` entry for a path: an exact match first, else the first glob that matches."""
    for override in source.assets:
        if override.path == path:
            return override
    for override in source.assets:
        if fnmatch.fnmatchcase(path, override.path):
            return override
    return None


def _strictest_read(workflow: WorkflowConfig) -> tuple[float, float | None] | None:
    best: tuple[float, float | None] | None = None
    for read in workflow.reads:
        if read.max_age is not None and (best is None or read.max_age < best[0]):
            best = (read.max_age, read.warn_after)
    return best


def effective_sla(ctx: RuleContext, source_id: str, path: str,
                  only: Collection[str] | None = None) -> EffectiveSla | None:
    """The SLA of one asset, or None when nothing declares one.

    With `only`, just the SLA those workflows (as direct readers) and their downstream need:
    what one workflow's readiness asks of the asset.
    """
    source = ctx.inventory.sources.get(source_id)
    if source is None:
        return None
    readers = [(w, r) for w, r in ctx.asset_readers(source_id, path) if only is None or w.id in only]
    # (max_age, rank, path length, workflow id, warn_after, origin, path): the smallest wins;
    # at equal max_age a direct read beats a downstream workflow, then the shorter path.
    candidates: list[tuple[float, int, int, str, float | None, str, tuple[str, ...]]] = []
    for workflow, read in readers:
        if read.max_age is not None:
            candidates.append((read.max_age, 0, 1, workflow.id, read.warn_after, ORIGIN_READ,
                               (workflow.id,)))
        for target, chain in ctx.downstream.get(workflow.id, {}).items():
            strictest = _strictest_read(ctx.inventory.workflows[target])
            if strictest is not None:
                candidates.append((strictest[0], 1, len(chain), target, strictest[1],
                                   ORIGIN_DOWNSTREAM, chain))
    override = asset_override(source, path)
    fallback_warn = [w for w in ((override.warn_after if override else None),
                                 source.freshness.warn_after) if w is not None]
    if candidates:
        max_age, _, _, set_by, warn, origin, chain = min(candidates)
        warn_after = _warning(max_age, [w for w in (warn, *fallback_warn) if w is not None])
        return EffectiveSla(max_age, warn_after, origin, set_by, chain)
    if override is not None and override.max_age is not None:
        return EffectiveSla(override.max_age, _warning(override.max_age, fallback_warn), ORIGIN_ASSET)
    if source.freshness.max_age is not None:
        return EffectiveSla(source.freshness.max_age,
                            _warning(source.freshness.max_age, fallback_warn), ORIGIN_SOURCE)
    # A warning level alone, with no SLA: warn, never breach.
    reads_warn = sorted((r.warn_after, w.id) for w, r in readers if r.warn_after is not None)
    if reads_warn:
        return EffectiveSla(None, reads_warn[0][0], ORIGIN_READ, reads_warn[0][1], (reads_warn[0][1],))
    if fallback_warn:
        return EffectiveSla(None, fallback_warn[0], ORIGIN_ASSET if override and override.warn_after
                            else ORIGIN_SOURCE)
    return None


def _warning(max_age: float, options: list[float]) -> float | None:
    """The first warning level shorter than the SLA (a longer one could never fire first)."""
    for warn in options:
        if warn < max_age:
            return warn
    return None
