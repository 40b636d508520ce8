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


def _page_template() -> str:
    """The HTML page, assembled from its package data files (scanner/pages/): the page with
    `__STYLE__` and `__SCRIPT__` holes, its style sheet and its script, each a file that can be
    read, linted and escaped on its own."""
    global _PAGE
    if _PAGE is None:
        from importlib.resources import files

        pages = files("scanner") / "pages"
        page = (pages / "graph.html").read_text(encoding="utf-8")
        style = (pages / "graph.css").read_text(encoding="utf-8")
        script = (pages / "graph.js").read_text(encoding="utf-8")
        # One pass, so a hole's text inside the style or script is never expanded again.
        _PAGE = re.sub("__(?:STYLE|SCRIPT)__", lambda m: style if m.group(0) == "__STYLE__" else script, page)
    return _PAGE


_PAGE: str | None = None

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
    template = _page_template()
    values = {"__TITLE__": _html_escape(title), "__META__": _html_escape(_describe(graph)),
              "__DATA__": _script_json(data), "__SCRIPT_HASH__": _inline_script_hash(template)}
    # One pass: a value that contains a placeholder (a workflow named `__DATA__`) is never
    # substituted again.
    return re.sub("__(?:TITLE|META|DATA|SCRIPT_HASH)__", lambda m: values[m.group(0)], template)



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
