"""The state store: round trip on SQLite and on the real PostgreSQL, migrations, crash safety."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

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
from scanner.store import SCHEMA_VERSION, PlannedNotification, Store, _stored_finding

FIXTURES = Path(__file__).parent / "fixtures"

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
    # Only some kinds (what a rule reads back of its own), open or whatever their status.
    other = Finding("unowned", "low", "nobody", "fp2", source="kb")
    store.sync_findings([finding, other], NOW + timedelta(hours=3))
    store.sync_findings([finding], NOW + timedelta(hours=4))
    assert [f.fingerprint for f in store.findings("open", kinds=["stale"])] == ["fp1"]
    assert [f.fingerprint for f in store.findings("open", kinds=["unowned"])] == []
    assert [f.fingerprint for f in store.findings(None, kinds=["unowned"])] == ["fp2"]
    assert [f.fingerprint for f in store.findings(None, kinds=["unowned", "stale"])] == ["fp1", "fp2"]
    assert store.findings(None, kinds=[]) == [] and store.findings("open", kinds=["x'); --"]) == []
    # A finding still open: unchanged, only when it was last seen moves; changed, all of it.
    later = store.begin_scan(["crm"], now=NOW + timedelta(hours=5))
    changes = store.sync_findings([finding], NOW + timedelta(hours=5), later)
    store.finish_scan(later, "ok", NOW + timedelta(hours=5))
    assert changes.still_open == 1 and not (changes.opened or changes.reopened or changes.escalated)
    kept = store.findings("open", kinds=["stale"])[0]
    assert (kept.last_seen, kept.message, kept.evidence, kept.times_opened) == (
        NOW + timedelta(hours=5), "old", {"age": 5}, 2)
    moved = Finding("stale", "critical", "older", "fp1", source="crm", asset="crm:public.customers",
                    evidence={"age": 9}, remediation="refresh it")
    changes = store.sync_findings([moved], NOW + timedelta(hours=6), later)
    assert [f.fingerprint for f in changes.escalated] == ["fp1"]
    kept = store.findings("open", kinds=["stale"])[0]
    assert (kept.severity, kept.message, kept.evidence, kept.remediation, kept.last_seen) == (
        "critical", "older", {"age": 9}, "refresh it", NOW + timedelta(hours=6))
    store.sync_findings([Finding("stale", "critical", "older", "fp1", evidence={"age": 9})], NOW + timedelta(hours=7))
    kept = store.findings("open", kinds=["stale"])[0]
    assert (kept.source, kept.asset, kept.remediation) == (None, None, "")
    for field, value in (("evidence", {"age": 11}), ("message", "oldest"), ("subkind", "breach")):
        fields = {"kind": "stale", "severity": "critical", "message": "older", "fingerprint": "fp1",
                  "evidence": {"age": 9}, field: value}
        store.sync_findings([Finding(**fields)], NOW + timedelta(hours=8))
        assert getattr(store.findings("open", kinds=["stale"])[0], field) == value
    # Findings whose last_seen alone moves are written a batch at a time: more than two batches.
    many = [Finding("unowned", "low", f"nobody {n}", f"many{n}", source="kb") for n in range(1203)]
    store.sync_findings(many, NOW + timedelta(hours=9))
    key = store.state_key()
    assert store.state_key() == key  # reading moves nothing
    changes = store.sync_findings(many, NOW + timedelta(hours=10))
    assert store.state_key() != key  # every sync moves the key (what keys the graph cache), even unchanged
    assert changes.still_open == 1203 and not changes.resolved
    assert {f.last_seen for f in store.findings("open", kinds=["unowned"])} == {NOW + timedelta(hours=10)}
    assert store.findings("resolved", kinds=["stale"])[0].fingerprint == "fp1"
    # Read a batch at a time (tuples, msgspec), every finding is what the row-by-row decoder makes.
    with store._read() as conn:
        rows = conn.rows("SELECT * FROM findings")
    assert sorted(store.findings(None), key=lambda f: f.fingerprint) == \
        sorted((_stored_finding(row) for row in rows), key=lambda f: f.fingerprint)
    # Evidence msgspec refuses (json.dumps writes NaN, Infinity and lone surrogates) reads as json read it.
    odd = {"nan": float("nan"), "inf": float("inf"), "name": "\ud800x", "big": 2 ** 70, "nested": [{"a": None}]}
    store.sync_findings([Finding("unowned", "low", "odd", "fp-odd", source="kb", evidence=odd)],
                        NOW + timedelta(hours=11))
    got = store.findings("open", kinds=["unowned"])[0].evidence
    assert math.isnan(got.pop("nan")) and got == {k: v for k, v in odd.items() if k != "nan"}


def _daemon_round_trip(store: Store) -> None:
    """The rest of the store: caches, scan ids, the scheduler state, the ledger and the outbox."""
    key = store.state_key()
    store.cache_put("graph:1", b"\x00blob")
    assert store.cache_get("graph:1") == b"\x00blob" and store.cache_get("graph:2") is None
    for n in range(2, 6):
        store.cache_put(f"graph:{n}", b"more", keep=2)
    assert store.cache_get("graph:1") is None and store.cache_get("graph:5") == b"more"
    scan_id = store.begin_scan(["crm"], trigger="daemon", now=NOW)
    first = store.record_result(scan_id, "crm", "fake", "ok", 0.2, NOW, snapshot=SNAPSHOT)
    second = store.record_result(scan_id, "crm", "fake", "ok", 0.2, NOW, snapshot=SNAPSHOT)
    assert store.state_key() != key
    assert store.recent_snapshot_ids(["crm", "nothing"])["crm"][:2] == [second, first]
    assert store.recent_snapshot_ids([]) == {}
    assert store.snapshots_by_id([first, second]) == {first: SNAPSHOT, second: SNAPSHOT}
    assert store.snapshot_history("crm", limit=1) == [SNAPSHOT]
    assert set(store.latest_results(["crm"])) == {"crm"} and store.latest_snapshots([]) == {}
    assert store.interrupt_scans("daemon", NOW - timedelta(minutes=1)) == 1
    assert store.mark_interrupted() == 0
    store.record_schedule("crm", schedule="every 1h", last_started_at=NOW, last_duration=0.2)
    store.record_schedule("crm", last_status="ok", last_scan_id=scan_id)
    state = store.schedule_states()["crm"]
    assert (state.schedule, state.last_started_at, state.last_status, state.last_scan_id) == (
        "every 1h", NOW, "ok", scan_id)
    with pytest.raises(ValueError, match="no column"):
        store.record_schedule("crm", **{"schedule = 'x'; --": 1})
    items = [PlannedNotification("fp1", "open", "high", 1, "opened", {"n": 1}),
             PlannedNotification("fp2", "open", "low", 1)]
    assert store.enqueue_notifications("hook", items, NOW) == 1
    assert set(store.notification_ledger("hook")) == {"fp1", "fp2"}
    pending = store.pending_notifications("hook")
    assert [(p.fingerprint, p.payload, p.attempts) for p in pending] == [("fp1", {"n": 1}, 0)]
    store.mark_notification(pending[0].id, delivered=False, error="down", now=NOW)
    store.mark_notification(pending[0].id, delivered=True, now=NOW)
    entry = store.outbox("hook")[0]
    assert (entry.status, entry.attempts, entry.last_error, entry.delivered_at) == ("delivered", 2, None, NOW)
    assert store.outbox_counts()["hook"] == {"delivered": 1}
    assert store.prune_outbox(NOW + timedelta(days=1), NOW) == (1, 0)


def test_round_trip_sqlite(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'nested' / 'state.db'}")
    _round_trip(store)
    _daemon_round_trip(store)


def test_round_trip_in_memory() -> None:
    store = Store.open("sqlite:///:memory:")
    _round_trip(store)
    _daemon_round_trip(store)


def test_round_trip_postgresql(pg_database: str) -> None:
    store = Store.open(pg_database)
    try:
        _round_trip(store)
        _daemon_round_trip(store)
        # Opening again is a no-op migration.
        assert Store.open(pg_database).schema_version() == SCHEMA_VERSION
    finally:
        store.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    Store.open(url)
    with closing(sqlite3.connect(tmp_path / "state.db")) as connection, connection:
        connection.execute("UPDATE ctxscan_meta SET value = '999' WHERE key = 'schema_version'")
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
    with closing(sqlite3.connect(tmp_path / "state.db")) as connection, connection:
        connection.execute("DROP INDEX ix_source_results_latest")
        connection.execute("UPDATE ctxscan_meta SET value = '3' WHERE key = 'schema_version'")
    reopened = Store.open(url)
    assert reopened.schema_version() == SCHEMA_VERSION
    with closing(sqlite3.connect(tmp_path / "state.db")) as connection:
        indexes = {row[1] for row in connection.execute("PRAGMA index_list(source_results)")}
    assert "ix_source_results_latest" in indexes
    assert reopened.latest_snapshots() == {"crm": SNAPSHOT}  # nothing stored was lost


def _schema(path: Path) -> dict[str, object]:
    """Each table's columns, primary key, foreign keys and indexes, as SQLite reports them."""
    with closing(sqlite3.connect(path)) as connection:
        tables = [row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {table: {
            "columns": connection.execute(f"PRAGMA table_info({table})").fetchall(),
            "foreign_keys": connection.execute(f"PRAGMA foreign_key_list({table})").fetchall(),
            "indexes": {row[1]: (row[2:], connection.execute(f"PRAGMA index_info({row[1]})").fetchall())
                        for row in connection.execute(f"PRAGMA index_list({table})")},
        } for table in tables}


def _fixture_store(path: Path) -> str:
    """A store as the SQLAlchemy-based ctxscan (schema 4) left it, with a few rows."""
    with closing(sqlite3.connect(path)) as connection:
        connection.executescript((FIXTURES / "store_v4.sql").read_text())
    return f"sqlite:///{path}"


def test_a_new_store_has_the_schema_earlier_versions_made(tmp_path: Path) -> None:
    _fixture_store(tmp_path / "old.db")
    Store.open(f"sqlite:///{tmp_path / 'new.db'}").close()
    old, new = _schema(tmp_path / "old.db"), _schema(tmp_path / "new.db")
    assert set(new) == {"ctxscan_meta", "scans", "source_results", "findings", "graph_cache",
                        "scheduler_state", "notify_ledger", "notify_outbox", "scan_owners", "lineage_edges",
                        "lineage_jobs"}
    # scan_owners is not versioned: every open creates it if missing (issue 12, kill -9); migration 5
    # adds the observed-lineage tables; the older ones stay exactly as they were.
    assert {table: new[table] for table in old} == old
    with closing(sqlite3.connect(tmp_path / "new.db")) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        connection.execute("INSERT INTO scans (started_at, status, \"trigger\", sources) "
                           "VALUES ('t', 's', 'c', '[]')")
        assert connection.execute("SELECT rowid, id FROM scans").fetchall() == [(1, 1)]  # id is the rowid


def test_a_store_made_by_an_earlier_version_opens_reads_and_writes(tmp_path: Path) -> None:
    store = Store.open(_fixture_store(tmp_path / "state.db"))
    assert store.schema_version() == SCHEMA_VERSION
    assert [(s.id, s.status, s.sources) for s in store.scans()] == [(1, "partial", ("crm", "kb"))]
    assert {r.source_id: r.status for r in store.results(1)} == {"crm": "ok", "kb": "failed"}
    assert store.latest_snapshots()["crm"].assets[0].path == "public.customers"
    assert [(f.fingerprint, f.first_seen, f.evidence) for f in store.findings()] == [("fp1", NOW, {"age": 5})]
    assert store.schedule_states()["crm"].next_run_at == NOW + timedelta(hours=1)
    assert [(m.id, m.status) for m in store.pending_notifications("t1")] == [(1, "pending")]
    scan_id = store.begin_scan(["crm"], now=NOW + timedelta(hours=1))
    assert scan_id == 2
    assert store.record_result(scan_id, "crm", "fake", "ok", 0.3, NOW, snapshot=SNAPSHOT) == 3
    changes = store.sync_findings([], NOW + timedelta(hours=1), scan_id)
    assert [f.fingerprint for f in changes.resolved] == ["fp1"]
    store.finish_scan(scan_id, "ok", NOW + timedelta(hours=1))
    store.close()
    reopened = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    assert reopened.latest_snapshots() == {"crm": SNAPSHOT} and reopened.findings() == []
    _daemon_round_trip(reopened)


# The store's work in a scan and in the daemon, in a process of its own: SQLAlchemy costs
# ~0.2 s to import, and a SQLite store must never pay it.
WITHOUT_SQLALCHEMY = """
import sys
from tests.test_store import _daemon_round_trip, _round_trip
from scanner.store import Store
store = Store.open(sys.argv[1])
_round_trip(store)
_daemon_round_trip(store)
store.close()
print(sorted(name for name in sys.modules if name.split(".")[0] == "sqlalchemy"))
"""


def test_a_sqlite_store_never_imports_sqlalchemy(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", WITHOUT_SQLALCHEMY, f"sqlite:///{tmp_path / 'state.db'}"],
                            capture_output=True, text=True, timeout=60, cwd=Path(__file__).parent.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_scan_and_a_query_on_sqlite_never_import_sqlalchemy(write_inventory, tmp_path: Path) -> None:
    path = write_inventory("version: 1\nsources: [{id: a, connector: fake, tables: [t1]}]\n")
    env = {key: value for key, value in os.environ.items() if key != "CTXSCAN_STATE"}
    for command in ("scan", "findings"):
        result = subprocess.run([sys.executable, "-X", "importtime", "-m", "scanner", command,
                                 "-c", str(path), "--state", f"sqlite:///{tmp_path / 'state.db'}"],
                                capture_output=True, text=True, env=env, timeout=60)
        assert result.returncode in (0, 1), result.stderr[-2000:]
        imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                    if line.startswith("import time:")}
        assert "sqlalchemy" not in imported, command


def test_errors_are_one_line_store_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="runs on SQLite or PostgreSQL; got mysql://u:\\*\\*\\*@h/db"):
        Store.open("mysql://u:s3cretpw@h/db")
    with pytest.raises(StoreError, match="invalid state store URL"):
        Store.open(f"sqlite:///{tmp_path / 'state.db'}?timeout=3")
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    with closing(sqlite3.connect(tmp_path / "state.db")) as connection:
        connection.execute("DROP TABLE findings")
    with pytest.raises(StoreError, match="no such table: findings") as raised:
        store.findings()
    assert "\n" not in str(raised.value)
    with pytest.raises(StoreError, match="cannot open the state store"):
        Store.open(f"sqlite:///{tmp_path / 'state.db' / 'below-a-file.db'}")
