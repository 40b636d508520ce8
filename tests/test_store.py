"""The state store: round trip on SQLite and on the real PostgreSQL, migrations, crash safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from scanner.errors import StoreError
from scanner.model import (
    Asset,
    Column,
    DiscoveredOwner,
    Finding,
    FreshnessObservation,
    Grant,
    Membership,
    Principal,
    SourceSnapshot,
)
from scanner.store import SCHEMA_VERSION, Store

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SNAPSHOT = SourceSnapshot(
    source_id="crm", connector="fake", probed_at=NOW,
    assets=(Asset("public.customers", "table", (Column("id", "integer", False), Column("é'\"", "text")),
                  container="public", row_count=10, size_bytes=8192,
                  freshness=FreshnessObservation("observed", NOW, NOW - timedelta(minutes=15), "caveat"),
                  owner=DiscoveredOwner("data-eng", "label:owner"), properties={"owner_role": "app"}),),
    principals=(Principal("admin", "role", ("superuser",), True),),
    memberships=(Membership("bot", "readers", True),),
    grants=(Grant("readers", "SELECT", "public.customers", "asset", "read", via="GRANT"),
            Grant("PUBLIC", "USAGE", "public", "container", "other", public=True)),
    notes=("a note",), state={"counters": {"public.customers": 5}},
)


def _round_trip(store: Store) -> None:
    assert store.schema_version() == SCHEMA_VERSION
    scan_id = store.begin_scan(["crm", "kb"], now=NOW)
    store.record_result(scan_id, "crm", "fake", "ok", 0.5, NOW, snapshot=SNAPSHOT,
                        settings={"url": "postgresql://u:***@h/db"})
    store.record_result(scan_id, "kb", "files", "failed", 0.1, NOW, error="boom", reason="unreachable")
    store.finish_scan(scan_id, "partial", NOW)
    assert store.latest_snapshots() == {"crm": SNAPSHOT}
    results = store.latest_results()
    assert results["kb"].status == "failed" and results["kb"].error == "boom"
    assert store.scans()[0].status == "partial"
    finding = Finding("stale", "high", "old", "fp1", source="crm", asset="crm:public.customers",
                      evidence={"age": 5})
    changes = store.sync_findings([finding], NOW, scan_id)
    assert [f.fingerprint for f in changes.opened] == ["fp1"]
    changes = store.sync_findings([], NOW + timedelta(hours=1))
    assert [f.fingerprint for f in changes.resolved] == ["fp1"]
    changes = store.sync_findings([finding], NOW + timedelta(hours=2))
    assert [f.fingerprint for f in changes.reopened] == ["fp1"]
    stored = store.findings("open")[0]
    assert stored.first_seen == NOW and stored.last_seen == NOW + timedelta(hours=2)
    assert stored.times_opened == 2 and stored.evidence == {"age": 5}


def test_round_trip_sqlite(tmp_path: Path) -> None:
    _round_trip(Store.open(f"sqlite:///{tmp_path / 'nested' / 'state.db'}"))


def test_round_trip_postgresql(pg_database: str) -> None:
    store = Store.open(pg_database)
    try:
        _round_trip(store)
        # Opening again is a no-op migration.
        assert Store.open(pg_database).schema_version() == SCHEMA_VERSION
    finally:
        store.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    Store.open(url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE ctxscan_meta SET value = '999' WHERE key = 'schema_version'"))
    with pytest.raises(StoreError, match="newer than this ctxscan"):
        Store.open(url)


def test_unreachable_store_is_one_line_without_password(write_inventory, ctxscan) -> None:
    path = write_inventory("version: 1\nsources: [{id: a, connector: fake}]\n")
    result = ctxscan("scan", "-c", str(path), "--state", "postgresql+psycopg://u:hunter2pw@127.0.0.1:1/x")
    assert result.code == 2 and "cannot open the state store" in result.err
    assert "hunter2pw" not in result.err and "Traceback" not in result.err


def test_kill_mid_scan_keeps_what_was_stored(write_inventory, tmp_path: Path) -> None:
    path = write_inventory("""
        version: 1
        defaults: {concurrency: 1}
        sources:
          - {id: a, connector: fake, tables: [t1]}
          - {id: b, connector: fake, tables: [t2]}
          - {id: slow, connector: fake, tables: [t3], latency: 30}
    """)
    state = f"sqlite:///{tmp_path / 'state.db'}"
    env = {**os.environ}
    env.pop("CTXSCAN_STATE", None)
    first = subprocess.run([sys.executable, "-m", "scanner", "scan", "-c", str(path), "--state", state,
                            "--source", "a"], capture_output=True, text=True, env=env, timeout=60)
    assert first.returncode == 0, first.stderr
    proc = subprocess.Popen([sys.executable, "-m", "scanner", "scan", "-c", str(path), "--state", state],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    store = Store.open(state)
    deadline = time.monotonic() + 30
    # Wait until the second scan has stored a and b, then kill it while `slow` probes.
    while time.monotonic() < deadline:
        scans = store.scans(5)
        if len(scans) == 2 and len(store.results(scans[0].id)) == 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    scans = store.scans(5)
    assert [s.status for s in scans] == ["running", "ok"]
    assert sorted(r.source_id for r in store.results(scans[0].id)) == ["a", "b"]
    assert set(store.latest_snapshots()) == {"a", "b"}
    # The next scan marks the killed one interrupted (it is older than any probe could be).
    assert store.mark_interrupted(older_than=datetime.now(UTC) + timedelta(seconds=1)) == 1
    assert store.scans(5)[0].status == "interrupted"


def test_processes_opening_a_new_store_at_once(tmp_path: Path) -> None:
    """Several processes create the same new SQLite store at the same moment: all succeed."""
    url = f"sqlite:///{tmp_path / 'race' / 'state.db'}"
    code = ("import sys, time; from scanner.store import Store\n"
            "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
            "print(Store.open(sys.argv[1]).schema_version())")
    start = str(time.time() + 1.0)
    procs = [subprocess.Popen([sys.executable, "-c", code, url, start], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, outputs
    assert {out.strip() for out, _ in outputs} == {str(SCHEMA_VERSION)}


def test_an_older_store_migrates_on_open(tmp_path: Path) -> None:
    """A store left at schema 3 (before the latest-results index) is brought up to date."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = Store.open(url)
    scan_id = store.begin_scan(["crm"], now=NOW)
    store.record_result(scan_id, "crm", "fake", "ok", 0.1, NOW, snapshot=SNAPSHOT)
    store.close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP INDEX ix_source_results_latest"))
        conn.execute(sa.text("UPDATE ctxscan_meta SET value = '3' WHERE key = 'schema_version'"))
    reopened = Store.open(url)
    assert reopened.schema_version() == SCHEMA_VERSION
    assert "ix_source_results_latest" in {i["name"] for i in sa.inspect(engine).get_indexes("source_results")}
    assert reopened.latest_snapshots() == {"crm": SNAPSHOT}  # nothing stored was lost
