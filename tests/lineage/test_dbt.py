"""`ctxscan import dbt`: a small dbt project, parsed and run by the real dbt (.venv-dbt, built
by tests/services/install-dbt.sh) on a throwaway PostgreSQL database, imported, merged with a
hand-written inventory and scanned against the same database."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from scanner.inventory import load_inventory
from tests.conftest import ROOT, run_ctxscan

if TYPE_CHECKING:
    from tests.connectors.dbservers import PostgresServer

pytest_plugins = ("tests.connectors.dbservers",)

DBT = ROOT / ".venv-dbt" / "bin" / "dbt"
PROJECT = Path(__file__).parent / "dbt_project"


@pytest.fixture(scope="module")
def warehouse(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A database with raw tables, the dbt models built on it by `dbt run`, and the manifest."""
    if not DBT.exists():
        pytest.fail(f"dbt is not installed at {DBT}: run bash tests/services/install-dbt.sh", pytrace=False)
    db = postgres_server.create_database("ctxscan_dbt")
    conn = postgres_server.connect(db)
    conn.execute("CREATE SCHEMA raw")
    conn.execute("CREATE TABLE raw.orders (id int, customer_id int, amount numeric, loaded_at timestamptz)")
    conn.execute("CREATE TABLE raw.customer_master (id int, name text, loaded_at timestamptz)")
    conn.execute("INSERT INTO raw.orders VALUES (1, 1, 10, now() - interval '3 hours')")
    conn.execute("INSERT INTO raw.customer_master VALUES (1, 'Ada', now() - interval '1 hour')")
    work = tmp_path_factory.mktemp("dbt")
    shutil.copytree(PROJECT, work / "project")
    (work / "profiles.yml").write_text(textwrap.dedent(f"""
        ctxscan_test:
          target: test
          outputs:
            test:
              type: postgres
              host: {postgres_server.host}
              port: {postgres_server.port}
              user: {postgres_server.user}
              password: ""
              dbname: {db}
              schema: analytics
              threads: 1
    """), encoding="utf-8")
    env = {**os.environ, "DO_NOT_TRACK": "1", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    proc = subprocess.run([str(DBT), "run", "--profiles-dir", str(work), "--target-path", str(work / "target"),
                           "--log-path", str(work / "logs")], cwd=work / "project", env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield {"db": db, "url": postgres_server.url(db), "manifest": work / "target" / "manifest.json",
           "dir": work}


def _hand_written(directory: Path, url: str) -> Path:
    path = directory / "ctxscan.yaml"
    path.write_text(textwrap.dedent(f"""
        version: 1
        owners: [{{id: hand-team}}]
        sources:
          - id: wh
            connector: postgres
            url: "{url}"
            include: ["raw.*", "analytics.*", "analytics_staging.*"]
            assets:
              - {{path: raw.orders, owner: hand-team}}
        workflows:
          - id: revenue_assistant
            stage: pilot
            runs_as: {{wh: postgres}}
    """).lstrip(), encoding="utf-8")
    return path


def test_import_maps_sources_models_and_exposures(warehouse: dict, tmp_path: Path) -> None:
    out = tmp_path / "ctxscan.dbt.yaml"
    result = run_ctxscan("import", "dbt", str(warehouse["manifest"]), "--source", "wh", "-o", str(out))
    assert result.code == 0, result
    text = out.read_text(encoding="utf-8")
    assert "ctxscan import dbt" in text.splitlines()[0]
    # Sorted, one line per asset, deterministic: a second import writes the same bytes.
    again = tmp_path / "again.yaml"
    assert run_ctxscan("import", "dbt", str(warehouse["manifest"]), "--source", "wh", "-o", str(again)).code == 0
    assert again.read_bytes() == out.read_bytes()
    import yaml

    data = yaml.safe_load(text)
    assert data["imported"]["tool"] == "dbt" and data["imported"]["source"] == "wh"
    assets = {a["path"]: a for a in data["sources"][0]["assets"]}
    assert list(assets) == sorted(assets)
    assert assets["raw.orders"] == {"path": "raw.orders", "owner": "ingest-team", "max_age": "1h",
                                    "warn_after": "30m", "column": "loaded_at"}
    # identifier, and a table-level error_after over the source-level one
    assert assets["raw.customer_master"]["max_age"] == "2d"
    # through the ephemeral int_customers to the table it selects from
    assert assets["analytics_staging.stg_orders"]["derived_from"] == ["wh:raw.customer_master", "wh:raw.orders"]
    # no meta.owner and no group: the owner of the exposure that reads it
    assert assets["analytics_staging.stg_orders"]["owner"] == "analyst-example.com"
    assert assets["analytics.fct_orders"] == {"path": "analytics.fct_orders", "owner": "finance-analytics",
                                              "derived_from": ["wh:analytics_staging.stg_orders"]}
    assert not any("int_customers" in p for p in assets)
    workflows = {w["id"]: w for w in data["workflows"]}
    assert workflows["revenue_assistant"]["stage"] == "production"
    assert workflows["revenue_assistant"]["owner"] == "support-platform"
    assert workflows["revenue_assistant"]["reads"] == ["wh:analytics.fct_orders"]
    assert workflows["orders_notebook"]["stage"] == "poc"
    assert workflows["orders_notebook"]["reads"] == ["wh:analytics_staging.stg_orders", "wh:raw.orders"]
    assert {o["id"] for o in data["owners"]} >= {"ingest-team", "finance-analytics", "support-platform"}


def test_hand_written_entries_override_imported_ones_field_by_field(warehouse: dict, tmp_path: Path) -> None:
    out = tmp_path / "ctxscan.dbt.yaml"
    assert run_ctxscan("import", "dbt", str(warehouse["manifest"]), "--source", "wh", "-o", str(out)).code == 0
    hand = _hand_written(tmp_path, warehouse["url"])
    for order in ([hand, out], [out, hand]):
        inventory = load_inventory(order, env={})
        orders = next(a for a in inventory.sources["wh"].assets if a.path == "raw.orders")
        assert orders.owner == "hand-team"                       # hand-written wins
        assert orders.max_age == 3600 and orders.column == "loaded_at"   # imported fills the rest
        workflow = inventory.workflows["revenue_assistant"]
        assert workflow.stage == "pilot"                         # hand-written wins
        assert workflow.owner == "support-platform"              # imported fills the rest
        assert [r.asset for r in workflow.reads] == ["wh:analytics.fct_orders"]
        assert workflow.runs_as == {"wh": "postgres"}
        assert inventory.owners["hand-team"].file == str(hand)
        assert "orders_notebook" in inventory.workflows


def test_scan_follows_the_imported_lineage_from_source_table_to_exposure(warehouse: dict, tmp_path: Path) -> None:
    out = tmp_path / "ctxscan.dbt.yaml"
    assert run_ctxscan("import", "dbt", str(warehouse["manifest"]), "--source", "wh", "-o", str(out)).code == 0
    hand = _hand_written(tmp_path, warehouse["url"])
    config = ["-c", str(hand), "-c", str(out)]
    assert run_ctxscan("validate", *config).code == 0
    result = run_ctxscan("scan", *config, "--json")
    assert result.code in (0, 1), result
    answer = json.loads(run_ctxscan("feeds", *config, "wh:raw.orders", "--json").out)
    found = {w["id"]: w for w in answer["workflows"]}
    assert found["revenue_assistant"]["path"] == [
        "asset:wh:raw.orders", "asset:wh:analytics_staging.stg_orders", "asset:wh:analytics.fct_orders",
        "workflow:revenue_assistant"]
    assert found["orders_notebook"]["direct"] is True
    # The per-asset freshness column (loaded_at_field) is what PostgreSQL answers: 3 hours old.
    depends = json.loads(run_ctxscan("depends", *config, "revenue_assistant", "--json").out)
    raw = next(a for a in depends["assets"] if a["id"] == "wh:raw.orders")
    assert raw["freshness"]["method"] == "column"
    assert 3 * 3600 - 120 < raw["freshness"]["age_at_scan_seconds"] < 3 * 3600 + 600
    assert raw["derived_path"] == ["wh:raw.orders", "wh:analytics_staging.stg_orders", "wh:analytics.fct_orders"]
    findings = json.loads(run_ctxscan("findings", *config, "--kind", "stale", "--json").out)
    stale = {f["asset"]: f for f in findings}
    assert "wh:raw.orders" in stale, findings
    assert stale["wh:raw.orders"]["subkind"] is None          # 3 hours old, past error_after 1h
    assert stale["wh:raw.customer_master"]["subkind"] == "warning"  # 1 hour: past warn_after, within 2d
    assert "revenue_assistant" in stale["wh:raw.orders"]["evidence"]["workflows"]


def test_not_a_manifest_is_one_line_and_exit_2(warehouse: dict, tmp_path: Path) -> None:
    cases = {"garbage.json": "not json {", "other.json": json.dumps({"metadata": {"x": 1}, "nodes": {}}),
             "list.json": "[1, 2]"}
    manifest = json.loads(warehouse["manifest"].read_text(encoding="utf-8"))
    old = dict(manifest, metadata=dict(manifest["metadata"],
                                       dbt_schema_version="https://schemas.getdbt.com/dbt/manifest/v11.json"))
    cases["old.json"] = json.dumps(old)
    for name, text in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        result = run_ctxscan("import", "dbt", str(tmp_path / name), "--source", "wh", "-o", str(tmp_path / "o.yaml"))
        assert result.code == 2, result
        assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err, result
        assert not (tmp_path / "o.yaml").exists()
    assert "older than v12" in result.err
    missing = run_ctxscan("import", "dbt", str(tmp_path / "nope.json"), "--source", "wh")
    assert missing.code == 2 and "no such file" in missing.err


def test_unknown_fields_are_ignored(warehouse: dict, tmp_path: Path) -> None:
    manifest = json.loads(warehouse["manifest"].read_text(encoding="utf-8"))
    manifest["a_future_section"] = {"x": [1, 2, 3]}
    for node in manifest["nodes"].values():
        node["a_future_field"] = {"nested": True}
        node["config"]["another_one"] = 7
    manifest["exposures"]["exposure.shop.revenue_assistant"]["type"] = "a_future_type"
    (tmp_path / "m.json").write_text(json.dumps(manifest), encoding="utf-8")
    result = run_ctxscan("import", "dbt", str(tmp_path / "m.json"), "--source", "wh", "-o", "-")
    assert result.code == 0, result
    assert "analytics.fct_orders" in result.out and "revenue_assistant" not in result.out


def test_an_imported_file_for_an_undeclared_source_is_refused(warehouse: dict, tmp_path: Path) -> None:
    out = tmp_path / "ctxscan.dbt.yaml"
    assert run_ctxscan("import", "dbt", str(warehouse["manifest"]), "--source", "whx", "-o", str(out)).code == 0
    hand = _hand_written(tmp_path, warehouse["url"])
    result = run_ctxscan("validate", "-c", str(hand), "-c", str(out))
    assert result.code == 2 and "which no inventory file declares (did you mean 'wh'?" in result.err, result


def test_hostile_names_and_huge_values_in_a_manifest(tmp_path: Path) -> None:
    """A manifest whose names carry markup, escape sequences, a bidi override and newlines, and
    whose freshness counts are huge or negative: the import writes a file that validates, and
    every human line about it is escaped."""
    evil = "<img src=x onerror=alert(1)>\x1b[31m\u202e"
    model = f"model.p.{evil}"
    manifest = {
        "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"},
        "nodes": {model: {"resource_type": "model", "name": evil, "schema": "pub\nlic", "database": "d",
                          "unique_id": model, "depends_on": {"nodes": ["source.p.s.t"]},
                          "config": {"meta": {"owner": "a\x07b"}}}},
        "sources": {"source.p.s.t": {"resource_type": "source", "name": "t", "schema": "raw", "database": "d",
                                     "unique_id": "source.p.s.t", "loaded_at_field": "u",
                                     "freshness": {"error_after": {"count": 1e308, "period": "day"},
                                                   "warn_after": {"count": -5, "period": "hour"}}}},
        "exposures": {"exposure.p.e": {"name": "e\x1b]0;PWNED\x07", "type": "ml", "maturity": "high",
                                       "owner": {"name": "x"}, "depends_on": {"nodes": [model]}}},
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    inventory = tmp_path / "ctxscan.yaml"
    inventory.write_text("version: 1\nsources: [{id: wh, connector: fake, tables: [raw.t]}]\n", encoding="utf-8")
    result = run_ctxscan("-c", str(inventory), "import", "dbt", str(tmp_path / "manifest.json"),
                         "--source", "wh", "-o", str(tmp_path / "dbt.yaml"))
    assert result.code == 0 and "Traceback" not in result.err, result
    written = (tmp_path / "dbt.yaml").read_text(encoding="utf-8")
    assert "\x1b" not in written and "\x07" not in written  # escaped in the YAML, never raw
    for command in (("validate",), ("scan",), ("depends", "e-0-PWNED"), ("feeds", "wh:raw.t")):
        shown = run_ctxscan("-c", str(inventory), "-c", str(tmp_path / "dbt.yaml"), *command)
        assert shown.code in (0, 1) and "Traceback" not in shown.err, (command, shown)
        assert "\x1b" not in shown.out + shown.err and "\u202e" not in shown.out + shown.err, (command, shown)
