"""`index_lag` with real stores: a Chroma collection built from a folder of articles.

The index lags (the articles changed long after the collection was last written), then a
rebuild catches it up and the stored finding resolves; an index missing part of its source
fires `count_ratio` until the missing records are added.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scanner.inventory import load_inventory
from scanner.readiness import readiness_cards
from scanner.rules import build_context, evaluate
from scanner.scan import run_scan
from scanner.store import Store

if TYPE_CHECKING:
    from tests.connectors.cloudservers import MotoServer
    from tests.connectors.vectorservers import ChromaServer

pytest_plugins = ("tests.connectors.cloudservers", "tests.connectors.vectorservers")


def vectors(n: int) -> list[list[float]]:
    return [[random.random() for _ in range(4)] for _ in range(n)]


def test_lagging_then_caught_up_after_a_rebuild(chroma_server: ChromaServer, tmp_path: Path) -> None:
    name = "idx_" + uuid.uuid4().hex[:8]
    client = chroma_server.client()
    collection = client.create_collection(name, embedding_function=None)
    articles = tmp_path / "kb" / "articles"
    articles.mkdir(parents=True)
    for i in range(10):
        (articles / f"a{i}.md").write_text(f"article {i}")
    collection.add(ids=[f"a{i}" for i in range(10)], embeddings=vectors(10))
    inventory_file = tmp_path / "ctxscan.yaml"
    inventory_file.write_text(json.dumps({
        "version": 1, "owners": [{"id": "team"}],
        "sources": [
            {"id": "kb", "connector": "files", "path": str(tmp_path / "kb"), "owner": "team"},
            {"id": "kb-index", "connector": "chroma", "url": chroma_server.endpoint, "owner": "team",
             "include": [name],
             "assets": [{"path": name, "derived_from": ["kb:articles"], "max_lag": "1d",
                         "expect_count_ratio": 0.95}]}],
        "workflows": [{"id": "rag", "owner": "team", "stage": "production", "reads": [f"kb-index:{name}"],
                       "evaluation": {"suite": "e.yaml"}, "rollout": {"fallback": "h", "rollback_owner": "team"}}],
    }))
    inventory = load_inventory([inventory_file], env={})
    now = datetime.now(UTC)
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")

    def scan(moment: datetime) -> list:
        run_scan(inventory, store, now=lambda: moment)
        return [f for f in store.findings("open") if f.kind == "index_lag"]

    try:
        # Two scans ten and nine days ago: the second sees the collection change (one more record).
        old = (now - timedelta(days=11)).timestamp()
        for path in [articles, *articles.iterdir()]:
            os.utime(path, (old, old))
        assert scan(now - timedelta(days=10)) == []
        collection.add(ids=["a10"], embeddings=vectors(1))
        (articles / "a10.md").write_text("article 10")
        os.utime(articles / "a10.md", (old, old))
        assert scan(now - timedelta(days=9)) == []  # written in (10d, 9d] ago, after the articles' change
        # The articles change an hour ago; the index does not.
        fresh = (now - timedelta(hours=1)).timestamp()
        os.utime(articles / "a3.md", (fresh, fresh))
        [lag] = scan(now)
        assert lag.asset == f"kb-index:{name}" and lag.subkind is None and lag.severity == "critical"
        assert f"kb-index:{name} is 8d23h behind kb:articles" in lag.message, lag.message
        written = datetime.fromisoformat(lag.evidence["index_written"])
        assert written == now - timedelta(days=9)  # the scan that saw the index change
        assert lag.evidence["upstream_changed"] == datetime.fromtimestamp(fresh, UTC).isoformat()
        ctx = build_context(inventory, store, now)
        [card] = readiness_cards(ctx, evaluate(ctx), inventory.accept)
        context = next(c for c in card.checks if c.id == "context")
        assert not context.ok and lag.fingerprint in context.findings
        # Rebuild: the collection is rewritten; the next scan sees it and the finding resolves.
        collection.upsert(ids=["a3"], embeddings=vectors(1), documents=["article 3, edited"])
        assert scan(now + timedelta(minutes=5)) == []
        resolved = [f for f in store.findings("resolved") if f.kind == "index_lag"]
        assert [f.fingerprint for f in resolved] == [lag.fingerprint]
        # Count ratio: 11 articles, 11 records: complete. Six articles more and the index misses them.
        for i in range(11, 17):
            (articles / f"a{i}.md").write_text(f"article {i}")
        [short] = [f for f in scan(now + timedelta(minutes=10)) if f.subkind == "count_ratio"]
        assert "holds 11 records for 17 in kb:articles" in short.message
        collection.add(ids=[f"a{i}" for i in range(11, 17)], embeddings=vectors(6))
        assert [f for f in scan(now + timedelta(minutes=15)) if f.subkind == "count_ratio"] == []
    finally:
        store.close()
        client.delete_collection(name)


def test_the_demo_shows_its_index_lagging(tmp_path: Path) -> None:
    """`ctxscan demo`'s search index was built before the articles changed: index_lag, next to stale."""
    from scanner.demo import run_demo

    result = run_demo(tmp_path / "demo", echo=None, now=datetime(2026, 1, 1, 12, 0, tzinfo=UTC))
    kinds = {(f["kind"], f["asset"]) for f in result["findings"]}
    assert ("index_lag", "kb-index:main.chunks") in kinds and ("stale", "kb:policies") in kinds
    lag = next(f for f in result["findings"] if f["kind"] == "index_lag")
    assert lag["message"] == ("kb-index:main.chunks is 45h behind kb:articles (articles changed 2026-01-01 09:00, "
                              "index written 2025-12-30 12:00; max_lag 12h)")
    card = next(c for c in result["readiness"] if c["workflow"] == "support-reply-assistant")
    context = next(c for c in card["checks"] if c["check"] == "context")
    assert not context["ok"] and "index_lag" in context["reason"]


def test_a_lancedb_index_of_an_s3_prefix(moto_server: MotoServer, tmp_path: Path) -> None:
    """Both directions on real stores without a pinned clock: LanceDB's version time against
    S3's LastModified, and the index's rows against the prefix's object count."""
    import time

    import lancedb

    bucket = moto_server.create_bucket("kb")
    moto_server.put_objects(bucket, [f"articles/a{i}.md" for i in range(10)])
    db = lancedb.connect(tmp_path / "lance")
    table = db.create_table("chunks", data=[{"id": i, "vector": vectors(1)[0]} for i in range(4)])
    inventory_file = tmp_path / "ctxscan.yaml"
    inventory_file.write_text(json.dumps({
        "version": 1,
        "sources": [
            {"id": "kb", "connector": "s3", "bucket": bucket, "prefixes": ["articles/"],
             "endpoint_url": moto_server.endpoint, "region": "us-east-1"},
            {"id": "idx", "connector": "lancedb", "uri": str(tmp_path / "lance"),
             "assets": [{"path": "chunks", "derived_from": ["kb:articles/"], "max_lag": "1s",
                         "expect_count_ratio": 0.9}]}],
        "workflows": [{"id": "rag", "stage": "pilot", "reads": ["idx:chunks"]}],
    }))
    inventory = load_inventory([inventory_file], env={})
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")

    def scan() -> dict[str | None, Any]:
        run_scan(inventory, store)
        return {f.subkind: f for f in store.findings("open") if f.kind == "index_lag"}

    try:
        # 4 rows for 10 objects; the table was written after the objects: no lag.
        found = scan()
        assert set(found) == {"count_ratio"} and "holds 4 records for 10 in kb:articles/" in found["count_ratio"].message
        # Objects written more than max_lag after the table's newest version: the index lags.
        time.sleep(2.5)  # S3 LastModified has whole seconds: the lag is then at least 1.5 s
        moto_server.put_objects(bucket, ["articles/new.md"])
        found = scan()
        assert set(found) == {None, "count_ratio"}, found
        assert found[None].message.startswith("idx:chunks is ") and "behind kb:articles/" in found[None].message
        assert found[None].evidence["max_lag_seconds"] == 1.0 and found[None].evidence["upstream_method"] == "metadata"
        # The rebuild: every document indexed, a new version written; both findings resolve.
        table.add([{"id": i, "vector": vectors(1)[0]} for i in range(4, 11)])
        assert scan() == {}
        assert {f.subkind for f in store.findings("resolved") if f.kind == "index_lag"} == {None, "count_ratio"}
    finally:
        store.close()


def test_an_index_never_rebuilt_since_it_was_first_seen(chroma_server: ChromaServer, tmp_path: Path) -> None:
    """The commonest failure: the index job stopped. Chroma keeps no write time and no change was
    ever seen, yet the collection has not changed since the first scan: it lags at least from there."""
    name = "idx_" + uuid.uuid4().hex[:8]
    client = chroma_server.client()
    client.create_collection(name, embedding_function=None).add(ids=["a"], embeddings=vectors(1))
    (tmp_path / "kb" / "articles").mkdir(parents=True)
    (tmp_path / "kb" / "articles" / "a.md").write_text("a")
    inventory_file = tmp_path / "ctxscan.yaml"
    inventory_file.write_text(json.dumps({
        "version": 1,
        "sources": [{"id": "kb", "connector": "files", "path": str(tmp_path / "kb")},
                    {"id": "kb-index", "connector": "chroma", "url": chroma_server.endpoint, "include": [name],
                     "assets": [{"path": name, "derived_from": ["kb:articles"]}]}],
        "workflows": [{"id": "rag", "stage": "pilot", "reads": [{"asset": f"kb-index:{name}", "max_age": "12h"}]}],
    }))
    inventory = load_inventory([inventory_file], env={})
    now = datetime.now(UTC)
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        first = now - timedelta(days=5)
        old = (first - timedelta(days=1)).timestamp()
        os.utime(tmp_path / "kb" / "articles" / "a.md", (old, old))
        run_scan(inventory, store, now=lambda: first)
        os.utime(tmp_path / "kb" / "articles" / "a.md")  # the article changes now; the index never does
        run_scan(inventory, store, now=lambda: now)
        [lag] = [f for f in store.findings("open") if f.kind == "index_lag"]
        assert lag.evidence["index_method"] == "unchanged_since"
        assert lag.evidence["index_written"] == first.isoformat()
        assert f"kb-index:{name} is at least 5d behind kb:articles" in lag.message, lag.message
        assert "index unchanged since" in lag.message and "max_lag 12h, the max_age of workflow rag" in lag.message
    finally:
        store.close()
        client.delete_collection(name)


def test_bad_index_lag_keys_are_refused_with_the_field(tmp_path: Path) -> None:
    from scanner.inventory import InventoryInvalid

    inventory_file = tmp_path / "ctxscan.yaml"
    inventory_file.write_text(
        "version: 1\n"
        "sources:\n"
        "  - {id: kb, connector: files, path: .}\n"
        "  - id: idx\n"
        "    connector: files\n"
        "    path: .\n"
        "    assets:\n"
        "      - {path: a, derived_from: [\"kb:x\"], max_lag: soon, expect_count_ratio: lots}\n"
        "      - {path: b, derived_from: [\"kb:x\"], expect_count_ratio: -1}\n")
    try:
        load_inventory([inventory_file], env={})
        raise AssertionError("the file was accepted")
    except InventoryInvalid as exc:
        text = "\n".join(e.one_line() for e in exc.errors)
    assert "sources[1].assets[0].max_lag" in text and "sources[1].assets[0].expect_count_ratio" in text, text
    assert "sources[1].assets[1].expect_count_ratio" in text and "ctxscan.yaml:8" in text, text
