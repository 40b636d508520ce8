"""The dependency graph: one networkx graph built from the inventory and the latest scan.

Nodes are typed (`source`, `asset`, `workflow`, `principal`, `owner`) and their ids are
stable and readable: `source:crm`, `asset:crm:public.customers`, `workflow:support-bot`,
`principal:crm:support_bot`, `owner:data-eng`. Edges are typed too, and the edge key of the
`MultiDiGraph` is the type, so there is at most one edge of each type between two nodes:

    source --contains--> asset            owner --owns--> source | asset | workflow
    asset --feeds--> workflow             workflow --feeds--> workflow
    workflow --runs_as--> principal       principal --member_of--> principal
    principal --grants--> asset | source  (source for schema/dataset- and source-wide grants)
    asset --derived_from--> asset         (the derived asset points at what it is built from)

Node attributes carry what a reviewer needs: owner and where it came from, freshness (method,
last change, age when scanned, effective SLA), stage, the open findings and a `status`
(stale, over_permissioned, unowned, attention, healthy). A node's status is the worst, in
that order, of its own open findings and, for a workflow, those on the assets it reads
directly, for a source, those on the assets it holds (`status_from` names those assets when
they set it). Nothing depends on the wall clock, so the same inventory and stored scan
always give the same graph, and exports diff cleanly.

Building the graph of a large estate takes seconds (parsing the inventory alone takes most
of a second at 500 workflows), so it is cached in the store as compressed JSON keyed by the
store's state and a fingerprint of the inventory files. The cached form is chunked: a query
decodes only the chunks of the nodes it touches (`LiteGraph`), which keeps `ctxscan feeds`
and `ctxscan depends` well under half a second on 50,000 assets without importing networkx.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    import networkx as nx

    from scanner.inventory import Inventory, ReadDeclaration
    from scanner.lineage.observed import ObservedLineage
    from scanner.model import Asset, SourceSnapshot
    from scanner.store import SourceResult, Store, StoredFinding

# Node and edge types.
SOURCE, ASSET, WORKFLOW, PRINCIPAL, OWNER = "source", "asset", "workflow", "principal", "owner"
NODE_TYPES = (SOURCE, ASSET, WORKFLOW, PRINCIPAL, OWNER)
CONTAINS, FEEDS, RUNS_AS, GRANTS, MEMBER_OF, OWNS = (
    "contains", "feeds", "runs_as", "grants", "member_of", "owns")
DERIVED_FROM = "derived_from"
EDGE_TYPES = (CONTAINS, FEEDS, RUNS_AS, GRANTS, MEMBER_OF, OWNS, DERIVED_FROM)

# Node status, most urgent first; `attention` is any other open finding.
STATUSES = ("stale", "over_permissioned", "unowned", "attention", "not_scanned", "healthy")
SEVERITIES = ("critical", "high", "medium", "low", "info")
_SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}
_ACCESS_RANK = {"other": 0, "alter": 1, "read": 1, "write": 2, "admin": 3}

# Bump when the graph's shape or the cached encoding changes: old cache entries are ignored.
GRAPH_FORMAT = 6
# Finding messages on nodes are cut here (`ctxscan findings` has them whole).
_MESSAGE_CHARS = 240
# An inherited status names at most this many of the assets that set it.
_STATUS_FROM = 10
# A node lists at most this many of its own findings, most severe first; `findings_count` then
# says how many it has, and its `findings_*` counts are always all of them (`ctxscan findings
# --workflow/--source` lists them whole). A workflow whose principal can write 2,000
# tables has 2,000 findings: listed whole, 500 such workflows made a 48 MB chunk that every
# query touching a workflow decompressed.
_NODE_FINDINGS = 50
# Assets per cache chunk: a query decodes ~this many nodes for each asset it looks at.
_CHUNK_ASSETS = 1000


def source_node(source_id: str) -> str:
    """The node id of a source: `source:crm`."""
    return f"source:{source_id}"


def asset_node(source_id: str, path: str) -> str:
    """The node id of an asset: `asset:crm:public.customers`."""
    return f"asset:{source_id}:{path}"


def workflow_node(workflow_id: str) -> str:
    """The node id of a workflow: `workflow:support-reply-assistant`."""
    return f"workflow:{workflow_id}"


def principal_node(source_id: str, name: str) -> str:
    """The node id of a principal in one source: `principal:crm:support_bot`."""
    return f"principal:{source_id}:{name}"


def owner_node(owner_id: str) -> str:
    """The node id of an owner: `owner:data-eng`."""
    return f"owner:{owner_id}"


def node_type(node: str) -> str:
    """The type of a node, read from its id."""
    return node.split(":", 1)[0]


def split_node(node: str) -> tuple[str, str, str]:
    """(type, source or id, rest) of a node id; source ids never contain ':'."""
    kind, _, rest = node.partition(":")
    if kind in (ASSET, PRINCIPAL):
        source, _, name = rest.partition(":")
        return kind, source, name
    return kind, rest, ""


def public_id(node: str) -> str:
    """The id a user types for a node: `crm:public.customers` for an asset, `crm` for a source."""
    kind, first, rest = split_node(node)
    return f"{first}:{rest}" if kind in (ASSET, PRINCIPAL) else first


def sort_key(node: str) -> tuple[int, str]:
    """Canonical node order: by type, then id. Exports use it so they are deterministic."""
    kind = node_type(node)
    return (NODE_TYPES.index(kind) if kind in NODE_TYPES else len(NODE_TYPES), node)


# ---------------------------------------------------------------------------------------
# Building

def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _seconds(value: float | None) -> int | None:
    return int(round(value)) if value is not None else None


def _compiled(pattern: str) -> Callable[[str], Any]:
    return re.compile(fnmatch.translate(pattern)).match


class _Builder:
    """Accumulates nodes and edges in plain dicts, then hands them to networkx in order."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.edges: dict[tuple[str, str, str], dict[str, Any]] = {}

    def node(self, node: str, **attrs: Any) -> dict[str, Any]:
        current = self.nodes.get(node)
        if current is None:
            current = self.nodes[node] = {"type": node_type(node)}
        current.update({k: v for k, v in attrs.items() if v is not None})
        return current

    def edge(self, u: str, v: str, kind: str, **attrs: Any) -> dict[str, Any]:
        current = self.edges.get((u, v, kind))
        if current is None:
            current = self.edges[(u, v, kind)] = {"type": kind}
        current.update({k: v for k, v in attrs.items() if v is not None})
        return current


GraphParts = tuple[dict[str, Any], list[tuple[str, dict[str, Any]]], list[tuple[str, str, str, dict[str, Any]]]]


def build_graph(inventory: Inventory, snapshots: Mapping[str, SourceSnapshot],
                results: Mapping[str, SourceResult] | None = None,
                findings: Iterable[StoredFinding] = (), today: date | None = None,
                lineage: ObservedLineage | None = None) -> nx.MultiDiGraph:
    """The graph of an inventory, the latest snapshot of each source, and the open findings.

    `findings` should be the open, unaccepted findings; they decide each node's status.
    Each asset -> workflow `feeds` edge says where it comes from (`lineage`: `declared`, or,
    with `lineage` (what OpenLineage observed), `both`, or `observed` for a read nobody
    declared, with `observed_first_seen` and `observed_last_seen`).
    """
    import networkx as nx

    meta, nodes, edges = build_parts(inventory, snapshots, results, findings, today, lineage)
    graph = nx.MultiDiGraph()
    graph.graph.update(meta)
    graph.add_nodes_from(nodes)
    graph.add_edges_from(edges)
    return graph


def build_parts(inventory: Inventory, snapshots: Mapping[str, SourceSnapshot],
                results: Mapping[str, SourceResult] | None = None,
                findings: Iterable[StoredFinding] = (), today: date | None = None,
                lineage: ObservedLineage | None = None) -> GraphParts:
    """`build_graph`'s graph attributes, nodes and edges, in order, without networkx: what
    `encode_parts` caches (building the networkx graph alone costs seconds on 50,000 assets)."""
    results = results or {}
    b = _Builder()

    # Owners: every declared one, and every one referenced (marked undeclared).
    for declared in inventory.owners.values():
        b.node(owner_node(declared.id), label=declared.id, name=declared.name, contact=declared.contact,
               declared=True)

    def owned(node: str, owner: str | None, provenance: str) -> None:
        if not owner:
            return
        if owner_node(owner) not in b.nodes:
            b.node(owner_node(owner), label=owner, declared=False)
        b.edge(owner_node(owner), node, OWNS, provenance=provenance)

    # Sources and what their snapshots hold.
    from scanner.rules.sla import asset_override

    as_of: list[datetime] = []
    for source_id in sorted(inventory.sources):
        source = inventory.sources[source_id]
        snapshot = snapshots.get(source_id)
        result = results.get(source_id)
        owner, provenance = source.owner, "config" if source.owner else None
        if owner is None and snapshot is not None and snapshot.owner is not None:
            owner, provenance = snapshot.owner.owner, snapshot.owner.provenance
        node = source_node(source_id)
        if result is not None:
            as_of.append(result.probed_at)
        if snapshot is not None:
            as_of.append(snapshot.probed_at)
        b.node(node, label=source_id, connector=source.connector, owner=owner, owner_provenance=provenance,
               schedule=source.schedule, environment=source.environment, description=source.description,
               sla_seconds=_seconds(source.freshness.max_age or inventory.defaults.max_age),
               freshness_column=source.freshness.column,
               scan_status=result.status if result is not None else "never",
               scan_error=result.error if result is not None and result.status != "ok" else None,
               scanned_at=_iso(result.probed_at) if result is not None else None,
               snapshot_at=_iso(snapshot.probed_at) if snapshot is not None else None,
               asset_count=len(snapshot.assets) if snapshot is not None else None,
               partial=snapshot.partial if snapshot is not None else None,
               reports_grants=snapshot.reports_grants if snapshot is not None else None)
        owned(node, owner, provenance or "config")
        if snapshot is None:
            continue
        for asset in sorted(snapshot.assets, key=lambda a: a.path):
            _add_asset(b, source_id, snapshot, asset, asset_override(source, asset.path), owner, owned)
        _add_access(b, source_id, snapshot, {w.runs_as[source_id] for w in inventory.workflows.values()
                                             if source_id in w.runs_as})

    # Workflows, what they read and feed, and whom they run as.
    matchers: dict[tuple[str, str], list[str]] = {}
    for workflow_id in sorted(inventory.workflows):
        workflow = inventory.workflows[workflow_id]
        wf = workflow_node(workflow_id)
        evaluation = workflow.evaluation or {}
        rollout = workflow.rollout or {}
        b.node(wf, label=workflow_id, owner=workflow.owner,
               owner_provenance="config" if workflow.owner else None, stage=workflow.stage,
               environment=workflow.environment, description=workflow.description,
               reads=[r.asset for r in workflow.reads],
               evaluation=evaluation.get("suite") or evaluation.get("signal"),
               rollout_fallback=rollout.get("fallback"), rollback_owner=rollout.get("rollback_owner"))
        owned(wf, workflow.owner, "config")
        for read in workflow.reads:
            for path in _read_paths(read, snapshots, matchers):
                node = asset_node(read.source, path)
                if node not in b.nodes:  # declared but not in the latest scan
                    scanned = read.source in snapshots
                    b.node(node, label=path, source=read.source, path=path,
                           scan_state="missing" if scanned else "not_scanned", glob=read.is_glob or None,
                           owner=b.nodes[source_node(read.source)].get("owner"),
                           owner_provenance="source" if b.nodes[source_node(read.source)].get("owner") else None)
                    b.edge(source_node(read.source), node, CONTAINS)
                edge = b.edges.get((node, wf, FEEDS))
                if edge is None:
                    edge = b.edge(node, wf, FEEDS, access=read.access, declared=[read.asset], lineage="declared")
                else:
                    edge["declared"] = sorted(set(edge["declared"]) | {read.asset})
                    if read.access == "write":
                        edge["access"] = "write"
                if read.max_age is not None:
                    edge["max_age"] = _seconds(min(read.max_age, edge.get("max_age") or read.max_age))
                if read.columns:
                    edge["columns"] = sorted(set(edge.get("columns", ())) | set(read.columns))
                if read.approval:
                    edge["approval"] = read.approval
        for target in workflow.feeds:
            b.edge(wf, workflow_node(target), FEEDS)
        for source_id in sorted(workflow.runs_as):
            principal = principal_node(source_id, workflow.runs_as[source_id])
            if principal not in b.nodes:
                b.node(principal, label=workflow.runs_as[source_id], source=source_id, seen=False)
            b.edge(wf, principal, RUNS_AS, source_id=source_id)  # not `source`: node-link JSON uses it

    if lineage is not None:
        _add_observed(b, lineage, snapshots)

    # Effective SLA, exactly as the `stale` rule sees it.
    from scanner.rules.base import RuleContext
    from scanner.rules.sla import effective_sla

    context = RuleContext(inventory=inventory, snapshots=snapshots, results=results,
                          now=max(as_of) if as_of else datetime.now().astimezone())
    upstreams = _add_lineage(b, context)
    from scanner.rules.sla import carried_needs

    # The findings are judged now; the first moment an asset crosses one of its levels (a
    # warning, its SLA, a workflow's own need) the graph is out of date.
    crossings: list[datetime] = []
    built_at = datetime.now().astimezone()
    # An asset nothing reads, directly or through lineage, has its source's SLA (or its
    # `assets:` entry's): the same for every such asset under the same entry, so computed once.
    unread: dict[tuple[str, int], tuple[Any, dict[str, Any]]] = {}
    derived = bool(context.derived_children)
    for node, attrs in b.nodes.items():
        if attrs["type"] != ASSET:
            continue
        _, source_id, path = split_node(node)
        reached = derived or bool(context.asset_readers(source_id, path)) or source_id not in inventory.sources
        if not reached:
            key = (source_id, id(asset_override(inventory.sources[source_id], path)))
            known = unread.get(key)
            if known is None:
                sla = effective_sla(context, source_id, path)
                known = unread[key] = (sla, _sla_attrs(sla))
            sla, sla_attrs = known
            if sla is None:
                continue
            attrs.update(sla_attrs)
            if "sla_via" in sla_attrs:
                attrs["sla_via"] = list(sla_attrs["sla_via"])  # each node its own list, as b.node gives
        else:
            sla = effective_sla(context, source_id, path)
            if sla is None:
                continue
            attrs.update(_sla_attrs(sla))
        changed = attrs.get("last_changed")
        if changed:
            # No workflow carries a need of an asset nothing reads (`carried_needs` is empty).
            carried = carried_needs(context, source_id, path).values() if reached else ()
            levels = [sla.warn_after, sla.max_age, *carried]
            moments = [datetime.fromisoformat(changed) + timedelta(seconds=level) for level in levels if level]
            crossings += [m for m in moments if m > built_at]

    _attach_findings(b, findings)
    valid_until = _valid_until(inventory, today)

    meta: dict[str, Any] = {
        "name": "ctxscan",
        "format": GRAPH_FORMAT,
        "as_of": _iso(max(as_of)) if as_of else None,
        "inventory_digest": inventory.digest,
        "sources": sorted(inventory.sources),
        "workflows": sorted(inventory.workflows),
        "owners": sorted(n.split(":", 1)[1] for n in b.nodes if node_type(n) == OWNER),
        "valid_until": valid_until.isoformat() if valid_until else None,
    }
    if upstreams:  # assets something is derived from: where `feeds` starts following lineage
        meta["derived_upstreams"] = upstreams
    if crossings:  # absent when nothing can cross a level later: reproducible exports stay as they were
        meta["valid_before"] = min(crossings).isoformat()
    order = sorted(b.nodes, key=sort_key)
    rank = {node: i for i, node in enumerate(order)}
    return (meta, [(node, b.nodes[node]) for node in order],
            [(u, v, kind, b.edges[(u, v, kind)])
             for (u, v, kind) in sorted(b.edges, key=lambda e: (rank[e[0]], rank[e[1]], e[2]))])


def _sla_attrs(sla: Any) -> dict[str, Any]:
    """An asset node's `sla_*` attributes, as `_Builder.node` writes them (None left out)."""
    if sla is None:
        return {}
    values = {"sla_seconds": _seconds(sla.max_age), "sla_warn_seconds": _seconds(sla.warn_after),
              "sla_origin": sla.origin, "sla_set_by": sla.set_by, "sla_description": sla.describe(),
              "sla_via": list(sla.via) or None}
    return {key: value for key, value in values.items() if value is not None}


def _add_observed(b: _Builder, lineage: ObservedLineage, snapshots: Mapping[str, SourceSnapshot]) -> None:
    """Mark the reads OpenLineage observed on the asset -> workflow `feeds` edges."""
    for edge in lineage.edges:
        if edge.direction != "input" or edge.asset is None:
            continue
        source_id, path = edge.asset
        node = asset_node(source_id, path)
        for workflow_id in edge.workflows:
            wf = workflow_node(workflow_id)
            if wf not in b.nodes or source_node(source_id) not in b.nodes:
                continue
            if node not in b.nodes:
                source_attrs = b.nodes[source_node(source_id)]
                b.node(node, label=path, source=source_id, path=path,
                       scan_state="missing" if source_id in snapshots else "not_scanned",
                       owner=source_attrs.get("owner"),
                       owner_provenance="source" if source_attrs.get("owner") else None)
                b.edge(source_node(source_id), node, CONTAINS)
            attrs = b.edges.get((node, wf, FEEDS))
            if attrs is None:
                attrs = b.edge(node, wf, FEEDS, access="read", declared=[], lineage="observed")
            elif attrs.get("lineage") == "declared":
                attrs["lineage"] = "both"
            first, last = edge.first_seen.isoformat(), edge.last_seen.isoformat()
            attrs["observed_first_seen"] = min(attrs.get("observed_first_seen") or first, first)
            attrs["observed_last_seen"] = max(attrs.get("observed_last_seen") or last, last)
            attrs["observed_job"] = edge.job


def _add_lineage(b: _Builder, context: Any) -> list[str]:
    """The `derived_from` edges (derived asset -> upstream asset); the upstream nodes, sorted."""
    upstreams = []
    for (source_id, path), children in sorted(context.derived_children.items()):
        upstream = asset_node(source_id, path)
        if source_node(source_id) not in b.nodes:
            continue
        for child_source, child_path in children:
            child = asset_node(child_source, child_path)
            for node, sid, p in ((upstream, source_id, path), (child, child_source, child_path)):
                if node not in b.nodes:  # named by lineage but not in the latest scan
                    source_attrs = b.nodes[source_node(sid)]
                    b.node(node, label=p, source=sid, path=p,
                           scan_state="missing" if source_attrs.get("snapshot_at") else "not_scanned",
                           owner=source_attrs.get("owner"),
                           owner_provenance="source" if source_attrs.get("owner") else None)
                    b.edge(source_node(sid), node, CONTAINS)
            b.edge(child, upstream, DERIVED_FROM)
        upstreams.append(upstream)
    return upstreams


def _add_asset(b: _Builder, source_id: str, snapshot: SourceSnapshot, asset: Asset,
               override: Any, source_owner: str | None, owned: Callable[[str, str | None, str], None]) -> None:
    node = asset_node(source_id, asset.path)
    owner, provenance = source_owner, "source" if source_owner else None
    own_owner = False
    if override is not None and override.owner:
        owner, provenance, own_owner = override.owner, "config (assets:)", True
    elif asset.owner is not None:
        owner, provenance, own_owner = asset.owner.owner, asset.owner.provenance, True
    freshness = asset.freshness
    values = (asset.path, source_id, asset.path, asset.kind, asset.container, "found", owner, provenance,
              list(override.tags) if override is not None and override.tags else None,
              freshness.method, _iso(freshness.last_changed), _iso(freshness.changed_after), freshness.caveat,
              _seconds(freshness.age_seconds(snapshot.probed_at)), len(asset.columns) if asset.columns else None,
              asset.row_count, asset.size_bytes)
    if node in b.nodes:  # a path the snapshot holds twice: merged, as b.node does
        b.node(node, **dict(zip(_ASSET_KEYS, values, strict=True)))
    else:  # as b.node writes it, without its keyword arguments (50,000 assets)
        attrs = b.nodes[node] = {"type": ASSET}
        attrs.update([(key, value) for key, value in zip(_ASSET_KEYS, values, strict=True) if value is not None])
    b.edges.setdefault((source_node(source_id), node, CONTAINS), {"type": CONTAINS})
    if own_owner:
        owned(node, owner, provenance or "config")


_ASSET_KEYS = ("label", "source", "path", "kind", "container", "scan_state", "owner", "owner_provenance", "tags",
               "freshness_method", "last_changed", "changed_after", "freshness_caveat", "age_seconds", "columns",
               "row_count", "size_bytes")


def _relevant_principals(snapshot: SourceSnapshot, runs_as: set[str]) -> set[str]:
    """The principals worth drawing: those workflows run as, the public ones, and every role
    on a membership path (INHERIT or SET ROLE) from them to a grant or a privileged role, not
    every role of the cluster."""
    from scanner.model import PUBLIC_PRINCIPALS

    parents: dict[str, set[str]] = {}
    for membership in snapshot.memberships:
        parents.setdefault(membership.member, set()).add(membership.role)
    reachable = set(runs_as)
    todo = list(runs_as)
    while todo:
        for role in parents.get(todo.pop(), ()):
            if role not in reachable:
                reachable.add(role)
                todo.append(role)
    useful = {g.principal for g in snapshot.grants} | {p.name for p in snapshot.principals if p.privileged}
    # A reachable role matters when it, or a role above it, holds something.
    members: dict[str, set[str]] = {}
    for membership in snapshot.memberships:
        members.setdefault(membership.role, set()).add(membership.member)
    leads = set(useful)
    todo = list(useful)
    while todo:
        for member in members.get(todo.pop(), ()):
            if member not in leads:
                leads.add(member)
                todo.append(member)
    kept = {role for role in reachable if role in runs_as or role in leads}
    return kept | (PUBLIC_PRINCIPALS & snapshot.grantees)


def _add_access(b: _Builder, source_id: str, snapshot: SourceSnapshot, runs_as: set[str]) -> None:
    from scanner.model import PUBLIC_PRINCIPALS, SCOPE_ASSET, SCOPE_COLUMN, SCOPE_CONTAINER

    relevant = _relevant_principals(snapshot, runs_as)
    for principal in sorted(snapshot.principals, key=lambda p: p.name):
        if principal.name not in relevant:
            continue
        b.node(principal_node(source_id, principal.name), label=principal.name, source=source_id,
               kind=principal.kind, privileged=principal.privileged,
               attributes=list(principal.attributes) or None, seen=True,
               public=principal.name in PUBLIC_PRINCIPALS or None)
    for membership in snapshot.memberships:
        if membership.member not in relevant or membership.role not in relevant:
            continue
        for name in (membership.member, membership.role):
            if principal_node(source_id, name) not in b.nodes:
                b.node(principal_node(source_id, name), label=name, source=source_id, seen=True)
        b.edge(principal_node(source_id, membership.member), principal_node(source_id, membership.role),
               MEMBER_OF, inherit=membership.inherit)
    # Each (grantee, target) edge is written at its first grant, as b.edge would (no value is
    # None), and its lists are sorted and made unique once, where more grants came (150,000
    # grants at 50,000 tables: doing that on every grant cost ~0.2 s).
    grantees: dict[str, str] = {}
    source = source_node(source_id)
    asset_prefix = asset_node(source_id, "")
    nodes, edges = b.nodes, b.edges
    shared: set[tuple[str, str, str]] = set()
    other = _ACCESS_RANK.get("other", 0)
    for grant in snapshot.grants:
        name = grant.principal
        if name not in relevant:
            continue
        scope = grant.scope
        if scope == SCOPE_ASSET or scope == SCOPE_COLUMN:
            target = asset_prefix + grant.target
            if target not in nodes:  # an asset the include/exclude globs left out
                continue
        else:
            target = source
        grantee = grantees.get(name)
        if grantee is None:
            grantee = grantees[name] = principal_node(source_id, name)
            if grantee not in nodes:
                b.node(grantee, label=name, source=source_id, seen=True, public=name in PUBLIC_PRINCIPALS or None)
        privilege = grant.privilege
        if scope == SCOPE_COLUMN and grant.columns:
            privilege = f"{privilege}({', '.join(grant.columns)})"
        elif scope == SCOPE_CONTAINER:
            privilege = f"{privilege} on {grant.target}"
        elif target == source:
            privilege = f"{privilege} on all"
        key = (grantee, target, GRANTS)
        edge = edges.get(key)
        public = grant.public or name in PUBLIC_PRINCIPALS
        if edge is None:
            edges[key] = {"type": GRANTS, "privileges": [privilege],
                          "access": grant.access if _ACCESS_RANK.get(grant.access, 0) > other else "other",
                          "scopes": [scope], "via": [grant.via] if grant.via else [], "public": public}
            continue
        shared.add(key)
        edge["privileges"].append(privilege)
        edge["scopes"].append(scope)
        if grant.via:
            edge["via"].append(grant.via)
        if _ACCESS_RANK.get(grant.access, 0) > _ACCESS_RANK.get(edge["access"], 0):
            edge["access"] = grant.access
        edge["public"] = edge["public"] or public
    for key in shared:
        edge = edges[key]
        for field in ("privileges", "scopes", "via"):
            edge[field] = sorted(set(edge[field]))


def _read_paths(read: ReadDeclaration, snapshots: Mapping[str, SourceSnapshot],
                matchers: dict[tuple[str, str], list[str]]) -> list[str]:
    """The asset paths a read names: itself, or what its glob matches in the latest snapshot.

    A glob that matches nothing names itself, so the declaration still shows (as a missing
    asset node, which its `missing_asset` finding hangs on) instead of vanishing.
    """
    from scanner.rules.base import folder_prefix

    snapshot = snapshots.get(read.source)
    head = folder_prefix(read.path)
    # Something inside a folder asset (`kb:articles/*`) is that folder, as the rules see it.
    folder = [head] if head and snapshot is not None and any(
        a.path == head and a.kind == "folder" for a in snapshot.assets) else []
    if not read.is_glob:
        if folder and not any(a.path == read.path for a in snapshot.assets):  # type: ignore[union-attr]
            return folder
        return [read.path]
    key = (read.source, read.path)
    if key not in matchers:
        match = _compiled(read.path)
        matchers[key] = (sorted(a.path for a in snapshot.assets if match(a.path)) if snapshot else []) \
            or folder or [read.path]
    return matchers[key]


def _valid_until(inventory: Inventory, today: date | None) -> date | None:
    """The last day on which the set of unexpired `accept:` entries stays the same."""
    today = today or date.today()
    upcoming = [a.expires for a in inventory.accept if a.expires is not None and a.expires >= today]
    return min(upcoming) if upcoming else None


def _attach_findings(b: _Builder, findings: Iterable[StoredFinding]) -> None:
    """Hang each finding on the nodes it names, then derive each node's status.

    A node's own status comes from the findings hung on it; a workflow then takes the worst
    status of the assets it reads directly, and a source the worst of the assets it holds,
    when that is worse than its own (precedence: stale, over_permissioned, unowned,
    attention, healthy). `findings` and the `findings_*` counts stay the node's own, and
    `status_from` names the assets (the first `_STATUS_FROM`, `status_from_count` of all)
    that gave an inherited status. Nothing is passed on further: not downstream through
    workflow-to-workflow feeds, nor from an asset to its source's other readers.
    """
    # Each finding's entry with its sort key, made once however many nodes it hangs on (a
    # workflow of the bench estate has 2,000 findings; the estate 174,000).
    attached: dict[str, list[tuple[tuple[int, str, str, str], dict[str, str]]]] = {}
    for finding in findings:
        targets = []
        asset = f"asset:{finding.asset}" if finding.asset else None
        if asset and asset in b.nodes:
            targets.append(asset)
        elif finding.source and source_node(finding.source) in b.nodes:
            targets.append(source_node(finding.source))
        if finding.workflow and workflow_node(finding.workflow) in b.nodes:
            targets.append(workflow_node(finding.workflow))
        if finding.principal and finding.source:
            principal = principal_node(finding.source, finding.principal)
            if principal in b.nodes:
                targets.append(principal)
        message = finding.message if len(finding.message) <= _MESSAGE_CHARS else \
            finding.message[:_MESSAGE_CHARS - 1] + "\u2026"
        entry = {"kind": finding.kind, "severity": finding.severity, "message": message,
                 "fingerprint": finding.fingerprint}
        item = ((_SEVERITY_RANK.get(finding.severity, 9), finding.kind, message, finding.fingerprint), entry)
        for target in targets:
            attached.setdefault(target, []).append(item)
    none = {f"findings_{severity}": 0 for severity in SEVERITIES}
    first = itemgetter(0)
    for node, attrs in b.nodes.items():
        items = attached.get(node)
        if items is None:  # most nodes: no findings, and the status needs no sorting
            attrs.update(none)
            attrs["status"] = "not_scanned" if attrs.get("scan_status") == "never" or \
                attrs.get("scan_state") == "not_scanned" else "healthy"
            continue
        items.sort(key=first)
        entries = [entry for _, entry in items]
        kinds = {f["kind"] for f in entries}
        counts = dict.fromkeys(SEVERITIES, 0)
        for f in entries:
            if f["severity"] in counts:
                counts[f["severity"]] += 1
        for severity in SEVERITIES:
            attrs[f"findings_{severity}"] = counts[severity]
        if entries:
            attrs["findings"] = entries[:_NODE_FINDINGS]
            if len(entries) > _NODE_FINDINGS:
                attrs["findings_count"] = len(entries)
        if "stale" in kinds:
            attrs["status"] = "stale"
        elif "over_permissioned" in kinds:
            attrs["status"] = "over_permissioned"
        elif "unowned" in kinds:
            attrs["status"] = "unowned"
        elif kinds:
            attrs["status"] = "attention"
        elif attrs.get("scan_status") == "never" or attrs.get("scan_state") == "not_scanned":
            attrs["status"] = "not_scanned"  # no evidence yet is not the same as healthy
        else:
            attrs["status"] = "healthy"
    # What a workflow reads and what a source holds, from the asset nodes' own statuses.
    rank = {status: i for i, status in enumerate(STATUSES)}
    worst: dict[str, tuple[int, list[str]]] = {}
    for u, v, kind in b.edges:
        if kind == FEEDS and node_type(u) == ASSET and node_type(v) == WORKFLOW:
            holder, asset = v, u
        elif kind == CONTAINS and node_type(u) == SOURCE and node_type(v) == ASSET:
            holder, asset = u, v
        else:
            continue
        status = rank[b.nodes[asset]["status"]]
        if status >= rank[b.nodes[holder]["status"]]:
            continue  # no worse than the holder's own status
        current = worst.get(holder)
        if current is None or status < current[0]:
            worst[holder] = (status, [asset])
        elif status == current[0]:
            current[1].append(asset)
    for holder, (status, assets) in worst.items():
        attrs = b.nodes[holder]
        attrs["status"] = STATUSES[status]
        attrs["status_from"] = sorted(assets, key=sort_key)[:_STATUS_FROM]
        attrs["status_from_count"] = len(assets)


# ---------------------------------------------------------------------------------------
# Slices

def slice_graph(graph: Any, workflows: Sequence[str] = (), sources: Sequence[str] = (),
                depth: int | None = None) -> nx.MultiDiGraph:
    """The part of the graph that touches the named workflows or sources.

    A workflow slice keeps the workflow, the workflows upstream and downstream of it, the
    assets they read and the sources holding them; a source slice keeps the source, its
    assets and every workflow they feed, directly or downstream. `depth` limits how many
    workflow-to-workflow `feeds` hops are followed (0: only the named ones and their direct
    readers). Then the principals those workflows run as, with their role chains and
    grants onto kept assets, any public grant onto them, and the owners of what is kept.
    """
    import networkx as nx

    keep: set[str] = set()

    def walk(start: str, forward: bool) -> set[str]:
        """Workflows reachable from `start` through workflow-to-workflow feeds, within depth."""
        distance = {start: 0}
        frontier = [start]
        while frontier:
            current = frontier.pop(0)
            if depth is not None and distance[current] >= depth:
                continue
            adjacency = graph.succ[current] if forward else graph.pred[current]
            for other in sorted(adjacency):
                if node_type(other) == WORKFLOW and FEEDS in adjacency[other] and other not in distance:
                    distance[other] = distance[current] + 1
                    frontier.append(other)
        return set(distance)

    kept_workflows: set[str] = set()
    readers_of_kept_assets: set[str] = set()   # workflows whose reads are all kept
    for workflow_id in workflows:
        node = workflow_node(workflow_id)
        upstream = walk(node, False)
        kept_workflows |= upstream | walk(node, True)
        readers_of_kept_assets |= upstream
    for source_id in sources:
        node = source_node(source_id)
        keep.add(node)
        assets = [a for a, keys in graph.succ[node].items() if CONTAINS in keys]
        keep.update(assets)
        for asset in assets:
            for reader, keys in graph.succ[asset].items():
                if FEEDS in keys and node_type(reader) == WORKFLOW:
                    kept_workflows |= walk(reader, True)
    keep |= kept_workflows
    for workflow in readers_of_kept_assets:
        for asset, keys in graph.pred[workflow].items():
            if FEEDS in keys and node_type(asset) == ASSET:
                keep.add(asset)
                keep.add(source_node(split_node(asset)[1]))
    # What kept assets are derived from (asset lineage), transitively.
    lineage = [n for n in keep if node_type(n) == ASSET]
    while lineage:
        current = lineage.pop()
        for upstream, keys in graph.succ[current].items():
            if DERIVED_FROM in keys and upstream not in keep:
                keep.update((upstream, source_node(split_node(upstream)[1])))
                lineage.append(upstream)
    # Principals: what the kept workflows run as, the roles they inherit, and public ones.
    principals: set[str] = set()
    for workflow in kept_workflows:
        for principal, keys in graph.succ[workflow].items():
            if RUNS_AS in keys:
                principals.add(principal)
    todo = list(principals)
    while todo:
        current = todo.pop()
        for role, keys in graph.succ[current].items():
            if MEMBER_OF in keys and role not in principals:
                principals.add(role)
                todo.append(role)
    for node in list(keep):
        if node_type(node) in (ASSET, SOURCE):
            for grantee, keys in graph.pred[node].items():
                if GRANTS in keys and (grantee in principals or graph.nodes[grantee].get("public")):
                    principals.add(grantee)
    keep |= principals
    for node in list(keep):
        for owner, keys in graph.pred[node].items():
            if OWNS in keys:
                keep.add(owner)
    result = nx.MultiDiGraph()
    result.graph.update(graph.graph)
    ordered = sorted(keep, key=sort_key)
    for node in ordered:
        result.add_node(node, **graph.nodes[node])
    for node in ordered:
        for other, keys in sorted(graph.succ[node].items(), key=lambda item: sort_key(item[0])):
            if other in keep:
                for key in sorted(keys):
                    result.add_edge(node, other, key=key, **keys[key])
    result.graph["slice"] = ",".join([workflow_node(w) for w in workflows] + [source_node(s) for s in sources])
    # A slice is shared for one team's review: its header names only what it contains.
    for key, kind in (("sources", SOURCE), ("workflows", WORKFLOW), ("owners", OWNER)):
        if key in result.graph:
            result.graph[key] = [n.split(":", 1)[1] for n in ordered if node_type(n) == kind]
    if depth is not None:
        result.graph["slice_depth"] = depth
    return result


# ---------------------------------------------------------------------------------------
# The cached, lazily decoded form

def _chunk_of(node: str, buckets: Mapping[str, int]) -> str:
    kind, first, rest = split_node(node)
    if kind == ASSET:
        return _asset_chunk(first, rest, buckets.get(first, 1))
    if kind in (SOURCE, PRINCIPAL):
        return f"s/{first}"
    if kind == WORKFLOW:
        return "w"
    if kind == OWNER:
        return "o"
    return "x"


def _asset_chunk(source_id: str, path: str, count: int) -> str:
    return f"a/{source_id}/{zlib.crc32(path.encode('utf-8', 'surrogatepass')) % count}"


_MAGIC = b"ctxscan-graph\n"
_ENCODER = msgspec.json.Encoder()
_ENCODE = _ENCODER.encode
_ENCODE_INTO = _ENCODER.encode_into
_REFUSED = (msgspec.EncodeError, TypeError, ValueError, UnicodeEncodeError)


def _dumps(value: Any) -> bytes:
    # Offsets are byte offsets into bytes, so UTF-8 is fine. msgspec encodes ~10x faster than
    # json.dumps; what it refuses (a lone surrogate from a file name) goes through json.
    try:
        return _ENCODE(value)
    except _REFUSED:
        return _json_bytes(value)


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _append(value: Any, into: bytearray) -> int:
    """Append `value`'s JSON (as `_dumps` makes it) to `into`; its length."""
    if not value and type(value) is list:
        into += b"[]"  # most nodes have no edges one way: no encoder call
        return 2
    mark = len(into)
    try:
        _ENCODE_INTO(value, into, -1)
    except _REFUSED:
        del into[mark:]  # what the encoder wrote before it refused
        into += _json_bytes(value)
    return len(into) - mark


def _encode_chunk(records: Mapping[str, list[Any]]) -> bytes:
    """One chunk: an index of where each node's parts lie, then a JSON array of the records.

    Each record is `[attrs, out_edges, in_edges]`; the index holds the offset of `attrs` and
    the length of each part, so a reader can decode one node's attributes or one direction
    of its edges alone, or the whole array at once.
    """
    index: dict[str, list[int]] = {}
    data = bytearray(b"[")
    for node, (attrs, out, into) in records.items():
        data += b"[" if len(data) == 1 else b",["
        start = len(data)
        a = _append(attrs, data)
        data += b","
        o = _append(out, data)
        data += b","
        i = _append(into, data)
        data += b"]"
        index[node] = [start, a, o, i]
    data += b"]"
    head = _dumps(index)
    return zlib.compress(len(head).to_bytes(4, "big") + head + data, 1)


def encode_graph(graph: Any) -> bytes:
    """The compact cached form of a graph.

    A small JSON header (graph attributes, and where each chunk lies) followed by the
    chunks, each zlib-compressed on its own, so a reader decompresses only the chunks it
    touches and decodes only the nodes it looks at.
    """
    return encode_parts((dict(graph.graph), list(graph.nodes(data=True)),
                         list(graph.edges(keys=True, data=True))))


def encode_parts(parts: GraphParts) -> bytes:
    """`encode_graph` of `build_parts`' output."""
    meta, nodes, edges = parts
    asset_prefix = ASSET + ":"
    skip = len(asset_prefix)
    # Each asset node's (source, path), split once: `asset:crm:public.t` (source ids have no ':').
    assets: dict[str, tuple[str, str]] = {}
    counts: dict[str, int] = {}
    for node, _ in nodes:
        if node.startswith(asset_prefix):
            source, _, path = node[skip:].partition(":")
            assets[node] = (source, path)
            counts[source] = counts.get(source, 0) + 1
    buckets = {s: max(1, -(-n // _CHUNK_ASSETS)) for s, n in counts.items()}
    # Assets that workflows read are what queries look at: keep them together, apart from
    # the (usually far more numerous) assets nothing reads.
    read = sorted({u for u, _, key, _ in edges if key == FEEDS and u in assets}, key=sort_key)
    placement = {node: f"r/{i // _CHUNK_ASSETS}" for i, node in enumerate(read)}

    records: dict[str, dict[str, list[Any]]] = {}
    record_of: dict[str, list[Any]] = {}  # each node's record, its chunk worked out once
    for node, attrs in nodes:
        record = record_of[node] = [attrs, [], []]
        name = placement.get(node)
        if name is None:
            where = assets.get(node)
            name = _chunk_of(node, buckets) if where is None else \
                _asset_chunk(where[0], where[1], buckets[where[0]])
        chunk = records.get(name)
        if chunk is None:
            chunk = records[name] = {}
        chunk[node] = record
    contains: dict[str, list[str]] = {}
    source_prefix = SOURCE + ":"
    for u, v, key, attrs in edges:
        if key == CONTAINS:
            where = assets.get(v)
            if where is not None and u == source_prefix + where[0]:
                listed = contains.get(where[0])
                if listed is None:
                    listed = contains[where[0]] = []
                listed.append(v)
                continue
        record_of[u][1].append([v, key, attrs])
        record_of[v][2].append([u, key, attrs])
    body: list[bytes] = []
    offset = 0

    def put(data: bytes) -> list[int]:
        nonlocal offset
        body.append(data)
        offset += len(data)
        return [offset - len(data), len(data)]

    header = {
        "format": GRAPH_FORMAT,
        "meta": meta,
        "buckets": buckets,
        "placement": placement,
        "chunks": {name: put(_encode_chunk(part)) for name, part in sorted(records.items())},
        "contains": {s: put(zlib.compress(_dumps(nodes), 1)) for s, nodes in sorted(contains.items())},
    }
    head = _dumps(header)
    return _MAGIC + len(head).to_bytes(4, "big") + head + b"".join(body)


def decode_graph(blob: bytes) -> LiteGraph | None:
    """A `LiteGraph` from `encode_graph`'s bytes, or None when they are not a graph we can read."""
    start = len(_MAGIC) + 4
    if not blob.startswith(_MAGIC) or len(blob) < start:
        return None
    length = int.from_bytes(blob[len(_MAGIC):start], "big")
    try:
        header = json.loads(blob[start:start + length])
    except ValueError:
        return None
    if not isinstance(header, dict) or header.get("format") != GRAPH_FORMAT:
        return None
    return LiteGraph(header, memoryview(blob)[start + length:])


class _NodeView(Mapping[str, dict[str, Any]]):
    def __init__(self, graph: LiteGraph) -> None:
        self._graph = graph

    def __getitem__(self, node: str) -> dict[str, Any]:
        return self._graph._attrs(node)

    def __contains__(self, node: object) -> bool:
        return isinstance(node, str) and self._graph._where(node) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._graph._all_nodes())

    def __len__(self) -> int:
        return len(self._graph._all_nodes())


class _Adjacency(Mapping[str, dict[str, dict[str, Any]]]):
    """`succ` or `pred`: node -> {neighbour: {edge type: attrs}}, like networkx's."""

    def __init__(self, graph: LiteGraph, forward: bool) -> None:
        self._graph = graph
        self._forward = forward

    def __getitem__(self, node: str) -> dict[str, dict[str, Any]]:
        return self._graph._adjacency(node, self._forward)

    def __iter__(self) -> Iterator[str]:
        return iter(self._graph.nodes)

    def __len__(self) -> int:
        return len(self._graph.nodes)


class LiteGraph:
    """A read-only graph decoded from the cache node by node, as queries touch it.

    It offers the part of networkx's MultiDiGraph API that the queries use (`nodes[n]`,
    `n in nodes`, `succ[n]`, `pred[n]`, `graph`), so the same query code runs on both.
    """

    def __init__(self, header: Mapping[str, Any], body: memoryview) -> None:
        self.graph: dict[str, Any] = dict(header["meta"])
        self._buckets: dict[str, int] = dict(header["buckets"])
        self._placement: dict[str, str] = dict(header["placement"])
        self._chunk_at: dict[str, list[int]] = dict(header["chunks"])
        self._contains_at: dict[str, list[int]] = dict(header["contains"])
        self._body = body
        self._chunks: dict[str, tuple[dict[str, list[int]], bytes]] = {}
        self._decoded: dict[tuple[str, int], Any] = {}
        self._contains: dict[str, list[str]] = {}
        self._contains_sets: dict[str, set[str]] = {}
        self.nodes = _NodeView(self)
        self.succ = _Adjacency(self, True)
        self.pred = _Adjacency(self, False)

    def __contains__(self, node: object) -> bool:
        return node in self.nodes

    def _chunk(self, name: str) -> tuple[dict[str, list[int]], bytes] | None:
        if name not in self._chunks:
            where = self._chunk_at.get(name)
            if where is None:
                return None
            raw = zlib.decompress(self._body[where[0]:where[0] + where[1]])
            length = int.from_bytes(raw[:4], "big")
            self._chunks[name] = (json.loads(raw[4:4 + length]), raw[4 + length:])
        return self._chunks[name]

    def _where(self, node: str) -> tuple[list[int], bytes] | None:
        chunk = self._chunk(self._placement.get(node) or _chunk_of(node, self._buckets))
        if chunk is None or node not in chunk[0]:
            return None
        return chunk[0][node], chunk[1]

    def _decode(self, node: str, part: int) -> Any:
        key = (node, part)
        if key not in self._decoded:
            where = self._where(node)
            if where is None:
                raise KeyError(node)
            (start, a, o, i), data = where
            begin = start + (0, a + 1, a + o + 2)[part]
            self._decoded[key] = json.loads(data[begin:begin + (a, o, i)[part]])
        return self._decoded[key]

    def _attrs(self, node: str) -> dict[str, Any]:
        attrs: dict[str, Any] = self._decode(node, 0)
        return attrs

    def _all_nodes(self) -> list[str]:
        nodes: list[str] = []
        for name in self._chunk_at:
            chunk = self._chunk(name)
            if chunk is not None:
                nodes.extend(chunk[0])
        return sorted(nodes, key=sort_key)

    def source_assets(self, source_id: str) -> list[str]:
        """The asset nodes a source contains."""
        if source_id not in self._contains:
            where = self._contains_at.get(source_id)
            self._contains[source_id] = (
                json.loads(zlib.decompress(self._body[where[0]:where[0] + where[1]])) if where else [])
        return self._contains[source_id]

    def _asset_set(self, source_id: str) -> set[str]:
        if source_id not in self._contains_sets:
            self._contains_sets[source_id] = set(self.source_assets(source_id))
        return self._contains_sets[source_id]

    def _adjacency(self, node: str, forward: bool) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = {}
        for other, key, attrs in self._decode(node, 1 if forward else 2):
            result.setdefault(other, {})[key] = attrs
        kind, source_id, _ = split_node(node)
        if forward and kind == SOURCE:
            for asset in self.source_assets(source_id):
                result.setdefault(asset, {})[CONTAINS] = {"type": CONTAINS}
        elif not forward and kind == ASSET and node in self._asset_set(source_id):
            result.setdefault(source_node(source_id), {})[CONTAINS] = {"type": CONTAINS}
        return result

    def ordered(self) -> tuple[list[tuple[str, dict[str, Any]]], list[tuple[str, str, str, dict[str, Any]]]]:
        """Every node and edge, in canonical order (decodes every chunk at once)."""
        records: dict[str, list[Any]] = {}
        for name in self._chunk_at:
            chunk = self._chunk(name)
            if chunk is not None:
                records.update(zip(chunk[0], json.loads(chunk[1]), strict=True))
        order = sorted(records, key=sort_key)
        edges: list[tuple[str, str, str, dict[str, Any]]] = []
        for node in order:
            edges.extend((node, other, key, attrs) for other, key, attrs in records[node][1])
            if node_type(node) == SOURCE:
                edges.extend((node, asset, CONTAINS, {"type": CONTAINS})
                             for asset in self.source_assets(split_node(node)[1]))
        rank = {node: i for i, node in enumerate(order)}
        edges.sort(key=lambda e: (rank[e[0]], rank[e[1]], e[2]))
        return [(node, records[node][0]) for node in order], edges

    def to_networkx(self) -> nx.MultiDiGraph:
        """The full networkx graph."""
        import networkx as nx

        nodes, edges = self.ordered()
        graph = nx.MultiDiGraph()
        graph.graph.update(self.graph)
        graph.add_nodes_from(nodes)
        graph.add_edges_from(edges)
        return graph


def to_networkx(graph: Any) -> nx.MultiDiGraph:
    """A networkx graph from either form."""
    return graph.to_networkx() if isinstance(graph, LiteGraph) else graph


# ---------------------------------------------------------------------------------------
# Loading for the CLI: cache first, build on a miss

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")
_STATE_LINE = re.compile(r"^state[ \t]*:(.*)$", re.MULTILINE)


def _config_files(paths: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml")))
        else:
            files.append(path)
    return files


def config_fingerprint(paths: Sequence[str], env: Mapping[str, str] | None = None) -> str | None:
    """A hash of the inventory files and the environment variables they use, without parsing.

    None when a file cannot be read (the full loader then reports it properly).
    """
    env = os.environ if env is None else env
    digest = hashlib.sha256()
    try:
        for file in _config_files(paths):
            data = file.read_bytes()
            digest.update(str(file.resolve()).encode() + b"\0" + data + b"\0")
            for name in sorted(set(_ENV.findall(data.decode("utf-8", "replace")))):
                value = env.get(name)
                digest.update(f"{name}={'-' if value is None else '+' + value}\0".encode())
    except OSError:
        return None
    return digest.hexdigest()[:24]


def declared_state(paths: Sequence[str], env: Mapping[str, str] | None = None) -> tuple[bool, str | None]:
    """The inventory's top-level `state:` without parsing the whole file: (known, value).

    `known` is False when the quick look is not sure; the caller then loads the inventory.
    """
    env = os.environ if env is None else env
    value: str | None = None
    try:
        for file in _config_files(paths):
            text = file.read_text(encoding="utf-8")
            matches = _STATE_LINE.findall(text)
            if not matches:
                continue
            if len(matches) > 1:
                return False, None
            import yaml

            parsed = yaml.safe_load(f"state:{matches[0]}")
            raw = parsed.get("state") if isinstance(parsed, dict) else None
            if raw is None:
                continue
            if not isinstance(raw, str):
                return False, None
            missing = [m.group(1) for m in _ENV.finditer(raw) if m.group(1) not in env and ":-" not in m.group(0)]
            if missing:
                return False, None
            value = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}",
                           lambda m: env.get(m.group(1), m.group(2) or ""), raw)
    except (OSError, UnicodeDecodeError, ValueError):
        return False, None
    except Exception:  # a YAML oddity in that one line: let the full loader decide
        return False, None
    return True, value


def sqlite_state_key(connection: Any) -> str:
    """`Store.state_key()` over a bare sqlite3 connection."""
    from scanner.store import STATE_KEY_SQL, state_key_of

    return state_key_of(connection.execute(STATE_KEY_SQL).fetchone())


def quick_cached_graph(url: str, fingerprint: str, today: date | None = None) -> LiteGraph | None:
    """The cached graph of a SQLite store, read without opening the Store.

    On a cache hit a query needs two reads: they are done over one read-only sqlite3
    connection, with no schema check and no write lock. None on a miss or any doubt, and the
    caller goes through the Store.
    """
    import sqlite3
    from urllib.parse import quote

    from scanner.store import sqlite_path

    try:
        path = sqlite_path(url)
    except ValueError:
        return None
    if path is None or path == ":memory:" or not Path(path).is_file():
        return None
    try:
        connection = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, timeout=5)
        try:
            key = cache_key(fingerprint, sqlite_state_key(connection))
            row = connection.execute("SELECT data FROM graph_cache WHERE key = ?", (key,)).fetchone()
        finally:
            connection.close()
    except sqlite3.Error:
        return None
    if row is None:
        return None
    return _usable(decode_graph(bytes(row[0])), today)


def cache_key(fingerprint: str, state_key: str) -> str:
    """The store cache key of a graph."""
    return f"graph:{GRAPH_FORMAT}:{fingerprint}:{state_key}"


def load_cached(store: Store, key: str, today: date | None = None) -> LiteGraph | None:
    """The cached graph under `key`, unless absent, unreadable or outdated by an expiry."""
    blob = store.cache_get(key)
    if blob is None:
        return None
    return _usable(decode_graph(blob), today)


def _usable(graph: LiteGraph | None, today: date | None) -> LiteGraph | None:
    """None when an `accept:` entry has expired since the graph was built."""
    if graph is None:
        return None
    valid_until = graph.graph.get("valid_until")
    if valid_until and (today or date.today()).isoformat() > valid_until:
        return None
    valid_before = graph.graph.get("valid_before")  # an asset has gone stale since it was built
    if valid_before and datetime.now().astimezone() >= datetime.fromisoformat(valid_before):
        return None
    return graph


def graph_from_store(inventory: Inventory, store: Store, findings: Iterable[StoredFinding],
                     today: date | None = None) -> nx.MultiDiGraph:
    """Build the graph from the inventory and what the store holds (never probes)."""
    from scanner.lineage.observed import load_observed

    source_ids = list(inventory.sources)
    return build_graph(inventory, store.latest_snapshots(source_ids), store.latest_results(source_ids),
                       findings, today, load_observed(inventory, store))


def parts_from_store(inventory: Inventory, store: Store, findings: Iterable[StoredFinding],
                     today: date | None = None,
                     held: Mapping[str, SourceSnapshot] | None = None) -> GraphParts:
    """`graph_from_store` as `build_parts`' output. `held`: snapshots the caller already has in
    memory and knows to be the store's latest for their sources (a scan's own), which are then
    not decoded again (~1 s and ~250 MB at 50,000 tables)."""
    from scanner.lineage.observed import load_observed

    source_ids = list(inventory.sources)
    held = {s: snapshot for s, snapshot in (held or {}).items() if s in inventory.sources}
    rest = [s for s in source_ids if s not in held]
    snapshots = {**(store.latest_snapshots(rest) if rest else {}), **held}
    return build_parts(inventory, snapshots, store.latest_results(source_ids),
                       findings, today, load_observed(inventory, store))
