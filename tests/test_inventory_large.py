"""Large inventories are read straight from the YAML parser's events; the values, the line of
every field and the errors equal what composing the node tree gives."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from bench.generate_estate import plan
from scanner import inventory as inv
from scanner.errors import ConfigError

MIXED = textwrap.dedent("""
    version: 1
    defaults: {max_age: 24h}
    owners:
      - {id: data-eng, contact: "#data"}
      - id: support
        name: Support team
    sources:
      - id: crm
        connector: fake
        owner: data-eng
        token: ${CRM_TOKEN}
        tables: ["public.a@2h", 'public.b', public.c]
        latency: 0.5
        hang: false
        since: 2026-01-02
        count: 12
        empty:
        nothing: null
        "quoted key": yes
        nested: {a: [1, [2, [3, {b: ~}]]]}
      - id: crm
        connector: fake
        connector: fake
    workflows: []
""").lstrip()


def _both(text: str, env: dict[str, str]) -> tuple[tuple, tuple]:
    doc1, errors1 = inv._Doc("f.yaml"), []
    value1 = inv._convert(yaml.compose(text, Loader=inv._LOADER), doc1, (), errors1, env)
    doc2, errors2 = inv._Doc("f.yaml"), []
    value2 = inv._convert_events(text, doc2, errors2, env)
    return (value1, doc1.lines, [str(e) for e in errors1]), (value2, doc2.lines, [str(e) for e in errors2])


@pytest.mark.parametrize("env", [{"CRM_TOKEN": "s3cret"}, {}])
def test_events_equal_the_composed_tree(env: dict[str, str]) -> None:
    composed, streamed = _both(MIXED, env)
    assert streamed == composed
    assert composed[2]  # the duplicate key (and the unset variable) are reported by both


def test_events_equal_the_composed_tree_on_a_generated_estate() -> None:
    text, _ = plan(sources=5, assets=500, workflows=60, seed=11)
    composed, streamed = _both(text, {})
    assert streamed == composed and len(composed[1]) > 1000


def test_a_large_inventory_keeps_file_line_field_errors(tmp_path: Path) -> None:
    lines = ["version: 1", "owners:"]
    for i in range(20_000):
        lines += [f"  - id: team-{i:05d}", f"    contact: 'mailto:t{i}@example.com'"]
    lines[2 + 2 * 15_000] = "  - id: [not, an, id]"
    lines += ["sources:", "  - id: s1", "    connector: fake", "    tables: [a.b]"]
    path = tmp_path / "ctxscan.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        inv.load_inventory([path])
    assert f"ctxscan.yaml:{3 + 2 * 15_000}" in str(caught.value) and "owners[15000].id" in str(caught.value)


def test_anchors_and_aliases_still_load(tmp_path: Path) -> None:
    path = tmp_path / "ctxscan.yaml"
    path.write_text(textwrap.dedent("""
        version: 1
        sources:
          - {id: a, connector: fake, tables: &tables ["t1@1h", "t2@2h"]}
          - {id: b, connector: fake, tables: *tables}
    """).lstrip(), encoding="utf-8")
    loaded = inv.load_inventory([path])
    assert loaded.sources["a"].settings["tables"] == loaded.sources["b"].settings["tables"] == ["t1@1h", "t2@2h"]
