"""The bigquery connector against bqemulator 1.4.0 on 127.0.0.1 (a real BigQuery REST API).

The emulator serves datasets, access entries, tables, streaming inserts and dataset-level
INFORMATION_SCHEMA, but not table IAM (405), `__TABLES__` (404) or region-level views; the
connector's fallbacks for those run here against the emulator itself. Where a test needs an
answer no emulator gives (the documented tables.getIamPolicy response, AccessDenied, rate
limits, refused queries), a `FaultProxy` on loopback answers that one request and forwards
every other one to the emulator; each such test says so in its docstring.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from connectors.bigquery import (
    BigQueryConnector,
    entry_principal,
    flatten_schema,
    flatten_type,
    parse_labels,
    quote_identifier,
    struct_fields,
)
from scanner.errors import ProbeError
from scanner.model import Column, SourceSnapshot
from scanner.plugins import FreshnessConfig, ProbeContext, SourceConfig
from tests.connectors.contract import check_snapshot_contract

if TYPE_CHECKING:
    from tests.connectors.cloudservers import BigQueryEmulator, FaultProxies, MotoServer, Reply

pytest_plugins = ("tests.connectors.cloudservers",)

BOT = "support-bot@ctxscan-test.iam.gserviceaccount.com"
ADMIN = "dba@example.com"


def source(endpoint: str, project: str, datasets: list[str] | None = None, column: str | None = None,
           owner_tag: str | None = "owner", include: tuple[str, ...] = (), **settings: Any) -> SourceConfig:
    values: dict[str, Any] = {"project": project, "endpoint": endpoint, **settings}
    if datasets is not None:
        values["datasets"] = datasets
    return SourceConfig(id="wh", connector="bigquery", settings=values, owner_tag=owner_tag,
                        include=include, freshness=FreshnessConfig(column=column))


def probe(config: SourceConfig, timeout: float = 30.0) -> SourceSnapshot:
    return BigQueryConnector(config).probe(ProbeContext(now=datetime.now(UTC), timeout=timeout))


def error_body(code: int, reason: str, message: str) -> dict[str, Any]:
    """A BigQuery REST error, as documented."""
    return {"error": {"code": code, "message": message, "status": "PERMISSION_DENIED",
                      "errors": [{"message": message, "domain": "global", "reason": reason}]}}


class Warehouse:
    """Datasets made once for this module: names and what went into them."""

    def __init__(self, emulator: BigQueryEmulator) -> None:
        from google.cloud import bigquery

        self.emulator = emulator
        client = emulator.client()
        field = bigquery.SchemaField
        self.dataset = emulator.create_dataset("crm", labels={"owner": "data-eng", "tier": "gold"}, access=[
            ("READER", "specialGroup", "allAuthenticatedUsers"),
            ("READER", "iamMember", "allUsers"),
            ("WRITER", "userByEmail", BOT),
            ("OWNER", "userByEmail", ADMIN),
            ("READER", "groupByEmail", "analysts@example.com"),
            ("READER", "domain", "example.com"),
            ("READER", "specialGroup", "projectReaders"),
        ])
        project = emulator.project
        customers = bigquery.Table(f"{project}.{self.dataset}.customers", schema=[
            field("id", "INTEGER", mode="REQUIRED"),
            field("email", "STRING"),
            field("updated_at", "TIMESTAMP"),
            field("address", "RECORD", fields=[
                field("city", "STRING"),
                field("geo", "RECORD", fields=[field("lat", "FLOAT"), field("lng", "FLOAT")]),
            ]),
            field("orders", "RECORD", mode="REPEATED", fields=[field("sku", "STRING"), field("qty", "INTEGER")]),
            field("tags", "STRING", mode="REPEATED"),
            field("active", "BOOLEAN"),
        ])
        customers.labels = {"owner": "crm-team"}
        client.create_table(customers, retry=None, timeout=30)
        errors = client.insert_rows_json(f"{project}.{self.dataset}.customers", [
            {"id": 1, "email": "a@example.com", "updated_at": "2026-01-01T00:00:00Z",
             "address": {"city": "Oslo", "geo": {"lat": 59.9, "lng": 10.7}},
             "orders": [{"sku": "x", "qty": 1}], "tags": ["vip"], "active": True},
            {"id": 2, "email": "b@example.com", "updated_at": "2026-03-04T05:06:07Z"},
            {"id": 3, "email": "c@example.com"},
        ], retry=None, timeout=30)
        assert errors == [], errors
        events = bigquery.Table(f"{project}.{self.dataset}.events", schema=[
            field("name", "STRING"), field("updated_at", "DATE")])
        client.create_table(events, retry=None, timeout=30)
        client.insert_rows_json(f"{project}.{self.dataset}.events", [{"name": "e", "updated_at": "2026-02-02"}],
                                retry=None, timeout=30)
        odd = bigquery.Table(f"{project}.{self.dataset}.odd", schema=[field("updated_at", "STRING")])
        client.create_table(odd, retry=None, timeout=30)
        view = bigquery.Table(f"{project}.{self.dataset}.active_customers")
        view.view_query = (f"SELECT id, email, updated_at FROM `{project}.{self.dataset}.customers` "
                           "WHERE active")
        client.create_table(view, retry=None, timeout=30)
        self.empty = emulator.create_dataset("empty", labels={"owner": "data-eng"})
        self.tables = {n: client.get_table(f"{project}.{self.dataset}.{n}", retry=None, timeout=30)
                       for n in ("customers", "events", "odd", "active_customers")}

    def source(self, **kwargs: Any) -> SourceConfig:
        kwargs.setdefault("datasets", [self.dataset])
        return source(self.emulator.endpoint, self.emulator.project, **kwargs)


@pytest.fixture(scope="module")
def warehouse(bigquery_emulator: BigQueryEmulator) -> Warehouse:
    return Warehouse(bigquery_emulator)


@pytest.fixture(scope="module")
def snapshot(warehouse: Warehouse) -> SourceSnapshot:
    return probe(warehouse.source())


# ---------------------------------------------------------------------------------------
# assets, schemas, owners


def test_importing_the_connector_does_not_import_google_cloud() -> None:
    code = "import sys, connectors.bigquery; print(any(m.startswith('google') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_live_contract(warehouse: Warehouse, snapshot: SourceSnapshot) -> None:
    check_snapshot_contract(snapshot, warehouse.source())


def test_tables_and_views(warehouse: Warehouse, snapshot: SourceSnapshot) -> None:
    dataset = warehouse.dataset
    kinds = {a.path: a.kind for a in snapshot.assets}
    assert kinds == {f"{dataset}.customers": "table", f"{dataset}.events": "table", f"{dataset}.odd": "table",
                     f"{dataset}.active_customers": "view"}
    customers = snapshot.asset(f"{dataset}.customers")
    assert customers is not None
    assert customers.container == dataset
    assert customers.row_count == 3
    assert customers.size_bytes == 0  # the emulator always reports 0 bytes
    assert customers.properties["labels"] == {"owner": "crm-team"}
    assert customers.properties["dataset_labels"] == {"owner": "data-eng", "tier": "gold"}
    assert customers.properties["created"] == warehouse.tables["customers"].created.isoformat()
    assert customers.properties["modified"] == warehouse.tables["customers"].modified.isoformat()
    view = snapshot.asset(f"{dataset}.active_customers")
    assert view is not None and view.row_count is None and view.size_bytes is None
    assert not snapshot.partial


def test_nested_fields_are_flattened_with_dotted_names(warehouse: Warehouse, snapshot: SourceSnapshot) -> None:
    customers = snapshot.asset(f"{warehouse.dataset}.customers")
    assert customers is not None
    columns = {c.name: (c.type, c.nullable) for c in customers.columns}
    assert list(columns) == ["id", "email", "updated_at", "address", "address.city", "address.geo",
                             "address.geo.lat", "address.geo.lng", "orders", "orders.sku", "orders.qty",
                             "tags", "active"]
    assert columns["id"] == ("INT64", False)
    assert columns["address"] == ("STRUCT<city STRING, geo STRUCT<lat FLOAT64, lng FLOAT64>>", True)
    assert columns["address.geo.lat"] == ("FLOAT64", True)
    assert columns["orders"] == ("ARRAY<STRUCT<sku STRING, qty INT64>>", True)
    assert columns["orders.qty"] == ("INT64", True)
    assert columns["tags"] == ("ARRAY<STRING>", True)
    assert columns["active"] == ("BOOL", True)


def test_owners_from_table_labels_then_dataset_labels(warehouse: Warehouse, snapshot: SourceSnapshot) -> None:
    owners = {a.path.split(".")[1]: a.owner for a in snapshot.assets}
    assert owners["customers"] is not None
    assert (owners["customers"].owner, owners["customers"].provenance) == ("crm-team", "label:owner")
    assert owners["events"] is not None and owners["events"].owner == "data-eng"
    assert snapshot.owner is not None and snapshot.owner.owner == "data-eng"
    unlabelled = probe(warehouse.source(owner_tag="steward"))
    assert unlabelled.owner is None and all(a.owner is None for a in unlabelled.assets)


def test_metadata_freshness_has_a_caveat(warehouse: Warehouse, snapshot: SourceSnapshot) -> None:
    events = snapshot.asset(f"{warehouse.dataset}.events")
    assert events is not None
    assert events.freshness.method == "metadata"
    assert events.freshness.last_changed == warehouse.tables["events"].modified
    assert "metadata-only changes" in (events.freshness.caveat or "")
    view = snapshot.asset(f"{warehouse.dataset}.active_customers")
    assert view is not None and view.freshness.method == "none"


def test_column_freshness_uses_max(warehouse: Warehouse) -> None:
    config = warehouse.source(column="updated_at")
    snapshot = probe(config)
    check_snapshot_contract(snapshot, config)
    by_table = {a.path.split(".")[1]: a.freshness for a in snapshot.assets}
    assert by_table["customers"].method == "column"
    assert by_table["customers"].last_changed == datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert by_table["customers"].detail == "max(updated_at)"
    # Asked for, so views too; the emulator gives views no schema, so the type is unknown.
    assert by_table["active_customers"].method == "column"
    assert by_table["active_customers"].last_changed == datetime(2026, 1, 1, tzinfo=UTC)  # WHERE active
    assert "type of updated_at is unknown" in (by_table["active_customers"].caveat or "")
    assert by_table["events"].method == "column"
    assert by_table["events"].last_changed == datetime(2026, 2, 2, tzinfo=UTC)
    assert "read as UTC" in (by_table["events"].caveat or "")
    # A column that is not a timestamp falls back to the table's metadata, and says why.
    assert by_table["odd"].method == "metadata"
    assert "not a timestamp" in (by_table["odd"].detail or "")


def test_a_missing_freshness_column_falls_back(warehouse: Warehouse) -> None:
    snapshot = probe(warehouse.source(column="loaded_at"))
    customers = snapshot.asset(f"{warehouse.dataset}.customers")
    assert customers is not None and customers.freshness.method == "metadata"
    assert "no column loaded_at" in (customers.freshness.detail or "")


def test_include_filters_tables(warehouse: Warehouse) -> None:
    config = warehouse.source(include=(f"{warehouse.dataset}.c*",))
    snapshot = probe(config)
    check_snapshot_contract(snapshot, config)
    assert [a.path for a in snapshot.assets] == [f"{warehouse.dataset}.customers"]


def test_all_datasets_by_default(warehouse: Warehouse) -> None:
    config = source(warehouse.emulator.endpoint, warehouse.emulator.project,
                    include=(f"{warehouse.dataset}.*", f"{warehouse.empty}.*"))
    snapshot = probe(config)
    assert {a.container for a in snapshot.assets} == {warehouse.dataset}


def test_an_empty_dataset(warehouse: Warehouse) -> None:
    config = warehouse.source(datasets=[warehouse.empty])
    snapshot = probe(config)
    check_snapshot_contract(snapshot, config)
    assert snapshot.assets == ()
    assert any("no tables" in note for note in snapshot.notes)
    assert snapshot.owner is not None and snapshot.owner.owner == "data-eng"


def test_a_missing_dataset(warehouse: Warehouse) -> None:
    with pytest.raises(ProbeError) as caught:
        probe(warehouse.source(datasets=["no_such_dataset"]))
    assert caught.value.reason == "not_found" and not caught.value.retryable
    assert "no_such_dataset" in caught.value.message
    # Beside a dataset that exists, the missing one is a note and the rest is probed.
    snapshot = probe(warehouse.source(datasets=[warehouse.dataset, "no_such_dataset"]))
    assert any("dataset no_such_dataset not found" in note for note in snapshot.notes)
    assert len(snapshot.assets) == 4


# ---------------------------------------------------------------------------------------
# access


def test_dataset_access_entries_become_grants(warehouse: Warehouse, snapshot: SourceSnapshot) -> None:
    grants = {(g.principal, g.privilege, g.access, g.public) for g in snapshot.grants}
    assert grants >= {
        ("allAuthenticatedUsers", "READER", "read", True),
        ("allUsers", "READER", "read", True),
        (f"serviceAccount:{BOT}", "WRITER", "write", False),
        (f"user:{ADMIN}", "OWNER", "admin", False),
        ("group:analysts@example.com", "READER", "read", False),
        ("domain:example.com", "READER", "read", False),
        ("projectReaders", "READER", "read", False),
    }
    assert all(g.scope == "container" and g.target == warehouse.dataset for g in snapshot.grants)
    principals = {p.name: p for p in snapshot.principals}
    owner = principals[f"user:{ADMIN}"]
    assert owner.privileged and owner.attributes == ("dataset_owner",)
    assert owner.properties["owner_of"] == [warehouse.dataset]
    assert not principals[f"serviceAccount:{BOT}"].privileged
    assert snapshot.reports_grants


def test_authorized_views(bigquery_emulator: BigQueryEmulator, warehouse: Warehouse) -> None:
    project = bigquery_emulator.project
    shared = bigquery_emulator.create_dataset("shared", access=[
        (None, "view", {"projectId": project, "datasetId": warehouse.dataset, "tableId": "active_customers"})])
    snapshot = probe(source(bigquery_emulator.endpoint, project, datasets=[shared]))
    [grant] = snapshot.grants
    assert grant.principal == f"view:{project}.{warehouse.dataset}.active_customers"
    assert (grant.privilege, grant.access, grant.target) == ("AUTHORIZED_VIEW", "read", shared)


def test_table_iam_the_emulator_does_not_serve_is_unknown(warehouse: Warehouse, snapshot: SourceSnapshot) -> None:
    assert any("table IAM unknown" in note for note in snapshot.notes)
    assert {a.properties["table_iam"] for a in snapshot.assets} == {"unknown"}
    assert not any(g.scope == "asset" for g in snapshot.grants)


def test_table_iam_policies_become_asset_grants(warehouse: Warehouse, fault_proxy: FaultProxies) -> None:
    """A FaultProxy answers tables.getIamPolicy with its documented REST response (a Policy:
    version, etag, bindings of role and members); the emulator answers 405 to it. Every other
    request goes to the emulator."""
    def iam(method: str, path: str, body: bytes) -> Reply | None:
        if ":getIamPolicy" not in path:
            return None
        if "/tables/customers:" in path:
            return fault_proxy.json(200, {"version": 1, "etag": "BwYTQ1f6vQ8=", "bindings": [
                {"role": "roles/bigquery.dataEditor", "members": [f"serviceAccount:{BOT}"]},
                {"role": "roles/bigquery.dataViewer", "members": ["allUsers", "group:analysts@example.com"]},
            ]})
        return fault_proxy.json(200, {"version": 1, "etag": "ACAB"})

    proxy = fault_proxy(warehouse.emulator.endpoint, [iam])
    config = source(proxy.endpoint, warehouse.emulator.project, datasets=[warehouse.dataset])
    snapshot = probe(config)
    check_snapshot_contract(snapshot, config)
    table = f"{warehouse.dataset}.customers"
    asset_grants = {(g.principal, g.privilege, g.access, g.public, g.target)
                    for g in snapshot.grants if g.scope == "asset"}
    assert asset_grants == {
        (f"serviceAccount:{BOT}", "roles/bigquery.dataEditor", "write", False, table),
        ("allUsers", "roles/bigquery.dataViewer", "read", True, table),
        ("group:analysts@example.com", "roles/bigquery.dataViewer", "read", False, table),
    }
    assert {a.properties["table_iam"] for a in snapshot.assets} == {"read"}
    assert not any("table IAM unknown" in note for note in snapshot.notes)
    assert proxy.count(":getIamPolicy") == 4


def test_table_iam_access_denied_is_unknown(warehouse: Warehouse, fault_proxy: FaultProxies) -> None:
    """A FaultProxy answers tables.getIamPolicy with BigQuery's documented 403 accessDenied."""
    def deny(method: str, path: str, body: bytes) -> Reply | None:
        if ":getIamPolicy" in path:
            return fault_proxy.json(403, error_body(403, "accessDenied", "Access Denied: getIamPolicy"))
        return None

    proxy = fault_proxy(warehouse.emulator.endpoint, [deny])
    snapshot = probe(source(proxy.endpoint, warehouse.emulator.project, datasets=[warehouse.dataset]))
    assert any("table IAM unknown for 4 table(s) (access denied)" in note for note in snapshot.notes)
    assert {a.properties["table_iam"] for a in snapshot.assets} == {"unknown"}
    assert proxy.count(":getIamPolicy") == 4  # access denied is not retried


# ---------------------------------------------------------------------------------------
# fallbacks, retries and errors


def test_per_table_calls_when_queries_are_refused(warehouse: Warehouse, snapshot: SourceSnapshot,
                                                  fault_proxy: FaultProxies) -> None:
    """A FaultProxy refuses every query job with the documented 403 for a principal that
    lacks bigquery.jobs.create; metadata calls go to the emulator."""
    def refuse(method: str, path: str, body: bytes) -> Reply | None:
        if method == "POST" and path.split("?")[0].endswith("/jobs"):
            return fault_proxy.json(403, error_body(403, "accessDenied",
                                                    "Access Denied: User does not have bigquery.jobs.create"))
        return None

    proxy = fault_proxy(warehouse.emulator.endpoint, [refuse])
    config = source(proxy.endpoint, warehouse.emulator.project, datasets=[warehouse.dataset])
    fallback = probe(config)
    check_snapshot_contract(fallback, config)
    assert any("INFORMATION_SCHEMA not queryable (access_denied)" in note for note in fallback.notes)
    bulk = {a.path: a for a in snapshot.assets}
    for asset in fallback.assets:
        assert asset.properties["metadata_source"] == "tables.get"
        same = bulk[asset.path]
        if asset.kind != "view":  # the emulator's INFORMATION_SCHEMA lists no view columns
            assert asset.columns == same.columns, asset.path
        assert (asset.kind, asset.row_count, asset.freshness, asset.owner) == \
            (same.kind, same.row_count, same.freshness, same.owner)
        assert asset.properties["labels"] == same.properties["labels"]


def test_rate_limits_are_retried(warehouse: Warehouse, fault_proxy: FaultProxies) -> None:
    """A FaultProxy answers the first datasets.get with BigQuery's 403 rateLimitExceeded."""
    def limit(method: str, path: str, body: bytes) -> Reply | None:
        if method == "GET" and path.split("?")[0].endswith(f"/datasets/{warehouse.dataset}"):
            return fault_proxy.json(403, error_body(403, "rateLimitExceeded", "Exceeded rate limits"))
        return None

    proxy = fault_proxy(warehouse.emulator.endpoint, [fault_proxy.once(limit)])
    snapshot = probe(source(proxy.endpoint, warehouse.emulator.project, datasets=[warehouse.dataset]))
    assert len(snapshot.assets) == 4
    assert proxy.count(f"/datasets/{warehouse.dataset}?") == 2


def test_access_denied_on_the_only_dataset(warehouse: Warehouse, fault_proxy: FaultProxies) -> None:
    """A FaultProxy answers datasets.get with the documented 403 accessDenied."""
    def deny(method: str, path: str, body: bytes) -> Reply | None:
        if method == "GET" and f"/datasets/{warehouse.dataset}?" in path:
            return fault_proxy.json(403, error_body(403, "accessDenied", "Access Denied: Dataset"))
        return None

    proxy = fault_proxy(warehouse.emulator.endpoint, [deny])
    with pytest.raises(ProbeError) as caught:
        probe(source(proxy.endpoint, warehouse.emulator.project, datasets=[warehouse.dataset]))
    assert caught.value.reason == "access_denied" and not caught.value.retryable
    assert proxy.count(f"/datasets/{warehouse.dataset}?") == 1


def test_a_cancelled_probe_stops(warehouse: Warehouse) -> None:
    context = ProbeContext(now=datetime.now(UTC), timeout=30)
    context.cancelled.set()
    with pytest.raises(ProbeError) as caught:
        BigQueryConnector(warehouse.source()).probe(context)
    assert caught.value.reason == "timeout" and "cancelled" in caught.value.message


def test_an_emulator_that_is_down(dead_endpoint: str) -> None:
    with pytest.raises(ProbeError) as caught:
        probe(source(dead_endpoint, "ctxscan-test", datasets=["any"]), timeout=5)
    assert caught.value.reason == "unreachable" and caught.value.retryable


def test_no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "BIGQUERY_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))
    # Never ask a metadata server: there is none here, and traffic stays on loopback.
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    config = SourceConfig(id="wh", connector="bigquery", settings={"project": "ctxscan-test"})
    with pytest.raises(ProbeError) as caught:
        BigQueryConnector(config).probe(ProbeContext(now=datetime.now(UTC), timeout=5))
    assert caught.value.reason == "no_credentials"


# ---------------------------------------------------------------------------------------
# end to end: the core's scan and the CLI


def write_inventory(path: Path, moto: MotoServer, bucket: str, emulator: BigQueryEmulator, dataset: str,
                    down: str) -> Path:
    role = f"arn:aws:iam::{moto.account}:role/support-bot"
    inventory = {
        "version": 1,
        "owners": [{"id": "data-eng"}, {"id": "support-platform"}],
        "sources": [
            {"id": "kb", "connector": "s3", "bucket": bucket, "prefixes": ["articles/"],
             "endpoint_url": moto.endpoint, "region": "us-east-1", "owner": "data-eng", "timeout": "30s"},
            {"id": "wh", "connector": "bigquery", "project": emulator.project, "datasets": [dataset],
             "endpoint": emulator.endpoint, "owner_tag": "owner", "timeout": "30s"},
            {"id": "wh_down", "connector": "bigquery", "project": emulator.project, "datasets": [dataset],
             "endpoint": down, "owner": "data-eng", "timeout": "10s"},
        ],
        "workflows": [{
            "id": "support-reply-assistant", "owner": "support-platform", "stage": "production",
            "runs_as": {"kb": role, "wh": f"serviceAccount:{BOT}", "wh_down": f"serviceAccount:{BOT}"},
            "reads": [{"asset": "kb:articles/"}, {"asset": f"wh:{dataset}.customers"},
                      {"asset": f"wh_down:{dataset}.customers"}],
        }],
    }
    path.write_text(json.dumps(inventory), encoding="utf-8")  # JSON is YAML
    return path


@pytest.fixture
def estate(moto_server: MotoServer, warehouse: Warehouse, tmp_path: Path, dead_endpoint: str) -> Path:
    """An inventory with an S3 bucket, the emulator, and a BigQuery source whose emulator is down."""
    bucket = moto_server.create_bucket("estate")
    moto_server.put_objects(bucket, ["articles/a.md", "articles/b.md"])
    moto_server.client().put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "BotWrites", "Effect": "Allow",
         "Principal": {"AWS": f"arn:aws:iam::{moto_server.account}:role/support-bot"},
         "Action": ["s3:GetObject", "s3:PutObject"], "Resource": f"arn:aws:s3:::{bucket}/articles/*"}]}))
    return write_inventory(tmp_path / "ctxscan.yaml", moto_server, bucket, warehouse.emulator,
                           warehouse.dataset, dead_endpoint)


def test_scan_with_a_down_emulator_completes_the_rest(estate: Path, tmp_path: Path) -> None:
    from scanner.inventory import load_inventory
    from scanner.scan import run_scan
    from scanner.store import Store

    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    report = run_scan(load_inventory([estate]), store)
    statuses = {o.source_id: (o.status, o.reason) for o in report.outcomes}
    assert statuses == {"kb": ("ok", None), "wh": ("ok", None), "wh_down": ("failed", "unreachable")}
    assert report.status == "partial"
    findings = store.findings("open")
    kinds = {(f.kind, f.source) for f in findings}
    assert ("probe_failed", "wh_down") in kinds
    writes = {(f.source, f.asset) for f in findings if f.kind == "over_permissioned" and f.subkind == "write_access"}
    # The workflow only reads, but its role may PutObject and its service account is a WRITER.
    assert ("kb", "kb:articles/") in writes
    assert any(source == "wh" for source, _ in writes)
    public = {f.source for f in findings if f.kind == "over_permissioned" and f.subkind == "public_access"}
    assert "wh" in public  # allUsers / allAuthenticatedUsers on the dataset


def test_cli_scan_json(estate: Path, tmp_path: Path) -> None:
    state = f"sqlite:///{tmp_path / 'cli-state.db'}"
    proc = subprocess.run([sys.executable, "-m", "scanner", "-c", str(estate), "--state", state, "scan", "--json"],
                          capture_output=True, text=True, timeout=120)
    # exit 1: a source could not be probed (the exit-code contract of issue 18); the rest is scanned
    assert proc.returncode == 1, proc.stderr
    assert "1 source could not be probed (wh_down)" in proc.stderr
    payload = json.loads(proc.stdout)
    sources = {s["id"]: s for s in payload["sources"]}
    assert sources["kb"]["status"] == "ok" and sources["kb"]["assets"] == 1
    assert sources["wh"]["status"] == "ok" and sources["wh"]["assets"] == 4
    assert sources["wh_down"]["status"] == "failed" and sources["wh_down"]["reason"] == "unreachable"
    assert payload["status"] == "partial"


# ---------------------------------------------------------------------------------------
# schema text and principals, as data


def test_struct_fields_parse_information_schema_types() -> None:
    assert struct_fields("ARRAY<STRUCT<city STRING, geo STRUCT<lat FLOAT64>>>") == [
        ("city", "STRING", True), ("geo", "STRUCT<lat FLOAT64>", True)]
    assert struct_fields("STRUCT<`a b` NUMERIC(10, 2), c STRING(5) NOT NULL, d ARRAY<INT64>>") == [
        ("a b", "NUMERIC(10, 2)", True), ("c", "STRING(5)", False), ("d", "ARRAY<INT64>", True)]
    assert struct_fields("INT64") == []


def test_flattening_from_text_and_from_rest_schemas_agree() -> None:
    from google.cloud.bigquery import SchemaField

    schema = [SchemaField("id", "INTEGER", mode="REQUIRED"),
              SchemaField("meta", "RECORD", mode="REPEATED", fields=[
                  SchemaField("k", "STRING"), SchemaField("v", "RECORD", fields=[SchemaField("n", "NUMERIC")])]),
              SchemaField("flag", "BOOLEAN")]
    from_rest = flatten_schema(schema)
    from_text: list[Column] = []
    for column in from_rest:
        if "." not in column.name:
            flatten_type(column.name, column.type, column.nullable, from_text)
    assert tuple(from_text) == from_rest
    assert [c.name for c in from_rest] == ["id", "meta", "meta.k", "meta.v", "meta.v.n", "flag"]


def test_parse_labels_and_quote_identifier() -> None:
    assert parse_labels('[("owner", "crm-team"), ("tier", "gold")]') == {"owner": "crm-team", "tier": "gold"}
    assert parse_labels("") == {}
    assert quote_identifier("we`ird\\name") == "`we\\`ird\\\\name`"


@pytest.mark.parametrize(("entity_type", "entity_id", "expected"), [
    ("userByEmail", "a@example.com", ("user:a@example.com", "user")),
    ("userByEmail", BOT, (f"serviceAccount:{BOT}", "serviceAccount")),
    ("groupByEmail", "g@example.com", ("group:g@example.com", "group")),
    ("domain", "example.com", ("domain:example.com", "domain")),
    ("specialGroup", "allAuthenticatedUsers", ("allAuthenticatedUsers", "public")),
    ("specialGroup", "projectOwners", ("projectOwners", "special")),
    ("iamMember", "allUsers", ("allUsers", "public")),
    ("iamMember", "principal://iam.googleapis.com/x", ("principal://iam.googleapis.com/x", "principal")),
    ("routine", {"projectId": "p", "datasetId": "d", "routineId": "r"}, ("routine:p.d.r", "routine")),
    ("dataset", {"dataset": {"projectId": "p", "datasetId": "d"}, "targetTypes": ["VIEWS"]},
     ("dataset:p.d", "dataset")),
])
def test_entry_principal(entity_type: str, entity_id: Any, expected: tuple[str, str]) -> None:
    assert entry_principal(entity_type, entity_id) == expected


# ---------------------------------------------------------------------------------------
# runs_as names


def test_runs_as_names_resolve_as_iam_writes_them(warehouse: Warehouse) -> None:
    from scanner.access import access_paths, can_read, can_write

    config = warehouse.source()
    written = {BOT, ADMIN, "someone@example.com", "group:analysts@example.com", "domain:example.com",
               "ghost@elsewhere.org", "ghost@other-project.iam.gserviceaccount.com", "allUsers"}
    snapshot = BigQueryConnector(config).probe(ProbeContext(now=datetime.now(UTC), principals=frozenset(written),
                                                            timeout=30))
    assert snapshot.state["resolved_principals"] == {
        BOT: f"serviceAccount:{BOT}", ADMIN: f"user:{ADMIN}", "someone@example.com": "user:someone@example.com"}
    assert snapshot.state["unknown_principals"] == ["ghost@elsewhere.org",
                                                    "ghost@other-project.iam.gserviceaccount.com"]
    assert any("'ghost@other-project.iam.gserviceaccount.com' (read as serviceAccount:" in n for n in snapshot.notes)
    customers = snapshot.asset(f"{warehouse.dataset}.customers")
    assert customers is not None

    def verdict(name: str) -> tuple[bool, bool]:
        paths = access_paths(snapshot, name, customers)
        return can_read(paths), can_write(paths)

    assert verdict(BOT) == verdict(f"serviceAccount:{BOT}") == (True, True)      # WRITER
    assert verdict("someone@example.com") == (True, False)                       # through domain:example.com
    assert verdict("group:analysts@example.com") == (True, False)


def test_a_bare_service_account_address_gets_its_write_access_found(warehouse: Warehouse, tmp_path: Path) -> None:
    from scanner.inventory import load_inventory
    from scanner.rules import build_context, evaluate
    from scanner.scan import run_scan
    from scanner.store import Store

    emulator = warehouse.emulator
    inventory_file = tmp_path / "ctxscan.yaml"
    inventory_file.write_text(json.dumps({
        "version": 1, "owners": [{"id": "data-eng"}],
        "sources": [{"id": "wh", "connector": "bigquery", "project": emulator.project, "endpoint": emulator.endpoint,
                     "datasets": [warehouse.dataset], "owner": "data-eng"}],
        "workflows": [{"id": "summarizer", "owner": "data-eng", "stage": "production",
                       "runs_as": {"wh": BOT}, "reads": [f"wh:{warehouse.dataset}.customers"]},
                      {"id": "typo", "owner": "data-eng", "stage": "production",
                       "runs_as": {"wh": "suport-bot@ctxscan-test.iam.gserviceaccount.com"},
                       "reads": [f"wh:{warehouse.dataset}.customers"]}]}))
    inventory = load_inventory([inventory_file], env={})
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        run_scan(inventory, store)
        findings = evaluate(build_context(inventory, store, datetime.now(UTC)))
    finally:
        store.close()
    writes = [f for f in findings if f.subkind == "write_access" and f.workflow == "summarizer"]
    # WRITER on the dataset: write_access on the table it reads and, since issue 11, on every
    # other table of the dataset it does not declare.
    by_asset = {f.asset: f for f in writes}
    assert f"wh:{warehouse.dataset}.customers" in by_asset and len(by_asset) > 1
    assert "only reads" in by_asset[f"wh:{warehouse.dataset}.customers"].message
    assert all("does not declare" in f.message for a, f in by_asset.items() if not a.endswith(".customers"))
    assert f"serviceAccount:{BOT}" in by_asset[f"wh:{warehouse.dataset}.customers"].message
    unknown = [f for f in findings if f.subkind == "unknown_principal"]
    assert [(f.workflow, f.principal) for f in unknown] == [("typo", "suport-bot@ctxscan-test.iam.gserviceaccount.com")]
