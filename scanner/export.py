"""Graph exports for architecture reviews: GraphML, GEXF, JSON, DOT, Mermaid and HTML.

Every export is deterministic: nodes in canonical order (type, then id), edges by their
ends and type, attributes by name, no timestamps but the scan's own. The same inventory and
stored scan give the same bytes, so an export can be committed and diffed in review.

GraphML, GEXF, DOT and Mermaid are written here rather than by networkx's writers: they are
faster on 50,000 nodes, and they control ordering, typing and escaping (a table name with
quotes, newlines or control characters stays one well-formed node). DOT, Mermaid and HTML
colour nodes by status and group assets by source. The HTML page is one file with its
script and styles inline and a Content-Security-Policy that forbids any fetch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from scanner.graph import (
    ASSET,
    CONTAINS,
    FEEDS,
    OWNER,
    PRINCIPAL,
    SOURCE,
    STATUSES,
    WORKFLOW,
    LiteGraph,
    sort_key,
    split_node,
)

FORMATS = ("graphml", "gexf", "json", "dot", "mermaid", "html")
# The page draws every node and edge as SVG elements: past a few thousand nodes, pan, zoom and
# search redraw hundreds of thousands of elements and the page stops being usable (bench/README.md).
HTML_MAX_NODES = 5_000
EXTENSIONS = {"graphml": "graphml", "gexf": "gexf", "json": "json", "dot": "dot", "mermaid": "md",
              "html": "html"}

# status -> (fill, stroke); shared by DOT, Mermaid, GEXF and HTML.
STATUS_COLOURS = {
    "stale": ("#f8d7da", "#c0392b"),
    "over_permissioned": ("#fde2c8", "#d35400"),
    "unowned": ("#e8dcf5", "#7d3c98"),
    "attention": ("#fff3c4", "#b7950b"),
    "not_scanned": ("#eeeeee", "#7f8c8d"),
    "healthy": ("#d5f0dd", "#1e8449"),
}
EDGE_STYLES = {  # DOT attributes per edge type
    "contains": 'color="#b0b0b0", arrowhead=none',
    "feeds": 'color="#222222", penwidth=1.6',
    "runs_as": 'color="#2e86c1", style=dashed',
    "grants": 'color="#d35400", style=dashed',
    "member_of": 'color="#2e86c1", style=dotted',
    "owns": 'color="#999999", style=dotted, arrowhead=odot',
    "derived_from": 'color="#16a085", style=dashed',
}
DOT_SHAPES = {SOURCE: "cylinder", ASSET: "box", WORKFLOW: "box", PRINCIPAL: "hexagon", OWNER: "house"}


def export_graph(graph: Any, fmt: str) -> bytes:
    """Serialise a graph (networkx, cached or canonical) in one of FORMATS."""
    writer = {"graphml": to_graphml, "gexf": to_gexf, "json": to_json, "dot": to_dot,
              "mermaid": to_mermaid, "html": to_html}[fmt]
    from scanner.redact import scrub

    # Names and owners come from the inventory, where a misplaced ${VAR} can carry a secret.
    return scrub(writer(canonical(graph)), json_escaped=True).encode("utf-8")


class Canonical:
    """A graph's nodes and edges in canonical order, with the little API the writers use."""

    def __init__(self, attrs: Mapping[str, Any], node_list: list[tuple[str, dict[str, Any]]],
                 edge_list: list[tuple[str, str, str, dict[str, Any]]]) -> None:
        self.graph = dict(attrs)
        self.node_list = node_list
        self.edge_list = edge_list
        self.nodes = dict(node_list)

    def number_of_nodes(self) -> int:
        return len(self.node_list)

    def number_of_edges(self) -> int:
        return len(self.edge_list)


def canonical(graph: Any) -> Canonical:
    """Nodes by (type, id), edges by their ends' order and type: what makes exports deterministic.

    The cached graph is read straight into this form, without building a networkx graph.
    """
    if isinstance(graph, Canonical):
        return graph
    if isinstance(graph, LiteGraph):
        nodes, edges = graph.ordered()
        return Canonical(graph.graph, nodes, edges)
    nodes = sorted(graph.nodes(data=True), key=lambda item: sort_key(item[0]))
    rank = {node: i for i, (node, _) in enumerate(nodes)}
    edges = sorted(((u, v, str(k), d) for u, v, k, d in graph.edges(keys=True, data=True)),
                   key=lambda e: (rank[e[0]], rank[e[1]], e[2]))
    return Canonical(graph.graph, nodes, edges)


def _flat_value(name: str, value: Any) -> Any:
    """A scalar for formats that only hold scalars; None when there is nothing to write."""
    if value is None:
        return None
    if isinstance(value, bool | int | float | str):
        return value
    if name == "findings" and isinstance(value, list):
        return "; ".join(f"{f.get('severity')} {f.get('kind')}: {f.get('message')}" for f in value) or None
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or None
    return json.dumps(value, sort_keys=True, default=str)


_SCALAR_TYPES = frozenset({str, int, float, bool})


def flat_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes as scalars, by name."""
    out = {}
    for name in sorted(attrs):
        value = attrs[name]
        if value is None:
            continue
        if type(value) not in _SCALAR_TYPES:
            value = _flat_value(name, value)
            if value is None:
                continue
        out[name] = value
    return out


# Also bidi overrides and isolates (they reorder a label on screen) and the Unicode line
# separators: shown as escapes like the C0 controls.
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff"
                          "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
_XML_SPECIAL = re.compile('[&<>"\t\n\r\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff'
                          '\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]')


def _clean(text: str) -> str:
    """Characters XML 1.0 cannot hold, written as visible escapes (`\\x01`)."""
    return _INVALID_XML.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)


def _xml_text(text: str) -> str:
    if _XML_SPECIAL.search(text) is None:  # the common case, and the fast one
        return text
    return _clean(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _xml_attr(text: str) -> str:
    if _XML_SPECIAL.search(text) is None:
        return text
    # Newlines and tabs as character references: attribute normalisation would eat them.
    return (_xml_text(text).replace('"', "&quot;").replace("\n", "&#10;").replace("\r", "&#13;")
            .replace("\t", "&#9;"))


_KINDS = {bool: "boolean", int: "long", float: "double", str: "string"}


def _infer_types(rows: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """One type per attribute over all rows: boolean, long, double or string."""
    seen: dict[str, set[str]] = {}
    kinds = _KINDS
    for row in rows:
        for name, value in row.items():
            kind = kinds.get(type(value), "string")
            found = seen.get(name)
            if found is None:
                seen[name] = {kind}
            elif kind not in found:
                found.add(kind)
    types = {}
    for name, found in sorted(seen.items()):
        if len(found) == 1:
            types[name] = next(iter(found))
        elif found <= {"long", "double"}:
            types[name] = "double"
        else:
            types[name] = "string"
    return types


def _xml_value(value: Any, kind: str) -> str:
    """A value as escaped XML text for an attribute of `kind`."""
    if kind == "string":
        text = value if type(value) is str else _typed(value, kind)
        return text if _XML_SPECIAL.search(text) is None else _xml_text(text)
    return _typed(value, kind)


def _typed(value: Any, kind: str) -> str:
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "double":
        return repr(float(value))
    if kind == "long":
        return str(int(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _graph_scalars(graph: Any) -> dict[str, Any]:
    return {k: v for k, v in sorted(graph.graph.items())
            if isinstance(v, str | int | float | bool) and v is not None}


# ---------------------------------------------------------------------------------------
# GraphML

def to_graphml(graph: Any) -> str:
    """GraphML (read back by networkx.read_graphml, yEd, Gephi)."""
    graph = canonical(graph)
    nodes, edges = graph.node_list, graph.edge_list
    node_rows = [flat_attrs(a) for _, a in nodes]
    edge_rows = [flat_attrs(a) for *_, a in edges]
    graph_row = _graph_scalars(graph)
    node_types, edge_types, graph_types = (_infer_types(node_rows), _infer_types(edge_rows),
                                           _infer_types([graph_row]))
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<graphml xmlns="http://graphml.graphdrawing.org/xmlns" '
           'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
           'xsi:schemaLocation="http://graphml.graphdrawing.org/xmlns '
           'http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd">']
    ids: dict[tuple[str, str], str] = {}
    for scope, prefix, types in (("graph", "g", graph_types), ("node", "n", node_types), ("edge", "e", edge_types)):
        for i, (name, kind) in enumerate(types.items()):
            ids[(scope, name)] = f"{prefix}{i}"
            out.append(f'  <key id="{prefix}{i}" for="{scope}" attr.name="{_xml_attr(name)}" '
                       f'attr.type="{kind}"/>')
    out.append('  <graph id="ctxscan" edgedefault="directed">')
    for name, value in graph_row.items():
        out.append(f'    <data key="{ids[("graph", name)]}">{_xml_text(_typed(value, graph_types[name]))}</data>')
    node_out = {name: (f'      <data key="{ids[("node", name)]}">', kind) for name, kind in node_types.items()}
    edge_out = {name: (f'      <data key="{ids[("edge", name)]}">', kind) for name, kind in edge_types.items()}
    append = out.append
    special = _XML_SPECIAL.search
    for (node, _), row in zip(nodes, node_rows, strict=True):
        append(f'    <node id="{_xml_attr(node)}">')
        for name, value in row.items():
            opening, kind = node_out[name]
            if kind == "string" and type(value) is str and special(value) is None:
                append(f"{opening}{value}</data>")
            else:
                append(f"{opening}{_xml_value(value, kind)}</data>")
        append("    </node>")
    for (u, v, key, _), row in zip(edges, edge_rows, strict=True):
        append(f'    <edge id="{_xml_attr(key)}" source="{_xml_attr(u)}" target="{_xml_attr(v)}">')
        for name, value in row.items():
            opening, kind = edge_out[name]
            append(f"{opening}{_xml_value(value, kind)}</data>")
        append("    </edge>")
    out += ["  </graph>", "</graphml>", ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------
# GEXF

def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def to_gexf(graph: Any) -> str:
    """GEXF 1.2 (Gephi; read back by networkx.read_gexf), nodes coloured by status."""
    graph = canonical(graph)
    nodes, edges = graph.node_list, graph.edge_list
    node_rows = [flat_attrs(a) for _, a in nodes]
    edge_rows = [{**flat_attrs(a), "networkx_key": key} for (_, _, key, a) in edges]
    node_types, edge_types = _infer_types(node_rows), _infer_types(edge_rows)
    gexf_type = {"boolean": "boolean", "long": "long", "double": "double", "string": "string"}
    as_of = str(graph.graph.get("as_of") or "")[:10]
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<gexf xmlns="http://www.gexf.net/1.2draft" xmlns:viz="http://www.gexf.net/1.2draft/viz" '
           'version="1.2">',
           f'  <meta{f" lastmodifieddate={chr(34)}{as_of}{chr(34)}" if as_of else ""}>',
           "    <creator>ctxscan</creator>",
           f"    <description>{_xml_text(_describe(graph))}</description>",
           "  </meta>",
           '  <graph defaultedgetype="directed" mode="static">']
    ids: dict[tuple[str, str], str] = {}
    for scope, types in (("node", node_types), ("edge", edge_types)):
        out.append(f'    <attributes class="{scope}" mode="static">')
        for i, (name, kind) in enumerate(types.items()):
            ids[(scope, name)] = str(i)
            out.append(f'      <attribute id="{i}" title="{_xml_attr(name)}" type="{gexf_type[kind]}"/>')
        out.append("    </attributes>")
    out.append("    <nodes>")
    for (node, attrs), row in zip(nodes, node_rows, strict=True):
        out.append(f'      <node id="{_xml_attr(node)}" label="{_xml_attr(str(attrs.get("label", node)))}">')
        out.append("        <attvalues>")
        for name, value in row.items():
            out.append(f'          <attvalue for="{ids[("node", name)]}" '
                       f'value="{_xml_attr(_typed(value, node_types[name]))}"/>')
        out.append("        </attvalues>")
        r, g, b = _rgb(STATUS_COLOURS.get(str(attrs.get("status")), STATUS_COLOURS["healthy"])[1])
        out.append(f'        <viz:color r="{r}" g="{g}" b="{b}"/>')
        out.append("      </node>")
    out.append("    </nodes>")
    out.append("    <edges>")
    for i, ((u, v, key, _), row) in enumerate(zip(edges, edge_rows, strict=True)):
        out.append(f'      <edge id="e{i}" source="{_xml_attr(u)}" target="{_xml_attr(v)}" label="{_xml_attr(key)}">')
        out.append("        <attvalues>")
        for name, value in row.items():
            out.append(f'          <attvalue for="{ids[("edge", name)]}" '
                       f'value="{_xml_attr(_typed(value, edge_types[name]))}"/>')
        out.append("        </attvalues>")
        out.append("      </edge>")
    out += ["    </edges>", "  </graph>", "</gexf>", ""]
    return "\n".join(out)


def _describe(graph: Any) -> str:
    parts = [f"ctxscan dependency graph: {graph.number_of_nodes()} nodes, {graph.number_of_edges()} edges"]
    if graph.graph.get("as_of"):
        parts.append(f"as of {graph.graph['as_of']}")
    if graph.graph.get("slice"):
        parts.append(f"slice {graph.graph['slice']}")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------
# JSON

def to_json(graph: Any) -> str:
    """networkx node-link JSON (`networkx.node_link_graph(data, edges="edges")` reads it)."""
    graph = canonical(graph)
    data = {
        "directed": True,
        "multigraph": True,
        "graph": graph.graph,
        "nodes": [{**attrs, "id": node} for node, attrs in graph.node_list],
        "edges": [{**attrs, "source": u, "target": v, "key": key} for u, v, key, attrs in graph.edge_list],
    }
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False, default=str) + "\n"


# ---------------------------------------------------------------------------------------
# Shared labels

def _duration(seconds: Any) -> str:
    from scanner.durations import format_duration

    return format_duration(seconds) if isinstance(seconds, int | float) else "-"


def _subtitle(attrs: Mapping[str, Any]) -> str:
    """The small second line of a node's label."""
    kind = attrs.get("type")
    if kind == ASSET:
        if attrs.get("scan_state", "found") != "found":
            return str(attrs.get("scan_state")).replace("_", " ")
        method = attrs.get("freshness_method", "none")
        age = "age unknown" if method == "none" else f"{_duration(attrs.get('age_seconds'))} old"
        sla = f", SLA {_duration(attrs['sla_seconds'])}" if attrs.get("sla_seconds") else ""
        age_seconds, sla_seconds = attrs.get("age_seconds"), attrs.get("sla_seconds")
        if (isinstance(age_seconds, int | float) and isinstance(sla_seconds, int | float)
                and age_seconds > sla_seconds and attrs.get("status") != "stale"):
            # Past an SLA that no open finding enforces (no workflow reads it, or its stale
            # finding is accepted): "20d old, SLA 7d" drawn healthy would contradict itself.
            sla = ""
        return age + sla
    if kind == WORKFLOW:
        return f"{attrs.get('stage', '')}, owner {attrs.get('owner') or 'none'}"
    if kind == SOURCE:
        return f"{attrs.get('connector', '')}, owner {attrs.get('owner') or 'none'}"
    if kind == PRINCIPAL:
        return "privileged" if attrs.get("privileged") else ("public" if attrs.get("public") else "principal")
    if kind == OWNER:
        return "owner" if attrs.get("declared") else "owner (undeclared)"
    return ""


def _edge_label(key: str, attrs: Mapping[str, Any]) -> str:
    if key == "grants":
        return ", ".join(attrs.get("privileges", ())) or "grants"
    if key == FEEDS and attrs.get("access") == "write":
        return "feeds (writes)"
    return key


def _groups(nodes: list[tuple[str, dict[str, Any]]]) -> dict[str, list[str]]:
    """Source id -> its source node and asset nodes, in order."""
    groups: dict[str, list[str]] = {}
    for node, attrs in nodes:
        if attrs.get("type") in (SOURCE, ASSET):
            groups.setdefault(split_node(node)[1], []).append(node)
    return groups


# ---------------------------------------------------------------------------------------
# DOT

def _dot_string(text: str) -> str:
    text = _clean(text).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text.replace("\r", "\\r").replace("\n", "\\n") + '"'


def to_dot(graph: Any) -> str:
    """Graphviz DOT: assets clustered by source, nodes filled by status (`dot -Tsvg` renders it)."""
    graph = canonical(graph)
    nodes, edges = graph.node_list, graph.edge_list
    lines = [
        "digraph ctxscan {",
        f"  graph [rankdir=LR, fontname=Helvetica, fontsize=12, labelloc=t, label={_dot_string(_describe(graph))}];",
        '  node [fontname=Helvetica, fontsize=10, style="filled", penwidth=1.4];',
        "  edge [fontname=Helvetica, fontsize=8];",
    ]

    def node_line(node: str, attrs: dict[str, Any], indent: str) -> str:
        fill, stroke = STATUS_COLOURS.get(str(attrs.get("status")), STATUS_COLOURS["healthy"])
        kind = str(attrs.get("type"))
        style = '"rounded,filled,bold"' if kind == WORKFLOW else '"filled"'
        label = f"{attrs.get('label', node)}\n{_subtitle(attrs)}".rstrip()
        tooltip = "\n".join(f"{k}: {v}" for k, v in flat_attrs(attrs).items())
        return (f"{indent}{_dot_string(node)} [label={_dot_string(label)}, shape={DOT_SHAPES.get(kind, 'box')}, "
                f'style={style}, fillcolor="{fill}", color="{stroke}", tooltip={_dot_string(tooltip)}];')

    grouped = _groups(nodes)
    in_group = {n for members in grouped.values() for n in members}
    for i, (source_id, members) in enumerate(sorted(grouped.items())):
        lines.append(f"  subgraph cluster_{i} {{")
        lines.append(f'    label={_dot_string(source_id)}; style="rounded,filled"; fillcolor="#f7f7f7"; '
                     'color="#cccccc";')
        for node in members:
            lines.append(node_line(node, graph.nodes[node], "    "))
        lines.append("  }")
    for node, attrs in nodes:
        if node not in in_group:
            lines.append(node_line(node, attrs, "  "))
    for u, v, key, attrs in edges:
        label = "" if key == CONTAINS else f", label={_dot_string(_edge_label(key, attrs))}"
        lines.append(f"  {_dot_string(u)} -> {_dot_string(v)} [{EDGE_STYLES.get(key, '')}{label}];")
    lines += ["}", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Mermaid

def _mermaid_text(text: str) -> str:
    text = _clean(text).replace("\r", " ").replace("\n", " ")
    for char, code in (("#", "#35;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(char, code)
    return text


MERMAID_SHAPES = {SOURCE: ('[("', '")]'), ASSET: ('["', '"]'), WORKFLOW: ('(["', '"])'),
                  PRINCIPAL: ('{{"', '"}}'), OWNER: ('>"', '"]')}
MERMAID_ARROWS = {"contains": "---", "feeds": "==>", "runs_as": "-.->", "grants": "-.->",
                  "member_of": "-.->", "owns": "-.->", "derived_from": "-.->"}


def to_mermaid(graph: Any) -> str:
    """A Mermaid flowchart (renders in GitHub Markdown), assets grouped by source."""
    graph = canonical(graph)
    nodes, edges = graph.node_list, graph.edge_list
    ids = {node: f"n{i}" for i, (node, _) in enumerate(nodes)}
    lines = ["flowchart LR", f"  %% {_mermaid_text(_describe(graph))}"]

    def node_line(node: str, attrs: dict[str, Any], indent: str) -> str:
        start, end = MERMAID_SHAPES.get(str(attrs.get("type")), ('["', '"]'))
        label = _mermaid_text(str(attrs.get("label", node)))
        sub = _mermaid_text(_subtitle(attrs))
        return f"{indent}{ids[node]}{start}{label}<br/><small>{sub}</small>{end}" if sub else \
            f"{indent}{ids[node]}{start}{label}{end}"

    grouped = _groups(nodes)
    in_group = {n for members in grouped.values() for n in members}
    for i, (source_id, members) in enumerate(sorted(grouped.items())):
        lines.append(f'  subgraph g{i} ["{_mermaid_text(source_id)}"]')
        for node in members:
            lines.append(node_line(node, graph.nodes[node], "    "))
        lines.append("  end")
    for node, attrs in nodes:
        if node not in in_group:
            lines.append(node_line(node, attrs, "  "))
    for u, v, key, attrs in edges:
        arrow = MERMAID_ARROWS.get(key, "-->")
        label = "" if key == CONTAINS else f'|"{_mermaid_text(_edge_label(key, attrs))}"|'
        lines.append(f"  {ids[u]} {arrow}{label} {ids[v]}")
    for status in STATUSES:
        fill, stroke = STATUS_COLOURS[status]
        lines.append(f"  classDef {status} fill:{fill},stroke:{stroke},color:#111")
    by_status: dict[str, list[str]] = {}
    for node, attrs in nodes:
        by_status.setdefault(str(attrs.get("status", "healthy")), []).append(ids[node])
    for status in STATUSES:
        if by_status.get(status):
            lines.append(f"  class {','.join(by_status[status])} {status}")
    return "\n".join(lines) + "\n"


def mermaid_markdown(graph: Any) -> str:
    """The Mermaid flowchart inside a Markdown document, as GitHub renders it."""
    graph = canonical(graph)
    title = graph.graph.get("slice") or "ctxscan dependency graph"
    legend = ", ".join(STATUSES)
    return (f"# {title}\n\n{_describe(graph)}. Node colours: {legend}.\n\n"
            f"```mermaid\n{to_mermaid(graph)}```\n")


# ---------------------------------------------------------------------------------------
# HTML

def layout(graph: Any) -> tuple[dict[str, tuple[float, float]], list[dict[str, Any]]]:
    """Layered positions: owners, sources, assets (grouped by source), workflows by depth,
    principals; each column ordered to follow its neighbours. Returns (positions, groups)."""
    graph = canonical(graph)
    nodes, edges = graph.node_list, graph.edge_list
    attrs_of = dict(nodes)
    workflows = [n for n, a in nodes if a.get("type") == WORKFLOW]
    wf_parents: dict[str, list[str]] = {w: [] for w in workflows}
    for u, v, key, _ in edges:
        if key == FEEDS and u in wf_parents and v in wf_parents:
            wf_parents[v].append(u)
    # Longest path from a root, in topological order (the inventory refuses cycles).
    level: dict[str, int] = {}
    remaining = {w: len(p) for w, p in wf_parents.items()}
    children: dict[str, list[str]] = {w: [] for w in workflows}
    for child, parents in wf_parents.items():
        for parent in parents:
            children[parent].append(child)
    ready = sorted(w for w, n in remaining.items() if n == 0)
    while ready:
        current = ready.pop(0)
        level[current] = 1 + max((level[p] for p in wf_parents[current] if p in level), default=-1)
        for child in children[current]:
            remaining[child] -= 1
            if remaining[child] == 0:
                ready.append(child)
    for workflow in workflows:  # anything left sits in a cycle: first column
        level.setdefault(workflow, 0)
    top = max(level.values(), default=0)
    column = {}
    for node, a in nodes:
        kind = a.get("type")
        column[node] = {OWNER: 0, SOURCE: 1, ASSET: 2, WORKFLOW: 3 + level.get(node, 0),
                        PRINCIPAL: 4 + top}.get(str(kind), 5 + top)
    neighbours: dict[str, list[str]] = {n: [] for n, _ in nodes}
    for u, v, _, _ in edges:
        neighbours[u].append(v)
        neighbours[v].append(u)
    row_gap, group_gap, col_gap = 34.0, 26.0, 280.0
    y: dict[str, float] = {}

    def centre(node: str, kinds: tuple[str, ...]) -> float | None:
        values = [y[o] for o in neighbours[node] if o in y and attrs_of[o].get("type") in kinds]
        return sum(values) / len(values) if values else None

    def stack(order: list[str], preferred: dict[str, float | None], start: float = 0.0) -> None:
        cursor = start
        for node in order:
            want = preferred.get(node)
            cursor = max(cursor, want if want is not None else cursor)
            y[node] = cursor
            cursor += row_gap

    groups_order = sorted(_groups(nodes).items())
    # First pass: assets grouped by source, in id order.
    cursor = 0.0
    for _, members in groups_order:
        for node in members:
            if attrs_of[node].get("type") == ASSET:
                y[node] = cursor
                cursor += row_gap
        cursor += group_gap
    for _ in range(2):
        by_column: dict[int, list[str]] = {}
        for node in workflows:
            by_column.setdefault(column[node], []).append(node)
        for col in sorted(by_column):
            members = by_column[col]
            prefs = {n: centre(n, (ASSET, WORKFLOW)) for n in members}
            members.sort(key=lambda n: (prefs[n] if prefs[n] is not None else float("inf"), n))
            stack(members, prefs)
        # Re-order each source's assets by their readers, and sources by their assets.
        ranked = []
        for source_id, members in groups_order:
            assets = [n for n in members if attrs_of[n].get("type") == ASSET]
            prefs = {n: centre(n, (WORKFLOW,)) for n in assets}
            assets.sort(key=lambda n: (prefs[n] if prefs[n] is not None else float("inf"), n))
            known = [p for p in prefs.values() if p is not None]
            ranked.append((sum(known) / len(known) if known else float("inf"), source_id, assets))
        ranked.sort(key=lambda r: (r[0], r[1]))
        cursor = 0.0
        for _, _, assets in ranked:
            for node in assets:
                y[node] = cursor
                cursor += row_gap
            cursor += group_gap
        groups_order = sorted(_groups(nodes).items(),
                              key=lambda g: next((i for i, r in enumerate(ranked) if r[1] == g[0]), 0))
    groups = []
    for source_id, members in groups_order:
        assets = [n for n in members if attrs_of[n].get("type") == ASSET]
        top_y = min((y[n] for n in assets), default=None)
        bottom_y = max((y[n] for n in assets), default=None)
        source = f"source:{source_id}"
        if top_y is None or bottom_y is None:
            continue
        if source in attrs_of:
            y[source] = (top_y + bottom_y) / 2
        groups.append({"source": source_id, "x": col_gap * 2 - 14, "y": top_y - 22,
                       "w": 228.0, "h": bottom_y - top_y + 40})
    # Sources without assets, principals and owners follow their neighbours.
    for kinds, own in (((ASSET, WORKFLOW), SOURCE), ((WORKFLOW, ASSET, SOURCE, PRINCIPAL), PRINCIPAL),
                       ((SOURCE, WORKFLOW, ASSET), OWNER)):
        members = [n for n, a in nodes if a.get("type") == own and n not in y]
        prefs = {n: centre(n, kinds) for n in members}
        members.sort(key=lambda n: (prefs[n] if prefs[n] is not None else float("inf"), n))
        stack(members, prefs)
    leftovers = [n for n, _ in nodes if n not in y]
    stack(leftovers, {})
    positions = {n: (round(col_gap * column[n], 1), round(y[n], 1)) for n, _ in nodes}
    return positions, groups


_HTML_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src __SCRIPT_HASH__; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
*{box-sizing:border-box}
html,body{margin:0;height:100%;font:13px/1.4 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#1d1d1f;background:#fbfbfb}
#bar{position:fixed;top:0;left:0;right:0;height:46px;display:flex;align-items:center;gap:12px;padding:0 14px;background:#fff;border-bottom:1px solid #ddd;z-index:2}
#bar h1{font-size:14px;margin:0;white-space:nowrap}
#bar .meta{color:#666;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
#search{width:260px;padding:5px 8px;border:1px solid #bbb;border-radius:4px}
#hits{color:#666;min-width:70px}
#bar button{padding:4px 9px;border:1px solid #bbb;background:#f4f4f4;border-radius:4px;cursor:pointer}
#canvas{position:fixed;top:46px;left:0;right:340px;bottom:0;overflow:hidden;cursor:grab}
#canvas.dragging{cursor:grabbing}
svg{width:100%;height:100%;display:block}
#panel{position:fixed;top:46px;right:0;width:340px;bottom:0;overflow:auto;background:#fff;border-left:1px solid #ddd;padding:12px 14px}
#panel h2{font-size:15px;margin:0 0 4px;word-break:break-all}
#panel table{border-collapse:collapse;width:100%;margin:8px 0}
#panel td{border-top:1px solid #eee;padding:3px 4px;vertical-align:top;word-break:break-word}
#panel td.k{color:#666;white-space:nowrap;width:1%}
#panel a{color:#1f5fa8;cursor:pointer;text-decoration:none;word-break:break-all}
#panel a:hover{text-decoration:underline}
#panel ul{margin:4px 0;padding-left:18px}
.badge{display:inline-block;padding:1px 7px;border-radius:9px;font-size:11px;border:1px solid}
.legend span{display:inline-block;margin:2px 8px 2px 0}
.legend i{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:4px;vertical-align:-1px;border:1px solid}
.toggles label{margin-right:8px;white-space:nowrap}
.node rect{stroke-width:1.4}
.node text{font-size:11px;pointer-events:none}
.node text.sub{font-size:9.5px;fill:#555}
.node{cursor:pointer}
.node.selected rect{stroke-width:3.2}
.node.match rect{stroke:#1f5fa8;stroke-width:3}
.dim .node:not(.lit){opacity:.18}
.dim .edge:not(.lit){opacity:.06}
.edge{fill:none;stroke-width:1.1}
.edge.lit{stroke-width:2.2}
.group rect{fill:#f1f1f1;stroke:#d5d5d5}
.group text{font-size:11px;fill:#555;font-weight:600}
.hide-contains .e-contains,.hide-feeds .e-feeds,.hide-runs_as .e-runs_as,.hide-grants .e-grants,.hide-member_of .e-member_of,.hide-owns .e-owns{display:none}
</style>
</head>
<body>
<div id="bar"><h1>__TITLE__</h1><input id="search" type="search" placeholder="Search nodes (Enter: next match)" autocomplete="off"><span id="hits"></span><button id="fit" type="button">Fit</button><span class="meta">__META__</span></div>
<div id="canvas"><svg id="svg" xmlns="http://www.w3.org/2000/svg"><g id="viewport"><g id="groups"></g><g id="edges"></g><g id="nodes"></g></g></svg></div>
<div id="panel"><div id="details"><p>Click a node for its details. Drag to pan, scroll to zoom, search by id or label.</p></div><h3>Legend</h3><div class="legend" id="legend"></div><h3>Edges</h3><div class="toggles" id="toggles"></div></div>
<script type="application/json" id="graph-data">__DATA__</script>
<script>
(function () {
  "use strict";
  var SVGNS = "http://www.w3.org/2000/svg";
  var data = JSON.parse(document.getElementById("graph-data").textContent);
  var colours = data.colours, byId = {}, outEdges = {}, inEdges = {};
  var svg = document.getElementById("svg"), viewport = document.getElementById("viewport");
  var view = {x: 0, y: 0, k: 1}, selected = null, matches = [], matchIndex = -1;
  var W = 210, H = 26;
  function el(name, attrs, parent) {
    var e = document.createElementNS(SVGNS, name);
    for (var k in attrs) { e.setAttribute(k, attrs[k]); }
    if (parent) { parent.appendChild(e); }
    return e;
  }
  function cut(text, n) { return text.length > n ? text.slice(0, n - 1) + "\\u2026" : text; }
  function apply() { viewport.setAttribute("transform", "translate(" + view.x + "," + view.y + ") scale(" + view.k + ")"); }
  data.nodes.forEach(function (n) { byId[n.id] = n; outEdges[n.id] = []; inEdges[n.id] = []; });
  var groupLayer = document.getElementById("groups");
  data.groups.forEach(function (g) {
    var ge = el("g", {"class": "group"}, groupLayer);
    el("rect", {x: g.x, y: g.y, width: g.w, height: g.h, rx: 8}, ge);
    el("text", {x: g.x + 8, y: g.y + 14}, ge).textContent = cut(g.source, 34);
  });
  var edgeLayer = document.getElementById("edges");
  data.edges.forEach(function (e) {
    var a = byId[e.source], b = byId[e.target];
    var x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
    if (b.x <= a.x) { x1 = a.x + W / 2; x2 = b.x + W / 2; }
    var dx = Math.max(40, Math.abs(x2 - x1) / 2);
    var d = "M" + x1 + "," + y1 + " C" + (x1 + dx) + "," + y1 + " " + (x2 - dx) + "," + y2 + " " + x2 + "," + y2;
    e.el = el("path", {d: d, "class": "edge e-" + e.type, stroke: data.edgeColours[e.type] || "#999",
      "stroke-dasharray": e.type === "feeds" || e.type === "contains" ? "" : "4 3"}, edgeLayer);
    el("title", {}, e.el).textContent = e.source + " \\u2192 " + e.target + " (" + e.label + ")";
    outEdges[e.source].push(e); inEdges[e.target].push(e);
  });
  var nodeLayer = document.getElementById("nodes");
  data.nodes.forEach(function (n) {
    var c = colours[n.status] || colours.healthy;
    var g = el("g", {"class": "node t-" + n.type, "data-id": n.id, transform: "translate(" + n.x + "," + n.y + ")"}, nodeLayer);
    var r = n.type === "workflow" ? 13 : (n.type === "asset" ? 3 : 7);
    el("rect", {width: W, height: H, rx: r, fill: c[0], stroke: c[1]}, g);
    el("text", {x: 8, y: 11}, g).textContent = cut(n.label, 34);
    var sub = el("text", {x: 8, y: 22, "class": "sub"}, g);
    sub.textContent = cut(n.type + (n.sub ? " \\u00b7 " + n.sub : ""), 40);
    el("title", {}, g).textContent = n.id;
    n.el = g;
    g.addEventListener("click", function (ev) { ev.stopPropagation(); select(n.id, false); });
  });
  function link(id) {
    var a = document.createElement("a");
    a.textContent = id; a.addEventListener("click", function () { select(id, true); });
    return a;
  }
  function row(table, key, value) {
    var tr = table.insertRow(), k = tr.insertCell(), v = tr.insertCell();
    k.className = "k"; k.textContent = key;
    if (value instanceof Node) { v.appendChild(value); } else { v.textContent = String(value); }
  }
  function select(id, centre) {
    var n = byId[id];
    if (!n) { return; }
    if (selected) { selected.el.classList.remove("selected"); }
    document.querySelectorAll(".lit").forEach(function (e) { e.classList.remove("lit"); });
    selected = n; n.el.classList.add("selected"); n.el.classList.add("lit");
    svg.classList.add("dim");
    outEdges[id].concat(inEdges[id]).forEach(function (e) {
      e.el.classList.add("lit"); byId[e.source].el.classList.add("lit"); byId[e.target].el.classList.add("lit");
    });
    var box = document.getElementById("details"); box.textContent = "";
    var h = document.createElement("h2"); h.textContent = n.label; box.appendChild(h);
    var c = colours[n.status] || colours.healthy, badge = document.createElement("span");
    badge.className = "badge"; badge.style.background = c[0]; badge.style.borderColor = c[1];
    badge.textContent = n.type + " \\u00b7 " + n.status; box.appendChild(badge);
    var t = document.createElement("table"); box.appendChild(t);
    row(t, "id", n.id);
    Object.keys(n.attrs).forEach(function (k) { if (k !== "findings") { row(t, k, n.attrs[k]); } });
    if (n.findings && n.findings.length) {
      var fh = document.createElement("h3"); fh.textContent = "Open findings"; box.appendChild(fh);
      var ul = document.createElement("ul"); box.appendChild(ul);
      n.findings.forEach(function (f) { var li = document.createElement("li"); li.textContent = f.severity + " " + f.kind + ": " + f.message; ul.appendChild(li); });
    }
    [["Out", outEdges[id], "target"], ["In", inEdges[id], "source"]].forEach(function (spec) {
      if (!spec[1].length) { return; }
      var eh = document.createElement("h3"); eh.textContent = spec[0] + " (" + spec[1].length + ")"; box.appendChild(eh);
      var ul = document.createElement("ul"); box.appendChild(ul);
      spec[1].slice(0, 300).forEach(function (e) {
        var li = document.createElement("li"); li.appendChild(document.createTextNode(e.label + " "));
        li.appendChild(link(e[spec[2]])); ul.appendChild(li);
      });
    });
    if (centre) { focus(n); }
  }
  function focus(n) {
    var rect = svg.getBoundingClientRect();
    view.k = Math.max(view.k, 0.8);
    view.x = rect.width / 2 - (n.x + W / 2) * view.k; view.y = rect.height / 2 - (n.y + H / 2) * view.k; apply();
  }
  function fit() {
    var rect = svg.getBoundingClientRect(), minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
    data.nodes.forEach(function (n) { minX = Math.min(minX, n.x); minY = Math.min(minY, n.y); maxX = Math.max(maxX, n.x + W); maxY = Math.max(maxY, n.y + H); });
    if (!data.nodes.length) { return; }
    var k = Math.min((rect.width - 40) / (maxX - minX + 1), (rect.height - 40) / (maxY - minY + 1), 1.5);
    view.k = k; view.x = 20 - minX * k + Math.max(0, (rect.width - 40 - (maxX - minX) * k) / 2); view.y = 20 - minY * k; apply();
  }
  svg.addEventListener("click", function () {
    if (selected) { selected.el.classList.remove("selected"); selected = null; }
    svg.classList.remove("dim");
  });
  var drag = null, canvas = document.getElementById("canvas");
  svg.addEventListener("pointerdown", function (ev) { drag = {x: ev.clientX, y: ev.clientY, vx: view.x, vy: view.y, moved: false}; canvas.classList.add("dragging"); });
  window.addEventListener("pointermove", function (ev) {
    if (!drag) { return; }
    view.x = drag.vx + ev.clientX - drag.x; view.y = drag.vy + ev.clientY - drag.y; apply();
  });
  window.addEventListener("pointerup", function () { drag = null; canvas.classList.remove("dragging"); });
  svg.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    var rect = svg.getBoundingClientRect(), mx = ev.clientX - rect.left, my = ev.clientY - rect.top;
    var k = Math.min(4, Math.max(0.02, view.k * Math.exp(-ev.deltaY * 0.0015)));
    view.x = mx - (mx - view.x) * k / view.k; view.y = my - (my - view.y) * k / view.k; view.k = k; apply();
  }, {passive: false});
  var search = document.getElementById("search"), hits = document.getElementById("hits");
  search.addEventListener("input", function () {
    var q = search.value.trim().toLowerCase();
    matches.forEach(function (n) { n.el.classList.remove("match"); });
    matches = q ? data.nodes.filter(function (n) { return n.id.toLowerCase().indexOf(q) >= 0 || n.label.toLowerCase().indexOf(q) >= 0; }) : [];
    matches.forEach(function (n) { n.el.classList.add("match"); });
    matchIndex = -1; hits.textContent = q ? matches.length + " found" : "";
  });
  search.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && matches.length) { matchIndex = (matchIndex + 1) % matches.length; select(matches[matchIndex].id, true); }
  });
  document.getElementById("fit").addEventListener("click", fit);
  var legend = document.getElementById("legend");
  Object.keys(colours).forEach(function (s) {
    var span = document.createElement("span"), i = document.createElement("i");
    i.style.background = colours[s][0]; i.style.borderColor = colours[s][1];
    span.appendChild(i); span.appendChild(document.createTextNode(s.replace("_", "-"))); legend.appendChild(span);
  });
  var toggles = document.getElementById("toggles");
  data.edgeTypes.forEach(function (t) {
    var label = document.createElement("label"), box = document.createElement("input");
    box.type = "checkbox"; box.checked = true;
    box.addEventListener("change", function () { svg.classList.toggle("hide-" + t, !box.checked); });
    label.appendChild(box); label.appendChild(document.createTextNode(" " + t)); toggles.appendChild(label);
  });
  fit();
  // #node=ID selects a node and #search=TEXT searches, so a link can point at a detail.
  var hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("search")) { search.value = hash.get("search"); search.dispatchEvent(new Event("input")); }
  if (hash.get("node")) { select(hash.get("node"), true); }
  document.body.setAttribute("data-rendered", String(nodeLayer.childNodes.length));
  document.body.setAttribute("data-edges", String(edgeLayer.childNodes.length));
})();
</script>
</body>
</html>
"""

_EDGE_COLOURS = {"contains": "#b0b0b0", "feeds": "#222222", "runs_as": "#2e86c1", "grants": "#d35400",
                 "member_of": "#2e86c1", "owns": "#999999"}


_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _script_json(value: Any) -> str:
    """JSON safe inside <script>: no `<`, `>` or `&` can close the element or open a comment,
    and the line separators that end a JavaScript string are escaped too."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return re.sub("[<>&\u2028\u2029]", lambda m: _SCRIPT_ESCAPES[m.group(0)], text)


def _inline_script_hash(page: str) -> str:
    """The CSP source that allows exactly the page's own inline script (sha256 of its text)."""
    import base64
    import hashlib

    match = re.search(r"<script>(.*?)</script>", page, re.S)
    assert match is not None, "the page template lost its script"
    digest = hashlib.sha256(match.group(1).encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def _html_escape(text: str) -> str:
    return (_clean(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def to_html(graph: Any) -> str:
    """One self-contained interactive page: pan, zoom, search, click a node for its details."""
    graph = canonical(graph)
    nodes, edges = graph.node_list, graph.edge_list
    positions, groups = layout(graph)
    data = {
        "colours": {s: list(STATUS_COLOURS[s]) for s in STATUSES},
        "edgeColours": _EDGE_COLOURS,
        "edgeTypes": sorted({key for _, _, key, _ in edges}),
        "groups": groups,
        "nodes": [{
            "id": node, "type": attrs.get("type"), "label": _clean(str(attrs.get("label", node))),
            "status": attrs.get("status", "healthy"), "sub": _subtitle(attrs),
            "x": positions[node][0], "y": positions[node][1],
            "attrs": {k: v for k, v in flat_attrs(attrs).items() if k not in ("type", "label", "status")},
            "findings": attrs.get("findings", []),
        } for node, attrs in nodes],
        "edges": [{"source": u, "target": v, "type": key, "label": _edge_label(key, attrs)}
                  for u, v, key, attrs in edges],
    }
    title = "ctxscan graph" + (f": {graph.graph['slice']}" if graph.graph.get("slice") else "")
    values = {"__TITLE__": _html_escape(title), "__META__": _html_escape(_describe(graph)),
              "__DATA__": _script_json(data), "__SCRIPT_HASH__": _inline_script_hash(_HTML_TEMPLATE)}
    # One pass: a value that contains a placeholder (a workflow named `__DATA__`) is never
    # substituted again.
    return re.sub("__(?:TITLE|META|DATA|SCRIPT_HASH)__", lambda m: values[m.group(0)], _HTML_TEMPLATE)



def write_exports(graph: Any, directory: Any, stem: str = "ctxscan",
                  formats: Iterable[str] = FORMATS) -> list[Any]:
    """Write the graph in each format into `directory` (Mermaid as Markdown); return the paths."""
    from pathlib import Path

    from scanner.atomic import write_atomically
    from scanner.redact import scrub

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    graph = canonical(graph)
    written = []
    for fmt in formats:
        path = directory / f"{stem}.{EXTENSIONS[fmt]}"
        data = (scrub(mermaid_markdown(graph)).encode("utf-8") if fmt == "mermaid"
                else export_graph(graph, fmt))
        write_atomically(path, data)
        written.append(path)
    return written
