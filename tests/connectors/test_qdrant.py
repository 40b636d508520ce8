"""The qdrant connector on qdrant-client's local mode (a folder).

No Qdrant server installs on this machine (none on PyPI or Debian here), so the `url` mode is
exercised only against a server that is down.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.qdrant import QdrantConnector
from scanner.errors import ProbeError
from scanner.model import SourceSnapshot
from scanner.plugins import ProbeContext, SourceConfig
from tests.connectors.contract import check_snapshot_contract

pytest_plugins = ("tests.connectors.cloudservers",)


def probe(config: SourceConfig, now: datetime | None = None, previous: SourceSnapshot | None = None) -> SourceSnapshot:
    return QdrantConnector(config).probe(ProbeContext(now=now or datetime.now(UTC), previous=previous, timeout=30))


def test_collections_points_vectors_status_and_observed_changes(tmp_path: Path) -> None:
    from qdrant_client import QdrantClient, models

    folder = tmp_path / "qdrant"
    client = QdrantClient(path=str(folder))
    client.create_collection("support_docs", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
    client.create_collection("multi", vectors_config={
        "title": models.VectorParams(size=3, distance=models.Distance.DOT),
        "body": models.VectorParams(size=2, distance=models.Distance.EUCLID)})
    client.upsert("support_docs", points=[
        models.PointStruct(id=i, vector=[random.random() for _ in range(4)], payload={"doc": f"a{i}"})
        for i in range(12)])
    expected = client.get_collection("support_docs")
    client.close()  # local mode allows one client per folder
    config = SourceConfig(id="idx", connector="qdrant", settings={"path": str(folder)})
    start = datetime.now(UTC)
    first = probe(config, start)
    check_snapshot_contract(first, config)
    by_path = {a.path: a for a in first.assets}
    docs = by_path["support_docs"]
    assert docs.row_count == expected.points_count == 12
    assert (docs.properties["dimension"], docs.properties["distance"]) == (4, "Cosine")
    assert docs.properties["status"] == str(expected.status.value) == "green"
    assert docs.freshness.method == "none"  # the first scan records the fingerprint
    multi = by_path["multi"]
    assert multi.row_count == 0
    assert multi.properties["vectors"] == [{"name": "body", "size": 2, "distance": "Euclid"},
                                           {"name": "title", "size": 3, "distance": "Dot"}]
    second = probe(config, start + timedelta(minutes=1), first)
    unchanged = second.asset("support_docs").freshness  # nothing changed since the first scan
    assert (unchanged.method, unchanged.last_changed, unchanged.lower_bound) == ("observed", first.probed_at, True)
    client = QdrantClient(path=str(folder))
    client.set_payload("support_docs", payload={"doc": "rewritten"}, points=[3])  # same count, new content
    client.close()
    third = probe(config, start + timedelta(minutes=2), second)
    changed = third.asset("support_docs").freshness
    assert changed.method == "observed" and changed.changed_after == second.probed_at
    assert third.asset("multi").freshness.last_changed == first.probed_at  # still unchanged since the first
    check_snapshot_contract(third, config)


def test_a_folder_held_by_another_client_or_missing(tmp_path: Path) -> None:
    from qdrant_client import QdrantClient

    folder = tmp_path / "held"
    holder = QdrantClient(path=str(folder))
    try:
        with pytest.raises(ProbeError) as held:
            probe(SourceConfig(id="idx", connector="qdrant", settings={"path": str(folder)}))
        assert "another Qdrant client" in held.value.message and held.value.retryable
    finally:
        holder.close()
    with pytest.raises(ProbeError) as missing:
        probe(SourceConfig(id="idx", connector="qdrant", settings={"path": str(tmp_path / "nothing")}))
    assert missing.value.reason == "not_found"
    assert not (tmp_path / "nothing").exists()  # the probe created nothing


def test_a_server_that_is_down(dead_endpoint: str) -> None:
    with pytest.raises(ProbeError) as failed:
        probe(SourceConfig(id="idx", connector="qdrant", settings={"url": dead_endpoint, "api_key": "k-123"}))
    assert failed.value.reason == "unreachable" and "k-123" not in failed.value.message
