"""The chroma connector against a real Chroma server (`chroma run`) on 127.0.0.1.

Vectors are small random arrays passed explicitly: no embedding function, no model download.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from connectors.chroma import ChromaConnector
from scanner.errors import ProbeError
from scanner.model import SourceSnapshot, snapshot_from_dict
from scanner.plugins import ProbeContext, SourceConfig
from tests.connectors.contract import check_snapshot_contract

if TYPE_CHECKING:
    from tests.connectors.cloudservers import FaultProxies, Reply
    from tests.connectors.vectorservers import AuthProxy, ChromaServer

pytest_plugins = ("tests.connectors.cloudservers", "tests.connectors.vectorservers")
ROOT = Path(__file__).resolve().parents[2]
DIM = 8


def vectors(n: int, dim: int = DIM) -> list[list[float]]:
    return [[random.random() for _ in range(dim)] for _ in range(n)]


def source(url: str, prefix: str, **settings: Any) -> SourceConfig:
    return SourceConfig(id="kbindex", connector="chroma", settings={"url": url, **settings},
                        include=(f"{prefix}*",))


def probe(config: SourceConfig, now: datetime | None = None,
          previous: SourceSnapshot | None = None) -> SourceSnapshot:
    return ChromaConnector(config).probe(ProbeContext(now=now or datetime.now(UTC), previous=previous,
                                                      timeout=30))


@pytest.fixture
def prefix(chroma_server: ChromaServer) -> Any:
    """A unique collection-name prefix; the collections are dropped afterwards."""
    name = "t" + uuid.uuid4().hex[:8] + "_"
    yield name
    client = chroma_server.client()
    for collection in client.list_collections():
        if collection.name.startswith(name):
            client.delete_collection(collection.name)


def test_collections_are_assets_with_count_dimension_and_model(chroma_server: ChromaServer, prefix: str) -> None:
    client = chroma_server.client()
    docs = client.create_collection(prefix + "support_docs", embedding_function=None,
                                    metadata={"embedding_model": "all-MiniLM-L6-v2", "team": "kb"})
    docs.add(ids=[f"d{i}" for i in range(25)], embeddings=vectors(25),
             documents=[f"article {i}" for i in range(25)], metadatas=[{"n": i} for i in range(25)])
    client.create_collection(prefix + "empty", embedding_function=None)
    config = source(chroma_server.endpoint, prefix)
    snapshot = probe(config)
    check_snapshot_contract(snapshot, config)
    by_path = {a.path: a for a in snapshot.assets}
    assert set(by_path) == {prefix + "support_docs", prefix + "empty"}
    asset = by_path[prefix + "support_docs"]
    # Chroma's own answers: count() and the collection's dimension.
    assert asset.row_count == docs.count() == 25
    assert asset.properties["dimension"] == DIM
    assert asset.properties["embedding_model"] == "all-MiniLM-L6-v2"
    assert asset.properties["metadata"] == {"embedding_model": "all-MiniLM-L6-v2", "team": "kb"}
    assert asset.properties["distance"] == "l2"
    assert ("embedding", f"vector({DIM})") in [(c.name, c.type) for c in asset.columns]
    empty = by_path[prefix + "empty"]
    assert empty.row_count == 0 and empty.properties["dimension"] is None
    # An open server: anyone can list and read, as Chroma itself answered without a token.
    assert snapshot.reports_grants
    assert [(g.principal, g.access, g.scope, g.public) for g in snapshot.grants] == [("PUBLIC", "read", "source", True)]


def test_observed_freshness_follows_count_and_content(chroma_server: ChromaServer, prefix: str) -> None:
    client = chroma_server.client()
    collection = client.create_collection(prefix + "docs", embedding_function=None)
    collection.add(ids=["a", "b"], embeddings=vectors(2), documents=["one", "two"])
    config = source(chroma_server.endpoint, prefix)
    start = datetime.now(UTC)
    first = probe(config, start)
    assert first.assets[0].freshness.method == "none"  # a first scan only records the fingerprint
    second = probe(config, start + timedelta(minutes=1), first)
    # Nothing changed since the first scan: the last write came before it (a lower bound on the age).
    bound = second.assets[0].freshness
    assert (bound.method, bound.last_changed, bound.changed_after) == ("observed", first.probed_at, None)
    assert bound.lower_bound
    collection.add(ids=["c"], embeddings=vectors(1), documents=["three"])
    third = probe(config, start + timedelta(minutes=2), second)
    fresh = third.assets[0].freshness
    assert fresh.method == "observed"
    assert fresh.changed_after == second.probed_at and fresh.last_changed == third.probed_at
    assert "2 -> 3" in (fresh.detail or "")
    assert not fresh.lower_bound
    fourth = probe(config, start + timedelta(minutes=3), third)
    assert fourth.assets[0].freshness == fresh  # unchanged: the last observed change is carried
    # The same count, a rewritten document: the content fingerprint moves.
    collection.upsert(ids=["a"], embeddings=vectors(1), documents=["one, edited"])
    fifth = probe(config, start + timedelta(minutes=4), fourth)
    assert fifth.assets[0].freshness.method == "observed"
    assert fifth.assets[0].freshness.changed_after == fourth.probed_at
    # Dropped and created again under the same name: a change, even with the same content.
    client.delete_collection(prefix + "docs")
    again = client.create_collection(prefix + "docs", embedding_function=None)
    again.add(ids=["a", "b", "c"], embeddings=vectors(3), documents=["one, edited", "two", "three"])
    sixth = probe(config, start + timedelta(minutes=5), fifth)
    assert sixth.assets[0].freshness.changed_after == fifth.probed_at
    assert "dropped and created again" in (sixth.assets[0].freshness.detail or "")
    check_snapshot_contract(sixth, config)


def test_token_auth(chroma_server: ChromaServer, chroma_auth_proxy: tuple[AuthProxy, str], prefix: str) -> None:
    proxy, token = chroma_auth_proxy
    chroma_server.client().create_collection(prefix + "private", embedding_function=None).add(
        ids=["x"], embeddings=vectors(1))
    with_token = source(proxy.endpoint, prefix, token=token)
    snapshot = probe(with_token)
    check_snapshot_contract(snapshot, with_token, secrets=(token,))
    assert [a.path for a in snapshot.assets] == [prefix + "private"] and snapshot.assets[0].row_count == 1
    assert snapshot.grants == () and not snapshot.reports_grants  # not public; Chroma names no principals
    assert proxy.denied >= 1  # the unauthenticated attempt was refused by the server, not assumed
    header = probe(source(proxy.endpoint, prefix, token=token, token_header="X-Chroma-Token"))
    assert [a.path for a in header.assets] == [prefix + "private"]
    with pytest.raises(ProbeError) as missing:
        probe(source(proxy.endpoint, prefix))
    assert missing.value.reason == "no_credentials" and "token" in missing.value.message
    wrong = "wrong-" + token
    with pytest.raises(ProbeError) as refused:
        probe(source(proxy.endpoint, prefix, token=wrong))
    assert wrong not in refused.value.message and token not in refused.value.message
    assert refused.value.reason in ("no_credentials", "access_denied"), refused.value.message


def test_a_server_that_is_down(dead_endpoint: str) -> None:
    with pytest.raises(ProbeError) as failed:
        probe(source(dead_endpoint, "x"))
    assert failed.value.reason == "unreachable" and failed.value.retryable


def test_scan_public_access_and_a_down_store(chroma_server: ChromaServer, prefix: str, tmp_path: Path,
                                             dead_endpoint: str) -> None:
    """An open server read by a production workflow is public_access; a down store is probe_failed
    and the other sources still complete."""
    from scanner.inventory import load_inventory
    from scanner.rules import build_context, evaluate
    from scanner.scan import run_scan
    from scanner.store import Store

    chroma_server.client().create_collection(prefix + "kb", embedding_function=None).add(
        ids=["1"], embeddings=vectors(1))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("a")
    inventory_file = tmp_path / "ctxscan.yaml"
    inventory_file.write_text(json.dumps({
        "version": 1, "owners": [{"id": "team"}],
        "sources": [
            {"id": "vectors", "connector": "chroma", "url": chroma_server.endpoint, "owner": "team",
             "include": [prefix + "*"]},
            {"id": "down", "connector": "chroma", "url": dead_endpoint, "owner": "team"},
            {"id": "kb", "connector": "files", "path": str(tmp_path / "docs"), "owner": "team"}],
        "workflows": [{"id": "rag", "owner": "team", "stage": "production",
                       "reads": [f"vectors:{prefix}kb", "down:anything", "kb:a.md"]}],
    }))
    inventory = load_inventory([inventory_file], env={})
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        report = run_scan(inventory, store)
        ctx = build_context(inventory, store, datetime.now(UTC))
        findings = evaluate(ctx)
    finally:
        store.close()
    outcomes = {o.source_id: o.status for o in report.outcomes}
    assert outcomes["down"] != "ok" and outcomes["vectors"] == "ok" and outcomes["kb"] == "ok", outcomes
    failed = [f for f in findings if f.kind == "probe_failed"]
    assert [f.source for f in failed] == ["down"] and failed[0].subkind == "unreachable"
    public = [f for f in findings if f.subkind == "public_access"]
    assert [f.asset for f in public] == [f"vectors:{prefix}kb"] and public[0].severity == "critical"


PATH_PROBE = """
import json, random, subprocess, sys
from datetime import UTC, datetime
import chromadb
from chromadb.config import Settings
folder = sys.argv[1]
client = chromadb.PersistentClient(path=folder, settings=Settings(anonymized_telemetry=False))
col = client.create_collection("notes", embedding_function=None, metadata={"model": "e5-small"})
col.add(ids=["a", "b", "c"], embeddings=[[random.random() for _ in range(5)] for _ in range(3)])
del col, client
from connectors.chroma import ChromaConnector
from scanner.model import snapshot_to_dict
from scanner.plugins import ProbeContext, SourceConfig
config = SourceConfig(id="local", connector="chroma", settings={"path": folder})
first = ChromaConnector(config).probe(ProbeContext(now=datetime.now(UTC)))
# Another process writes to the folder between two probes (as the index job would).
writer = ("import chromadb, random; from chromadb.config import Settings; "
          f"c = chromadb.PersistentClient(path={folder!r}, settings=Settings(anonymized_telemetry=False)); "
          "c.get_collection('notes').add(ids=['d', 'e'], embeddings=[[random.random() for _ in range(5)] for _ in range(2)])")
subprocess.run([sys.executable, "-c", writer], check=True)
second = ChromaConnector(config).probe(ProbeContext(now=datetime.now(UTC), previous=first))
print(json.dumps([snapshot_to_dict(first), snapshot_to_dict(second)]))
"""


def test_a_persistent_folder(chroma_venv_python: Path, tmp_path: Path) -> None:
    """`path` needs the full chromadb package: the probe runs in .venv-chroma's Python."""
    folder = tmp_path / "chroma-folder"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ANONYMIZED_TELEMETRY": "False"}
    proc = subprocess.run([str(chroma_venv_python), "-c", PATH_PROBE, str(folder)], capture_output=True,
                          text=True, env=env, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    snapshot, later = (snapshot_from_dict(d) for d in json.loads(proc.stdout.strip().splitlines()[-1]))
    config = SourceConfig(id="local", connector="chroma", settings={"path": str(folder)})
    check_snapshot_contract(snapshot, config)
    [asset] = snapshot.assets
    assert (asset.path, asset.row_count, asset.properties["dimension"]) == ("notes", 3, 5)
    assert asset.properties["embedding_model"] == "e5-small"
    # The second probe, in the same process, sees the other process's write.
    assert later.assets[0].row_count == 5 and later.assets[0].freshness.method == "observed"
    with pytest.raises(ProbeError) as not_chroma:
        probe(SourceConfig(id="local", connector="chroma", settings={"path": str(tmp_path)}))
    assert not_chroma.value.reason == "not_found"
    with pytest.raises(ProbeError):
        probe(SourceConfig(id="local", connector="chroma", settings={"url": "http://127.0.0.1:1", "path": "x"}))


def test_a_server_that_hangs_is_bounded(chroma_server: ChromaServer, prefix: str, fault_proxy: FaultProxies) -> None:
    """chromadb's own HTTP session never times out; the connector bounds it by the probe's timeout."""
    import time

    chroma_server.client().create_collection(prefix + "slow", embedding_function=None)

    def hang_on_count(method: str, path: str, body: bytes) -> Reply | None:
        if "/count" in path:
            time.sleep(3)
        return None

    proxy = fault_proxy(chroma_server.endpoint, [hang_on_count])
    started = time.monotonic()
    with pytest.raises(ProbeError) as failed:
        ChromaConnector(source(proxy.endpoint, prefix)).probe(ProbeContext(now=datetime.now(UTC), timeout=1))
    assert time.monotonic() - started < 2.9
    assert failed.value.reason == "timeout" and failed.value.retryable, failed.value.message


def test_a_tenant_and_database(chroma_server: ChromaServer) -> None:
    import chromadb
    from chromadb.config import Settings

    tenant, database = "t_" + uuid.uuid4().hex[:8], "db_" + uuid.uuid4().hex[:8]
    admin = chromadb.AdminClient(Settings(chroma_api_impl="chromadb.api.fastapi.FastAPI", anonymized_telemetry=False,
                                          chroma_server_host="127.0.0.1", chroma_server_http_port=chroma_server.port))
    admin.create_tenant(tenant)
    admin.create_database(database, tenant)
    client = chromadb.HttpClient(host="127.0.0.1", port=chroma_server.port, tenant=tenant, database=database,
                                 settings=Settings(anonymized_telemetry=False))
    client.create_collection("kb_docs", embedding_function=None).add(ids=["1", "2"], embeddings=vectors(2))
    config = SourceConfig(id="kbindex", connector="chroma",
                          settings={"url": chroma_server.endpoint, "tenant": tenant, "database": database})
    snapshot = probe(config)
    check_snapshot_contract(snapshot, config)
    assert [(a.path, a.row_count) for a in snapshot.assets] == [("kb_docs", 2)]
    with pytest.raises(ProbeError) as missing:
        probe(SourceConfig(id="kbindex", connector="chroma",
                           settings={"url": chroma_server.endpoint, "tenant": tenant, "database": "nope"}))
    assert missing.value.reason == "not_found"
    admin.delete_database(database, tenant)  # the tenant stays: Chroma cannot delete one (the server's folder goes)


def test_probes_leave_no_chromadb_system_behind(chroma_server: ChromaServer, prefix: str) -> None:
    """chromadb caches a System per client for the whole process; a daemon probes for weeks."""
    from chromadb.api.shared_system_client import SharedSystemClient

    chroma_server.client().create_collection(prefix + "docs", embedding_function=None)
    before = set(SharedSystemClient._identifier_to_system)
    for _ in range(3):
        probe(source(chroma_server.endpoint, prefix))
        with pytest.raises(ProbeError):  # the client fails to start: an unknown database
            probe(source(chroma_server.endpoint, prefix, database="missing_db"))
    assert set(SharedSystemClient._identifier_to_system) <= before
