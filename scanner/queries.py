"""The three everyday questions, as pure functions over the graph (networkx or the cached form).

- `feeds`: which workflows does this source, asset or glob feed, directly or downstream?
- `depends`: what does this workflow depend on, and is it healthy?
- `why`: why can this workflow's account reach that asset?

They read nothing but their arguments: the CLI hands them the graph (from the store's
cache or built from the store) and, for `why`, the source's latest stored snapshot.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from datetime import datetime
from typing import Any

from scanner.errors import UsageError
from scanner.graph import (
    ASSET,
    DERIVED_FROM,
    FEEDS,
    RUNS_AS,
    SEVERITIES,
    SOURCE,
    WORKFLOW,
    asset_node,
    node_type,
    public_id,
    source_node,
    split_node,
    workflow_node,
)


def counted(number: int, noun: str) -> str:
    """`1 asset`, `2 assets`, `1 upstream workflow`: a count with its noun agreeing."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _source_assets(graph: Any, source_id: str) -> list[str]:
    if hasattr(graph, "source_assets"):
        return list(graph.source_assets(source_id))
    return [n for n, keys in graph.succ[source_node(source_id)].items() if "contains" in keys]


def closest(graph: Any, text: str, limit: int = 3) -> list[str]:
    """The known source, asset and workflow ids nearest to `text`, for "did you mean"."""
    sources = list(graph.graph.get("sources", ()))
    candidates = sources + list(graph.graph.get("workflows", ()))
    prefix, sep, _ = text.partition(":")
    wanted_sources = [prefix] if sep and prefix in sources else difflib.get_close_matches(prefix, sources, 2)
    for source_id in wanted_sources:
        candidates.extend(public_id(n) for n in _source_assets(graph, source_id))
    if _is_glob(text):
        text = text.replace("*", "").replace("?", "")
    return difflib.get_close_matches(text, candidates, n=limit, cutoff=0.5)


def _unknown(graph: Any, what: str, text: str) -> UsageError:
    near = closest(graph, text)
    hint = f"; closest: {', '.join(near)}" if near else ""
    return UsageError(f"unknown {what} {text!r}{hint}")


def _workflow_preds(graph: Any, node: str) -> list[str]:
    return sorted(o for o, keys in graph.pred[node].items() if FEEDS in keys and node_type(o) == WORKFLOW)


def _workflow_succs(graph: Any, node: str) -> list[str]:
    return sorted(o for o, keys in graph.succ[node].items() if FEEDS in keys and node_type(o) == WORKFLOW)


# ---------------------------------------------------------------------------------------
# feeds

def resolve_target(graph: Any, target: str) -> tuple[str, str | None, Callable[[str], bool]]:
    """What a `feeds` target names: (kind, its node or None for a glob, a test on asset nodes).

    A target is a source id, an asset id (`crm:public.customers`), a workflow id, a node id
    (`source:crm`) or a glob over asset ids (`crm:public.*`; without ':' over source ids).
    """
    sources = set(graph.graph.get("sources", ()))
    workflows = set(graph.graph.get("workflows", ()))
    if target in sources:
        return SOURCE, source_node(target), lambda n: split_node(n)[1] == target
    if ":" in target and not _is_glob(target) and asset_node(*target.split(":", 1)) in graph.nodes:
        node = asset_node(*target.split(":", 1))
        return ASSET, node, lambda n: n == node
    if target in workflows:
        return WORKFLOW, workflow_node(target), lambda n: False
    kind = node_type(target)
    if kind in (SOURCE, ASSET, WORKFLOW) and not _is_glob(target) and target in graph.nodes:
        return resolve_target(graph, public_id(target))
    if _is_glob(target):
        if ":" in target:
            source_part = target.split(":", 1)[0]
            match = fnmatch.fnmatchcase
            matched_sources = [s for s in sorted(sources) if match(s, source_part)]
            assets = [n for s in matched_sources for n in _source_assets(graph, s)
                      if match(public_id(n), target)]
        else:
            matched_sources = [s for s in sorted(sources) if fnmatch.fnmatchcase(s, target)]
            assets = [n for s in matched_sources for n in _source_assets(graph, s)]
        if not assets:
            near = closest(graph, target)
            hint = f"; closest: {', '.join(near)}" if near else ""
            raise UsageError(f"{target!r} matches no source or asset{hint}")
        chosen = set(assets)
        return "glob", None, chosen.__contains__
    raise _unknown(graph, "source, asset or workflow", target)


def feeds(graph: Any, target: str) -> dict[str, Any]:
    """Every workflow that `target` feeds, directly or through workflow-to-workflow feeds.

    Each has `direct` (it reads the target itself) and the `path` of node ids from the
    target to it. Asset lineage counts: a workflow reading an asset `derived_from` the target
    is fed by it, and its path goes through the derived assets.
    JSON: {"target", "workflows": [{"id", "direct", "path"}]}.
    """
    kind, start, matches = resolve_target(graph, target)
    prefix = [start] if kind == SOURCE and start is not None else []
    paths: dict[str, list[str]] = {}
    direct: set[str] = set()
    if kind == WORKFLOW:
        assert start is not None
        for reader in _workflow_succs(graph, start):
            paths[reader] = [start, reader]
            direct.add(reader)
    else:
        derived = _derived_assets(graph, matches)
        for workflow_id in graph.graph.get("workflows", ()):
            node = workflow_node(workflow_id)
            reads = [a for a, keys in graph.pred[node].items() if FEEDS in keys and node_type(a) == ASSET]
            readers = sorted(a for a in reads if matches(a))
            if readers:
                paths[node] = prefix + [readers[0], node]
                direct.add(node)
                continue
            through = sorted((derived[a] for a in reads if a in derived), key=lambda c: (len(c), c))
            if through:
                paths[node] = prefix + through[0] + [node]
    frontier = sorted(paths)
    while frontier:  # breadth first, so each path is a shortest one
        following: list[str] = []
        for node in frontier:
            for downstream in _workflow_succs(graph, node):
                if downstream not in paths:
                    paths[downstream] = paths[node] + [downstream]
                    following.append(downstream)
        frontier = sorted(following)
    ordered = sorted(paths, key=lambda n: (n not in direct, len(paths[n]), n))
    return {
        "target": target,
        "workflows": [{"id": public_id(n), "direct": n in direct, "path": paths[n]} for n in ordered],
    }


def _derived_assets(graph: Any, matches: Callable[[str], bool]) -> dict[str, list[str]]:
    """Asset nodes derived (transitively) from an asset `matches` accepts, not themselves
    matched, each with the shortest chain of asset nodes from a matched one to it."""
    found: dict[str, list[str]] = {}
    frontier = [[u] for u in graph.graph.get("derived_upstreams") or () if matches(u)]
    seen = {chain[0] for chain in frontier}
    while frontier:  # breadth first, so each chain is a shortest one
        following = []
        for chain in sorted(frontier):
            for child, keys in sorted(graph.pred[chain[-1]].items()):
                if DERIVED_FROM in keys and child not in seen:
                    seen.add(child)
                    found[child] = chain + [child]
                    following.append(chain + [child])
        frontier = following
    return {node: chain for node, chain in found.items() if not matches(node)}


def _read_through_lineage(graph: Any, workflow: str, asset: str) -> list[str] | None:
    """The shortest chain of asset ids from `asset` to one the workflow reads that is derived from it."""
    chains = _derived_assets(graph, lambda n: n == asset) if asset in set(
        graph.graph.get("derived_upstreams") or ()) else {}
    reads = [chain for node, chain in chains.items() if FEEDS in graph.succ[node].get(workflow, {})]
    if not reads:
        return None
    return [public_id(n) for n in min(reads, key=lambda c: (len(c), c))]


def _upstream_assets(graph: Any, node: str) -> list[tuple[str, list[str]]]:
    """Assets a node is derived from, transitively: (asset, chain from it to `node`)."""
    found: dict[str, list[str]] = {}
    frontier = [[node]]
    while frontier:
        following = []
        for chain in frontier:
            for parent, keys in sorted(graph.succ[chain[0]].items()):
                if DERIVED_FROM in keys and parent not in found and parent != node:
                    found[parent] = [parent] + chain
                    following.append([parent] + chain)
        frontier = following
    return sorted(found.items())


# ---------------------------------------------------------------------------------------
# depends

def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def age_now(attrs: dict[str, Any], now: datetime) -> float | None:
    """An asset's age at `now`, conservatively (from when the evidence says it may have changed)."""
    if attrs.get("freshness_method", "none") == "none":
        return None
    reference = _parse(attrs.get("changed_after")) or _parse(attrs.get("last_changed"))
    if reference is None:
        return None
    return max(0.0, (now - reference).total_seconds())


def _findings(attrs: dict[str, Any]) -> list[dict[str, str]]:
    return [{"kind": f["kind"], "severity": f["severity"], "message": f["message"]}
            for f in attrs.get("findings", ())]


def _counts(attrs: dict[str, Any]) -> dict[str, int]:
    return {s: int(attrs.get(f"findings_{s}", 0)) for s in SEVERITIES}


def depends(graph: Any, workflow_id: str, now: datetime) -> dict[str, Any]:
    """Every asset and source behind a workflow, also through upstream workflows, with health.

    Each asset has its freshness (method, last change, age now), effective SLA and who set
    it, owner and where that came from, open findings, and `freshness_state` (fresh, stale,
    unknown, no_sla, missing) worked out at `now`.
    """
    node = workflow_node(workflow_id)
    if workflow_id not in set(graph.graph.get("workflows", ())):
        raise _unknown(graph, "workflow", workflow_id)
    upstream: dict[str, list[str]] = {node: [node]}
    frontier = [node]
    while frontier:
        following = []
        for current in frontier:
            for parent in _workflow_preds(graph, current):
                if parent not in upstream:
                    upstream[parent] = [parent] + upstream[current]
                    following.append(parent)
        frontier = sorted(following)
    readers: dict[str, list[str]] = {}
    access: dict[str, str] = {}
    for wf in sorted(upstream, key=lambda n: (len(upstream[n]), n)):
        for asset, keys in sorted(graph.pred[wf].items()):
            if FEEDS in keys and node_type(asset) == ASSET:
                readers.setdefault(asset, []).append(public_id(wf))
                if wf == node:
                    access[asset] = keys[FEEDS].get("access", "read")
    # What the assets read are derived from (asset lineage): upstream asset -> chain of
    # asset ids from it to the asset a workflow reads.
    lineage: dict[str, list[str]] = {}
    for asset in sorted(readers):
        for origin, chain in _upstream_assets(graph, asset):
            if origin not in readers and (origin not in lineage or len(chain) < len(lineage[origin])):
                lineage[origin] = [public_id(n) for n in chain]
    assets = []
    source_ids: set[str] = set()
    for asset in sorted(set(readers) | set(lineage)):
        attrs = graph.nodes[asset]
        _, source_id, path = split_node(asset)
        source_ids.add(source_id)
        age = age_now(attrs, now)
        sla = attrs.get("sla_seconds")
        if attrs.get("scan_state", "found") != "found":
            state = "missing" if attrs.get("scan_state") == "missing" else "not_scanned"
        elif age is None:
            state = "unknown"
        elif sla is None:
            state = "no_sla"
        else:
            state = "stale" if age > sla else "fresh"
        assets.append({
            "id": public_id(asset),
            "source": source_id,
            "path": path,
            "direct": asset in access,
            "read_by": readers.get(asset, []),
            "derived_path": lineage.get(asset),
            "access": access.get(asset),
            "freshness": {
                "method": attrs.get("freshness_method", "none"),
                "last_changed": attrs.get("last_changed"),
                "age_seconds": round(age) if age is not None else None,
                "age_at_scan_seconds": attrs.get("age_seconds"),
            },
            "sla_seconds": sla,
            "sla_set_by": attrs.get("sla_set_by"),
            "freshness_state": state,
            "owner": attrs.get("owner"),
            "owner_provenance": attrs.get("owner_provenance"),
            "status": attrs.get("status", "healthy"),
            "findings": _findings(attrs),
        })
    sources = []
    for source_id in sorted(source_ids):
        attrs = graph.nodes[source_node(source_id)]
        sources.append({
            "id": source_id,
            "connector": attrs.get("connector"),
            "owner": attrs.get("owner"),
            "owner_provenance": attrs.get("owner_provenance"),
            "scan_status": attrs.get("scan_status"),
            "scanned_at": attrs.get("scanned_at"),
            "status": attrs.get("status", "healthy"),
            "findings": _findings(attrs),
        })
    runs_as = []
    for principal, keys in sorted(graph.succ[node].items()):
        if RUNS_AS in keys:
            attrs = graph.nodes[principal]
            runs_as.append({"source": keys[RUNS_AS].get("source_id"), "principal": attrs.get("label"),
                            "privileged": bool(attrs.get("privileged")), "status": attrs.get("status"),
                            "findings": _findings(attrs)})
    attrs = graph.nodes[node]
    return {
        "workflow": workflow_id,
        "stage": attrs.get("stage"),
        "owner": attrs.get("owner"),
        "status": attrs.get("status", "healthy"),
        "findings": _findings(attrs),
        "as_of": now.isoformat(),
        "upstream": [{"id": public_id(wf), "stage": graph.nodes[wf].get("stage"),
                      "status": graph.nodes[wf].get("status"), "path": upstream[wf]}
                     for wf in sorted(upstream, key=lambda n: (len(upstream[n]), n)) if wf != node],
        "assets": assets,
        "sources": sources,
        "runs_as": runs_as,
    }


# ---------------------------------------------------------------------------------------
# why

def why_target(graph: Any, workflow_id: str, asset_id: str) -> tuple[str, str]:
    """Check the ids of a `why` question and return (source id, asset path)."""
    if workflow_id not in set(graph.graph.get("workflows", ())):
        raise _unknown(graph, "workflow", workflow_id)
    if asset_id.startswith("asset:"):
        asset_id = asset_id[len("asset:"):]
    source_id, sep, path = asset_id.partition(":")
    if not sep or source_id not in set(graph.graph.get("sources", ())) or \
            asset_node(source_id, path) not in graph.nodes:
        raise _unknown(graph, "asset", asset_id)
    return source_id, path


def why(graph: Any, snapshot: Any, workflow_id: str, asset_id: str) -> dict[str, Any]:
    """Every access path from the principal `workflow_id` runs as to the asset.

    `snapshot` is the source's latest stored snapshot (or None). Paths go through role
    membership chains, PUBLIC, schema/dataset- or source-wide grants, bucket policies and
    privileged principals; "no access" (no paths) is a valid answer.
    """
    from scanner.access import access_levels, access_paths

    source_id, path = why_target(graph, workflow_id, asset_id)
    node = workflow_node(workflow_id)
    principal = None
    for other, keys in sorted(graph.succ[node].items()):
        if RUNS_AS in keys and keys[RUNS_AS].get("source_id") == source_id:
            principal = graph.nodes[other].get("label")
    declared = graph.succ[asset_node(source_id, path)].get(node, {}).get(FEEDS)
    answer: dict[str, Any] = {
        "workflow": workflow_id,
        "asset": f"{source_id}:{path}",
        "source": source_id,
        "principal": principal,
        "declared_access": declared.get("access", "read") if declared else None,
        # When the workflow reads something built from the asset: the asset ids from it to that.
        "derived_path": None if declared else _read_through_lineage(graph, node, asset_node(source_id, path)),
        "access": [],
        "can_read": False,
        "can_write": False,
        "paths": [],
        "note": None,
    }
    if principal is None:
        answer["note"] = (f"workflow {workflow_id} declares no runs_as for source {source_id} "
                          f"(add runs_as: {{{source_id}: PRINCIPAL}})")
        return answer
    if snapshot is None:
        answer["note"] = f"source {source_id} has no successful scan yet (run ctxscan scan --source {source_id})"
        return answer
    asset = snapshot.asset(path)
    if asset is None:
        answer["note"] = f"{source_id}:{path} was not found in the latest scan of {source_id}"
        return answer
    if not snapshot.reports_grants:
        answer["note"] = f"the {snapshot.connector} connector does not report access; it is unknown"
        answer["access"] = None
        answer["can_read"] = answer["can_write"] = None
        return answer
    if principal in snapshot.state.get("unknown_principals", ()):
        answer["note"] = (f"{principal} does not exist in source {source_id}: fix the runs_as of "
                          f"workflow {workflow_id}")
        answer["access"] = None
        answer["can_read"] = answer["can_write"] = None
        return answer
    paths = access_paths(snapshot, principal, asset)
    levels = access_levels(paths)
    answer["access"] = sorted(levels, key=["read", "write", "admin", "other"].index)
    answer["can_read"] = bool(levels & {"read", "admin"})
    answer["can_write"] = bool(levels & {"write", "admin"})
    answer["paths"] = [{
        "chain": list(p.chain),
        "privilege": p.privilege,
        "access": p.access,
        "scope": p.scope,
        "via": p.via,
        "public": p.public,
        "privileged": p.privileged,
        "columns": list(p.columns),
        "description": p.describe(),
    } for p in paths]
    if not paths:
        answer["note"] = f"no access: {principal} has no path to {source_id}:{path}"
    return answer
