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
    """A node's findings as the graph lists them: the most severe first, at most 50
    (`findings_total` then says how many it has)."""
    return [{"kind": f["kind"], "severity": f["severity"], "message": f["message"]}
            for f in attrs.get("findings", ())]


def _total(attrs: dict[str, Any]) -> dict[str, int]:
    """`findings_total` for a node whose list the graph cut short, else nothing."""
    return {"findings_total": int(attrs["findings_count"])} if "findings_count" in attrs else {}


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
    seen_by: dict[str, str] = {}   # declared, observed (OpenLineage) or both, for the workflow's own reads
    for wf in sorted(upstream, key=lambda n: (len(upstream[n]), n)):
        for asset, keys in sorted(graph.pred[wf].items()):
            if FEEDS in keys and node_type(asset) == ASSET:
                readers.setdefault(asset, []).append(public_id(wf))
                if wf == node:
                    access[asset] = keys[FEEDS].get("access", "read")
                    seen_by[asset] = keys[FEEDS].get("lineage", "declared")
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
            "lineage": seen_by.get(asset),
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
            **_total(attrs),
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
            **_total(attrs),
        })
    runs_as = []
    for principal, keys in sorted(graph.succ[node].items()):
        if RUNS_AS in keys:
            attrs = graph.nodes[principal]
            runs_as.append({"source": keys[RUNS_AS].get("source_id"), "principal": attrs.get("label"),
                            "privileged": bool(attrs.get("privileged")), "status": attrs.get("status"),
                            "findings": _findings(attrs), **_total(attrs)})
    attrs = graph.nodes[node]
    return {
        "workflow": workflow_id,
        "stage": attrs.get("stage"),
        "owner": attrs.get("owner"),
        "status": attrs.get("status", "healthy"),
        "findings": _findings(attrs),
        **_total(attrs),
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


def why(graph: Any, snapshot: Any, workflow_id: str, asset_id: str,
        models: dict[tuple[str, str], Any] | None = None) -> dict[str, Any]:
    """Every access path from the principal `workflow_id` runs as to the asset, at three levels.

    `snapshot` is the source's latest stored snapshot (or None). `can_read`/`can_write` are
    the effective answer (as itself, now: role chains with INHERIT, PUBLIC, schema USAGE);
    `can_*_via_set_role` add what SET ROLE to a role it is a member of gives; `escalation`
    lists what it could grant itself, each path naming its step. "No access" is an answer.
    `models` caches the principal's access model across calls (`why_all`).
    """
    from scanner.access import LEVEL_ESCALATION, LEVEL_SET_ROLE, PrincipalAccess, access_levels

    source_id, path = why_target(graph, workflow_id, asset_id)
    node = workflow_node(workflow_id)
    principal = _runs_as(graph, workflow_id, source_id)
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
        "can_alter": False,
        "can_read_via_set_role": False,
        "can_write_via_set_role": False,
        "can_read_escalation": False,
        "can_write_escalation": False,
        "paths": [],
        "paths_via_set_role": [],
        "escalation": [],
        "container": None,
        "container_reachable": None,
        "sentences": [],
        "note": None,
    }
    unknown = ("access", "can_read", "can_write", "can_alter", "can_read_via_set_role",
               "can_write_via_set_role", "can_read_escalation", "can_write_escalation")
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
        answer.update(dict.fromkeys(unknown))
        return answer
    if principal in snapshot.state.get("unknown_principals", ()):
        answer["note"] = (f"{principal} does not exist in source {source_id}: fix the runs_as of "
                          f"workflow {workflow_id}")
        answer.update(dict.fromkeys(unknown))
        return answer
    cache = models if models is not None else {}
    key = (source_id, principal)
    if key not in cache:
        cache[key] = PrincipalAccess(snapshot, principal)
    report = cache[key].report(asset)
    levels = access_levels(report.effective)
    answer["access"] = sorted(levels, key=["read", "write", "alter", "admin", "other"].index)
    answer.update(
        can_read=report.can("read"), can_write=report.can("write"), can_alter=report.can("alter"),
        can_read_via_set_role=report.can("read", LEVEL_SET_ROLE),
        can_write_via_set_role=report.can("write", LEVEL_SET_ROLE),
        can_read_escalation=report.can("read", LEVEL_ESCALATION),
        can_write_escalation=report.can("write", LEVEL_ESCALATION),
        paths=[_path_json(p) for p in report.effective],
        paths_via_set_role=[_path_json(p) for p in report.via_set_role],
        escalation=[_path_json(p) for p in report.escalation])
    if snapshot.container_usage and asset.container is not None:
        answer["container"] = asset.container
        answer["container_reachable"] = report.container_reachable.get("effective", False)
    answer["sentences"] = _sentences(principal, path, report)
    if not (report.effective or report.via_set_role or report.escalation):
        answer["note"] = f"no access: {principal} has no path to {source_id}:{path}"
    return answer


def _runs_as(graph: Any, workflow_id: str, source_id: str) -> str | None:
    for other, keys in sorted(graph.succ[workflow_node(workflow_id)].items()):
        if RUNS_AS in keys and keys[RUNS_AS].get("source_id") == source_id:
            return str(graph.nodes[other].get("label"))
    return None


def _path_json(p: Any) -> dict[str, Any]:
    return {
        "chain": list(p.chain),
        "privilege": p.privilege,
        "access": p.access,
        "scope": p.scope,
        "via": p.via,
        "public": p.public,
        "privileged": p.privileged,
        "columns": list(p.columns),
        "level": p.level,
        "step": p.step or None,
        "blocked": p.blocked or None,
        "description": p.describe(),
    }


def _sentences(principal: str, path: str, report: Any) -> list[str]:
    """What a person reads aloud: "support_bot can read public.customers through 2 paths"."""
    out: list[str] = []
    for access, verb in (("read", "read"), ("write", "write"), ("alter", "alter or drop")):
        level = report.level_of(access)
        if level is None:
            continue
        giving = report.paths_giving(access)
        if level == "effective":
            if access == "alter" and report.can("write"):
                continue  # an owner: "can write" already says it
            out.append(f"{principal} can {verb} {path} through {counted(len(giving), 'path')}")
        elif level == "via_set_role":
            step = giving[0].step if giving else "SET ROLE"
            out.append(f"{principal} can {verb} {path} after {step}")
        elif access != "alter":
            step = giving[0].step if giving else "escalation"
            out.append(f"{principal} could {verb} {path} by escalation ({step})")
    if not out:
        blocked = sorted({p.privilege for p in report.effective if p.blocked})
        reason = next((p.blocked for p in report.effective if p.blocked), "")
        out.append(f"{principal} cannot read or write {path}"
                   + (f": it holds {', '.join(blocked)} but {reason}" if blocked else ""))
    return out


def why_assets(graph: Any, workflow_id: str) -> list[str]:
    """Every asset id of the sources a workflow runs as a principal in or reads from, sorted."""
    if workflow_id not in set(graph.graph.get("workflows", ())):
        raise _unknown(graph, "workflow", workflow_id)
    node = workflow_node(workflow_id)
    sources = {keys[RUNS_AS].get("source_id") for _, keys in graph.succ[node].items() if RUNS_AS in keys}
    for asset, keys in graph.pred[node].items():
        if FEEDS in keys and node_type(asset) == ASSET:
            sources.add(split_node(asset)[1])
    known = set(graph.graph.get("sources", ()))
    return sorted(public_id(n) for source_id in sorted(s for s in sources if s in known)
                  for n in _source_assets(graph, source_id))


def why_all(graph: Any, snapshots: dict[str, Any], workflow_id: str) -> dict[str, Any]:
    """`why` for every asset of the workflow's sources, in one pass, with the containers its
    principal reaches (USAGE) without any asset in them."""
    models: dict[tuple[str, str], Any] = {}
    reached: list[tuple[str, str]] = []
    answers = [why(graph, snapshots.get(asset_id.partition(":")[0]), workflow_id, asset_id, models)
               for asset_id in why_assets(graph, workflow_id)]
    containers: dict[tuple[str, str], bool] = {}
    principals: dict[str, str] = {}
    for answer in answers:
        if answer["container"] is None:
            continue
        key = (answer["source"], answer["container"])
        principals[answer["source"]] = answer["principal"]
        used = bool(answer["can_read"] or answer["can_write"] or answer["can_alter"])
        containers[key] = containers.get(key, False) or used
        if answer["container_reachable"] and key not in reached:
            reached.append(key)
    sentences = {key: f"{principals[key[0]]} can reach schema {key[1]} (USAGE) but no table in it"
                 for key in reached if not containers[key]}
    for answer in answers:
        sentence = sentences.get((answer["source"], answer["container"]))
        if sentence:
            answer["sentences"].append(sentence)
    return {"workflow": workflow_id, "assets": answers, "sentences": list(sentences.values())}
