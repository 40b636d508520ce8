"""Graph exports, each read back by its own reader: networkx (GraphML, GEXF, JSON), Graphviz
(DOT), headless Chromium (HTML); slices, determinism, hostile names, the committed demo graphs.

Graphviz and Chromium are Debian packages (`apt-get install graphviz chromium`); without them
these tests fail and say so rather than skip.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

from scanner.export import FORMATS, export_graph, mermaid_markdown
from scanner.graph import decode_graph, encode_graph, graph_from_store, slice_graph
from tests.graph_support import ESTATE, scanned_estate

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
# Names a hostile or careless system may hand us: quotes, markup, a newline, a control character.
HOSTILE = ['public.we\\"ird <b>&amp;', "public.line\\nbreak", "public.</script><script>alert(1)</script>",
           "public.ctl\\x01char", "public.ünï‐cödé"]
HOSTILE_ESTATE = ESTATE.replace(
    '"internal.audit@1h"]',
    '"internal.audit@1h", ' + ", ".join(f'"{name}@1h"' for name in HOSTILE) + "]")


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> nx.MultiDiGraph:
    inventory, store = scanned_estate(tmp_path_factory.mktemp("estate"), HOSTILE_ESTATE)
    try:
        built = graph_from_store(inventory, store, store.findings("open"))
    finally:
        store.close()
    assert any("\n" in node for node in built.nodes) and any("\x01" in node for node in built.nodes)
    return built


def write(tmp_path: Path, graph: object, fmt: str) -> Path:
    path = tmp_path / f"graph.{fmt}"
    path.write_bytes(export_graph(graph, fmt))
    return path


def test_graphml_reads_back_with_networkx(tmp_path: Path, graph: nx.MultiDiGraph) -> None:
    back = nx.read_graphml(write(tmp_path, graph, "graphml"), force_multigraph=True)
    # Quotes, markup and newlines survive; a control character XML cannot hold comes back as
    # a visible escape.
    assert set(back.nodes) == {n.replace("\x01", "\\x01") for n in graph.nodes}
    assert back.number_of_edges() == graph.number_of_edges()
    customers = back.nodes["asset:crm:public.customers"]
    assert customers["age_seconds"] == 7200 and customers["owner"] == "data-eng"
    assert back.nodes["principal:crm:etl"]["privileged"] is True
    assert back.has_edge("asset:crm:public.customers", "workflow:assistant", key="feeds")
    assert back.edges["principal:crm:writers", "asset:crm:public.orders", "grants"]["privileges"] == "INSERT"
    assert "asset:crm:public.line\nbreak" in back.nodes


def test_gexf_reads_back_with_networkx(tmp_path: Path, graph: nx.MultiDiGraph) -> None:
    back = nx.read_gexf(write(tmp_path, graph, "gexf"))
    assert set(back.nodes) == {n.replace("\x01", "\\x01") for n in graph.nodes}
    assert back.number_of_edges() == graph.number_of_edges()
    assert back.nodes["workflow:assistant"]["stage"] == "production"
    assert back.nodes["workflow:assistant"]["label"] == "assistant"
    edge = back.edges["workflow:assistant", "workflow:router"]
    assert edge["type"] == "feeds" and edge["label"] == "feeds"
    assert back.nodes["principal:crm:etl"]["privileged"] is True


def test_json_reads_back_with_networkx(tmp_path: Path, graph: nx.MultiDiGraph) -> None:
    data = json.loads(write(tmp_path, graph, "json").read_text(encoding="utf-8"))
    back = nx.node_link_graph(data, edges="edges")
    assert isinstance(back, nx.MultiDiGraph)
    assert dict(back.nodes(data=True)) == dict(graph.nodes(data=True))
    assert sorted(back.edges(keys=True, data=True), key=repr) == sorted(graph.edges(keys=True, data=True), key=repr)


def test_dot_renders_with_graphviz(tmp_path: Path, graph: nx.MultiDiGraph) -> None:
    dot = shutil.which("dot")
    if dot is None:
        pytest.fail("Graphviz `dot` is not installed (apt-get install graphviz)")
    path = write(tmp_path, graph, "dot")
    proc = subprocess.run([dot, "-Tsvg", str(path)], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    svg = proc.stdout.decode()
    assert svg.count('class="cluster"') == 2                       # assets grouped by source
    assert svg.count('class="node"') == graph.number_of_nodes()
    assert "#f8d7da" in svg and "#d5f0dd" in svg                   # stale and healthy fills
    assert "public.customers" in svg


def test_mermaid_is_a_flowchart_with_statuses_and_groups(graph: nx.MultiDiGraph) -> None:
    text = export_graph(graph, "mermaid").decode("utf-8")
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    assert sum(1 for line in lines if line.strip().startswith("subgraph ")) == 2
    assert sum(1 for line in lines if line.strip() == "end") == 2
    node_lines = [line for line in lines if re.match(r"\s+n\d+[\[({>]", line)]
    assert len(node_lines) == graph.number_of_nodes()
    edge_lines = [line for line in lines if re.match(r"\s+n\d+ (-->|==>|-\.->|---)", line)]
    assert len(edge_lines) == graph.number_of_edges()
    assert "classDef stale" in text and re.search(r"^  class [n\d,]+ stale$", text, re.M)
    for line in node_lines:                                         # no raw quote or markup in a label
        label = line.split('"', 1)[1].rsplit('"', 1)[0]
        assert '"' not in label and "</script>" not in label and "\n" not in label
    markdown = mermaid_markdown(graph)
    assert "```mermaid\nflowchart LR" in markdown and markdown.endswith("```\n")


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.fail("Chromium is not installed (apt-get install chromium)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", "--disable-quic", f"--user-data-dir={profile}", "--window-size=1400,900"]
    return subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=120)


def test_html_renders_in_headless_chromium(tmp_path: Path, graph: nx.MultiDiGraph) -> None:
    path = write(tmp_path, graph, "html")
    html = path.read_text(encoding="utf-8")
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", html))
    assert urls <= {"http://www.w3.org/2000/svg"}                  # a namespace, never fetched
    assert "<script>alert(1)</script>" not in html
    dom = chromium("--dump-dom", path.as_uri(), profile=tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = re.search(r'data-rendered="(\d+)"', dom.stdout)
    assert rendered is not None, dom.stdout[:2000]
    assert int(rendered.group(1)) == graph.number_of_nodes()
    assert int(re.search(r'data-edges="(\d+)"', dom.stdout).group(1)) == graph.number_of_edges()
    assert dom.stdout.count('class="node ') == graph.number_of_nodes()
    assert 'data-id="workflow:assistant"' in dom.stdout
    # Click-for-details and search, driven through the page's #node= and #search= links.
    detail = chromium("--dump-dom", path.as_uri() + "#node=workflow%3Aassistant&search=public.t",
                      profile=tmp_path / "profile-detail")
    assert detail.returncode == 0, detail.stderr[-2000:]
    assert '<h2>assistant</h2>' in detail.stdout and "workflow · stale" in detail.stdout
    assert "Open findings" in detail.stdout and "support_bot" in detail.stdout
    assert '<span id="hits">1 found</span>' in detail.stdout
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "graph-export.png"
    shot.unlink(missing_ok=True)
    result = chromium(f"--screenshot={shot}", path.as_uri(), profile=tmp_path / "profile-shot")
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.stat().st_size > 10_000


@pytest.mark.parametrize("fmt", FORMATS)
def test_exports_are_deterministic(graph: nx.MultiDiGraph, fmt: str) -> None:
    first = export_graph(graph, fmt)
    assert export_graph(graph, fmt) == first
    assert export_graph(decode_graph(encode_graph(graph)), fmt) == first   # the cached form too
    shuffled = nx.MultiDiGraph()
    shuffled.graph.update(graph.graph)
    shuffled.add_nodes_from(reversed(list(graph.nodes(data=True))))
    shuffled.add_edges_from(reversed(list(graph.edges(keys=True, data=True))))
    assert export_graph(shuffled, fmt) == first                    # insertion order does not matter


def test_a_slice_exports_only_what_touches_it(graph: nx.MultiDiGraph) -> None:
    data = json.loads(export_graph(slice_graph(graph, workflows=["router"]), "json"))
    ids = {node["id"] for node in data["nodes"]}
    assert {"workflow:router", "workflow:assistant", "workflow:reporter", "asset:kb:articles"} <= ids
    assert "workflow:explorer" not in ids and "asset:crm:public.orders" not in ids
    assert data["graph"]["slice"] == "workflow:router"


def test_cli_graph_export(tmp_path: Path, ctxscan) -> None:
    scanned_estate(tmp_path)[1].close()
    result = ctxscan("graph", "export", "--format", "json", "--workflow", "router", "-o", "-", cwd=tmp_path)
    assert result.code == 0, result
    assert "workflow:router" in {n["id"] for n in json.loads(result.out)["nodes"]}
    default = ctxscan("graph", "export", "--format", "mermaid", cwd=tmp_path)
    assert default.code == 0, default
    assert (tmp_path / "graphs" / "ctxscan.md").read_text().startswith("# ctxscan dependency graph")
    sliced = ctxscan("graph", "export", "--format", "dot", "--source", "kb", "--depth", "0", cwd=tmp_path)
    assert sliced.code == 0 and (tmp_path / "graphs" / "ctxscan-source-kb.dot").exists()
    assert "wrote graphs/ctxscan-source-kb.dot" in sliced.err
    bad = ctxscan("graph", "export", "--depth", "1", cwd=tmp_path)
    assert bad.code == 2 and "--depth needs a slice" in bad.err


DEMO_COMMAND = ("ctxscan demo --dir build/demo --graphs graphs --as-of 2026-01-01T12:00:00Z")


def test_committed_demo_graphs_are_up_to_date(tmp_path: Path) -> None:
    """graphs/ holds the demo estate's exports; regenerate them with DEMO_COMMAND."""
    proc = subprocess.run([sys.executable, "-m", "scanner", "demo", "--dir", str(tmp_path / "demo"),
                           "--graphs", str(tmp_path / "graphs"), "--as-of", "2026-01-01T12:00:00Z", "--json"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    fresh = sorted(p.name for p in (tmp_path / "graphs").iterdir())
    assert fresh == ["ctxscan.dot", "ctxscan.gexf", "ctxscan.graphml", "ctxscan.html", "ctxscan.json", "ctxscan.md"]
    for name in fresh:
        committed = ROOT / "graphs" / name
        assert committed.exists() and committed.read_bytes() == (tmp_path / "graphs" / name).read_bytes(), (
            f"graphs/{name} is out of date: run `{DEMO_COMMAND}` from the repository root")
