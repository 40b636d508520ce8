"""feeds, depends and why: pure functions over the graph, and the CLI commands around them."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import networkx as nx
import pytest

from scanner.errors import UsageError
from scanner.graph import decode_graph, encode_graph, graph_from_store
from scanner.model import (
    ACCESS_READ,
    ACCESS_WRITE,
    SCOPE_CONTAINER,
    SCOPE_SOURCE,
    Asset,
    Grant,
    Membership,
    Principal,
    SourceSnapshot,
)
from scanner.queries import depends, feeds, why
from tests.graph_support import NOW, scanned_estate

# assistant -> router -> reporter and assistant -> summariser -> reporter: a diamond.


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("estate")
    inventory, store = scanned_estate(directory)
    yield inventory, store, directory
    store.close()


@pytest.fixture(scope="module", params=["networkx", "cached"])
def graph(request: pytest.FixtureRequest, estate) -> object:
    inventory, store, _ = estate
    built = graph_from_store(inventory, store, store.findings("open"))
    return built if request.param == "networkx" else decode_graph(encode_graph(built))


def by_id(answer: dict) -> dict[str, dict]:
    return {w["id"]: w for w in answer["workflows"]}


def test_feeds_of_an_asset_is_transitive_through_the_diamond(graph) -> None:
    answer = feeds(graph, "crm:public.customers")
    assert answer["target"] == "crm:public.customers"
    found = by_id(answer)
    assert set(found) == {"assistant", "explorer", "router", "summariser", "reporter"}
    assert found["assistant"] == {"id": "assistant", "direct": True,
                                  "path": ["asset:crm:public.customers", "workflow:assistant"]}
    assert found["router"]["direct"] is False
    assert found["router"]["path"] == ["asset:crm:public.customers", "workflow:assistant", "workflow:router"]
    # Reached twice through the diamond; once in the answer, by a shortest path.
    assert found["reporter"]["path"] == ["asset:crm:public.customers", "workflow:assistant", "workflow:router",
                                         "workflow:reporter"]
    assert [w["id"] for w in answer["workflows"]][:2] == ["assistant", "explorer"]  # direct ones first


def test_direct_beats_transitive(graph) -> None:
    found = by_id(feeds(graph, "crm:public.tickets"))
    assert found["summariser"]["direct"] is True and found["explorer"]["direct"] is True
    assert found["reporter"]["direct"] is False
    assert found["reporter"]["path"] == ["asset:crm:public.tickets", "workflow:summariser", "workflow:reporter"]
    assert "assistant" not in found                   # upstream of summariser, not fed by the table


def test_feeds_of_a_source_starts_at_the_source(graph) -> None:
    found = by_id(feeds(graph, "kb"))
    assert set(found) == {"router", "reporter"}
    assert found["router"]["path"] == ["source:kb", "asset:kb:articles", "workflow:router"]
    assert found["reporter"]["direct"] is True        # it reads kb:macros itself
    assert by_id(feeds(graph, "source:kb")) == found  # node ids work too


def test_feeds_of_a_glob(graph) -> None:
    found = by_id(feeds(graph, "crm:public.t*"))
    assert set(found) == {"summariser", "explorer", "reporter"}
    assert found["summariser"]["path"] == ["asset:crm:public.tickets", "workflow:summariser"]
    assert set(by_id(feeds(graph, "k*"))) == {"router", "reporter"}  # a glob without ':' names sources
    assert by_id(feeds(graph, "crm:internal.*")) == {}              # matches, feeds nothing


def test_feeds_of_a_workflow_is_what_it_feeds(graph) -> None:
    found = by_id(feeds(graph, "router"))
    assert found == {"reporter": {"id": "reporter", "direct": True, "path": ["workflow:router", "workflow:reporter"]}}


def test_a_missing_asset_still_feeds_its_reader(graph) -> None:
    assert set(by_id(feeds(graph, "crm:public.missing"))) == {"orphan-reader"}


@pytest.mark.parametrize("target, closest", [
    ("crm:public.custmers", "crm:public.customers"),
    ("kbb", "kb"),
    ("asistant", "assistant"),
])
def test_unknown_targets_name_the_closest_ids(graph, target: str, closest: str) -> None:
    with pytest.raises(UsageError) as caught:
        feeds(graph, target)
    assert closest in str(caught.value) and "\n" not in str(caught.value)


def test_a_glob_that_matches_nothing_is_an_error(graph) -> None:
    with pytest.raises(UsageError, match="matches no source or asset"):
        feeds(graph, "crm:privat.*")


def test_depends_goes_through_upstream_workflows(graph) -> None:
    answer = depends(graph, "reporter", NOW + timedelta(hours=1))
    assert answer["workflow"] == "reporter" and answer["stage"] == "poc"
    assets = {a["id"]: a for a in answer["assets"]}
    assert set(assets) == {"kb:macros", "kb:articles", "crm:public.tickets", "crm:public.customers"}
    assert assets["kb:macros"]["direct"] is True and assets["kb:macros"]["read_by"] == ["reporter"]
    assert assets["crm:public.customers"]["direct"] is False
    assert assets["crm:public.customers"]["read_by"] == ["assistant"]
    customers = assets["crm:public.customers"]
    assert customers["freshness"]["method"] == "metadata"
    assert customers["freshness"]["age_seconds"] == 3 * 3600          # age now, an hour after the scan
    assert customers["freshness"]["age_at_scan_seconds"] == 2 * 3600
    assert customers["sla_seconds"] == 3600 and customers["sla_set_by"] == "assistant"
    assert customers["freshness_state"] == "stale"
    assert customers["owner"] == "data-eng" and customers["owner_provenance"] == "source"
    assert any(f["kind"] == "stale" for f in customers["findings"])
    assert assets["crm:public.tickets"]["freshness_state"] == "fresh"
    assert {s["id"] for s in answer["sources"]} == {"kb", "crm"}
    assert {u["id"] for u in answer["upstream"]} == {"router", "summariser", "assistant"}
    upstream = {u["id"]: u for u in answer["upstream"]}
    assert upstream["assistant"]["path"][-1] == "workflow:reporter"


def test_depends_reports_unknown_freshness_and_missing_assets(graph) -> None:
    assets = {a["id"]: a for a in depends(graph, "explorer", NOW)["assets"]}
    assert assets["crm:public.notes"]["freshness_state"] == "unknown"
    assert assets["crm:public.notes"]["freshness"]["age_seconds"] is None
    missing = depends(graph, "orphan-reader", NOW)["assets"]
    assert [(a["id"], a["freshness_state"]) for a in missing] == [("crm:public.missing", "missing")]
    with pytest.raises(UsageError, match="closest: reporter"):
        depends(graph, "reportr", NOW)


def test_why_through_a_two_level_role_chain_and_public(estate, graph) -> None:
    _, store, _ = estate
    snapshot = store.latest_snapshots(["crm"])["crm"]
    answer = why(graph, snapshot, "assistant", "crm:public.customers")
    assert answer["principal"] == "support_bot" and answer["declared_access"] == "read"
    chains = [tuple(p["chain"]) for p in answer["paths"]]
    assert ("support_bot",) in chains                               # its own grant
    assert ("support_bot", "analysts", "readers") in chains         # member of a member
    assert answer["can_read"] is True and answer["can_write"] is False
    public = why(graph, snapshot, "assistant", "crm:public.tickets")
    assert public["declared_access"] is None
    kinds = {(tuple(p["chain"]), p["public"]) for p in public["paths"]}
    assert (("support_bot", "PUBLIC"), True) in kinds
    assert (("support_bot", "analysts", "readers"), False) in kinds
    none = why(graph, snapshot, "assistant", "crm:public.orders")
    assert none["paths"] == [] and none["can_read"] is False and "no access" in none["note"]


def test_why_without_runs_as_or_scan(estate, graph) -> None:
    _, store, _ = estate
    snapshot = store.latest_snapshots(["crm"])["crm"]
    answer = why(graph, snapshot, "summariser", "crm:public.tickets")
    assert answer["principal"] is None and "runs_as" in answer["note"]
    assert "no successful scan" in why(graph, None, "assistant", "crm:public.customers")["note"]
    with pytest.raises(UsageError, match="closest"):
        why(graph, snapshot, "assistant", "crm:public.custmers")
    with pytest.raises(UsageError):
        why(graph, snapshot, "nobody", "crm:public.customers")


def test_why_through_schema_wide_source_wide_and_privileged_grants() -> None:
    graph = nx.MultiDiGraph(sources=["wh"], workflows=["w"])
    graph.add_node("workflow:w", type="workflow", label="w")
    graph.add_node("principal:wh:bot", type="principal", label="bot")
    graph.add_node("asset:wh:sales.orders", type="asset", label="sales.orders")
    graph.add_edge("workflow:w", "principal:wh:bot", key="runs_as", type="runs_as", source_id="wh")
    snapshot = SourceSnapshot(
        source_id="wh", connector="bigquery", probed_at=NOW,
        assets=(Asset("sales.orders", "table", container="sales"),),
        principals=(Principal("owner", privileged=True, attributes=("dataset_owner",)),),
        memberships=(Membership("bot", "analysts"), Membership("analysts", "owner", inherit=False)),
        grants=(Grant("analysts", "READER", "sales", SCOPE_CONTAINER, ACCESS_READ, via="dataset access"),
                Grant("allUsers", "READER", "*", SCOPE_SOURCE, ACCESS_READ, public=True, via="project IAM"),
                Grant("bot", "WRITER", "other", SCOPE_CONTAINER, ACCESS_WRITE, via="another dataset")))
    answer = why(graph, snapshot, "w", "wh:sales.orders")
    paths = {(tuple(p["chain"]), p["scope"]) for p in answer["paths"]}
    assert (("bot", "analysts"), "container") in paths
    assert (("bot", "allUsers"), "source") in paths
    assert not any(p["privileged"] for p in answer["paths"])        # membership without inherit
    assert answer["access"] == ["read"] and answer["can_write"] is False


def test_cli_feeds_json_matches_the_contract(estate, ctxscan) -> None:
    _, _, directory = estate
    result = ctxscan("feeds", "crm:public.*", "--json", cwd=directory)
    assert result.code == 0, result
    data = json.loads(result.out)
    assert set(data) == {"target", "workflows"} and data["target"] == "crm:public.*"
    assert data["workflows"] and all(set(w) == {"id", "direct", "path"} for w in data["workflows"])
    human = ctxscan("feeds", "crm:public.customers", cwd=directory)
    assert human.code == 0 and "assistant" in human.out and "5 workflows (2 directly)" in human.out


def test_cli_unknown_id_is_one_line_and_exit_2(estate, ctxscan) -> None:
    _, _, directory = estate
    for args in (("feeds", "crm:public.custmers"), ("depends", "asistant"), ("why", "assistant", "crm:nope"),
                 ("graph", "export", "--workflow", "asistant")):
        result = ctxscan(*args, cwd=directory)
        assert result.code == 2, result
        errors = [line for line in result.err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "closest" in errors[0], result


def test_cli_depends_and_why(estate, ctxscan) -> None:
    _, _, directory = estate
    result = ctxscan("depends", "reporter", "--json", cwd=directory)
    assert result.code == 0, result
    assert {a["id"] for a in json.loads(result.out)["assets"]} >= {"kb:macros", "crm:public.customers"}
    human = ctxscan("depends", "reporter", cwd=directory)
    assert human.code == 0 and "crm:public.customers" in human.out and "UPSTREAM WORKFLOW" in human.out
    why_human = ctxscan("why", "assistant", "crm:public.customers", cwd=directory)
    assert why_human.code == 0, why_human
    assert "support_bot -> analysts -> readers" in why_human.out
    why_json = json.loads(ctxscan("why", "assistant", "crm:public.orders", "--json", cwd=directory).out)
    assert why_json["paths"] == [] and why_json["can_read"] is False


def test_queries_never_probe(tmp_path: Path, ctxscan) -> None:
    """After the scan the sources break; queries answer from the store all the same."""
    scanned_estate(tmp_path)[1].close()
    config = tmp_path / "ctxscan.yaml"
    config.write_text(config.read_text().replace("connector: fake\n", "connector: fake\n    hang: true\n"))
    result = ctxscan("depends", "reporter", "--json", cwd=tmp_path, timeout=30)
    assert result.code == 0, result
    assert json.loads(result.out)["sources"][0]["scan_status"] == "ok"


def test_depends_shows_a_glob_that_matches_nothing_and_counts_in_words(tmp_path: Path, ctxscan) -> None:
    scanned_estate(tmp_path, """
        version: 1
        owners: [{id: team}]
        sources: [{id: kb, connector: fake, owner: team, tables: ["macros@1m"]}]
        workflows:
          - {id: a, owner: team, reads: ["kb:nothing*"], feeds: [b]}
          - {id: b, owner: team, reads: ["kb:macros"]}
        """)[1].close()
    result = ctxscan("depends", "b", "--json", cwd=tmp_path)
    assert result.code == 0, result
    rows = {a["id"]: a for a in json.loads(result.out)["assets"]}
    assert set(rows) == {"kb:macros", "kb:nothing*"}
    assert rows["kb:nothing*"]["freshness_state"] == "missing" and rows["kb:nothing*"]["read_by"] == ["a"]
    assert any(f["kind"] == "missing_asset" for f in rows["kb:nothing*"]["findings"])
    first = ctxscan("depends", "a", cwd=tmp_path).out.splitlines()[0]
    assert "1 asset in 1 source" in first and "upstream" not in first, first
    second = ctxscan("depends", "b", cwd=tmp_path).out.splitlines()[0]
    assert "2 assets in 1 source, through 1 upstream workflow" in second and "workflows" not in second, second


def test_before_any_scan_slas_come_from_the_reads_and_nothing_is_healthy(tmp_path, ctxscan) -> None:
    """A source never scanned is `not_scanned`, not healthy, and its reads keep their own SLA."""
    import json

    from scanner.demo import build_estate

    config = build_estate(tmp_path / "estate")
    state = str(tmp_path / "empty.db")
    answer = json.loads(ctxscan("depends", "support-reply-assistant", "-c", str(config), "--state", state,
                                "--json").out)
    customers = next(a for a in answer["assets"] if a["id"] == "helpdesk:main.customers")
    assert customers["sla_seconds"] == 3600 and customers["sla_set_by"] == "support-reply-assistant"
    assert customers["status"] == "not_scanned"
    assert {s["status"] for s in answer["sources"]} == {"not_scanned"}


def test_a_node_lists_its_most_severe_findings_and_counts_them_all(estate, tmp_path: Path) -> None:
    # A workflow whose principal can write 2,000 tables has 2,000 findings: the graph lists
    # the 50 most severe on its node (every query touching it decodes them) and counts all.
    from scanner.graph import _NODE_FINDINGS
    from tests.graph_support import stored_finding

    inventory, store, _ = estate
    severities = ["low", "critical", "medium", "info", "high"]
    many = [stored_finding("over_permissioned", severities[n % 5], workflow="assistant", n=n,
                           message=f"can write t{n:03d}") for n in range(_NODE_FINDINGS + 13)]
    built = graph_from_store(inventory, store, many)
    for graph in (built, decode_graph(encode_graph(built))):
        attrs = graph.nodes["workflow:assistant"]
        listed = attrs["findings"]
        assert len(listed) == _NODE_FINDINGS and attrs["findings_count"] == _NODE_FINDINGS + 13
        assert sum(attrs[f"findings_{s}"] for s in severities) == _NODE_FINDINGS + 13
        assert attrs["findings_critical"] == 13 and attrs["findings_info"] == 12
        # The most severe first: all 38 critical, high and medium ones, then 12 of the 13 low.
        ranks = ["critical", "high", "medium", "low", "info"]
        assert [ranks.index(f["severity"]) for f in listed] == sorted(ranks.index(f["severity"]) for f in listed)
        assert [f["severity"] for f in listed].count("low") == 12 and "info" not in {f["severity"] for f in listed}
        answer = depends(graph, "assistant", NOW)
        assert answer["findings_total"] == _NODE_FINDINGS + 13 and len(answer["findings"]) == _NODE_FINDINGS
        assert "findings_total" not in answer["assets"][0]  # the others list theirs whole
    few = graph_from_store(inventory, store, many[:3])
    assert "findings_count" not in few.nodes["workflow:assistant"]
    assert "findings_total" not in depends(few, "assistant", NOW)
