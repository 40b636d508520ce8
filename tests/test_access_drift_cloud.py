"""Exposure changes between scans on the S3 server (moto) and the BigQuery emulator: a bucket
that becomes public-read and a dataset that gains allUsers are `became_public` (critical), and
resolve when reverted."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scanner.inventory import load_inventory
from scanner.model import Finding
from scanner.rules import build_context, evaluate
from scanner.scan import run_scan
from scanner.store import Store

if TYPE_CHECKING:
    from tests.connectors.cloudservers import BigQueryEmulator, MotoServer

pytest_plugins = ("tests.connectors.cloudservers",)


def _scan(tmp_path: Path, inventory: dict[str, Any]) -> list[Finding]:
    path = tmp_path / "ctxscan.yaml"
    path.write_text(json.dumps(inventory))
    loaded = load_inventory([path], env={})
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        report = run_scan(loaded, store)
        assert report.status == "ok", report.outcomes
        return [f for f in evaluate(build_context(loaded, store, datetime.now(UTC))) if f.kind == "access_drift"]
    finally:
        store.close()


def test_s3_bucket_that_becomes_public(moto_server: MotoServer, tmp_path: Path) -> None:
    bucket = moto_server.create_bucket()
    moto_server.put_objects(bucket, ["articles/a.md"])
    inventory = {"version": 1, "owners": [{"id": "kb"}], "sources": [
        {"id": "kb", "connector": "s3", "bucket": bucket, "endpoint_url": moto_server.endpoint,
         "region": "us-east-1", "owner": "kb"}],
        "workflows": [{"id": "rag", "owner": "kb", "stage": "pilot", "reads": ["kb:articles/"]}]}
    assert _scan(tmp_path, inventory) == []
    moto_server.client().put_bucket_acl(Bucket=bucket, ACL="public-read")
    drift = _scan(tmp_path, inventory)
    assert [(f.subkind, f.asset, f.severity) for f in drift] == [("became_public", "kb:articles/", "critical")]
    assert "allUsers" in drift[0].message
    moto_server.client().put_bucket_acl(Bucket=bucket, ACL="private")
    assert _scan(tmp_path, inventory) == []


def test_bigquery_dataset_that_gains_all_users(bigquery_emulator: BigQueryEmulator, tmp_path: Path) -> None:
    from google.cloud import bigquery

    dataset = bigquery_emulator.create_dataset("drift", access=[("OWNER", "userByEmail", "dba@example.com")])
    client = bigquery_emulator.client()
    client.create_table(bigquery.Table(f"{bigquery_emulator.project}.{dataset}.docs",
                                       schema=[bigquery.SchemaField("id", "INTEGER")]), retry=None, timeout=30)
    inventory = {"version": 1, "owners": [{"id": "wh"}], "sources": [
        {"id": "wh", "connector": "bigquery", "project": bigquery_emulator.project, "datasets": [dataset],
         "endpoint": bigquery_emulator.endpoint, "owner": "wh"}],
        "workflows": [{"id": "rag", "owner": "wh", "stage": "production", "reads": [f"wh:{dataset}.docs"]}]}
    assert _scan(tmp_path, inventory) == []
    entity = client.get_dataset(f"{bigquery_emulator.project}.{dataset}", retry=None, timeout=30)
    entity.access_entries = [*entity.access_entries, bigquery.AccessEntry("READER", "iamMember", "allUsers")]
    client.update_dataset(entity, ["access_entries"], retry=None, timeout=30)
    drift = _scan(tmp_path, inventory)
    assert [(f.subkind, f.asset, f.severity) for f in drift] == [("became_public", f"wh:{dataset}.docs", "critical")]
    assert "allUsers" in drift[0].message
