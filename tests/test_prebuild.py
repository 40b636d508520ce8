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
from scanner.prebuild import GraphChild
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


@pytest.mark.parametrize(("meminfo_kb", "cgroup", "limit", "usage", "room"), [
    (4_000_000, "0::/", None, None, True),                       # no limit: the machine decides
    (100_000, "0::/", None, None, False),                        # 100 MB free for a 400 MB scan
    (4_000_000, "0::/pod", "max", 10**9, True),                  # v2, unlimited
    (4_000_000, "0::/pod", str(900 * 2**20), 600 * 2**20, False),  # v2: 300 MB left under the limit
    (4_000_000, "0::/pod", str(2 * 2**30), 600 * 2**20, True),
    (4_000_000, "4:memory:/job", str(900 * 2**20), 600 * 2**20, False),  # v1
    (4_000_000, "4:memory:/job", "9223372036854771712", 600 * 2**20, True),
    (4_000_000, "0::/pod", "garbage", 1, False),
])
def test_the_child_is_forked_only_with_room_for_it(tmp_path: Path, meminfo_kb: int, cgroup: str,
                                                   limit: str | None, usage: int | None, room: bool) -> None:
    from scanner.prebuild import room_for_a_child

    proc, cgroups = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    page = os.sysconf("SC_PAGE_SIZE")
    (proc / "self" / "statm").write_text(f"200000 {400 * 2**20 // page} 1000 10 0 100000 0\n")
    (proc / "meminfo").write_text(f"MemTotal: 8000000 kB\nMemAvailable: {meminfo_kb} kB\n")
    (proc / "self" / "cgroup").write_text(cgroup + "\n")
    if limit is not None:
        _, controllers, path = cgroup.split(":", 2)
        where = cgroups / ("memory" if controllers else "") / path.lstrip("/")
        where.mkdir(parents=True)
        names = ("memory.limit_in_bytes", "memory.usage_in_bytes") if controllers else ("memory.max", "memory.current")
        (where / names[0]).write_text(limit + "\n")
        (where / names[1]).write_text(f"{usage}\n")
    assert room_for_a_child(proc, cgroups) is room
    (proc / "meminfo").write_text("nonsense\n")
    assert room_for_a_child(proc, cgroups) is False
