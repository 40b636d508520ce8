"""A scan readies the graph cache: the first query after it answers from the cache, and the
cached graph equals the one built from the store (the slow path), on a generated estate."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.generate_estate import generate
from scanner.graph import build_graph, config_fingerprint, quick_cached_graph, split_node
from scanner.inventory import load_inventory
from scanner.queries import depends, feeds
from scanner.rules.base import RuleContext
from scanner.rules.sla import effective_sla
from scanner.store import Store, default_state_url


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value))


def test_scan_caches_the_graph_the_slow_path_builds(tmp_path: Path, ctxscan: Any) -> None:
    config = generate(tmp_path / "estate", sources=4, assets=800, workflows=40, seed=3)
    url = default_state_url([str(config)])
    env = {"CTXSCAN_CONFIG": str(config)}
    small = ctxscan("scan", "--source", "live", "--json", cwd=config.parent, env=env)
    assert small.code in (0, 1), small.err
    # Under 20,000 assets the scan leaves the graph to the first query (it builds it fast).
    assert quick_cached_graph(url, str(config_fingerprint([str(config)]))) is None
    env["CTXSCAN_GRAPH_WARM_ASSETS"] = "500"
    result = ctxscan("scan", "--source", "live", "--json", cwd=config.parent, env=env)
    assert result.code in (0, 1), result.err
    assert json.loads(result.out)["sources"][0]["status"] == "ok"

    cached = quick_cached_graph(url, str(config_fingerprint([str(config)])))
    assert cached is not None, "the scan did not leave the graph in the cache"

    inventory = load_inventory([config])
    store = Store.open(url)
    try:
        ids = list(inventory.sources)
        snapshots, results = store.latest_snapshots(ids), store.latest_results(ids)
        slow = build_graph(inventory, snapshots, results, store.findings("open"))
    finally:
        store.close()

    nodes, edges = cached.ordered()
    assert [n for n, _ in nodes] == list(slow.nodes)
    assert [_plain(a) for _, a in nodes] == [_plain(a) for _, a in slow.nodes(data=True)]
    assert [(u, v, k, _plain(a)) for u, v, k, a in edges] == \
        [(u, v, k, _plain(a)) for u, v, k, a in slow.edges(keys=True, data=True)]
    assert len(slow) > 800 and any(a.get("findings") for _, a in nodes)

    # The SLA of every asset, read or not, is what the `stale` rule computes for it.
    context = RuleContext(inventory=inventory, snapshots=snapshots, results=results,
                          now=datetime.now(UTC))
    for node, attrs in nodes:
        if attrs["type"] != "asset":
            continue
        _, source_id, path = split_node(node)
        sla = effective_sla(context, source_id, path)
        assert attrs.get("sla_origin") == (sla.origin if sla else None), node
        assert attrs.get("sla_seconds") == (round(sla.max_age) if sla and sla.max_age is not None else None), node

    now = datetime.now(UTC)
    for target in ("src01", "src02:schema1.*", "live"):
        assert feeds(cached, target) == feeds(slow, target)
    for workflow in ("wf000", "wf020", "wf039"):
        assert _plain(depends(cached, workflow, now)) == _plain(depends(slow, workflow, now))

    # The first query after the scan is answered from the cache, not rebuilt.
    answer = ctxscan("-v", "feeds", "src01", "--json", cwd=config.parent, env=env)
    assert answer.code == 0, answer.err
    assert "(cached graph)" in answer.err
    assert json.loads(answer.out) == _plain(feeds(slow, "src01"))


def test_html_export_of_a_large_graph_is_refused_and_a_slice_is_written(tmp_path: Path, ctxscan: Any) -> None:
    config = generate(tmp_path / "estate", sources=6, assets=6000, workflows=20, seed=5, evaluate=False)
    env = {"CTXSCAN_CONFIG": str(config)}
    refused = ctxscan("graph", "export", "--format", "html", "-o", str(tmp_path / "all.html"),
                      cwd=config.parent, env=env)
    assert refused.code == 2
    assert refused.err.count("\n") == 1 and "--workflow" in refused.err and "--source" in refused.err
    assert "6,1" in refused.err and not (tmp_path / "all.html").exists()
    sliced = ctxscan("graph", "export", "--format", "html", "-o", str(tmp_path / "src01.html"),
                     "--source", "src01", cwd=config.parent, env=env)
    assert sliced.code == 0, sliced.err
    assert "src01:schema0.table0000" in (tmp_path / "src01.html").read_text(encoding="utf-8")
    whole = ctxscan("graph", "export", "--format", "graphml", "-o", str(tmp_path / "all.graphml"),
                    cwd=config.parent, env=env)
    assert whole.code == 0 and (tmp_path / "all.graphml").stat().st_size > 0


def test_scan_of_postgresql_caches_from_its_own_snapshot_the_graph_the_store_gives(
        tmp_path: Path, ctxscan: Any, pg_database: str, write_inventory: Any) -> None:
    # The scan builds the cached graph from the snapshot it holds rather than decoding it from
    # the store again: that graph must be the one the store's copy gives, on a real probe.
    import psycopg

    dsn = pg_database.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA app")
        conn.execute("CREATE TABLE app.orders (id int PRIMARY KEY, email text, updated_at timestamptz)")
        conn.execute("CREATE TABLE app.parts (id int, day date) PARTITION BY RANGE (day)")
        conn.execute("CREATE TABLE app.parts_1 PARTITION OF app.parts FOR VALUES FROM ('2026-01-01') TO ('2026-02-01')")
        conn.execute("CREATE VIEW app.recent AS SELECT id FROM app.orders")
        conn.execute("COMMENT ON TABLE app.orders IS 'owner: data-eng'")
        conn.execute("GRANT SELECT (id, email) ON app.orders TO PUBLIC")
    config = write_inventory(f"""
        version: 1
        owners: [{{id: data-eng}}]
        sources:
          - id: db
            connector: postgres
            url: {dsn}
            owner_tag: owner
            freshness: {{max_age: 1d}}
        workflows:
          - id: assistant
            owner: data-eng
            stage: production
            runs_as: {{db: postgres}}
            reads: [{{asset: "db:app.orders", columns: [email]}}, {{asset: "db:app.*"}}]
        """)
    url = f"sqlite:///{tmp_path / 'state.db'}"
    env = {"CTXSCAN_GRAPH_WARM_ASSETS": "1"}
    for _ in range(2):  # a first scan, then a rescan that reuses the catalog
        result = ctxscan("-c", str(config), "--state", url, "scan", "--json", cwd=tmp_path, env=env)
        assert result.code in (0, 1), result.err
        cached = quick_cached_graph(url, str(config_fingerprint([str(config)])))
        assert cached is not None, "the scan did not leave the graph in the cache"
        inventory = load_inventory([config])
        store = Store.open(url)
        try:
            ids = list(inventory.sources)
            slow = build_graph(inventory, store.latest_snapshots(ids), store.latest_results(ids),
                               store.findings("open"))
        finally:
            store.close()
        nodes, edges = cached.ordered()
        assert [(n, _plain(a)) for n, a in nodes] == [(n, _plain(a)) for n, a in slow.nodes(data=True)]
        assert [(u, v, k, _plain(a)) for u, v, k, a in edges] == \
            [(u, v, k, _plain(a)) for u, v, k, a in slow.edges(keys=True, data=True)]
        assert "asset:db:app.orders" in dict(nodes)
