"""The `sql` connector against real SQLite files, the local PostgreSQL and MariaDB."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from connectors.sql import NO_GRANTS_NOTE, SqlConnector
from scanner.errors import ProbeError
from scanner.model import SourceSnapshot
from scanner.plugins import FreshnessConfig, ProbeContext, SourceConfig
from tests.connectors.contract import check_snapshot_contract

if TYPE_CHECKING:
    from tests.connectors.dbservers import MysqlServer, PostgresServer

# postgres_server, mysql_server, closed_port, hanging_server
pytest_plugins = ("tests.connectors.dbservers",)

NOW = datetime.now(UTC).replace(microsecond=0)


def probe(url: str, *, column: str | None = None, include: tuple[str, ...] = (), exclude: tuple[str, ...] = (),
          timeout: float = 60.0, owner_tag: str | None = None, secrets: tuple[str, ...] = (),
          **settings: Any) -> SourceSnapshot:
    source = SourceConfig(id="any", connector="sql", settings={"url": url, **settings}, include=include,
                          exclude=exclude, freshness=FreshnessConfig(column=column), owner_tag=owner_tag)
    snapshot = SqlConnector(source).probe(ProbeContext(now=NOW, timeout=timeout))
    check_snapshot_contract(snapshot, source, secrets)
    return snapshot


def probe_error(url: str, **kwargs: Any) -> tuple[ProbeError, float]:
    started = time.monotonic()
    with pytest.raises(ProbeError) as caught:
        probe(url, **kwargs)
    return caught.value, time.monotonic() - started


@pytest.fixture
def helpdesk(tmp_path: Path) -> Path:
    path = tmp_path / "help desk's.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(f"""
            CREATE TABLE tickets (id INTEGER PRIMARY KEY, body TEXT NOT NULL, updated_at TEXT);
            CREATE TABLE "we""ird.tab le ü" ("se""l" TEXT, "from" INT, updated_at TIMESTAMP);
            CREATE TABLE "select" (x INT);
            CREATE TABLE epoch (updated_at INTEGER);
            CREATE TABLE empty (updated_at TEXT);
            CREATE VIEW open_tickets AS SELECT * FROM tickets;
            INSERT INTO tickets VALUES (1, 'a', '{(NOW - timedelta(hours=3)).isoformat()}'),
                                       (2, 'b', '{(NOW - timedelta(hours=1)).isoformat()}');
            INSERT INTO "we""ird.tab le ü" VALUES ('x', 1, '2024-02-03 04:05:06');  -- no zone: UTC
            INSERT INTO epoch VALUES ({int((NOW - timedelta(minutes=5)).timestamp())});
        """)
    return path


def test_sqlite_tables_views_columns_and_no_grants(helpdesk: Path) -> None:
    snapshot = probe(f"sqlite:///{helpdesk}")
    assets = {a.path: a for a in snapshot.assets}
    assert set(assets) == {"main.tickets", 'main."we""ird.tab le ü"', "main.select", "main.epoch", "main.empty",
                           "main.open_tickets"}
    tickets = assets["main.tickets"]
    assert tickets.kind == "table" and tickets.container == "main"
    # SQLite itself reports an INTEGER PRIMARY KEY (the rowid) as nullable.
    assert [(c.name, c.type, c.nullable) for c in tickets.columns] == [
        ("id", "INTEGER", True), ("body", "TEXT", False), ("updated_at", "TEXT", True)]
    assert assets["main.open_tickets"].kind == "view"
    assert [c.name for c in assets['main."we""ird.tab le ü"'].columns] == ['se"l', "from", "updated_at"]
    assert snapshot.reports_grants is False and snapshot.grants == () and snapshot.principals == ()
    assert NO_GRANTS_NOTE in snapshot.notes and "reports no grants" in NO_GRANTS_NOTE
    assert all(a.freshness.method == "none" for a in snapshot.assets)


def test_sqlite_column_freshness_in_every_storage_form(helpdesk: Path) -> None:
    snapshot = probe(f"sqlite:///{helpdesk}", column="updated_at", exclude=("main.open_*",))
    found = {a.path: a.freshness for a in snapshot.assets}
    assert found["main.tickets"].method == "column"
    assert found["main.tickets"].last_changed == NOW - timedelta(hours=1)
    weird = found['main."we""ird.tab le ü"']
    assert weird.last_changed == datetime(2024, 2, 3, 4, 5, 6, tzinfo=UTC) and "read as UTC" in (weird.caveat or "")
    assert found["main.epoch"].last_changed == NOW - timedelta(minutes=5)
    assert found["main.empty"].method == "none" and "no rows" in (found["main.empty"].detail or "")
    assert found["main.select"].method == "none"
    assert any("missing in 1 assets: main.select" in note for note in snapshot.notes)


def test_sqlite_is_opened_read_only_and_never_created(helpdesk: Path, tmp_path: Path) -> None:
    digest = hashlib.sha256(helpdesk.read_bytes()).hexdigest()
    probe(f"sqlite:///{helpdesk}", column="updated_at")
    assert hashlib.sha256(helpdesk.read_bytes()).hexdigest() == digest
    missing = tmp_path / "nope.db"
    error, _ = probe_error(f"sqlite:///{missing}")
    assert error.reason == "not_found" and not missing.exists()


def test_sqlite_empty_and_wide(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    assert probe(f"sqlite:///{empty}").assets == ()
    wide = tmp_path / "wide.db"
    with sqlite3.connect(wide) as conn:
        conn.execute("CREATE TABLE wide (" + ", ".join(f"c{i} INT" for i in range(1600)) + ")")
    (asset,) = probe(f"sqlite:///{wide}").assets
    assert len(asset.columns) == 1600


def test_postgres_through_sqlalchemy(postgres_server: PostgresServer) -> None:
    db = postgres_server.create_database()
    conn = postgres_server.connect(db)
    conn.execute("""
        CREATE SCHEMA "odd.schema";
        CREATE TABLE "odd.schema"."Ta""ble" (id int NOT NULL, updated_at timestamptz);
        COMMENT ON TABLE "odd.schema"."Ta""ble" IS 'owner=data-eng';
        INSERT INTO "odd.schema"."Ta""ble" VALUES (1, '2024-07-01 08:00Z');
        CREATE TABLE public.plain (updated_at timestamp);
        CREATE VIEW public.v AS SELECT * FROM public.plain;
        CREATE MATERIALIZED VIEW public.mv AS SELECT 1 AS one;
    """)
    # A bare postgresql:// URL gets the psycopg driver that ctxscan ships.
    for url in (f"postgresql+psycopg://{postgres_server.user}@127.0.0.1:{postgres_server.port}/{db}",
                f"postgresql://{postgres_server.user}@127.0.0.1:{postgres_server.port}/{db}"):
        snapshot = probe(url, column="updated_at", owner_tag="owner")
        assets = {a.path: a for a in snapshot.assets}
        assert set(assets) == {'"odd.schema"."Ta""ble"', "public.plain", "public.v", "public.mv"}
        odd = assets['"odd.schema"."Ta""ble"']
        assert odd.freshness.last_changed == datetime(2024, 7, 1, 8, tzinfo=UTC)
        assert odd.owner is not None and odd.owner.owner == "data-eng"
        assert [(c.name, c.nullable) for c in odd.columns] == [("id", False), ("updated_at", True)]
        assert assets["public.v"].kind == "view" and assets["public.mv"].kind == "materialized_view"
        assert assets["public.plain"].freshness.method == "none"
        assert snapshot.reports_grants is False


def test_mysql_through_sqlalchemy(mysql_server: MysqlServer) -> None:
    db = mysql_server.create_database()
    mysql_server.execute(f"CREATE TABLE `{db}`.t (id INT, updated_at DATETIME)")
    mysql_server.execute(f"INSERT INTO `{db}`.t VALUES (1, '2024-08-09 10:11:12')")
    snapshot = probe(mysql_server.url(db).replace("mysql://", "mysql+pymysql://"), column="updated_at",
                     schemas=[db])
    (asset,) = snapshot.assets
    assert asset.path == f"{db}.t" and asset.freshness.last_changed == datetime(2024, 8, 9, 10, 11, 12, tzinfo=UTC)


def test_failures_are_translated_and_redacted(closed_port: int, hanging_server: int,
                                              mysql_server: MysqlServer) -> None:
    error, elapsed = probe_error(f"postgresql+psycopg://bot:s3cret-pw@127.0.0.1:{closed_port}/db")
    assert error.reason == "unreachable" and error.retryable and elapsed < 5
    assert "s3cret-pw" not in error.message
    error, elapsed = probe_error(f"postgresql+psycopg://bot:s3cret-pw@127.0.0.1:{hanging_server}/db", timeout=3)
    assert error.reason == "timeout" and elapsed < 4.5
    error, _ = probe_error(mysql_server.url(None, user="ctxscan_nobody", password="Wr0ng-pa55"))
    assert error.reason == "access_denied" and "Wr0ng-pa55" not in error.message
    error, _ = probe_error("mssql+pyodbc://u:pw-123@127.0.0.1/db")
    assert error.reason == "error" and "driver" in error.message and "pw-123" not in error.message
    error, _ = probe_error("not a url")
    assert error.reason == "error"


def test_scan_through_the_cli(helpdesk: Path, tmp_path: Path, ctxscan: Callable[..., Any]) -> None:
    inventory = tmp_path / "ctxscan.yaml"
    inventory.write_text(f"""
version: 1
owners: [{{id: data-eng}}]
sources:
  - id: helpdesk
    connector: sql
    url: "sqlite:///{helpdesk}"
    owner: data-eng
    freshness: {{column: updated_at, max_age: 1d}}
workflows:
  - id: triage
    owner: data-eng
    stage: poc
    reads: [{{asset: "helpdesk:main.tickets"}}]
""")
    result = ctxscan("-c", str(inventory), "--state", f"sqlite:///{tmp_path / 'state.db'}", "scan", "--json")
    assert result.code == 0, result
    (source,) = json.loads(result.out)["sources"]
    assert source["status"] == "ok" and source["assets"] == 6
    assert any("reports no grants" in note for note in source["notes"])
