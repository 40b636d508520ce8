"""OpenLineage dataset names to assets (the naming spec), and odd dbt manifests."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanner.lineage.dbt import import_manifest
from scanner.lineage.naming import DatasetMapper
from scanner.plugins import SourceConfig

SOURCES = {
    "crm": SourceConfig("crm", "postgres", {"url": "postgresql+psycopg://bot:pw@DB.internal/crm"}),
    "proxied": SourceConfig("proxied", "postgres", {"url": "postgresql://bot@10.0.0.5:6432/sales"},
                            lineage_namespace="postgres://sales-db.internal:5432"),
    "shop": SourceConfig("shop", "mysql", {"url": "mysql://root@127.0.0.1:3306/"}),
    "kb": SourceConfig("kb", "s3", {"bucket": "acme-kb", "prefixes": ["articles/", "articles/drafts/"]}),
    "raw": SourceConfig("raw", "s3", {"bucket": "acme-raw"}),
    "bq": SourceConfig("bq", "bigquery", {"project": "acme-prod"}),
    "docs": SourceConfig("docs", "files", {"path": "/srv/docs"}),
    "other": SourceConfig("other", "fake", {}, lineage_namespace="kafka://broker:9092"),
}


@pytest.mark.parametrize(("namespace", "name", "asset"), [
    ("postgres://db.internal:5432", "crm.public.customers", ("crm", "public.customers")),
    ("postgresql://DB.internal:5432/", "crm.public.customers", ("crm", "public.customers")),
    ("postgres://db.internal:5432", "other_db.public.customers", None),     # another database
    ("postgres://db.internal:5433", "crm.public.customers", None),          # another server
    ("postgres://sales-db.internal:5432", "sales.public.orders", ("proxied", "public.orders")),
    ("postgres://10.0.0.5:6432", "sales.public.orders", None),              # lineage_namespace wins
    ("mysql://127.0.0.1:3306", "shop.orders", ("shop", "shop.orders")),
    ("s3://acme-kb", "articles/drafts/x.md", ("kb", "articles/drafts/")),  # the longest prefix
    ("s3://acme-kb", "articles/refunds.md", ("kb", "articles/")),
    ("s3://acme-raw", "events/2026/01/a.json", ("raw", "events/")),
    ("bigquery", "acme-prod.sales.orders", ("bq", "sales.orders")),
    ("bigquery", "acme-dev.sales.orders", None),
    ("file", "/srv/docs/policies/refunds.md", ("docs", "policies")),
    ("file://host", "/srv/docs/faq.txt", ("docs", "faq.txt")),
    ("file", "/srv/other/x", None),
    ("kafka://broker:9092", "orders-topic", ("other", "orders-topic")),
    ("snowflake://acct", "db.s.t", None),
])
def test_dataset_names_map_to_assets(namespace: str, name: str, asset: tuple[str, str] | None) -> None:
    assert DatasetMapper(SOURCES).asset(namespace, name) == asset


def _manifest(nodes: dict, exposures: dict | None = None) -> dict:
    return {"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"},
            "nodes": nodes, "sources": {}, "exposures": exposures or {}}


def test_a_long_chain_of_ephemeral_models_and_odd_field_types(tmp_path: Path) -> None:
    nodes = {f"model.p.e{i}": {"resource_type": "model", "schema": "s", "name": f"e{i}",
                               "config": {"materialized": "ephemeral"},
                               "depends_on": {"nodes": [f"model.p.e{i + 1}"]}} for i in range(5000)}
    nodes["model.p.e5000"] = {"resource_type": "model", "schema": "s", "name": "base", "config": "odd",
                              "depends_on": {"nodes": "model.p.e0"}, "tags": 5}
    nodes["model.p.top"] = {"resource_type": "model", "schema": "s", "name": "top", "tags": "x",
                            "depends_on": {"nodes": ["model.p.e0", None, 3]}}
    exposures = {"exposure.p.a": {"type": "ml", "name": "we ird", "depends_on": {"nodes": ["model.p.top"]},
                                  "owner": 7},
                 "exposure.p.b": {"type": "ml", "name": "we-ird", "depends_on": {"nodes": ["model.p.top"]}},
                 "exposure.p.c": {"type": "semantic_thing", "name": "skipped"}}
    out = import_manifest(_manifest(nodes, exposures), "wh")
    assert out["sources"][0]["assets"] == [{"path": "s.base"}, {"path": "s.top", "derived_from": ["wh:s.base"]}]
    assert [(w["id"], w["reads"]) for w in out["workflows"]] == [("we-ird", ["wh:s.top"]),
                                                                 ("we-ird-2", ["wh:s.top"])]
