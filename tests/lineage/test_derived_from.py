"""`derived_from:` asset lineage: validation, graph edges, and feeds/depends/why/exports following it."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from scanner.cli import main
from scanner.errors import ConfigError
from scanner.graph import DERIVED_FROM, decode_graph, encode_graph, graph_from_store, slice_graph
from scanner.inventory import load_inventory
from scanner.queries import depends, feeds, why
from tests.graph_support import NOW, scanned_estate

ESTATE = """
version: 1
owners: [{id: data}]
sources:
  - id: raw
    connector: fake
    owner: data
    tables: ["public.orders@3h", "public.refunds@10m"]
    grants: ["bot:SELECT:public.orders"]
  - id: wh
    connector: fake
    owner: data
    tables: ["stg_orders@1m", "fct_orders@1m", "unrelated@1m"]
    assets:
      - {path: stg_orders, derived_from: ["raw:public.orders", "raw:public.refunds"]}
      - {path: fct_orders, derived_from: ["wh:stg_orders"]}
workflows:
  - id: reporter
    owner: data
    stage: production
    runs_as: {raw: bot}
    reads: [{asset: "wh:fct_orders", max_age: 1h}]
    feeds: [board]
  - id: board
    owner: data
    stage: pilot
    reads: ["wh:unrelated"]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ctxscan.yaml"
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def _refused(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_inventory([_write(tmp_path, text)], env={})
    return "\n".join(str(e) for e in getattr(caught.value, "errors", [caught.value]))


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("lineage")
    inventory, store = scanned_estate(directory, ESTATE)
    yield inventory, store, directory
    store.close()


@pytest.fixture(scope="module", params=["networkx", "cached"])
def graph(request: pytest.FixtureRequest, estate) -> object:
    inventory, store, _ = estate
    built = graph_from_store(inventory, store, store.findings("open"))
    return built if request.param == "networkx" else decode_graph(encode_graph(built))


def test_unknown_source_is_refused_with_did_you_mean(tmp_path: Path) -> None:
    message = _refused(tmp_path, """
        sources:
          - {id: kb, connector: fake, assets: [{path: articles}]}
          - {id: idx, connector: fake, assets: [{path: docs, derived_from: ["kbb:articles"]}]}
    """)
    assert "ctxscan.yaml:3: sources[1].assets[0].derived_from[0]" in message
    assert "unknown asset 'kbb:articles'" in message and "did you mean 'kb:articles'?" in message


def test_a_typo_of_a_declared_asset_is_refused_but_an_undeclared_path_is_accepted(tmp_path: Path) -> None:
    message = _refused(tmp_path, """
        sources:
          - {id: kb, connector: fake, assets: [{path: public.articles}]}
          - {id: idx, connector: fake, assets: [{path: docs, derived_from: ["kb:public.articlez"]}]}
    """)
    assert "did you mean 'kb:public.articles'?" in message
    inventory = load_inventory([_write(tmp_path, """
        sources:
          - {id: kb, connector: fake, assets: [{path: public.articles}]}
          - {id: idx, connector: fake, assets: [{path: docs, derived_from: ["kb:macros"]}]}
    """)], env={})
    assert inventory.sources["idx"].assets[0].derived_from == ("kb:macros",)


def test_cycles_globs_and_malformed_ids_are_refused(tmp_path: Path) -> None:
    message = _refused(tmp_path, """
        sources:
          - id: wh
            connector: fake
            assets:
              - {path: a, derived_from: ["wh:c"]}
              - {path: b, derived_from: ["wh:a"]}
              - {path: c, derived_from: ["wh:b"]}
    """)
    assert "cycle in derived_from: wh:a -> wh:c -> wh:b -> wh:a" in message
    assert "derived from itself" in _refused(tmp_path, """
        sources: [{id: wh, connector: fake, assets: [{path: a, derived_from: ["wh:a"]}]}]
    """)
    message = _refused(tmp_path, """
        sources: [{id: wh, connector: fake, assets: [{path: a, derived_from: ["wh:x*", "nocolon"]}]}]
    """)
    assert "is a glob" in message and "'nocolon' is not an asset id" in message


def test_graph_has_derived_from_edges_from_derived_to_upstream(graph) -> None:
    succ = graph.succ["asset:wh:stg_orders"]
    assert DERIVED_FROM in succ["asset:raw:public.orders"]
    assert DERIVED_FROM in succ["asset:raw:public.refunds"]
    assert DERIVED_FROM in graph.succ["asset:wh:fct_orders"]["asset:wh:stg_orders"]
    assert DERIVED_FROM not in graph.succ["asset:raw:public.orders"].get("asset:wh:stg_orders", {})
    # The SLA of the reporter's read flows up two derived hops.
    attrs = graph.nodes["asset:raw:public.orders"]
    assert attrs["sla_seconds"] == 3600 and attrs["sla_origin"] == "derived"
    assert attrs["sla_via"] == ["raw:public.orders", "wh:stg_orders", "wh:fct_orders"]


def test_feeds_follows_lineage_then_workflow_feeds(graph) -> None:
    found = {w["id"]: w for w in feeds(graph, "raw:public.orders")["workflows"]}
    assert found["reporter"] == {"id": "reporter", "direct": False, "path": [
        "asset:raw:public.orders", "asset:wh:stg_orders", "asset:wh:fct_orders", "workflow:reporter"]}
    assert found["board"]["path"][-2:] == ["workflow:reporter", "workflow:board"]
    by_source = {w["id"]: w for w in feeds(graph, "raw")["workflows"]}
    assert by_source["reporter"]["path"][0] == "source:raw"
    assert set(by_source) == {"reporter", "board"}
    assert feeds(graph, "wh:unrelated")["workflows"][0]["id"] == "board"
    assert {w["id"] for w in feeds(graph, "wh:unrelated")["workflows"]} == {"board"}


def test_depends_lists_upstream_assets_with_their_lineage_path(graph) -> None:
    answer = depends(graph, "reporter", NOW)
    assets = {a["id"]: a for a in answer["assets"]}
    assert set(assets) == {"wh:fct_orders", "wh:stg_orders", "raw:public.orders", "raw:public.refunds"}
    assert assets["wh:fct_orders"]["direct"] is True and assets["wh:fct_orders"]["derived_path"] is None
    assert assets["raw:public.orders"]["read_by"] == []
    assert assets["raw:public.orders"]["derived_path"] == ["raw:public.orders", "wh:stg_orders", "wh:fct_orders"]
    assert assets["raw:public.orders"]["freshness_state"] in ("stale", "fresh")
    assert {s["id"] for s in answer["sources"]} == {"raw", "wh"}


def test_why_names_the_lineage_path(estate, graph) -> None:
    _, store, _ = estate
    snapshot = store.latest_snapshots(["raw"])["raw"]
    answer = why(graph, snapshot, "reporter", "raw:public.orders")
    assert answer["declared_access"] is None
    assert answer["derived_path"] == ["raw:public.orders", "wh:stg_orders", "wh:fct_orders"]
    assert answer["can_read"] is True


def test_slice_keeps_upstream_lineage_and_exports_the_edge(estate, graph) -> None:
    from scanner.export import export_graph

    inventory, store, _ = estate
    built = graph_from_store(inventory, store, store.findings("open"))
    part = slice_graph(built, ["reporter"])
    assert "asset:raw:public.refunds" in part.nodes
    data = json.loads(export_graph(part, "json"))
    kinds = {(e["source"], e["target"], e.get("type")) for e in data.get("links", data.get("edges", []))}
    assert ("asset:wh:stg_orders", "asset:raw:public.orders", "derived_from") in kinds
    assert b"derived_from" in export_graph(part, "graphml")
    assert b"derived_from" in export_graph(part, "dot")


def test_cli_scan_marks_workflows_reading_derived_assets(estate) -> None:
    _, _, directory = estate
    config = str(directory / "ctxscan.yaml")
    # The estate was scanned at NOW: judge its ages then (findings judge them now by default).
    result = CliRunner().invoke(main, ["findings", "-c", config, "--kind", "stale", "--json",
                                       "--as-of", NOW.isoformat()])
    assert result.exit_code == 0, result.output
    stale = {f["asset"]: f for f in json.loads(result.output)}
    finding = stale["raw:public.orders"]
    assert finding["workflow"] == "reporter"
    assert "derived via raw:public.orders -> wh:stg_orders -> wh:fct_orders" in finding["message"]
    assert "raw:public.refunds" not in stale
    result = CliRunner().invoke(main, ["feeds", "-c", config, "raw:public.orders"])
    assert result.exit_code == 0 and "wh:stg_orders -> wh:fct_orders -> reporter" in result.output
    result = CliRunner().invoke(main, ["why", "-c", config, "reporter", "raw:public.orders"])
    assert result.exit_code == 0 and "derived from it via" in result.output, result.output
