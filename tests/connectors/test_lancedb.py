"""The lancedb connector on a temporary folder and on moto's S3 server (127.0.0.1)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from connectors.lancedb import LanceDbConnector
from scanner.errors import ProbeError
from scanner.model import SourceSnapshot
from scanner.plugins import ProbeContext, SourceConfig
from tests.connectors.contract import check_snapshot_contract

if TYPE_CHECKING:
    from tests.connectors.cloudservers import MotoServer

pytest_plugins = ("tests.connectors.cloudservers",)


def rows(n: int, dim: int = 4) -> list[dict[str, Any]]:
    return [{"id": i, "text": f"chunk {i}", "vector": [random.random() for _ in range(dim)]} for i in range(n)]


def probe(config: SourceConfig) -> SourceSnapshot:
    return LanceDbConnector(config).probe(ProbeContext(now=datetime.now(UTC), timeout=30))


def test_tables_rows_vectors_and_version_time(tmp_path: Path) -> None:
    import lancedb
    import pyarrow as pa

    db = lancedb.connect(tmp_path / "db")
    before = datetime.now(UTC) - timedelta(seconds=1)
    chunks = db.create_table("chunks", data=rows(10))
    chunks.add(rows(5))
    db.create_table("empty", schema=pa.schema([pa.field("id", pa.int64()),
                                               pa.field("emb", pa.list_(pa.float32(), 3)),
                                               pa.field("tags", pa.list_(pa.string()))]))
    config = SourceConfig(id="idx", connector="lancedb", settings={"uri": str(tmp_path / "db")})
    snapshot = probe(config)
    check_snapshot_contract(snapshot, config)
    by_path = {a.path: a for a in snapshot.assets}
    assert set(by_path) == {"chunks", "empty"}
    asset = by_path["chunks"]
    # LanceDB's own answers: count_rows() and the newest version's timestamp.
    assert asset.row_count == chunks.count_rows() == 15
    assert asset.properties["vector_columns"] == [{"name": "vector", "dimension": 4}]
    assert asset.properties["version"] == chunks.version == 2
    newest = max(chunks.list_versions(), key=lambda v: v["version"])["timestamp"].astimezone(UTC)
    assert asset.freshness.method == "metadata" and asset.freshness.last_changed == newest
    assert before < newest <= datetime.now(UTC)
    assert [c.name for c in asset.columns] == ["id", "text", "vector"]
    empty = by_path["empty"]
    assert empty.row_count == 0
    assert empty.properties["vector_columns"] == [{"name": "emb", "dimension": 3}]  # a list of strings is not a vector
    # A later write moves the freshness to the new version's time.
    chunks.delete("id < 3")
    later = {a.path: a for a in probe(config).assets}["chunks"]
    assert later.row_count == chunks.count_rows() == 9
    assert later.freshness.last_changed is not None and later.freshness.last_changed > newest


def test_a_missing_folder_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(ProbeError) as failed:
        probe(SourceConfig(id="idx", connector="lancedb", settings={"uri": str(tmp_path / "nope")}))
    assert failed.value.reason == "not_found"


def test_on_s3(moto_server: MotoServer, tmp_path: Path) -> None:
    import lancedb

    bucket = moto_server.create_bucket("lance")
    options = {"aws_endpoint": moto_server.endpoint, "allow_http": "true", "aws_region": "us-east-1",
               "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    db = lancedb.connect(f"s3://{bucket}/rag", storage_options=options)
    db.create_table("chunks", data=rows(7, dim=6))
    secret = "testing-secret-" + bucket
    config = SourceConfig(id="idx", connector="lancedb", settings={
        "uri": f"s3://{bucket}/rag", "endpoint_url": moto_server.endpoint, "region": "us-east-1",
        "access_key_id": "testing", "secret_access_key": "testing"})
    snapshot = probe(config)
    check_snapshot_contract(snapshot, config)
    [asset] = snapshot.assets
    assert (asset.path, asset.row_count) == ("chunks", 7)
    assert asset.properties["vector_columns"] == [{"name": "vector", "dimension": 6}]
    assert asset.freshness.method == "metadata"
    # The lance manifests really are in the bucket.
    keys = [o["Key"] for o in moto_server.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert any(k.startswith("rag/chunks.lance/_versions/") for k in keys)
    # A bucket that does not exist is a clear failure, with no secret in it.
    with pytest.raises(ProbeError) as failed:
        probe(SourceConfig(id="idx", connector="lancedb", settings={
            "uri": f"s3://{bucket}-missing/rag", "endpoint_url": moto_server.endpoint, "region": "us-east-1",
            "access_key_id": "testing", "secret_access_key": secret}))
    assert secret not in failed.value.message


def test_s3_endpoint_that_is_down(dead_endpoint: str) -> None:
    config = SourceConfig(id="idx", connector="lancedb", settings={
        "uri": "s3://nothing/rag", "endpoint_url": dead_endpoint, "region": "us-east-1",
        "access_key_id": "testing", "secret_access_key": "testing"})
    with pytest.raises(ProbeError) as failed:
        probe(config)
    assert failed.value.message.startswith("lancedb:")
