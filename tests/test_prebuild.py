"""The graph's child process (scanner/prebuild.py): what it builds is what the scan would have
built itself, and a child that fails, hangs or read a store that changed since is never used."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from scanner.graph import decode_graph, encode_parts, parts_from_store
from scanner.prebuild import GraphChild, _encode_in_two
from tests.graph_support import scanned_estate


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _gone(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


@pytest.fixture
def estate(tmp_path: Path) -> Any:
    inventory, store = scanned_estate(tmp_path / "estate")
    yield inventory, store, str(tmp_path / "estate" / "ctxscan.yaml")
    store.close()


def test_the_child_builds_the_graph_the_scan_would(estate: Any) -> None:
    inventory, store, _ = estate
    findings = store.findings("open")
    held = store.latest_snapshots(["crm"])  # as a scan holds its own snapshots
    child = GraphChild.start(inventory, store, held)
    assert child is not None and child.inputs == store.graph_inputs()
    pid = child.pid
    blob = child.finish(findings, timeout=60)
    assert blob is not None and _gone(pid)
    built = decode_graph(blob)
    here = decode_graph(encode_parts(parts_from_store(inventory, store, findings)))
    assert built is not None and here is not None
    assert _plain(built.ordered()) == _plain(here.ordered()) and _plain(built.graph) == _plain(here.graph)
    assert any(attrs.get("findings") for _, attrs in built.ordered()[0])


def test_a_child_that_fails_or_hangs_answers_nothing_and_is_gone(estate: Any, monkeypatch: Any) -> None:
    import scanner.graph

    inventory, store, _ = estate

    def broken(*args: Any, **kwargs: Any) -> bytes:
        raise RuntimeError("injected")

    monkeypatch.setattr(scanner.graph, "encode_parts", broken)  # the child inherits it
    child = GraphChild.start(inventory, store, {})
    assert child is not None
    pid = child.pid
    assert child.finish(store.findings("open"), timeout=60) is None and _gone(pid)

    def stuck(*args: Any, **kwargs: Any) -> bytes:
        time.sleep(60)
        return b""

    monkeypatch.setattr(scanner.graph, "encode_parts", stuck)
    child = GraphChild.start(inventory, store, {})
    assert child is not None
    pid, began = child.pid, time.monotonic()
    assert child.finish(store.findings("open"), timeout=0.5) is None
    assert time.monotonic() - began < 10 and _gone(pid)


def test_a_child_whose_store_changed_is_not_used(estate: Any, monkeypatch: Any) -> None:
    # A scan stored after the child read the store: its graph is left, and the one built after
    # the scan holds the new result.
    from scanner.cli import App, warm_graph_cache
    from scanner.scan import run_scan

    inventory, store, config = estate
    monkeypatch.setenv("CTXSCAN_GRAPH_WARM_ASSETS", "1")
    app = App(config=[config], _inventory=inventory, _store=store)
    child = GraphChild.start(inventory, store, {})
    assert child is not None
    pid = child.pid
    run_scan(inventory, store)  # another scan, after the child read the store
    assert store.graph_inputs() != child.inputs
    warm_graph_cache(app, store.findings("open"), None, child)
    assert _gone(pid)
    from scanner.graph import cache_key, config_fingerprint, load_cached

    cached = load_cached(store, cache_key(str(config_fingerprint([config])), store.state_key()))
    assert cached is not None
    latest = store.latest_results(["crm"])["crm"]
    assert cached.nodes["source:crm"]["scanned_at"] == latest.probed_at.isoformat()


def test_chunks_encoded_in_two_processes_are_the_chunks_encoded_in_one(estate: Any) -> None:
    from scanner.graph import encode_chunks

    inventory, store, _ = estate
    seen: list[list[Any]] = []

    def keep(chunks: list[Any]) -> list[bytes]:
        seen.append(chunks)
        return encode_chunks(chunks)

    parts = parts_from_store(inventory, store, store.findings("open"))
    assert encode_parts(parts, keep) == encode_parts(parts)
    chunks = seen[0]
    assert len(chunks) > 2
    assert _encode_in_two(chunks) == encode_chunks(chunks)
    assert _encode_in_two(chunks[:1]) == encode_chunks(chunks[:1]) and _encode_in_two([]) == []
