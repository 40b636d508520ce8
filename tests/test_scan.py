"""Scan orchestration with the fake connector: slow, failing and hanging sources."""

from __future__ import annotations

import json
from pathlib import Path

from scanner.inventory import load_inventory
from scanner.scan import run_scan
from scanner.store import Store

INVENTORY = """
version: 1
defaults: {{timeout: 1s, concurrency: 4}}
sources:
  - {{id: fast, connector: fake, tables: [public.a, public.b]}}
  - {{id: slow, connector: fake, tables: [public.c], latency: 0.4}}
  - {{id: broken, connector: fake, fail: "connection refused by db.internal (token {secret})", token: "{secret}"}}
  - {{id: stuck, connector: fake, hang: true, timeout: 0.5s}}
workflows:
  - {{id: w, reads: ["fast:public.a", "stuck:public.x"]}}
"""
SECRET = "s3cr3t-t0ken-value"


def _setup(write_inventory, tmp_path: Path):
    path = write_inventory(INVENTORY.format(secret=SECRET))
    inventory = load_inventory([path], env={})
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    return inventory, store


def test_failures_and_hangs_do_not_stop_the_others(write_inventory, tmp_path: Path) -> None:
    inventory, store = _setup(write_inventory, tmp_path)
    seen: list[str] = []
    report = run_scan(inventory, store, progress=lambda message, _o: seen.append(message))
    status = {o.source_id: o.status for o in report.outcomes}
    assert status == {"fast": "ok", "slow": "ok", "broken": "failed", "stuck": "timeout"}
    assert report.status == "partial"
    stuck = next(o for o in report.outcomes if o.source_id == "stuck")
    assert stuck.reason == "timeout" and "0.5s" in (stuck.error or "")
    assert any("probing slow" in m for m in seen)
    # Each failure is a probe_failed finding with its reason; the secret is redacted.
    failed = {f.source: f for f in store.findings("open") if f.kind == "probe_failed"}
    assert set(failed) == {"broken", "stuck"}
    assert "connection refused" in failed["broken"].message
    assert SECRET not in failed["broken"].message and "***" in failed["broken"].message
    # The secret reached neither the stored results nor the stored settings.
    raw = b"".join(Path(tmp_path / "state.db").read_bytes() for _ in [0])
    assert SECRET.encode() not in raw
    stored = {r.source_id: r for r in store.results(report.scan_id)}
    assert stored["fast"].asset_count == 2 and stored["stuck"].status == "timeout"
    assert store.scans(1)[0].status == "partial"


def test_scan_one_source_and_resolve(write_inventory, tmp_path: Path, ctxscan) -> None:
    path = write_inventory(INVENTORY.format(secret=SECRET))
    state = f"sqlite:///{tmp_path / 'state.db'}"
    first = ctxscan("scan", "-c", str(path), "--state", state, "--json")
    payload = json.loads(first.out)
    assert first.code == 1 and payload["status"] == "partial"  # a source could not be probed
    assert {s["id"]: s["status"] for s in payload["sources"]}["stuck"] == "timeout"
    # Fix the broken source, then scan only it: its probe_failed resolves, the others stay.
    path.write_text(path.read_text().replace('fail: "connection refused by db.internal (token '
                                             + SECRET + ')", ', ""))
    second = ctxscan("scan", "-c", str(path), "--state", state, "--source", "broken", "--json")
    assert second.code == 0, second
    assert [s["id"] for s in json.loads(second.out)["sources"]] == ["broken"]
    findings = json.loads(ctxscan("findings", "-c", str(path), "--state", state, "--json",
                                  "--kind", "probe_failed").out)
    assert [f["source"] for f in findings] == ["stuck"]
    # A finding about a source names the source as its subject, not the workflow it affects.
    assert findings[0]["workflow"] == "w" and findings[0]["subject"] == "stuck"
    table = ctxscan("findings", "-c", str(path), "--state", state, "--kind", "probe_failed").out
    assert table.splitlines()[1].split()[2] == "stuck"
    resolved = json.loads(ctxscan("findings", "-c", str(path), "--state", state, "--json",
                                  "--status", "resolved").out)
    assert [f["source"] for f in resolved] == ["broken"] and resolved[0]["status"] == "resolved"


def test_unknown_source_is_a_usage_error(write_inventory, tmp_path: Path, ctxscan) -> None:
    path = write_inventory(INVENTORY.format(secret=SECRET))
    result = ctxscan("scan", "-c", str(path), "--state", f"sqlite:///{tmp_path / 's.db'}", "--source", "fats")
    assert result.code == 2 and "unknown source 'fats'" in result.err and "fast" in result.err
    assert "Traceback" not in result.err


def test_fail_on(write_inventory, tmp_path: Path, ctxscan) -> None:
    path = write_inventory(INVENTORY.format(secret=SECRET))
    state = f"sqlite:///{tmp_path / 'state.db'}"
    # Two sources cannot be probed: exit 1 either way, and stderr says which reason applies.
    below = ctxscan("scan", "-c", str(path), "--state", state, "--fail-on", "critical")
    assert below.code == 1 and "could not be probed" in below.err and "--fail-on" not in below.err
    above = ctxscan("scan", "-c", str(path), "--state", state, "--fail-on", "low")
    assert above.code == 1 and "at or above low (--fail-on)" in above.err


def test_accepted_findings_show_reason_and_expiry(write_inventory, tmp_path: Path, ctxscan) -> None:
    text = INVENTORY.format(secret=SECRET) + (
        "accept:\n  - {kind: probe_failed, source: stuck, reason: \"known hang, ticket OPS-1\", "
        "expires: 2999-01-01}\n")
    path = write_inventory(text)
    state = f"sqlite:///{tmp_path / 'state.db'}"
    first = ctxscan("scan", "-c", str(path), "--state", state)
    # `stuck`'s probe_failed is accepted: only `broken` makes the scan exit 1.
    assert first.code == 1 and "1 source could not be probed (broken)" in first.err, first
    listed = ctxscan("findings", "-c", str(path), "--state", state, "--status", "accepted")
    assert listed.code == 0, listed
    assert "known hang, ticket OPS-1" in listed.out and "2999-01-01" in listed.out
    assert "ACCEPTED BECAUSE" in listed.out
    open_ids = json.loads(ctxscan("findings", "-c", str(path), "--state", state, "--json",
                                  "--kind", "probe_failed").out)
    assert [f["source"] for f in open_ids] == ["broken"]


def test_probes_run_while_the_store_opens(write_inventory, tmp_path: Path) -> None:
    """`run_scan` given an opener starts probing first; the connector gets the previous snapshot."""
    import time
    from datetime import UTC, datetime

    from scanner.plugins import ProbeContext, connectors

    path = write_inventory("""
        version: 1
        sources: [{id: slow, connector: fake, tables: [public.c], latency: 0.5}]
    """)
    inventory = load_inventory([path], env={})
    url = f"sqlite:///{tmp_path / 'state.db'}"
    run_scan(inventory, Store.open(url))
    seen: dict[str, object] = {}
    fake = connectors()["fake"]

    class Recording(fake):  # type: ignore[misc, valid-type]
        def probe(self, context: ProbeContext):
            seen["probe_started"] = time.monotonic()
            seen["previous"] = context.previous  # waits until the store is open and decoded
            seen["previous_read"] = time.monotonic()
            return super().probe(context)

    def opener() -> Store:
        seen["opener_called"] = time.monotonic()
        time.sleep(0.3)  # a slow store: the probe must not have waited for it to start
        return Store.open(url)

    report = run_scan(inventory, opener, registry={"fake": Recording})
    assert [o.status for o in report.outcomes] == ["ok"]
    assert seen["probe_started"] < seen["opener_called"] + 0.3  # type: ignore[operator]
    assert seen["previous_read"] >= seen["opener_called"] + 0.3  # type: ignore[operator]
    previous = seen["previous"]
    assert previous is not None and [a.path for a in previous.assets] == ["public.c"]  # type: ignore[attr-defined]
    assert previous.probed_at < datetime.now(UTC)  # type: ignore[attr-defined]


def test_a_store_that_cannot_open_stops_the_scan_at_once(write_inventory) -> None:
    """The running probe is told to stop, and the queued one never starts."""
    import time

    import pytest

    from scanner.errors import StoreError
    from scanner.plugins import ProbeContext, connectors

    path = write_inventory("""
        version: 1
        defaults: {concurrency: 1}
        sources:
          - {id: stuck, connector: fake, hang: true, timeout: 60s}
          - {id: queued, connector: fake, tables: [t]}
    """)
    started: dict[str, ProbeContext] = {}
    fake = connectors()["fake"]

    class Recording(fake):  # type: ignore[misc, valid-type]
        def probe(self, context: ProbeContext):
            started[self.source.id] = context
            return super().probe(context)

    def opener() -> Store:
        time.sleep(0.2)  # the first probe is running by now
        raise StoreError("cannot open the state store sqlite:///nowhere: disk on fire")

    began = time.monotonic()
    with pytest.raises(StoreError, match="disk on fire"):
        run_scan(load_inventory([path], env={}), opener, registry={"fake": Recording})
    assert time.monotonic() - began < 5
    assert started["stuck"].cancelled.is_set()
    time.sleep(0.3)  # the hung probe notices the cancellation and its worker moves on
    assert "queued" not in started


def test_waiting_for_the_store_is_not_the_probes_time(write_inventory, tmp_path: Path) -> None:
    """A probe that reads `previous` waits for a slow store; that wait does not time it out."""
    import time

    from scanner.plugins import ProbeContext, connectors

    path = write_inventory("""
        version: 1
        sources: [{id: a, connector: fake, tables: [t], latency: 0.3, timeout: 1s}]
    """)
    fake = connectors()["fake"]

    class ReadsPrevious(fake):  # type: ignore[misc, valid-type]
        def probe(self, context: ProbeContext):
            context.previous  # noqa: B018 (waits for the store)
            return super().probe(context)

    def opener() -> Store:
        time.sleep(1.5)
        return Store.open(f"sqlite:///{tmp_path / 'state.db'}")

    report = run_scan(load_inventory([path], env={}), opener, registry={"fake": ReadsPrevious})
    assert [(o.status, o.error) for o in report.outcomes] == [("ok", None)]


def test_an_in_memory_store_scans(write_inventory) -> None:
    """sqlite:///:memory: is one connection: the rules read it while the findings sync writes."""
    path = write_inventory("""
        version: 1
        sources: [{id: a, connector: fake, tables: ["t@30d"]}]
        workflows: [{id: w, reads: [{asset: "a:t", max_age: 1d}]}]
    """)
    store = Store.open("sqlite:///:memory:")
    report = run_scan(load_inventory([path], env={}), store)
    assert report.status == "ok"
    assert "stale" in {f.kind for f in store.findings("open")}


def test_between_sources_a_paused_collector_still_reclaims_cycles(write_inventory) -> None:
    """With the collector paused (as the CLI runs), a cycle one probe left is freed before the end."""
    import gc
    import time
    import weakref

    from scanner.plugins import ProbeContext, connectors

    path = write_inventory("""
        version: 1
        defaults: {concurrency: 1}
        sources: [{id: a, connector: fake, tables: [t]}, {id: b, connector: fake, tables: [u]}]
    """)
    fake = connectors()["fake"]
    left: dict[str, weakref.ref] = {}
    freed_while_b_ran: list[bool] = []

    class Node:
        pass

    class LeavesACycle(fake):  # type: ignore[misc, valid-type]
        def probe(self, context: ProbeContext):
            if self.source.id == "b":  # the core collects once it has stored a's result
                deadline = time.monotonic() + 5
                while left["a"]() is not None and time.monotonic() < deadline:
                    time.sleep(0.01)
                freed_while_b_ran.append(left["a"]() is None)
            cycle = Node()
            cycle.self = cycle  # type: ignore[attr-defined]
            left[self.source.id] = weakref.ref(cycle)
            return super().probe(context)

    gc.collect()
    gc.disable()
    try:
        run_scan(load_inventory([path], env={}), Store.open("sqlite:///:memory:"),
                 registry={"fake": LeavesACycle})
    finally:
        gc.enable()
        gc.unfreeze()
    assert freed_while_b_ran == [True]
    assert left["b"]() is not None  # after the last source nothing is collected: the CLI exits


def test_a_scan_loads_only_the_connectors_it_uses(write_inventory, tmp_path: Path) -> None:
    import subprocess
    import sys

    path = write_inventory("version: 1\nsources: [{id: a, connector: fake, tables: [t]}]\n")
    code = ("import sys; from scanner.cli import main\n"
            "try:\n    main(sys.argv[1:], standalone_mode=False)\nfinally:\n"
            "    print(sorted(m for m in sys.modules if m.startswith('connectors.') or m == 'importlib.metadata'))")
    out = subprocess.run([sys.executable, "-c", code, "-c", str(path), "--state",
                          f"sqlite:///{tmp_path / 's.db'}", "scan", "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "['connectors.fake']"
