"""The effective freshness SLA of an asset, and which declaration set it.

One rule, for direct and transitive readers alike. Each workflow the asset reaches states
one requirement on it:

- a workflow that reads the asset itself (an id or a glob that matches it) states it on
  that read: the read's `max_age`, else the source's per-asset override (`assets:` entry),
  else the source's `freshness.max_age` (which falls back to `defaults.max_age`). Reading it
  directly is the workflow's own word on that asset, so it is never tightened by the
  workflow also being downstream of another reader;
- a workflow the asset reaches only through `feeds` (A reads it, A feeds B, B feeds C)
  needs everything that reaches it as fresh as the strictest `max_age` among its own reads:
  its answers are only as fresh as its inputs. A workflow without any `max_age` asks nothing.

The asset's effective SLA is the strictest of those requirements, naming the workflow that
set it and the path that leads there (`fed via A -> B`). At equal `max_age` a direct read
wins over a downstream workflow, then the shorter path, then the workflow id. An asset no
workflow reads falls back to its override, else its source's `freshness.max_age`.

The warning level is the `warn_after` that comes with the winning requirement, else the
override's, else the source's, when it is shorter than the SLA.

Requirements also flow upstream through asset lineage (`derived_from`, see
`scanner.lineage.assets`): a workflow that reads an asset derived from this one, directly or
through a chain of derived assets, needs this one as fresh as it needs the derived asset
(its own read's `max_age`, or what it needs through `feeds`), with origin `derived` and the
chain of assets in `via`. The upstream asset's own direct readers still speak for themselves.

A stale asset (past its SLA) blocks the readiness of each workflow whose own need its age
breaches, directly, through the workflows it feeds, or through derived assets: a workflow
that feeds another carries that workflow's need (`carried_needs`, `blocked_workflows`). A
workflow whose need holds is not blocked, and the finding's severity follows the most
critical blocked workflow. A read without its own `max_age` states the source's default only
where nothing stricter reaches the workflow through feeds.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

from scanner.inventory import WorkflowConfig
from scanner.plugins import AssetOverride, SourceConfig
from scanner.rules.base import RuleContext

ORIGIN_READ = "read"              # a direct read's max_age
ORIGIN_DOWNSTREAM = "downstream"  # a workflow fed transitively
ORIGIN_DERIVED = "derived"        # a workflow reading an asset derived from this one
ORIGIN_ASSET = "asset"            # the source's per-asset override
ORIGIN_SOURCE = "source"          # the source's freshness.max_age (or defaults.max_age)
# At equal max_age: a workflow's own read first, then downstream, then the source's settings.
_ORIGIN_RANK = {ORIGIN_READ: 0, ORIGIN_DOWNSTREAM: 1, ORIGIN_DERIVED: 2, ORIGIN_ASSET: 3, ORIGIN_SOURCE: 4}


@dataclass(frozen=True)
class EffectiveSla:
    """How old an asset may be, and who said so."""

    max_age: float | None
    warn_after: float | None
    origin: str
    set_by: str | None = None          # the workflow whose declaration won, if any
    path: tuple[str, ...] = ()         # reader -> ... -> set_by, through feeds
    via: tuple[str, ...] = ()          # this asset -> ... -> the derived asset the reader reads

    def describe(self) -> str:
        """`workflow B (fed via A -> B)`, `workflow A`, `the asset override`, `source crm`."""
        if self.origin == ORIGIN_DERIVED:
            fed = f", fed via {' -> '.join(self.path)}" if len(self.path) > 1 else ""
            return f"workflow {self.set_by} (derived via {' -> '.join(self.via)}{fed})"
        if self.origin == ORIGIN_DOWNSTREAM:
            return f"workflow {self.set_by} (fed via {' -> '.join(self.path)})"
        if self.origin == ORIGIN_READ:
            return f"workflow {self.set_by}"
        if self.origin == ORIGIN_ASSET:
            return "the source's asset override"
        return "the source's freshness.max_age"


@dataclass(frozen=True)
class Requirement:
    """How fresh one workflow needs one asset, and where that comes from."""

    workflow: str
    max_age: float | None
    warn_after: float | None
    origin: str                        # read, downstream, or asset/source for a read without max_age
    path: tuple[str, ...]              # (workflow,) for a reader; reader -> ... -> workflow otherwise
    via: tuple[str, ...] = ()          # for `derived`: this asset -> ... -> the asset read

    @property
    def direct(self) -> bool:
        """Whether the workflow reads the asset itself."""
        return self.origin not in (ORIGIN_DOWNSTREAM, ORIGIN_DERIVED)


def asset_override(source: SourceConfig, path: str) -> AssetOverride | None:
    """The `assets:` entry for a path: an exact match first, else the first glob that matches."""
    exact, patterns = _override_index(source.assets)
    found = exact.get(path)
    if found is not None:
        return found
    for override in patterns:
        if fnmatch.fnmatchcase(path, override.path):
            return override
    return None


# assets tuple id -> (the tuple, kept so its id is not reused; path -> first entry; the entries
# that may match as globs). An imported dbt project gives a source thousands of entries, and
# the SLA asks for one per asset: a scan over them must not be quadratic.
_OVERRIDE_INDEX: dict[int, tuple[tuple[AssetOverride, ...], dict[str, AssetOverride], list[AssetOverride]]] = {}


def _override_index(assets: tuple[AssetOverride, ...]) -> tuple[dict[str, AssetOverride], list[AssetOverride]]:
    cached = _OVERRIDE_INDEX.get(id(assets))
    if cached is not None and cached[0] is assets:
        return cached[1], cached[2]
    exact: dict[str, AssetOverride] = {}
    for override in assets:
        exact.setdefault(override.path, override)
    # fnmatch also matches a path equal to a pattern without wildcards: keep those in order too.
    patterns = list(assets) if any(c in o.path for o in assets for c in "*?[") else []
    if len(_OVERRIDE_INDEX) > 256:
        _OVERRIDE_INDEX.clear()
    _OVERRIDE_INDEX[id(assets)] = (assets, exact, patterns)
    return exact, patterns


def propagated_requirement(workflow: WorkflowConfig) -> tuple[float, float | None] | None:
    """(max_age, warn_after) a workflow needs of everything that reaches it through feeds."""
    best: tuple[float, float | None] | None = None
    for read in workflow.reads:
        if read.max_age is not None and (best is None or read.max_age < best[0]):
            best = (read.max_age, read.warn_after)
    return best


def _fallback(source: SourceConfig, path: str) -> tuple[float | None, list[float], str]:
    """The source's own SLA for a path: (max_age or None, its warning levels, origin)."""
    override = asset_override(source, path)
    warns = [w for w in ((override.warn_after if override else None), source.freshness.warn_after)
             if w is not None]
    if override is not None and override.max_age is not None:
        return override.max_age, warns, ORIGIN_ASSET
    # An override that only sets warn_after leaves the SLA to the source: say so.
    return source.freshness.max_age, warns, ORIGIN_SOURCE


def requirements(ctx: RuleContext, source_id: str, path: str) -> list[Requirement]:
    """What each workflow the asset reaches needs of it: one entry per workflow that asks
    anything (a max_age or a warning level), direct readers first, then downstream, then
    through derived assets, each part by workflow id."""
    cache = ctx.memo("requirements")  # the SLA, the blocked workflows and the rules all ask
    if (source_id, path) not in cache:
        cache[(source_id, path)] = _requirements(ctx, source_id, path)
    return list(cache[(source_id, path)])


def _requirements(ctx: RuleContext, source_id: str, path: str) -> list[Requirement]:
    own = _own_requirements(ctx, source_id, path)
    derived = ctx.derived_assets(source_id, path)
    if not derived:
        return own
    asked = {n.workflow for n in own}
    through: dict[str, Requirement] = {}
    for (derived_source, derived_path), chain in sorted(derived.items()):
        for need in _own_requirements(ctx, derived_source, derived_path):
            # The workflows' own words flow upstream; a source's default SLA stays with its assets.
            if need.workflow in asked or need.max_age is None or \
                    need.origin not in (ORIGIN_READ, ORIGIN_DOWNSTREAM):
                continue
            known = through.get(need.workflow)
            rank = (need.max_age, len(chain) + len(need.path), chain, need.path)
            if known is None or known.max_age is None or \
                    rank < (known.max_age, len(known.via) + len(known.path), known.via, known.path):
                through[need.workflow] = Requirement(need.workflow, need.max_age, need.warn_after,
                                                     ORIGIN_DERIVED, need.path, chain)
    return own + [through[w] for w in sorted(through)]


def _own_requirements(ctx: RuleContext, source_id: str, path: str) -> list[Requirement]:
    """`requirements` without lineage: the asset's readers and the workflows they feed."""
    key = (source_id, path)
    cached = ctx.sla_cache.get(key)
    if cached is None:
        cached = ctx.sla_cache[key] = _compute_own_requirements(ctx, source_id, path)
    return cached  # type: ignore[return-value]


def _compute_own_requirements(ctx: RuleContext, source_id: str, path: str) -> list[Requirement]:
    source = ctx.inventory.sources.get(source_id)
    if source is None:
        return []
    fallback_age, fallback_warns, fallback_origin = _fallback(source, path)
    declared: dict[str, Requirement] = {}     # readers whose read declares a max_age
    warned: dict[str, list[float]] = {}       # every reader -> warn_after of its reads without one
    for workflow, read in ctx.asset_readers(source_id, path):
        warned.setdefault(workflow.id, [])
        if read.max_age is None:
            if read.warn_after is not None:
                warned[workflow.id].append(read.warn_after)
            continue
        current = declared.get(workflow.id)
        if current is None or (current.max_age is not None and read.max_age < current.max_age):
            declared[workflow.id] = Requirement(
                workflow.id, read.max_age, _warning(read.max_age, [read.warn_after, *fallback_warns]),
                ORIGIN_READ, (workflow.id,))
    direct: dict[str, Requirement] = {}
    for workflow_id in sorted(warned):
        levels = sorted(warned[workflow_id])
        if workflow_id in declared:
            direct[workflow_id] = declared[workflow_id]
        elif fallback_age is not None:      # the source's SLA is this reader's
            direct[workflow_id] = Requirement(workflow_id, fallback_age,
                                              _warning(fallback_age, [*levels, *fallback_warns]),
                                              fallback_origin, (workflow_id,))
        elif levels:                        # a warning level alone: warn, never breach
            direct[workflow_id] = Requirement(workflow_id, None, levels[0], ORIGIN_READ, (workflow_id,))
    downstream: dict[str, Requirement] = {}
    # The path from the readers, as `ctxscan feeds` finds it (breadth first, ids in order).
    paths = dict(ctx.feed_paths(warned))
    for target in sorted(warned):
        if target not in declared and ctx.upstream_readers(target, warned):
            # a reader without a max_age of its own that the asset also reaches through feeds
            chain = ctx.feed_paths([r for r in warned if r != target]).get(target)
            if chain is not None:
                paths[target] = chain
    for target, chain in paths.items():
        if len(chain) < 2 or target in declared:
            continue  # not fed, or it reads the asset itself with a max_age: its word
        need = propagated_requirement(ctx.inventory.workflows[target])
        if need is None:
            continue
        if target in direct:
            # It reads the asset without a max_age of its own, and it also reaches it
            # through feeds: the source's default never relaxes what its inputs need.
            own = direct[target].max_age
            if own is not None and own <= need[0]:
                continue
        downstream[target] = Requirement(target, need[0], _warning(need[0], [need[1], *fallback_warns]),
                                         ORIGIN_DOWNSTREAM, chain)
    for target in downstream:
        direct.pop(target, None)
    return list(direct.values()) + [downstream[w] for w in sorted(downstream)]


def effective_sla(ctx: RuleContext, source_id: str, path: str) -> EffectiveSla | None:
    """The SLA of one asset (the strictest requirement of the workflows it reaches), or None
    when nothing declares one."""
    source = ctx.inventory.sources.get(source_id)
    if source is None:
        return None
    needs = requirements(ctx, source_id, path)
    bounded = [n for n in needs if n.max_age is not None]
    if bounded:
        best = min(bounded, key=lambda n: (n.max_age, _ORIGIN_RANK[n.origin], len(n.path), n.workflow))
        if best.origin in (ORIGIN_READ, ORIGIN_DOWNSTREAM, ORIGIN_DERIVED):
            return EffectiveSla(best.max_age, best.warn_after, best.origin, best.workflow, best.path,
                                best.via)
        # Readers without max_age: the source's own SLA, which no workflow set; the
        # strictest warning level any of them declares comes with it.
        warns = [n.warn_after for n in bounded if n.origin == best.origin and n.max_age == best.max_age
                 and n.warn_after is not None]
        return EffectiveSla(best.max_age, min(warns) if warns else None, best.origin)
    fallback_age, fallback_warns, fallback_origin = _fallback(source, path)
    if fallback_age is not None:
        return EffectiveSla(fallback_age, _warning(fallback_age, fallback_warns), fallback_origin)
    warned = [n for n in needs if n.warn_after is not None and n.direct]
    if warned:  # a read's warning level alone, with no SLA anywhere: warn, never breach
        need = min(warned, key=lambda n: (n.warn_after, n.workflow))
        return EffectiveSla(None, need.warn_after, ORIGIN_READ, need.workflow, need.path)
    if fallback_warns:
        return EffectiveSla(None, fallback_warns[0], fallback_origin)
    return None


def carried_needs(ctx: RuleContext, source_id: str, path: str) -> dict[str, float]:
    """workflow -> the age of the asset it can bear: its own requirement (as a reader, a
    downstream workflow or through derived assets), tightened by the requirement of every
    workflow it feeds (transitively) that has one.

    A workflow that feeds another carries that workflow's need: its output is the other's
    input, so what is too old for the downstream is too old to pass through it.
    """
    needs = requirements(ctx, source_id, path)
    own = {n.workflow: n.max_age for n in needs if n.max_age is not None}
    reached = {w.id for w in ctx.affected_by_asset(source_id, path)} | {n.workflow for n in needs}
    carried: dict[str, float] = {}
    for workflow_id in reached:
        limits = [own[w] for w in (workflow_id, *ctx.downstream.get(workflow_id, {})) if w in own]
        if limits:
            carried[workflow_id] = min(limits)
    return carried


def blocked_workflows(ctx: RuleContext, source_id: str, path: str, age: float) -> list[str]:
    """The workflows whose need an asset this old breaches: their own requirement, or the
    need of a workflow they feed (`carried_needs`). A workflow whose need holds is not
    blocked, however critical the others are."""
    return sorted(w for w, limit in carried_needs(ctx, source_id, path).items() if age > limit)


def _warning(max_age: float, options: Sequence[float | None]) -> float | None:
    """The first warning level shorter than the SLA (a longer one could never fire first)."""
    for warn in options:
        if warn is not None and warn < max_age:
            return warn
    return None
