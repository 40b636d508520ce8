"""The `sqlite` connector against real SQLite files."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.sqlite import SqliteConnector
from scanner.errors import ProbeError
from scanner.plugins import FreshnessConfig, ProbeContext, SourceConfig
from tests.connectors.contract import check_snapshot_contract

NOW = datetime.now(UTC)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(f"""
            CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, updated_at TEXT);
            CREATE TABLE "select" ("from" TEXT, "we""ird col" INTEGER, updated_at TEXT);
            CREATE TABLE "tab le.with 'quotes' ü" (x INTEGER, updated_at INTEGER);
            CREATE TABLE empty (updated_at TEXT);
            CREATE VIEW recent AS SELECT * FROM customers;
            INSERT INTO customers VALUES (1, 'a', '{(NOW - timedelta(hours=3)).isoformat()}'),
                                         (2, 'b', '{(NOW - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")}');
            INSERT INTO "select" VALUES ('x', 1, '{(NOW - timedelta(days=4)).isoformat()}');
            INSERT INTO "tab le.with 'quotes' ü" VALUES (1, {int((NOW - timedelta(minutes=10)).timestamp())});
        """)
    old = (NOW - timedelta(days=2)).timestamp()
    os.utime(path, (old, old))
    return path


def _source(path: Path, column: str | None = None) -> SourceConfig:
    return SourceConfig(id="app", connector="sqlite", settings={"path": str(path)},
                        freshness=FreshnessConfig(column=column))


def test_contract(db: Path) -> None:
    source = _source(db, "updated_at")
    check_snapshot_contract(SqliteConnector(source).probe(ProbeContext(now=NOW)), source)


def test_tables_views_columns_counts(db: Path) -> None:
    snapshot = SqliteConnector(_source(db)).probe(ProbeContext(now=NOW))
    paths = {a.path: a for a in snapshot.assets}
    assert set(paths) == {"main.customers", "main.select", "main.tab le.with 'quotes' ü", "main.empty",
                          "main.recent"}
    customers = paths["main.customers"]
    assert customers.kind == "table" and customers.row_count == 2
    assert [(c.name, c.type, c.nullable) for c in customers.columns] == [
        ("id", "INTEGER", False), ("name", "TEXT", False), ("updated_at", "TEXT", True)]
    assert paths["main.recent"].kind == "view"
    assert [c.name for c in paths["main.select"].columns] == ["from", 'we"ird col', "updated_at"]
    assert snapshot.reports_grants is False


def test_mtime_freshness_with_caveat(db: Path) -> None:
    snapshot = SqliteConnector(_source(db)).probe(ProbeContext(now=NOW))
    for asset in snapshot.assets:
        assert asset.freshness.method == "metadata"
        assert asset.freshness.caveat and "mtime" in asset.freshness.caveat
        assert abs((NOW - asset.freshness.last_changed).total_seconds() - 2 * 86400) < 5


def test_column_freshness(db: Path) -> None:
    snapshot = SqliteConnector(_source(db, "updated_at")).probe(ProbeContext(now=NOW))
    customers = snapshot.asset("main.customers")
    assert customers is not None and customers.freshness.method == "column"
    assert abs((NOW - customers.freshness.last_changed).total_seconds() - 3600) < 5
    weird = snapshot.asset("main.tab le.with 'quotes' ü")
    assert weird is not None and abs((NOW - weird.freshness.last_changed).total_seconds() - 600) < 5
    empty = snapshot.asset("main.empty")
    assert empty is not None and empty.freshness.method == "none"


def test_read_only_never_changes_the_file(db: Path) -> None:
    before = hashlib.sha256(db.read_bytes()).hexdigest(), db.stat().st_mtime
    SqliteConnector(_source(db, "updated_at")).probe(ProbeContext(now=NOW))
    assert (hashlib.sha256(db.read_bytes()).hexdigest(), db.stat().st_mtime) == before
    assert not Path(str(db) + "-wal").exists()


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(ProbeError) as caught:
        SqliteConnector(_source(tmp_path / "none.db")).probe(ProbeContext(now=NOW))
    assert caught.value.reason == "not_found"
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ProbeError) as caught:
        SqliteConnector(_source(bad)).probe(ProbeContext(now=NOW))
    assert "not a database" in caught.value.message


def test_wal_mode_freshness_is_the_newest_of_the_file_and_its_wal(tmp_path: Path) -> None:
    # A writer in WAL mode commits into app.db-wal and leaves app.db alone until a
    # checkpoint: the row written just now must not read as two hours old (issue 13).
    path = tmp_path / "app.db"
    writer = sqlite3.connect(path)
    try:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("PRAGMA wal_autocheckpoint=0")  # keep the commit in the -wal file
        writer.execute("CREATE TABLE t (x INTEGER)")
        writer.commit()
        old = (NOW - timedelta(hours=2)).timestamp()
        os.utime(path, (old, old))
        writer.execute("INSERT INTO t VALUES (1)")
        writer.commit()
        wal = path.with_name("app.db-wal")
        assert wal.exists() and wal.stat().st_mtime > path.stat().st_mtime
        asset = next(a for a in SqliteConnector(_source(path)).probe(ProbeContext(now=NOW)).assets
                     if a.path == "main.t")
        assert asset.freshness.last_changed == datetime.fromtimestamp(wal.stat().st_mtime, UTC)
        assert (datetime.now(UTC) - asset.freshness.last_changed) < timedelta(minutes=1)
        assert asset.freshness.detail == "mtime of app.db-wal (write-ahead log, newer than app.db)"
    finally:
        writer.close()
    # Closed, the last connection checkpoints and removes the log: the main file is the evidence.
    asset = next(a for a in SqliteConnector(_source(path)).probe(ProbeContext(now=NOW)).assets if a.path == "main.t")
    assert asset.freshness.detail == "mtime of app.db"
    assert asset.freshness.last_changed == datetime.fromtimestamp(path.stat().st_mtime, UTC)
