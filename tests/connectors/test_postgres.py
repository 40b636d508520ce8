"""The `postgres` connector against the real local PostgreSQL.

Every test works in its own database with its own roles (random suffixes), created by
tests.connectors.dbservers and dropped when the module ends.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from connectors._sqlcommon import probe_limits
from connectors.postgres import PostgresConnector, _connect
from scanner.access import access_levels, access_paths, access_report
from scanner.errors import ProbeError
from scanner.model import SourceSnapshot
from scanner.plugins import FreshnessConfig, ProbeContext, SourceConfig
from tests.connectors.contract import check_snapshot_contract
from tests.connectors.scan_support import scan_findings

if TYPE_CHECKING:
    from tests.connectors.dbservers import PostgresServer

# postgres_server, closed_port, hanging_server, postgres_password_rejecting_server
pytest_plugins = ("tests.connectors.dbservers",)


def probe(url: str, *, column: str | None = None, include: tuple[str, ...] = (), exclude: tuple[str, ...] = (),
          previous: SourceSnapshot | None = None, principals: tuple[str, ...] = (), timeout: float = 60.0,
          now: datetime | None = None, owner_tag: str | None = None, secrets: tuple[str, ...] = (),
          **settings: Any) -> SourceSnapshot:
    """Probe with the connector and check the snapshot contract on the result."""
    source = SourceConfig(id="crm", connector="postgres", settings={"url": url, **settings},
                          include=include, exclude=exclude, freshness=FreshnessConfig(column=column),
                          owner_tag=owner_tag)
    context = ProbeContext(now=now or datetime.now(UTC), previous=previous, principals=frozenset(principals),
                           timeout=timeout)
    snapshot = PostgresConnector(source).probe(context)
    check_snapshot_contract(snapshot, source, secrets)
    return snapshot


def probe_error(url: str, **kwargs: Any) -> tuple[ProbeError, float]:
    started = time.monotonic()
    with pytest.raises(ProbeError) as caught:
        probe(url, **kwargs)
    return caught.value, time.monotonic() - started


# ---------------------------------------------------------------------------------------
# Schema


@pytest.fixture(scope="module")
def shop(postgres_server: PostgresServer) -> str:
    """A database with every kind of relation, comments, estimates and an owner tag."""
    db = postgres_server.create_database()
    conn = postgres_server.connect(db)
    conn.execute(f'COMMENT ON DATABASE "{db}" IS \'CRM of record; owner=platform\'')
    conn.execute("""
        CREATE SCHEMA sales;
        COMMENT ON SCHEMA sales IS 'owner: sales-eng';
        CREATE TABLE sales.customers (
            id int PRIMARY KEY, email text NOT NULL, name text, updated_at timestamptz DEFAULT now());
        COMMENT ON TABLE sales.customers IS 'Customer master. owner=data-eng';
        COMMENT ON COLUMN sales.customers.email IS 'primary contact';
        INSERT INTO sales.customers SELECT g, 'c' || g || '@x', NULL, now() FROM generate_series(1, 100) g;
        CREATE TABLE sales.orders (id bigint, customer_id int, total numeric(10,2), created timestamp);
        CREATE TABLE sales.tmp_scratch (x int);
        CREATE TABLE sales.events (id int, at timestamptz NOT NULL) PARTITION BY RANGE (id);
        CREATE TABLE sales.events_1 PARTITION OF sales.events FOR VALUES FROM (0) TO (1000);
        CREATE TABLE sales.events_2 PARTITION OF sales.events FOR VALUES FROM (1000) TO (2000)
            PARTITION BY RANGE (id);
        CREATE TABLE sales.events_2a PARTITION OF sales.events_2 FOR VALUES FROM (1000) TO (1500);
        INSERT INTO sales.events SELECT g, now() FROM generate_series(1, 1400) g;
        CREATE VIEW sales.active AS SELECT id, email FROM sales.customers;
        CREATE MATERIALIZED VIEW sales.daily AS SELECT count(*) AS n FROM sales.customers;
        CREATE EXTENSION file_fdw;
        CREATE SERVER files FOREIGN DATA WRAPPER file_fdw;
        CREATE FOREIGN TABLE sales.feed (line text) SERVER files OPTIONS (filename '/dev/null');
        CREATE TABLE public.other (id int);
        ANALYZE;
    """)
    return db


def test_relations_columns_and_estimates(postgres_server: PostgresServer, shop: str) -> None:
    snapshot = probe(postgres_server.url(shop), owner_tag="owner")
    assets = {a.path: a for a in snapshot.assets}
    assert set(assets) == {"sales.customers", "sales.orders", "sales.tmp_scratch", "sales.events", "sales.active",
                           "sales.daily", "sales.feed", "public.other"}  # partitions roll up into the parent
    kinds = {path: a.kind for path, a in assets.items()}
    assert kinds["sales.customers"] == "table" and kinds["sales.events"] == "partitioned_table"
    assert kinds["sales.active"] == "view" and kinds["sales.daily"] == "materialized_view"
    assert kinds["sales.feed"] == "foreign_table"
    customers = assets["sales.customers"]
    assert customers.container == "sales"
    assert [(c.name, c.type, c.nullable, c.comment) for c in customers.columns] == [
        ("id", "integer", False, None), ("email", "text", False, "primary contact"),
        ("name", "text", True, None), ("updated_at", "timestamp with time zone", True, None)]
    assert [c.type for c in assets["sales.orders"].columns] == [
        "bigint", "integer", "numeric(10,2)", "timestamp without time zone"]
    assert customers.row_count == 100 and customers.size_bytes and customers.size_bytes >= 8192
    events = assets["sales.events"]
    assert events.row_count == 1400 and events.properties["partitions"] == 2  # two leaves, two levels
    assert assets["sales.active"].row_count is None
    assert customers.properties["owner_role"] == postgres_server.user
    assert customers.properties["comment"] == "Customer master. owner=data-eng"
    assert customers.properties["rls_enabled"] is False
    # Owners from comments: the table's own, else its schema's; the database's for the source.
    assert customers.owner is not None and customers.owner.owner == "data-eng"
    assert customers.owner.provenance == "comment:owner"
    assert assets["sales.orders"].owner is not None and assets["sales.orders"].owner.owner == "sales-eng"
    assert assets["public.other"].owner is None
    assert snapshot.owner is not None and snapshot.owner.owner == "platform"


def test_include_and_exclude_filter_by_schema_and_table(postgres_server: PostgresServer, shop: str) -> None:
    snapshot = probe(postgres_server.url(shop), include=("sales.*",), exclude=("sales.tmp_*", "*.daily"))
    assert {a.path for a in snapshot.assets} == {"sales.customers", "sales.orders", "sales.events",
                                                 "sales.active", "sales.feed"}
    assert all(g.target in ("*", "sales") or g.target.startswith("sales.") for g in snapshot.grants)


def test_session_is_read_only_bounded_and_named(postgres_server: PostgresServer, shop: str) -> None:
    source = SourceConfig(id="crm", connector="postgres",
                          settings={"url": postgres_server.url(shop), "statement_timeout": 7, "lock_timeout": 0.5})
    limits = probe_limits(source, ProbeContext(now=datetime.now(UTC), timeout=30))
    conn = _connect(postgres_server.url(shop), limits)
    try:
        settings = dict(conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('statement_timeout', 'lock_timeout',"
            " 'idle_in_transaction_session_timeout', 'default_transaction_read_only', 'application_name',"
            " 'TimeZone')").fetchall())
        assert settings == {"statement_timeout": "7000", "lock_timeout": "500",
                            "idle_in_transaction_session_timeout": "7000",
                            "default_transaction_read_only": "on", "application_name": "ctxscan",
                            "TimeZone": "UTC"}
        with pytest.raises(Exception, match="read-only transaction"):
            conn.execute("CREATE TABLE sales.nope (x int)")
    finally:
        conn.close()


def test_empty_database(postgres_server: PostgresServer) -> None:
    db = postgres_server.create_database()
    snapshot = probe(postgres_server.url(db), column="updated_at")
    assert snapshot.assets == ()
    assert snapshot.reports_grants is True
    assert snapshot.state["counters"] == {}


def test_a_table_with_1600_columns(postgres_server: PostgresServer) -> None:
    db = postgres_server.create_database()
    conn = postgres_server.connect(db)
    conn.execute("CREATE TABLE wide (" + ", ".join(f"c{i} int" for i in range(1599)) + ", updated_at date)")
    conn.execute("INSERT INTO wide (c0, updated_at) VALUES (1, '2024-03-01')")
    snapshot = probe(postgres_server.url(db), column="updated_at")
    (wide,) = snapshot.assets
    assert len(wide.columns) == 1600
    assert [c.name for c in wide.columns[:3]] == ["c0", "c1", "c2"] and wide.columns[-1].name == "updated_at"
    assert wide.freshness.method == "column"
    # A date is read as the end of its day (issue 12).
    assert wide.freshness.last_changed == datetime(2024, 3, 2, tzinfo=UTC) - timedelta(microseconds=1)


# ---------------------------------------------------------------------------------------
# Hostile names


HOSTILE_SCHEMAS = ['we"ird', "sp ace.dot", "ünï 表", "select"]
HOSTILE_TABLES = ['ta"ble', "a.b", "order", "Ünï code", " lead"]
HOSTILE_COLUMNS = ['se"l', "col.dot", "from", "ü ber", "UPPER"]


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def test_hostile_names(postgres_server: PostgresServer) -> None:
    db = postgres_server.create_database()
    conn = postgres_server.connect(db)
    for i, schema in enumerate(HOSTILE_SCHEMAS):
        conn.execute(f"CREATE SCHEMA {ident(schema)}")
        for j, table in enumerate(HOSTILE_TABLES):
            columns = ", ".join(f"{ident(c)} int" for c in HOSTILE_COLUMNS)
            conn.execute(f"CREATE TABLE {ident(schema)}.{ident(table)} ({columns}, {ident('up dated')} timestamptz)")
            conn.execute(f"INSERT INTO {ident(schema)}.{ident(table)} ({ident('up dated')}) "
                         f"VALUES (timestamptz '2024-01-01 00:00Z' + interval '{i * 10 + j} hours')")
            conn.execute(f"COMMENT ON TABLE {ident(schema)}.{ident(table)} IS 'it''s \"{table}\"'")
    # Two names that would both read `a.b.c` unquoted.
    conn.execute('CREATE SCHEMA "a"; CREATE TABLE "a"."b.c" (x int); CREATE SCHEMA "a.b"; CREATE TABLE "a.b"."c" (x int)')
    snapshot = probe(postgres_server.url(db), column="up dated")
    paths = {a.path for a in snapshot.assets}
    assert len(paths) == len(HOSTILE_SCHEMAS) * len(HOSTILE_TABLES) + 2
    assert {'a."b.c"', '"a.b".c'} <= paths
    assert '"we""ird"."ta""ble"' in paths and '"sp ace.dot"."a.b"' in paths and "select.order" in paths
    assert "ünï 表.Ünï code" in paths and "select. lead" in paths
    for i, schema in enumerate(HOSTILE_SCHEMAS):
        for j, _table in enumerate(HOSTILE_TABLES):
            asset = next(a for a in snapshot.assets if a.container == schema
                         and a.properties.get("comment") == f"it's \"{HOSTILE_TABLES[j]}\"")
            assert [c.name for c in asset.columns] == HOSTILE_COLUMNS + ["up dated"]
            assert asset.freshness.method == "column", asset
            assert asset.freshness.last_changed == datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=i * 10 + j)
    # Globs see the same paths.
    only = probe(postgres_server.url(db), include=('"sp ace.dot".*',), exclude=('*."a.b"',))
    assert {a.container for a in only.assets} == {"sp ace.dot"} and len(only.assets) == len(HOSTILE_TABLES) - 1


# ---------------------------------------------------------------------------------------
# Access paths


@pytest.fixture(scope="module")
def access(postgres_server: PostgresServer) -> dict[str, str]:
    """Roles in every shape the connector must report, and a database that grants to them."""
    s = postgres_server
    r = {name: s.role(name, options) for name, options in (
        ("reader", ""), ("analysts", ""), ("bot", "LOGIN"), ("writer", "LOGIN"), ("column_only", "LOGIN"),
        ("noinherit", "LOGIN NOINHERIT"), ("admin", "SUPERUSER"), ("rls_breaker", "BYPASSRLS"),
        ("role_maker", "CREATEROLE"), ("auditor", "LOGIN"), ("loader", "LOGIN"), ("lead", "LOGIN"),
        ("table_owner", ""))}
    db = s.create_database()
    r["db"] = db
    conn = s.connect(db)
    q = {k: ident(v) for k, v in r.items()}
    conn.execute(f"""
        CREATE SCHEMA app;
        CREATE TABLE app.customers (id int, email text, secret text);
        CREATE TABLE app.tickets (id int, body text);
        CREATE TABLE app.kb (id int, article text);
        CREATE TABLE app.owned (id int);
        ALTER TABLE app.owned OWNER TO {q['table_owner']};
        ALTER TABLE app.customers ENABLE ROW LEVEL SECURITY;
        CREATE POLICY mine ON app.customers USING (true);
        GRANT USAGE ON SCHEMA app TO {q['reader']};
        GRANT SELECT ON app.customers, app.tickets TO {q['reader']};
        GRANT {q['reader']} TO {q['analysts']};
        GRANT {q['analysts']} TO {q['bot']};
        GRANT {q['reader']} TO {q['noinherit']};
        GRANT SELECT, INSERT, UPDATE, DELETE ON app.tickets TO {q['writer']};
        GRANT SELECT (id, email) ON app.customers TO {q['column_only']};
        GRANT SELECT ON app.kb TO PUBLIC;
        GRANT SELECT ON app.tickets TO {q['lead']} WITH GRANT OPTION;
        GRANT pg_read_all_data TO {q['auditor']};
        GRANT pg_write_all_data TO {q['loader']};
        REVOKE TRUNCATE, TRIGGER ON app.kb FROM CURRENT_USER;
    """)
    return r


def levels(snapshot: SourceSnapshot, principal: str, path: str) -> set[str]:
    asset = snapshot.asset(path)
    assert asset is not None, path
    return access_levels(access_paths(snapshot, principal, asset)) - {"other"}


def test_grants_memberships_and_attributes(postgres_server: PostgresServer, access: dict[str, str]) -> None:
    r = access
    snapshot = probe(postgres_server.url(r["db"]), principals=(r["bot"], "nobody_here"))
    grants = set((g.principal, g.privilege, g.target, g.scope, g.access, g.columns, g.public, g.via)
                 for g in snapshot.grants)
    assert (r["reader"], "SELECT", "app.customers", "asset", "read", (), False,
            "GRANT SELECT ON app.customers") in grants
    assert (r["writer"], "INSERT", "app.tickets", "asset", "write", (), False, "GRANT INSERT ON app.tickets") in grants
    assert (r["writer"], "SELECT", "app.tickets", "asset", "read", (), False, "GRANT SELECT ON app.tickets") in grants
    assert (r["column_only"], "SELECT", "app.customers", "column", "read", ("id", "email"), False,
            "GRANT SELECT (id, email) ON app.customers") in grants
    assert ("PUBLIC", "SELECT", "app.kb", "asset", "read", (), True, "GRANT SELECT ON app.kb") in grants
    assert (r["reader"], "USAGE", "app", "container", "other", (), False, "GRANT USAGE ON SCHEMA app") in grants
    assert (r["lead"], "SELECT WITH GRANT OPTION", "app.tickets", "asset", "other", (), False,
            "GRANT SELECT ON app.tickets WITH GRANT OPTION") in grants
    assert ("pg_read_all_data", "SELECT", "*", "source", "read", (), False,
            "predefined role pg_read_all_data") in grants
    assert ("pg_write_all_data", "UPDATE", "*", "source", "write", (), False,
            "predefined role pg_write_all_data") in grants
    # The owner's implicit privileges (the default ACL) fold into its ownership.
    assert (r["table_owner"], "OWNER", "app.owned", "asset", "admin", (), False,
            "owner of app.owned (acl default: all privileges)") in grants
    assert (postgres_server.user, "OWNER", "app.customers", "asset", "admin", (), False,
            "owner of app.customers (acl: all privileges)") in grants
    # An owner missing some of its own privileges holds only those (and can alter the table).
    assert (postgres_server.user, "OWNER", "app.kb", "asset", "alter", (), False,
            "owner of app.kb (acl: SELECT, INSERT, UPDATE, DELETE, REFERENCES)") in grants
    assert (postgres_server.user, "SELECT", "app.kb", "asset", "read", (), False,
            "owner's own SELECT on app.kb") in grants
    assert not [g for g in snapshot.grants if g.target == "app.kb" and g.principal == postgres_server.user
                and g.privilege == "TRUNCATE"]
    assert not [g for g in snapshot.grants if g.principal == r["table_owner"] and g.privilege != "OWNER"]
    owned = snapshot.asset("app.owned")
    assert owned is not None and owned.properties["owner_role"] == r["table_owner"]
    customers = snapshot.asset("app.customers")
    assert customers is not None
    assert customers.properties["rls_enabled"] is True and customers.properties["rls_policies"] == 1

    memberships = {(m.member, m.role, m.inherit) for m in snapshot.memberships}
    assert {(r["analysts"], r["reader"], True), (r["bot"], r["analysts"], True),
            (r["noinherit"], r["reader"], False), (r["auditor"], "pg_read_all_data", True),
            (r["loader"], "pg_write_all_data", True)} <= memberships
    principals = {p.name: p for p in snapshot.principals}
    assert principals[r["admin"]].privileged and "superuser" in principals[r["admin"]].attributes
    assert principals[r["rls_breaker"]].privileged and principals[r["rls_breaker"]].attributes == ("bypassrls",)
    assert principals[r["role_maker"]].privileged and principals[r["role_maker"]].attributes == ("createrole",)
    assert not principals[r["bot"]].privileged and principals[r["bot"]].kind == "user"
    assert principals[r["reader"]].kind == "role"
    assert "pg_read_all_data" in principals
    assert snapshot.notes == ("runs_as principal 'nobody_here' does not exist in this source",)


def test_effective_access_follows_the_paths(postgres_server: PostgresServer, access: dict[str, str]) -> None:
    r = access
    snapshot = probe(postgres_server.url(r["db"]))
    # A two-level chain: bot -> analysts -> reader -> SELECT.
    paths = access_paths(snapshot, r["bot"], snapshot.asset("app.customers"))  # type: ignore[arg-type]
    reads = [p for p in paths if p.privilege == "SELECT" and p.scope == "asset"]
    assert reads and reads[0].chain == (r["bot"], r["analysts"], r["reader"])
    assert reads[0].via == "GRANT SELECT ON app.customers"
    assert levels(snapshot, r["bot"], "app.customers") == {"read"}
    assert "write" not in levels(snapshot, r["bot"], "app.tickets")
    assert levels(snapshot, r["bot"], "app.kb") == {"read"}                   # through PUBLIC
    assert "read" not in levels(snapshot, r["bot"], "app.owned")
    # NOINHERIT: the membership lends no privileges as itself, only after SET ROLE.
    assert levels(snapshot, r["noinherit"], "app.customers") == set()
    noinherit = access_report(snapshot, r["noinherit"], snapshot.asset("app.customers"))  # type: ignore[arg-type]
    assert noinherit.can("read", "via_set_role") and not noinherit.can_read
    assert [p.step for p in noinherit.via_set_role if p.privilege == "SELECT"] == [f"SET ROLE {r['reader']}"]
    # Table grants without USAGE on the schema give nothing; the paths say why.
    assert levels(snapshot, r["writer"], "app.tickets") == set()
    writer_paths = access_paths(snapshot, r["writer"], snapshot.asset("app.tickets"))  # type: ignore[arg-type]
    assert {p.privilege for p in writer_paths if p.blocked == "no USAGE on app"} == {
        "SELECT", "INSERT", "UPDATE", "DELETE"}
    # Column privileges are reported with their columns.
    column_paths = access_paths(snapshot, r["column_only"], snapshot.asset("app.customers"))  # type: ignore[arg-type]
    assert [p.columns for p in column_paths if p.scope == "column"] == [("id", "email")]
    # Predefined roles reach every table.
    assert levels(snapshot, r["auditor"], "app.owned") == {"read"}
    assert {"write"} <= levels(snapshot, r["loader"], "app.tickets")
    # A superuser can do everything; BYPASSRLS and CREATEROLE give no table access (issue 11),
    # CREATEROLE lets the role grant itself pg_write_all_data: escalation.
    assert {"read", "write", "admin"} <= levels(snapshot, r["admin"], "app.tickets")
    assert levels(snapshot, r["role_maker"], "app.kb") == set()
    assert levels(snapshot, r["rls_breaker"], "app.tickets") == set()
    maker = access_report(snapshot, r["role_maker"], snapshot.asset("app.tickets"))  # type: ignore[arg-type]
    assert not maker.can("write", "via_set_role") and maker.can("write", "escalation")
    assert "CREATEROLE: can grant itself pg_write_all_data" in {p.step for p in maker.escalation}
    # The owner can do everything to its table, and nothing to the others.
    # Owning a table in a schema it has no USAGE on gives nothing, not even by escalation.
    assert levels(snapshot, r["table_owner"], "app.owned") == set()
    owned = access_report(snapshot, r["table_owner"], snapshot.asset("app.owned"))  # type: ignore[arg-type]
    assert not owned.can("read", "escalation") and owned.effective[0].blocked == "no USAGE on app"
    assert "write" not in levels(snapshot, r["table_owner"], "app.tickets")


def test_grants_stay_bounded_but_keep_what_workflows_need(postgres_server: PostgresServer,
                                                          access: dict[str, str]) -> None:
    r = access
    snapshot = probe(postgres_server.url(r["db"]), principals=(r["bot"],), max_grants=10)
    table_grantees = {g.principal for g in snapshot.grants if g.scope in ("asset", "column")}
    assert table_grantees == {r["reader"], "PUBLIC"}  # bot's chain, and everyone
    assert levels(snapshot, r["bot"], "app.customers") == {"read"}
    assert any("left out to stay under 10 grants" in note for note in snapshot.notes)


def test_owning_a_schema_is_alter_not_read_or_write_on_its_tables(postgres_server: PostgresServer,
                                                             tmp_path: Path) -> None:
    """An app role that owns its database (so `public`, through pg_database_owner on 15+) and
    a schema of its own may drop the tables in them, but not read or change other roles' tables."""
    s = postgres_server
    app = s.role("app", "LOGIN")
    db = s.create_database(owner=app)
    conn = s.connect(db)
    conn.execute(f"""
        CREATE TABLE public.t2 (id int);
        CREATE SCHEMA mine AUTHORIZATION {ident(app)};
        CREATE TABLE mine.t3 (id int);
        CREATE TABLE public.own (id int);
        ALTER TABLE public.own OWNER TO {ident(app)};
    """)
    snapshot = probe(s.url(db), principals=(app,))
    # Owning the schema lets it drop the tables (alter, issue 11), not read or change their data.
    assert levels(snapshot, app, "public.t2") == {"alter"}
    assert levels(snapshot, app, "mine.t3") == {"alter"}
    assert levels(snapshot, app, "public.own") == {"read", "write", "alter", "admin"}  # owning the table still counts
    schema_owner = {(g.principal, g.target, g.access, g.privilege) for g in snapshot.grants
                    if g.scope == "container" and g.privilege.startswith("OWNER")}
    assert (app, "mine", "alter", "OWNER (schema: can drop objects in it)") in schema_owner
    public_owner = next(g for g in snapshot.grants if g.scope == "container" and g.target == "public"
                        and g.privilege.startswith("OWNER"))
    assert public_owner.access == "alter"
    # `why` shows the ownership path, as `alter`.
    paths = access_paths(snapshot, app, snapshot.asset("mine.t3"))  # type: ignore[arg-type]
    assert [(p.chain, p.access) for p in paths if p.privilege.startswith("OWNER")] == [((app,), "alter")]

    _, findings = scan_findings(tmp_path, "postgres", "pg", s.url(db), app, ["public.t2"])
    over = [f for f in findings if f.kind == "over_permissioned"]
    # Dropping a table is a change a read-only workflow does not need (issue 11: can_alter
    # counts as write_access): the schema owner may drop t2 and t3; it owns `own` outright.
    writes = {f.asset: f.message for f in over if f.subkind == "write_access"}
    assert set(writes) == {"pg:public.t2", "pg:mine.t3", "pg:public.own"}, over
    assert "only reads pg:public.t2, but its principal" in writes["pg:public.t2"]
    assert "can alter or drop it" in writes["pg:public.t2"] and "pg_database_owner" in writes["pg:public.t2"]
    assert "can change it" in writes["pg:public.own"]
    undeclared = [f for f in over if f.subkind == "undeclared_read"]
    assert [f.evidence["assets"] for f in undeclared] == [["public.own"]], undeclared


def test_an_unknown_runs_as_role_is_recorded_and_found(postgres_server: PostgresServer, access: dict[str, str],
                                                       tmp_path: Path) -> None:
    r = access
    typo = r["bot"] + "_typo"
    snapshot = probe(postgres_server.url(r["db"]), principals=(r["bot"], typo, "PUBLIC"))
    assert snapshot.state["unknown_principals"] == [typo]
    assert any(typo in note and "does not exist" in note for note in snapshot.notes)
    known = probe(postgres_server.url(r["db"]), principals=(r["bot"],))
    assert known.state["unknown_principals"] == []

    stored, findings = scan_findings(tmp_path, "postgres", "pg", postgres_server.url(r["db"]), typo, ["app.kb"])
    assert stored.state["unknown_principals"] == [typo]
    unknown = [f for f in findings if f.kind == "over_permissioned" and f.subkind == "unknown_principal"]
    assert len(unknown) == 1 and unknown[0].principal == typo and unknown[0].source == "pg"
    assert unknown[0].severity == "high"  # medium, raised for production
    assert "which source pg does not know" in unknown[0].message


# ---------------------------------------------------------------------------------------
# Freshness


def test_observed_freshness_across_scans_and_a_statistics_reset(postgres_server: PostgresServer) -> None:
    db = postgres_server.create_database()
    conn = postgres_server.connect(db)
    conn.execute("CREATE TABLE busy (x int); CREATE TABLE quiet (x int); CREATE VIEW v AS SELECT * FROM busy;"
                 "INSERT INTO quiet SELECT generate_series(1, 5)")
    postgres_server.wait_for_changes(conn, "quiet", 5)
    url = postgres_server.url(db)
    t0 = datetime.now(UTC)

    first = probe(url, now=t0)
    assert {a.path: a.freshness.method for a in first.assets} == {"public.busy": "none", "public.quiet": "none",
                                                                    "public.v": "none"}
    assert "first scan" in (first.asset("public.busy").freshness.detail or "")  # type: ignore[union-attr]
    assert "set freshness.column" in (first.asset("public.v").freshness.detail or "")  # type: ignore[union-attr]
    state = json.loads(json.dumps(first.state))
    assert state["counters"]["public.quiet"][1] == 5

    # Rows change in one table between two scans: that table is observed fresh, the other not.
    conn.execute("INSERT INTO busy VALUES (1), (2)")
    postgres_server.wait_for_changes(conn, "busy", 2)
    t1 = t0 + timedelta(minutes=15)
    second = probe(url, previous=first, now=t1)
    busy = second.asset("public.busy")
    assert busy is not None and busy.freshness.method == "observed"
    assert busy.freshness.last_changed == t1 and busy.freshness.changed_after == t0
    assert busy.freshness.caveat
    # quiet's counters held still since t0: its last change came before t0 (a lower bound).
    quiet = second.asset("public.quiet")
    assert quiet is not None and quiet.freshness.method == "observed" and quiet.freshness.lower_bound
    assert quiet.freshness.last_changed == t0 and quiet.freshness.changed_after is None

    # No change: the earlier observation is carried forward, not renewed; the bound keeps t0.
    t2 = t1 + timedelta(minutes=15)
    third = probe(url, previous=second, now=t2)
    assert third.asset("public.busy").freshness == busy.freshness  # type: ignore[union-attr]
    assert third.asset("public.quiet").freshness.last_changed == t0  # type: ignore[union-attr]

    # A statistics reset: busy is written again (more rows than before the reset) and quiet
    # gets exactly as many as it had; neither may count as a change or as no change.
    conn.execute("SELECT pg_stat_reset()")
    conn.execute("INSERT INTO busy SELECT generate_series(1, 10)")
    conn.execute("INSERT INTO quiet SELECT generate_series(1, 5)")
    postgres_server.wait_for_changes(conn, "busy", 10)
    postgres_server.wait_for_changes(conn, "quiet", 5)
    t3 = t2 + timedelta(minutes=15)
    fourth = probe(url, previous=third, now=t3)
    busy4 = fourth.asset("public.busy")
    assert busy4 is not None and busy4.freshness.method == "observed"
    assert busy4.freshness.last_changed == t1, "a reset must not renew the observation"
    assert "reset" in (busy4.freshness.caveat or "")
    quiet4 = fourth.asset("public.quiet")
    assert quiet4 is not None and quiet4.freshness.method == "none"
    assert "reset" in (quiet4.freshness.detail or "")
    assert any("statistics were reset" in note for note in fourth.notes)

    # After the reset, comparisons resume from the counters recorded by the fourth scan.
    conn.execute("UPDATE quiet SET x = x + 1")
    postgres_server.wait_for_changes(conn, "quiet", 15)
    t4 = t3 + timedelta(minutes=15)
    fifth = probe(url, previous=fourth, now=t4)
    quiet5 = fifth.asset("public.quiet")
    assert quiet5 is not None and quiet5.freshness.method == "observed"
    assert quiet5.freshness.changed_after == t3 and quiet5.freshness.last_changed == t4
    assert not any("reset" in note for note in fifth.notes)

    # A table dropped and created again under the same name is a change.
    conn.execute("DROP VIEW v; DROP TABLE busy; CREATE TABLE busy (x int)")
    t5 = t4 + timedelta(minutes=15)
    sixth = probe(url, previous=fifth, now=t5)
    assert sixth.asset("public.busy").freshness.method == "observed"  # type: ignore[union-attr]


def test_unchanged_counters_prove_staleness_and_a_reset_restarts_the_bound(
        postgres_server: PostgresServer, tmp_path: Path) -> None:
    # A loader that died: the table's counters never move. Scans at T0, T0+5d and T0+9d
    # (clock pinned) prove its last change came before T0, so past its 7d SLA it is stale.
    from scanner.inventory import load_inventory
    from scanner.rules import build_context, evaluate
    from scanner.scan import run_scan
    from scanner.store import Store

    db = postgres_server.create_database()
    conn = postgres_server.connect(db)
    conn.execute("CREATE TABLE idle (x int); INSERT INTO idle SELECT generate_series(1, 3)")
    postgres_server.wait_for_changes(conn, "idle", 3)
    config = tmp_path / "ctxscan.yaml"
    config.write_text(json.dumps({
        "version": 1,
        "sources": [{"id": "crm", "connector": "postgres", "url": postgres_server.url(db)}],
        "workflows": [{"id": "w", "stage": "production", "reads": [{"asset": "crm:public.idle", "max_age": "7d"}]}],
    }))
    inventory = load_inventory([config], env={})
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    t0 = datetime.now(UTC)

    def scan_at(moment: datetime) -> list[Any]:
        run_scan(inventory, store, now=lambda: moment)
        return [f for f in evaluate(build_context(inventory, store, moment))
                if f.kind in ("stale", "freshness_unknown")]

    try:
        first = scan_at(t0)
        assert [f.kind for f in first] == ["freshness_unknown"]  # nothing known yet
        at_5d = scan_at(t0 + timedelta(days=5))
        assert [f.kind for f in at_5d] == ["freshness_unknown"], at_5d  # at least 5d: within 7d, unproven
        assert "at least 5d old" in at_5d[0].message
        at_9d = scan_at(t0 + timedelta(days=9))
        assert [f.kind for f in at_9d] == ["stale"], at_9d
        assert "crm:public.idle unchanged for at least 9d, past its SLA of 7d" in at_9d[0].message
        assert at_9d[0].severity == "critical" and at_9d[0].evidence["last_changed"] == t0.isoformat()

        # A statistics reset: the counters prove nothing across it, so the bound restarts.
        conn.execute("SELECT pg_stat_reset()")
        t_reset = t0 + timedelta(days=10)
        after_reset = scan_at(t_reset)
        assert [f.kind for f in after_reset] == ["freshness_unknown"], after_reset
        later = scan_at(t0 + timedelta(days=12))
        assert [f.kind for f in later] == ["freshness_unknown"] and "at least 2d old" in later[0].message
        idle = build_context(inventory, store, t0 + timedelta(days=12)).snapshots["crm"].asset("public.idle")
        assert idle is not None and idle.freshness.last_changed == t_reset
    finally:
        store.close()


def test_column_freshness_with_partitions_views_and_gaps(postgres_server: PostgresServer, shop: str) -> None:
    snapshot = probe(postgres_server.url(shop), column="updated_at", include=("sales.*",))
    customers = snapshot.asset("sales.customers")
    assert customers is not None and customers.freshness.method == "column"
    assert customers.freshness.last_changed is not None
    assert abs((datetime.now(UTC) - customers.freshness.last_changed).total_seconds()) < 600
    active = snapshot.asset("sales.active")  # a view without the column
    assert active is not None and active.freshness.method == "none"
    assert any("missing or not a timestamp" in note for note in snapshot.notes)


def _lock_capacity(conn: Any) -> int:
    rows = dict(conn.execute(
        "SELECT name, setting::int FROM pg_settings WHERE name IN "
        "('max_locks_per_transaction', 'max_connections', 'max_prepared_transactions')").fetchall())
    return rows["max_locks_per_transaction"] * (rows["max_connections"] + rows["max_prepared_transactions"])


def test_batched_max_over_more_tables_than_one_transaction_can_lock(postgres_server: PostgresServer) -> None:
    """max(updated_at) over 2.5x as many relations as the server's lock table holds.

    Each table has two indexes, so one max() locks three relations; the test first shows that
    a single statement over all of them fails, then that the connector's batches succeed.
    """
    import psycopg

    db = postgres_server.create_database()
    conn = postgres_server.connect(db)
    capacity = _lock_capacity(conn)
    count = math.ceil(capacity * 2.5 / 3)

    errors: list[BaseException] = []

    def create(first: int, step: int) -> None:
        try:
            create_tables(first, step)
        except BaseException as exc:  # surfaced below, in the test's thread
            errors.append(exc)

    def create_tables(first: int, step: int) -> None:
        with psycopg.connect(postgres_server.url(db), autocommit=True) as own:
            own.execute("SET synchronous_commit = off")
            # 100 tables a transaction: the lock table is the server's, shared with whatever
            # else runs on it, and this setup must not be what exhausts it.
            for start in range(first, count, step):
                with own.transaction():
                    own.execute(";".join(
                        f"CREATE TABLE t{i} (id int PRIMARY KEY, updated_at timestamptz);"
                        f" CREATE INDEX ON t{i} (updated_at)" for i in range(start, min(count, start + 100))))

    workers = [threading.Thread(target=create, args=(first, 300)) for first in (0, 100, 200)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors, errors
    conn.execute("INSERT INTO t7 VALUES (1, '2024-06-01 12:00Z')")
    everything = " UNION ALL ".join(f"SELECT {i}, max(updated_at) FROM t{i}" for i in range(count))
    with pytest.raises(psycopg.errors.OutOfMemory, match="shared memory"):
        conn.execute(everything)

    snapshot = probe(postgres_server.url(db), column="updated_at")
    assert len(snapshot.assets) == count and not snapshot.partial
    methods = {a.path: a.freshness for a in snapshot.assets}
    assert methods["public.t7"].method == "column"
    assert methods["public.t7"].last_changed == datetime(2024, 6, 1, 12, tzinfo=UTC)
    empty = [f for path, f in methods.items() if path != "public.t7"]
    assert all(f.method == "none" and f.detail == "max(updated_at) is empty: no rows" for f in empty)


def test_a_locked_table_and_a_slow_view_are_skipped_not_waited_for(postgres_server: PostgresServer) -> None:
    db = postgres_server.create_database()
    conn = postgres_server.connect(db)
    conn.execute("""
        CREATE TABLE free (updated_at timestamptz); INSERT INTO free VALUES ('2024-01-01Z');
        CREATE TABLE held (updated_at timestamptz); INSERT INTO held VALUES ('2024-01-01Z');
        CREATE VIEW slow AS SELECT updated_at FROM free, pg_sleep(5);
    """)
    holder = postgres_server.connect(db)
    holder.autocommit = False
    holder.execute("LOCK TABLE held IN ACCESS EXCLUSIVE MODE")  # as a migration would
    try:
        started = time.monotonic()
        snapshot = probe(postgres_server.url(db), column="updated_at", lock_timeout=0.3, statement_timeout=1.5)
        elapsed = time.monotonic() - started
    finally:
        holder.rollback()
    found = {a.path: a.freshness for a in snapshot.assets}
    assert found["public.free"].method == "column"
    assert found["public.held"].method == "none" and "lock timeout" in (found["public.held"].detail or "")
    assert found["public.slow"].method == "none" and "statement timeout" in (found["public.slow"].detail or "")
    assert elapsed < 10
    assert any("failed for 2 assets" in note for note in snapshot.notes)


def test_a_scanning_role_without_select_gets_unknown_not_an_error(postgres_server: PostgresServer) -> None:
    db = postgres_server.create_database()
    scanner_role = postgres_server.role("scanner", "LOGIN")
    conn = postgres_server.connect(db)
    conn.execute(f"""
        CREATE TABLE open (updated_at timestamptz); INSERT INTO open VALUES ('2024-02-02Z');
        CREATE TABLE closed (updated_at timestamptz);
        CREATE TABLE partly (id int, updated_at timestamptz); INSERT INTO partly VALUES (1, '2024-03-03Z');
        GRANT SELECT ON open TO {ident(scanner_role)};
        GRANT SELECT (updated_at) ON partly TO {ident(scanner_role)};
    """)
    snapshot = probe(postgres_server.url(db, user=scanner_role), column="updated_at")
    found = {a.path: a.freshness for a in snapshot.assets}
    assert found["public.open"].last_changed == datetime(2024, 2, 2, tzinfo=UTC)
    assert found["public.partly"].last_changed == datetime(2024, 3, 3, tzinfo=UTC)
    assert found["public.closed"].method == "none" and "no SELECT privilege" in (found["public.closed"].detail or "")
    assert snapshot.grants  # catalogs are readable by every role


# ---------------------------------------------------------------------------------------
# Failures


def test_a_refused_connection_is_unreachable_and_retryable(closed_port: int) -> None:
    error, elapsed = probe_error(f"postgresql://postgres:pw@127.0.0.1:{closed_port}/db")
    assert error.reason == "unreachable" and error.retryable
    assert "pw@" not in error.message and elapsed < 5


def test_a_server_that_never_answers_times_out_within_the_budget(hanging_server: int) -> None:
    error, elapsed = probe_error(f"postgresql://postgres@127.0.0.1:{hanging_server}/db", timeout=3)
    assert error.reason == "timeout" and error.retryable
    assert elapsed < 4.5


def test_a_wrong_password_never_reaches_the_message(postgres_password_rejecting_server: int) -> None:
    """The local server trusts 127.0.0.1 (pg_hba.conf), so it accepts any password; this test
    injects the rejection with a minimal PostgreSQL front door that asks for the password,
    refuses it with FATAL 28P01 and, worse than a real server, repeats it in its message."""
    password = "S3cr3t-pa55/w@rd"
    url = f"postgresql://bot:{password.replace('/', '%2F').replace('@', '%40')}@127.0.0.1:" \
          f"{postgres_password_rejecting_server}/crm"
    error, _ = probe_error(url, timeout=10)
    assert error.reason == "access_denied" and not error.retryable
    assert "password authentication failed" in error.message
    assert password not in error.message and "S3cr3t" not in error.message, error.message


def test_real_server_refusals_keep_the_password_out(postgres_server: PostgresServer) -> None:
    nologin = postgres_server.role("nologin", "NOLOGIN PASSWORD 'hunter2-long'")
    db = postgres_server.create_database()
    error, _ = probe_error(postgres_server.url(db, user=nologin, password="hunter2-long"))
    assert error.reason == "access_denied" and "not permitted to log in" in error.message
    assert "hunter2" not in error.message
    error, _ = probe_error(postgres_server.url(db + "_missing", password="hunter2-long"))
    assert error.reason == "not_found" and "hunter2" not in error.message
    error, _ = probe_error(postgres_server.url(db, user="ctxscan_no_such_role_x", password="hunter2-long"))
    assert error.reason == "access_denied" and "hunter2" not in error.message


def test_a_cancelled_probe_stops(postgres_server: PostgresServer, shop: str) -> None:
    source = SourceConfig(id="crm", connector="postgres", settings={"url": postgres_server.url(shop)})
    context = ProbeContext(now=datetime.now(UTC))
    context.cancelled.set()
    with pytest.raises(ProbeError) as caught:
        PostgresConnector(source).probe(context)
    assert caught.value.reason == "timeout"


# ---------------------------------------------------------------------------------------
# Through the scan and the CLI


def test_scan_marks_failing_sources_probe_failed_and_completes_the_others(
        postgres_server: PostgresServer, shop: str, closed_port: int, hanging_server: int, tmp_path: Path,
        ctxscan: Callable[..., Any]) -> None:
    inventory = tmp_path / "ctxscan.yaml"
    inventory.write_text(f"""
version: 1
owners: [{{id: data-eng}}]
sources:
  - id: crm
    connector: postgres
    url: {postgres_server.url(shop)}
    owner: data-eng
    include: ["sales.*"]
  - id: refused
    connector: postgres
    url: postgresql://bot:${{REFUSED_PASSWORD}}@127.0.0.1:{closed_port}/crm
    owner: data-eng
  - id: hangs
    connector: postgres
    url: postgresql://bot:${{REFUSED_PASSWORD}}@127.0.0.1:{hanging_server}/crm
    owner: data-eng
    timeout: 4s
workflows:
  - id: assistant
    owner: data-eng
    stage: pilot
    runs_as: {{crm: {postgres_server.user}}}
    reads: [{{asset: "crm:sales.customers"}}, {{asset: "refused:public.x"}}, {{asset: "hangs:public.y"}}]
""")
    env = {"REFUSED_PASSWORD": "pa55-w0rd-xyz"}
    state = f"sqlite:///{tmp_path / 'state.db'}"
    started = time.monotonic()
    result = ctxscan("-c", str(inventory), "--state", state, "scan", "--json", env=env)
    assert time.monotonic() - started < 30
    # Two sources could not be probed: the scan says so with exit 1 (and still completes).
    assert result.code == 1 and "2 sources could not be probed" in result.err, result
    report = json.loads(result.out)
    outcomes = {s["id"]: s for s in report["sources"]}
    assert outcomes["crm"]["status"] == "ok" and outcomes["crm"]["assets"] == 7
    assert outcomes["refused"]["status"] == "failed" and outcomes["refused"]["reason"] == "unreachable"
    assert outcomes["hangs"]["status"] in ("failed", "timeout") and outcomes["hangs"]["reason"] == "timeout"
    findings = ctxscan("-c", str(inventory), "--state", state, "findings", "--json", env=env)
    assert findings.code == 0, findings
    failed = {f["source"] for f in json.loads(findings.out) if f["kind"] == "probe_failed"}
    assert failed == {"refused", "hangs"}
    everything = result.out + result.err + findings.out + findings.err + (tmp_path / "state.db").read_bytes().decode(
        "utf-8", "replace")
    assert "pa55-w0rd-xyz" not in everything


def test_the_probe_does_not_block_a_writer(postgres_server: PostgresServer) -> None:
    """While max() batches run, a concurrent writer's inserts proceed (AccessShareLock only)."""
    db = postgres_server.create_database()
    conn = postgres_server.connect(db)
    conn.execute("CREATE TABLE feed (updated_at timestamptz); "
                 "CREATE VIEW slow AS SELECT updated_at FROM feed, pg_sleep(1.5)")
    writer = postgres_server.connect(db)
    timings: list[float] = []

    def write() -> None:
        time.sleep(0.5)  # while the probe sits in max() over the slow view
        started = time.monotonic()
        writer.execute("INSERT INTO feed VALUES (now())")
        timings.append(time.monotonic() - started)

    thread = threading.Thread(target=write)
    thread.start()
    probe(postgres_server.url(db), column="updated_at", statement_timeout=5)
    thread.join()
    assert timings and timings[0] < 0.5


def test_findings_follow_the_three_access_levels(postgres_server: PostgresServer, tmp_path: Path) -> None:
    """Issue 11: SET ROLE access is write_access, escalation is privileged_principal, and a
    PUBLIC grant in a schema PUBLIC cannot use is not public_access."""
    s = postgres_server
    bot = s.role("bot", "LOGIN NOINHERIT")
    truncater = s.role("truncater")
    superuser = s.role("su", "SUPERUSER")
    maker = s.role("maker", "LOGIN CREATEROLE")
    owner = s.role("owner", "LOGIN")
    db = s.create_database()
    s.connect(db).execute(f"""
        CREATE SCHEMA app;
        CREATE SCHEMA closed;
        CREATE TABLE app.tickets (id int);
        CREATE TABLE app.mine (id int);
        CREATE TABLE closed.kb (id int);
        GRANT USAGE ON SCHEMA app TO {ident(bot)}, {ident(truncater)}, {ident(owner)};
        GRANT SELECT ON app.tickets TO {ident(bot)};
        GRANT TRUNCATE ON app.tickets TO {ident(truncater)};
        GRANT {ident(truncater)} TO {ident(bot)};
        GRANT SELECT ON closed.kb TO PUBLIC;
        ALTER TABLE app.mine OWNER TO {ident(owner)};
        REVOKE ALL ON app.mine FROM {ident(owner)};
    """)
    url = s.url(db)

    def over(principal: str, reads: list[str], name: str) -> dict[str, list[Any]]:
        folder = tmp_path / name
        folder.mkdir()
        _, findings = scan_findings(folder, "postgres", "pg", url, principal, reads)
        found: dict[str, list[Any]] = {}
        for f in findings:
            if f.kind == "over_permissioned":
                found.setdefault(f.subkind or "", []).append(f)
        return found

    # NOINHERIT member of a TRUNCATE role: as itself only SELECT, after SET ROLE it truncates.
    found = over(bot, ["app.tickets", "closed.kb"], "bot")
    [write] = found["write_access"]
    assert write.asset == "pg:app.tickets" and write.evidence["levels"] == ["via_set_role"]
    assert f"after SET ROLE {truncater}" in write.message and write.evidence["privileges"] == ["TRUNCATE"]
    assert "public_access" not in found and "privileged_principal" not in found  # no PUBLIC USAGE on closed

    # A member of a superuser role is superuser after SET ROLE, by escalation of nothing else.
    s.admin.execute(f"GRANT {ident(superuser)} TO {ident(bot)}")
    found = over(bot, ["app.tickets"], "bot_su")
    [privileged] = found["privileged_principal"]
    assert f"privileged (superuser) after SET ROLE {superuser}" in privileged.message
    assert privileged.evidence["level"] == "via_set_role"
    assert "write_access" in found  # its own TRUNCATE after SET ROLE still counts, apart from superuser

    # CREATEROLE grants no table access; it can grant itself pg_write_all_data: escalation.
    found = over(maker, ["app.tickets"], "maker")
    [privileged] = found["privileged_principal"]
    assert "privileged (createrole)" in privileged.message
    steps = {r["reason"] for r in privileged.evidence["reasons"]}
    assert "CREATEROLE: can grant itself pg_write_all_data" in steps
    assert "write_access" not in found and "undeclared_read" not in found

    # An owner after REVOKE ALL reads nothing, but can grant itself back: escalation.
    found = over(owner, ["app.tickets"], "owner")
    [privileged] = found["privileged_principal"]
    assert "could grant itself more (app.mine: owner of app.mine: can grant itself every privilege" in \
        privileged.message
    assert "undeclared_read" not in found
    assert [f.asset for f in found["write_access"]] == ["pg:app.mine"]  # it may still ALTER and DROP it
    assert "can alter or drop it" in found["write_access"][0].message
