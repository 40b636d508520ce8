"""The graph builder, its cached form, the cache and slices, over a really scanned fake estate."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import networkx as nx
import pytest

from scanner.graph import (
    LiteGraph,
    build_graph,
    cache_key,
    config_fingerprint,
    declared_state,
    decode_graph,
    encode_graph,
    graph_from_store,
    load_cached,
    quick_cached_graph,
    slice_graph,
    sqlite_state_key,
)
from tests.graph_support import NOW, scanned_estate, stored_finding, write_estate


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, object, Path]:
    directory = tmp_path_factory.mktemp("estate")
    inventory, store = scanned_estate(directory)
    yield inventory, store, directory
    store.close()


@pytest.fixture(scope="module")
def graph(estate: tuple) -> nx.MultiDiGraph:
    inventory, store, _ = estate
    return graph_from_store(inventory, store, store.findings("open"))


def edges_of(graph: nx.MultiDiGraph, kind: str) -> set[tuple[str, str]]:
    return {(u, v) for u, v, k in graph.edges(keys=True) if k == kind}


def test_nodes_are_typed_with_readable_ids(graph: nx.MultiDiGraph) -> None:
    by_type: dict[str, set[str]] = {}
    for node, attrs in graph.nodes(data=True):
        assert node.startswith(attrs["type"] + ":")
        by_type.setdefault(attrs["type"], set()).add(node)
    assert by_type["source"] == {"source:crm", "source:kb"}
    assert {"asset:crm:public.customers", "asset:crm:internal.audit", "asset:kb:macros"} <= by_type["asset"]
    assert "workflow:assistant" in by_type["workflow"]
    assert {"principal:crm:support_bot", "principal:crm:PUBLIC", "principal:crm:etl"} <= by_type["principal"]
    # Only principals that matter (issue 11): no workflow runs as or through former_intern.
    assert "principal:crm:former_intern" not in by_type["principal"]
    assert by_type["owner"] == {"owner:data-eng", "owner:support", "owner:ghost-team"}


def test_edges_are_typed(graph: nx.MultiDiGraph) -> None:
    assert ("source:crm", "asset:crm:public.customers") in edges_of(graph, "contains")
    feeds = edges_of(graph, "feeds")
    assert ("asset:crm:public.customers", "workflow:assistant") in feeds
    assert ("workflow:assistant", "workflow:router") in feeds
    assert ("workflow:router", "workflow:reporter") in feeds
    # A glob read feeds from every asset it matches, not from assets outside it.
    assert {("asset:crm:public.orders", "workflow:explorer"), ("asset:crm:public.notes", "workflow:explorer")} <= feeds
    assert ("asset:crm:internal.audit", "workflow:explorer") not in feeds
    assert edges_of(graph, "runs_as") == {("workflow:assistant", "principal:crm:support_bot"),
                                          ("workflow:explorer", "principal:crm:explorer_bot"),
                                          ("workflow:loader", "principal:crm:loader_bot")}
    assert ("principal:crm:support_bot", "principal:crm:analysts") in edges_of(graph, "member_of")
    assert ("principal:crm:analysts", "principal:crm:readers") in edges_of(graph, "member_of")
    assert ("owner:ghost-team", "workflow:explorer") in edges_of(graph, "owns")
    grant = graph.edges["principal:crm:writers", "asset:crm:public.orders", "grants"]
    assert grant["privileges"] == ["INSERT"] and grant["access"] == "write"
    # A schema-wide grant points at the source and says which schema.
    schema = graph.edges["principal:crm:auditors", "source:crm", "grants"]
    assert schema["privileges"] == ["SELECT on internal"] and schema["scopes"] == ["container"]
    assert graph.edges["principal:crm:PUBLIC", "asset:crm:public.tickets", "grants"]["public"] is True


def test_node_attributes_for_reviewers(graph: nx.MultiDiGraph) -> None:
    customers = graph.nodes["asset:crm:public.customers"]
    assert customers["owner"] == "data-eng" and customers["owner_provenance"] == "source"
    assert customers["freshness_method"] == "metadata"
    assert customers["age_seconds"] == 2 * 3600                       # at the scan, not now
    assert customers["sla_seconds"] == 3600 and customers["sla_set_by"] == "assistant"
    assert customers["status"] == "stale" and customers["findings_critical"] + customers["findings_high"] >= 1
    assert graph.nodes["asset:crm:public.notes"]["freshness_method"] == "none"
    assert graph.nodes["asset:crm:public.missing"]["scan_state"] == "missing"
    assert graph.nodes["workflow:assistant"]["stage"] == "production"
    assert graph.nodes["source:crm"]["owner_provenance"] == "config"
    assert graph.nodes["source:crm"]["scan_status"] == "ok"
    assert graph.nodes["owner:ghost-team"]["declared"] is False
    assert graph.nodes["principal:crm:etl"]["privileged"] is True
    assert graph.nodes["principal:crm:explorer_bot"]["seen"] is False
    assert graph.graph["as_of"] == NOW.isoformat()


def test_status_follows_open_findings(estate: tuple) -> None:
    inventory, store, _ = estate
    findings = [
        stored_finding("over_permissioned", "critical", source="crm", workflow="router", principal="support_bot"),
        stored_finding("unowned", "medium", workflow="reporter"),
        stored_finding("schema_drift", "high", source="kb", asset="kb:articles"),
        stored_finding("stale", "high", source="kb", asset="kb:macros", workflow="reporter"),
    ]
    graph = build_graph(inventory, store.latest_snapshots(), store.latest_results(), findings)
    assert graph.nodes["workflow:router"]["status"] == "over_permissioned"
    assert graph.nodes["principal:crm:support_bot"]["status"] == "over_permissioned"
    assert graph.nodes["workflow:reporter"]["status"] == "stale"       # stale outranks unowned
    assert graph.nodes["asset:kb:articles"]["status"] == "attention"
    assert graph.nodes["asset:kb:articles"]["findings_high"] == 1
    assert graph.nodes["workflow:summariser"]["status"] == "healthy"
    assert [f["kind"] for f in graph.nodes["workflow:reporter"]["findings"]] == ["stale", "unowned"]


def test_workflows_and_sources_take_the_worst_status_of_their_assets(estate: tuple) -> None:
    inventory, store, _ = estate
    findings = [
        stored_finding("stale", "high", source="kb", asset="kb:macros"),
        stored_finding("schema_drift", "high", source="kb", asset="kb:articles"),
        stored_finding("freshness_unknown", "medium", source="crm", asset="crm:public.tickets"),
        stored_finding("over_permissioned", "critical", source="crm", workflow="router", principal="support_bot"),
    ]
    graph = build_graph(inventory, store.latest_snapshots(), store.latest_results(), findings)
    nodes = graph.nodes
    # A workflow reflects the assets it reads directly; a source the assets it holds.
    assert nodes["workflow:reporter"]["status"] == "stale"            # reads kb:macros
    assert nodes["workflow:reporter"]["status_from"] == ["asset:kb:macros"]
    assert nodes["workflow:summariser"]["status"] == "attention"      # reads crm:public.tickets
    assert nodes["source:kb"]["status"] == "stale"                    # stale outranks attention
    assert nodes["source:kb"]["status_from"] == ["asset:kb:macros"]
    # crm's own finding (the over-permission names the source) outranks tickets' attention.
    assert nodes["source:crm"]["status"] == "over_permissioned" and "status_from" not in nodes["source:crm"]
    # Its own finding outranks a milder one on what it reads; nothing propagates downstream.
    assert nodes["workflow:router"]["status"] == "over_permissioned"
    assert "status_from" not in nodes["workflow:router"]
    assert nodes["workflow:assistant"]["status"] == "healthy"
    # The findings listed and counted on a node stay its own.
    assert "findings" not in nodes["workflow:reporter"] and nodes["workflow:reporter"]["findings_high"] == 0
    assert nodes["asset:kb:macros"]["status"] == "stale"


def test_a_glob_read_that_matches_nothing_is_a_missing_asset_node(tmp_path: Path) -> None:
    from tests.graph_support import estate_graph

    graph = estate_graph(tmp_path, """
        version: 1
        owners: [{id: team}]
        sources: [{id: kb, connector: fake, owner: team, tables: ["macros@1m"]}]
        workflows: [{id: w, owner: team, reads: ["kb:drafts.*", "kb:macros"]}]
        """)
    node = graph.nodes["asset:kb:drafts.*"]
    assert node["scan_state"] == "missing" and node["glob"] is True
    assert ("asset:kb:drafts.*", "workflow:w", "feeds") in graph.edges
    assert [f["kind"] for f in node["findings"]] == ["missing_asset"]
    assert graph.nodes["workflow:w"]["status"] == "attention"


def test_same_inputs_same_graph(estate: tuple, graph: nx.MultiDiGraph) -> None:
    inventory, store, _ = estate
    again = graph_from_store(inventory, store, store.findings("open"))
    assert list(again.nodes(data=True)) == list(graph.nodes(data=True))
    assert list(again.edges(keys=True, data=True)) == list(graph.edges(keys=True, data=True))


def test_cached_form_round_trips(graph: nx.MultiDiGraph) -> None:
    lite = decode_graph(encode_graph(graph))
    assert isinstance(lite, LiteGraph)
    for node, attrs in graph.nodes(data=True):
        assert node in lite.nodes
        assert lite.nodes[node] == attrs
        assert {v: dict(keys) for v, keys in graph.succ[node].items()} == lite.succ[node]
        assert {u: dict(keys) for u, keys in graph.pred[node].items()} == lite.pred[node]
    assert "asset:crm:nope" not in lite.nodes
    back = lite.to_networkx()
    assert list(back.nodes(data=True)) == list(graph.nodes(data=True))
    assert list(back.edges(keys=True, data=True)) == list(graph.edges(keys=True, data=True))
    assert back.graph == graph.graph
    assert decode_graph(b"not a graph") is None


def test_cached_form_keeps_what_msgspec_refuses() -> None:
    # A file name that is not UTF-8 reaches the graph as a lone surrogate: msgspec refuses it
    # part way through a record, and that part is written by json instead, whole.
    odd = "files/r\udc80port.txt"
    graph = nx.MultiDiGraph(name="ctxscan")
    graph.add_node("source:docs", type="source", label="docs")
    graph.add_node(f"asset:docs:{odd}", type="asset", label=odd, path=odd, tags=["a", "b\udcff"])
    graph.add_node("asset:docs:plain.txt", type="asset", label="plain.txt")
    graph.add_node("workflow:w", type="workflow", label="w")
    graph.add_node("principal:docs:reader", type="principal", label="reader")
    graph.add_edge("source:docs", f"asset:docs:{odd}", key="contains", type="contains")
    graph.add_edge("source:docs", "asset:docs:plain.txt", key="contains", type="contains")
    graph.add_edge(f"asset:docs:{odd}", "workflow:w", key="feeds", type="feeds", declared=[f"docs:{odd}"])
    graph.add_edge("principal:docs:reader", f"asset:docs:{odd}", key="grants", type="grants", via=["ok", odd])
    lite = decode_graph(encode_graph(graph))
    assert lite is not None
    for node, attrs in graph.nodes(data=True):
        assert lite.nodes[node] == attrs
        assert {v: dict(keys) for v, keys in graph.succ[node].items()} == lite.succ[node]
        assert {u: dict(keys) for u, keys in graph.pred[node].items()} == lite.pred[node]
    back = lite.to_networkx()
    assert list(back.edges(keys=True, data=True)) == list(graph.edges(keys=True, data=True))


def test_slice_of_a_workflow(graph: nx.MultiDiGraph) -> None:
    part = slice_graph(graph, workflows=["summariser"])
    nodes = set(part.nodes)
    # Upstream (assistant and what it reads), downstream (reporter), not the unrelated ones.
    assert {"workflow:summariser", "workflow:assistant", "workflow:reporter", "asset:crm:public.tickets",
            "asset:crm:public.customers", "source:crm", "principal:crm:support_bot"} <= nodes
    assert "workflow:explorer" not in nodes and "workflow:router" not in nodes
    assert "asset:kb:macros" not in nodes            # the downstream reporter's own read
    assert "principal:crm:readers" in nodes          # support_bot's role chain
    assert "principal:crm:PUBLIC" in nodes           # a public grant onto a kept asset
    assert "owner:support" in nodes
    assert part.graph["slice"] == "workflow:summariser"
    shallow = set(slice_graph(graph, workflows=["summariser"], depth=0).nodes)
    assert "workflow:assistant" not in shallow and "workflow:reporter" not in shallow


def test_slice_of_a_source(graph: nx.MultiDiGraph) -> None:
    nodes = set(slice_graph(graph, sources=["kb"]).nodes)
    assert {"source:kb", "asset:kb:articles", "asset:kb:macros", "workflow:router", "workflow:reporter"} <= nodes
    assert not any(n.startswith(("asset:crm", "source:crm")) for n in nodes)
    assert "workflow:assistant" not in nodes
    lite = decode_graph(encode_graph(graph))
    assert set(slice_graph(lite, sources=["kb"]).nodes) == nodes


def test_fingerprint_follows_files_and_environment(tmp_path: Path) -> None:
    config = write_estate(tmp_path, "version: 1\nsources: []\nstate: ${STATE_DB:-x.db}\n")
    first = config_fingerprint([str(config)], env={})
    assert first == config_fingerprint([str(config)], env={"UNRELATED": "1"})
    assert first != config_fingerprint([str(config)], env={"STATE_DB": "y.db"})
    config.write_text(config.read_text() + "# touched\n")
    assert config_fingerprint([str(config)], env={}) != first
    assert config_fingerprint([str(tmp_path / "absent.yaml")]) is None


@pytest.mark.parametrize("text, env, expected", [
    ("version: 1\n", {}, (True, None)),
    ("version: 1\nstate: custom.db\n", {}, (True, "custom.db")),
    ("version: 1\nstate: \"${DB_URL}\"\n", {"DB_URL": "postgresql://h/db"}, (True, "postgresql://h/db")),
    ("version: 1\nstate: ${DB_URL}\n", {}, (False, None)),
    ("version: 1\nstate: a.db\nstate: b.db\n", {}, (False, None)),
])
def test_declared_state_is_read_without_parsing(tmp_path: Path, text: str, env: dict[str, str],
                                                expected: tuple[bool, str | None]) -> None:
    config = write_estate(tmp_path, text)
    assert declared_state([str(config)], env=env) == expected


def test_cache_is_read_through_the_store_and_without_it(estate: tuple, graph: nx.MultiDiGraph) -> None:
    import sqlite3

    from scanner.store import sqlite_path

    inventory, store, directory = estate
    fingerprint = config_fingerprint([str(directory / "ctxscan.yaml")])
    assert fingerprint is not None
    key = cache_key(fingerprint, store.state_key())
    assert load_cached(store, key) is None
    store.cache_put(key, encode_graph(graph))
    cached = load_cached(store, key)
    assert cached is not None and cached.nodes["workflow:assistant"] == graph.nodes["workflow:assistant"]
    url = store.url
    path = sqlite_path(url)
    assert path is not None
    with sqlite3.connect(path) as connection:
        assert sqlite_state_key(connection) == store.state_key()
    quick = quick_cached_graph(url, fingerprint)
    assert quick is not None and quick.graph == graph.graph
    assert quick_cached_graph(url, "another-fingerprint") is None
    assert quick_cached_graph("postgresql://127.0.0.1/none", fingerprint) is None


def test_an_expired_acceptance_invalidates_the_cached_graph(tmp_path: Path) -> None:
    from scanner.inventory import load_inventory

    config = write_estate(tmp_path, """
        version: 1
        sources: [{id: kb, connector: fake, tables: ["a@1h"]}]
        workflows: [{id: w, reads: ["kb:a"]}]
        accept: [{kind: stale, asset: "kb:a", reason: known, expires: 2026-03-10}]
    """)
    inventory = load_inventory([config])
    graph = build_graph(inventory, {}, {}, (), today=date(2026, 3, 1))
    assert graph.graph["valid_until"] == "2026-03-10"
    blob = encode_graph(graph)

    class Blobs:
        def cache_get(self, key: str) -> bytes:
            return blob

    assert load_cached(Blobs(), "k", today=date(2026, 3, 10)) is not None  # type: ignore[arg-type]
    assert load_cached(Blobs(), "k", today=date(2026, 3, 11)) is None      # type: ignore[arg-type]


def test_queries_build_then_reuse_the_cache(tmp_path: Path, ctxscan) -> None:
    scanned_estate(tmp_path)[1].close()
    first = ctxscan("feeds", "crm", "--json", cwd=tmp_path)
    assert first.code == 0, first
    import sqlite3

    from scanner.store import default_state_url, sqlite_path

    path = sqlite_path(default_state_url([str(tmp_path / "ctxscan.yaml")], env={}))
    assert path is not None
    connection = sqlite3.connect(path)
    try:
        keys = [row[0] for row in connection.execute("SELECT key FROM graph_cache")]
    finally:
        connection.close()
    assert len(keys) == 1 and keys[0].startswith("graph:")
    second = ctxscan("feeds", "crm", "--json", cwd=tmp_path)
    assert second.code == 0 and json.loads(second.out) == json.loads(first.out)
    # A changed inventory is a new graph: the new workflow shows up at once.
    config = tmp_path / "ctxscan.yaml"
    config.write_text(config.read_text() + "  - {id: late, reads: [\"crm:public.orders\"]}\n")
    third = ctxscan("feeds", "crm", "--json", cwd=tmp_path)
    assert third.code == 0, third
    assert "late" in [w["id"] for w in json.loads(third.out)["workflows"]]


def _grant_edges_as_first_written(snapshot: object, source_id: str, relevant: set[str],
                                  assets: set[str]) -> dict[tuple[str, str], dict[str, object]]:
    """The grants edges as the graph wrote them before it gathered them per edge: an oracle."""
    from scanner.graph import _ACCESS_RANK, asset_node, principal_node, source_node
    from scanner.model import PUBLIC_PRINCIPALS, SCOPE_ASSET, SCOPE_COLUMN, SCOPE_CONTAINER

    edges: dict[tuple[str, str], dict[str, object]] = {}
    for grant in snapshot.grants:  # type: ignore[attr-defined]
        if grant.principal not in relevant:
            continue
        if grant.scope in (SCOPE_ASSET, SCOPE_COLUMN):
            target = asset_node(source_id, grant.target)
            if target not in assets:
                continue
        else:
            target = source_node(source_id)
        grantee = principal_node(source_id, grant.principal)
        privilege = grant.privilege
        if grant.scope == SCOPE_COLUMN and grant.columns:
            privilege = f"{privilege}({', '.join(grant.columns)})"
        elif grant.scope == SCOPE_CONTAINER:
            privilege = f"{privilege} on {grant.target}"
        elif target == source_node(source_id):
            privilege = f"{privilege} on all"
        edge = edges.setdefault((grantee, target), {"type": "grants", "privileges": [], "access": "other",
                                                    "scopes": [], "via": [], "public": False})
        edge["privileges"] = sorted(set(edge["privileges"]) | {privilege})  # type: ignore[arg-type]
        edge["scopes"] = sorted(set(edge["scopes"]) | {grant.scope})  # type: ignore[arg-type]
        if grant.via:
            edge["via"] = sorted(set(edge["via"]) | {grant.via})  # type: ignore[arg-type]
        if _ACCESS_RANK.get(grant.access, 0) > _ACCESS_RANK.get(edge["access"], 0):  # type: ignore[arg-type]
            edge["access"] = grant.access
        edge["public"] = edge["public"] or grant.public or grant.principal in PUBLIC_PRINCIPALS
    return edges


def test_grants_edges_gather_every_grant_as_one_at_a_time_did(tmp_path: Path) -> None:
    # Random snapshots with many grants per grantee and target (repeated privileges, column
    # and container scopes, source-wide grants, PUBLIC, grants on assets the globs left out,
    # principals no workflow reaches): each edge holds what adding its grants one by one held.
    import random

    from scanner.graph import _relevant_principals, build_parts
    from scanner.inventory import load_inventory
    from scanner.model import Asset, Grant, Membership, Principal, SourceSnapshot

    path = tmp_path / "ctxscan.yaml"
    path.write_text("version: 1\nsources:\n  - {id: db, connector: sqlite, path: x.db}\n"
                    "workflows:\n  - {id: bot, runs_as: {db: bot}, reads: [{asset: 'db:s.t0'}]}\n")
    inventory = load_inventory([path])
    rng = random.Random(19)
    for _ in range(30):
        paths = [f"s{rng.randrange(2)}.t{i}" for i in range(rng.randrange(1, 12))]
        roles = ["bot", "r1", "r2", "PUBLIC", "stranger"]
        grants = tuple(
            Grant(rng.choice(roles), rng.choice(["SELECT", "INSERT", "UPDATE", "USAGE", "TRUNCATE"]),
                  rng.choice(paths + ["s9.gone", "s0", "s1", "*"]),
                  scope, rng.choice(["read", "write", "admin", "other", "alter", "odd"]),
                  tuple(rng.sample(["a", "b", "c"], rng.randrange(3))) if scope == "column" else (),
                  rng.random() < 0.2, rng.choice(["", "GRANT x", "GRANT y", "owner of z"]))
            for scope in (rng.choice(["asset", "asset", "column", "container", "source"])
                          for _ in range(rng.randrange(60))))
        snapshot = SourceSnapshot(
            source_id="db", connector="sqlite", probed_at=NOW,
            assets=tuple(Asset(p, "table", container=p.split(".")[0]) for p in dict.fromkeys(paths)),
            principals=tuple(Principal(r) for r in roles if r != "PUBLIC"),
            memberships=(Membership("bot", "r1"), Membership("r1", "r2")), grants=grants)
        _, nodes, edges = build_parts(inventory, {"db": snapshot})
        built = {(u, v): attrs for u, v, kind, attrs in edges if kind == "grants"}
        assets = {n for n, _ in nodes if n.startswith("asset:")}
        expected = _grant_edges_as_first_written(snapshot, "db", _relevant_principals(snapshot, {"bot"}), assets)
        assert built == expected
        assert all(list(built[k]) == list(expected[k]) for k in expected)  # the same key order


@pytest.mark.parametrize(("unread_age", "first"), [("50m", "unread"), ("5m", "carried")])
def test_graph_is_valid_until_the_first_asset_crosses_a_level(tmp_path: Path, unread_age: str, first: str) -> None:
    # The cached graph is out of date at the first moment an asset crosses its SLA or a need a
    # workflow carries: an asset nothing reads crosses its source's SLA (1h); `read` is already
    # past its SLA (v's 20m, carried through w's feeds) but not yet past x's own 45m.
    from datetime import UTC, datetime, timedelta

    from scanner.graph import build_parts

    text = f"""
    version: 1
    sources:
      - id: crm
        connector: fake
        freshness: {{max_age: 1h}}
        tables: ["public.unread@{unread_age}", "public.read@30m", "public.far@1m"]
    workflows:
      - {{id: w, reads: [{{asset: "crm:public.read", max_age: 2h}}], feeds: [v]}}
      - {{id: v, reads: [{{asset: "crm:public.far", max_age: 20m}}]}}
      - {{id: x, reads: [{{asset: "crm:public.read", max_age: 45m}}]}}
    """
    probed = datetime.now(UTC).replace(microsecond=0)
    inventory, store = scanned_estate(tmp_path, text, now=probed)
    try:
        source_ids = list(inventory.sources)
        meta, nodes, _ = build_parts(inventory, store.latest_snapshots(source_ids), store.latest_results(source_ids))
    finally:
        store.close()
    changed = {node: datetime.fromisoformat(attrs["last_changed"]) for node, attrs in nodes
               if attrs.get("last_changed")}
    expected = {"unread": changed["asset:crm:public.unread"] + timedelta(hours=1),
                "carried": changed["asset:crm:public.read"] + timedelta(minutes=45)}[first]
    assert datetime.fromisoformat(meta["valid_before"]) == expected
