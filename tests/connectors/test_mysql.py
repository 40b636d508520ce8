"""The `mysql` connector against the real local MariaDB (or MySQL).

Every test works in databases and with accounts and roles of its own (random suffixes),
created by tests.connectors.dbservers and dropped when the module ends.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from connectors._sqlcommon import probe_limits, qualified_path
from connectors.mysql import MysqlConnector, _connect, _Probe, parse_url
from scanner.access import access_levels, access_paths
from scanner.errors import ProbeError
from scanner.model import SourceSnapshot
from scanner.plugins import FreshnessConfig, ProbeContext, SourceConfig
from tests.connectors.contract import check_snapshot_contract
from tests.connectors.scan_support import scan_findings

if TYPE_CHECKING:
    from tests.connectors.dbservers import MysqlServer

# mysql_server, closed_port, hanging_server
pytest_plugins = ("tests.connectors.dbservers",)


def probe(url: str, *, column: str | None = None, include: tuple[str, ...] = (), exclude: tuple[str, ...] = (),
          principals: tuple[str, ...] = (), timeout: float = 60.0, owner_tag: str | None = None,
          secrets: tuple[str, ...] = (), **settings: Any) -> SourceSnapshot:
    """Probe with the connector and check the snapshot contract on the result."""
    source = SourceConfig(id="shop", connector="mysql", settings={"url": url, **settings}, include=include,
                          exclude=exclude, freshness=FreshnessConfig(column=column), owner_tag=owner_tag)
    context = ProbeContext(now=datetime.now(UTC), principals=frozenset(principals), timeout=timeout)
    snapshot = MysqlConnector(source).probe(context)
    check_snapshot_contract(snapshot, source, secrets)
    return snapshot


def probe_error(url: str, **kwargs: Any) -> tuple[ProbeError, float]:
    started = time.monotonic()
    with pytest.raises(ProbeError) as caught:
        probe(url, **kwargs)
    return caught.value, time.monotonic() - started


def q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


@pytest.fixture(scope="module")
def shop(mysql_server: MysqlServer) -> str:
    db = mysql_server.create_database()
    for statement in (
        f"CREATE TABLE {q(db)}.customers (id INT PRIMARY KEY, email VARCHAR(200) NOT NULL COMMENT 'primary contact',"
        " updated_at DATETIME(6)) COMMENT 'Customer master. owner=data-eng'",
        f"INSERT INTO {q(db)}.customers VALUES (1, 'a@x', '2024-05-01 10:00:00'), (2, 'b@x', '2024-05-02 11:30:00')",
        f"CREATE TABLE {q(db)}.orders (id BIGINT, total DECIMAL(10,2), created TIMESTAMP NULL) ENGINE=InnoDB",
        f"CREATE TABLE {q(db)}.events (id INT, at DATETIME) PARTITION BY HASH(id) PARTITIONS 3",
        f"INSERT INTO {q(db)}.events VALUES (1, NOW()), (2, NOW())",
        f"CREATE TABLE {q(db)}.tmp_scratch (x INT)",
        f"CREATE TABLE {q(db)}.log (line TEXT, updated_at VARCHAR(30)) ENGINE=MyISAM",
        f"CREATE VIEW {q(db)}.active AS SELECT id, email, updated_at FROM {q(db)}.customers",
        f"ANALYZE TABLE {q(db)}.customers, {q(db)}.events",
    ):
        mysql_server.execute(statement)
    return db


def test_tables_views_columns_and_estimates(mysql_server: MysqlServer, shop: str) -> None:
    snapshot = probe(mysql_server.url(shop), owner_tag="owner")
    assets = {a.path: a for a in snapshot.assets}
    assert set(assets) == {f"{shop}.{name}" for name in ("customers", "orders", "events", "tmp_scratch", "log",
                                                         "active")}
    customers = assets[f"{shop}.customers"]
    assert customers.kind == "table" and customers.container == shop
    assert [(c.name, c.type, c.nullable, c.comment) for c in customers.columns] == [
        ("id", "int(11)" if mysql_server.mariadb else "int", False, None),
        ("email", "varchar(200)", False, "primary contact"), ("updated_at", "datetime(6)", True, None)]
    assert customers.row_count == 2 and customers.size_bytes and customers.size_bytes > 0
    assert customers.properties == {"engine": "InnoDB", "comment": "Customer master. owner=data-eng"}
    assert customers.owner is not None and customers.owner.owner == "data-eng"
    assert assets[f"{shop}.events"].kind == "partitioned_table"
    assert assets[f"{shop}.active"].kind == "view" and assets[f"{shop}.active"].row_count is None
    assert assets[f"{shop}.log"].properties["engine"] == "MyISAM"


def test_include_exclude_and_every_database(mysql_server: MysqlServer, shop: str) -> None:
    other = mysql_server.create_database()
    mysql_server.execute(f"CREATE TABLE {q(other)}.t (x INT)")
    # No database in the URL: every user database, narrowed by the globs.
    snapshot = probe(mysql_server.url(), include=(f"{shop}.*", f"{other}.*"), exclude=("*.tmp_*",))
    paths = {a.path for a in snapshot.assets}
    assert f"{other}.t" in paths and f"{shop}.customers" in paths and f"{shop}.tmp_scratch" not in paths
    assert not any(p.startswith(("mysql.", "information_schema.", "performance_schema.", "sys.")) for p in paths)
    error, _ = probe_error(mysql_server.url(shop + "_missing"))
    assert error.reason in ("not_found", "access_denied")


def test_freshness_from_update_time_and_from_a_column(mysql_server: MysqlServer, shop: str) -> None:
    before = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=2)
    mysql_server.execute(f"INSERT INTO {q(shop)}.orders VALUES (1, 9.5, NOW())")
    snapshot = probe(mysql_server.url(shop))
    orders = snapshot.asset(f"{shop}.orders")
    assert orders is not None and orders.freshness.method == "metadata"
    assert orders.freshness.last_changed is not None and orders.freshness.last_changed >= before
    assert orders.freshness.caveat and "UPDATE_TIME" in orders.freshness.caveat
    scratch = snapshot.asset(f"{shop}.tmp_scratch")  # never written since the server started
    assert scratch is not None and scratch.freshness.method == "none"
    assert snapshot.asset(f"{shop}.active").freshness.method == "none"  # type: ignore[union-attr]

    by_column = probe(mysql_server.url(shop), column="updated_at")
    customers = by_column.asset(f"{shop}.customers")
    assert customers is not None and customers.freshness.method == "column"
    assert customers.freshness.last_changed == datetime(2024, 5, 2, 11, 30, tzinfo=UTC)
    active = by_column.asset(f"{shop}.active")  # a view has the column too
    assert active is not None and active.freshness.last_changed == datetime(2024, 5, 2, 11, 30, tzinfo=UTC)
    # log.updated_at is text: not a timestamp column, so UPDATE_TIME stays in charge.
    assert by_column.asset(f"{shop}.log").freshness.method in ("metadata", "none")  # type: ignore[union-attr]
    assert any("missing or not a timestamp" in note for note in by_column.notes)


def test_session_is_read_only_and_bounded(mysql_server: MysqlServer, shop: str) -> None:
    source = SourceConfig(id="shop", connector="mysql",
                          settings={"url": mysql_server.url(shop), "statement_timeout": 7, "lock_timeout": 2})
    context = ProbeContext(now=datetime.now(UTC), timeout=30)
    limits = probe_limits(source, context)
    conn = _connect(parse_url(mysql_server.url(shop)), limits)
    try:
        session = _Probe(source, context, conn, limits, parse_url(mysql_server.url(shop)))
        session._session(mysql_server.mariadb)
        read_only = "@@session.tx_read_only" if mysql_server.mariadb else "@@session.transaction_read_only"
        limit = "@@session.max_statement_time" if mysql_server.mariadb else "@@session.max_execution_time"
        row = session.fetch(f"SELECT {read_only}, {limit}, @@session.lock_wait_timeout, @@session.time_zone")[0]
        assert row[0] == 1 and float(row[1]) in (7.0, 7000.0) and row[2] == 2 and row[3] == "+00:00"
        with pytest.raises(Exception, match="READ ONLY"):
            session.fetch(f"INSERT INTO {q(shop)}.orders VALUES (99, 1, NULL)")
    finally:
        conn.close()


def test_empty_database(mysql_server: MysqlServer) -> None:
    db = mysql_server.create_database()
    snapshot = probe(mysql_server.url(db), column="updated_at")
    assert snapshot.assets == () and snapshot.reports_grants


def test_hostile_names(mysql_server: MysqlServer) -> None:
    tag = uuid.uuid4().hex[:8]
    dbs = [mysql_server.create_database(f"ctxscan h{tag}{suffix}") for suffix in ("'quo`te\"", ".dot", " ünï 表")]
    tables = ["ta`ble", "a.b", "order", "Ünï code", "sp ace's"]
    columns = ["se`l", "col.dot", "from", "ü ber", "up dated"]
    for i, db in enumerate(dbs):
        for j, table in enumerate(tables):
            mysql_server.execute(f"CREATE TABLE {q(db)}.{q(table)} (" + ", ".join(
                f"{q(c)} {'DATETIME' if c == 'up dated' else 'INT'}" for c in columns) + ")")
            mysql_server.execute(f"INSERT INTO {q(db)}.{q(table)} ({q('up dated')}) VALUES (%s)",
                                 (datetime(2024, 1, 1) + timedelta(hours=i * 10 + j),))
    include = tuple(qualified_path(db, "x")[:-1] + "*" for db in dbs)
    snapshot = probe(mysql_server.url(), column="up dated", include=include)
    assert len(snapshot.assets) == len(dbs) * len(tables)
    assert f'"ctxscan h{tag}.dot"."a.b"' in {a.path for a in snapshot.assets}
    for i, db in enumerate(dbs):
        for j, table in enumerate(tables):
            asset = next(a for a in snapshot.assets if a.container == db and a.path.endswith(
                table if "." not in table else '"a.b"'))
            assert [c.name for c in asset.columns] == columns
            assert asset.freshness.method == "column", asset
            assert asset.freshness.last_changed == datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=i * 10 + j)


def test_a_table_with_the_most_columns_innodb_allows(mysql_server: MysqlServer) -> None:
    db = mysql_server.create_database()
    mysql_server.execute(f"CREATE TABLE {q(db)}.wide (" + ", ".join(f"c{i} TINYINT" for i in range(1016))
                         + ", updated_at DATE) ENGINE=InnoDB ROW_FORMAT=DYNAMIC")
    snapshot = probe(mysql_server.url(db))
    (wide,) = snapshot.assets
    assert len(wide.columns) == 1017 and wide.columns[-1].name == "updated_at"


# ---------------------------------------------------------------------------------------
# Access paths


@pytest.fixture(scope="module")
def access(mysql_server: MysqlServer) -> dict[str, str]:
    s = mysql_server
    if not s.mariadb:
        pytest.fail("these role tests use MariaDB's roles and PUBLIC (the server here is MariaDB)")
    db = s.create_database()
    r: dict[str, str] = {"db": db}
    r["reader"] = s.create_role("reader")
    r["analysts"] = s.create_role("analysts")
    r["bot"] = s.create_user("bot", password="bot-pass-123")
    r["writer"] = s.create_user("writer", host="10.0.0.%")
    r["column_only"] = s.create_user("colonly", host="localhost")
    r["filer"] = s.create_user("filer")
    r["globalreader"] = s.create_user("globalreader")
    r["wildcard"] = s.create_user("wildcard")
    r["lead"] = s.create_user("lead")
    anonymous_host = f"{db}.invalid"
    r["anonymous"] = s.create_user("", host=anonymous_host, user="")
    bot_user, bot_host = r["bot"].split("@")
    for statement in (
        f"CREATE TABLE {q(db)}.customers (id INT, email TEXT, secret TEXT)",
        f"CREATE TABLE {q(db)}.tickets (id INT, body TEXT)",
        f"CREATE TABLE {q(db)}.kb (id INT, article TEXT)",
        f"GRANT SELECT ON {q(db)}.* TO {q(r['reader'])}",
        f"GRANT {q(r['reader'])} TO {q(r['analysts'])}",
        f"GRANT {q(r['analysts'])} TO '{bot_user}'@'{bot_host}'",
        f"SET DEFAULT ROLE {q(r['analysts'])} FOR '{bot_user}'@'{bot_host}'",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {q(db)}.tickets TO '{r['writer'].split('@')[0]}'@'10.0.0.%'",
        f"GRANT SELECT (id, email) ON {q(db)}.customers TO '{r['column_only'].split('@')[0]}'@'localhost'",
        f"GRANT SELECT ON {q(db)}.kb TO PUBLIC",
        f"GRANT FILE ON *.* TO '{r['filer'].split('@')[0]}'@'%'",
        f"GRANT SELECT ON *.* TO '{r['globalreader'].split('@')[0]}'@'%'",
        # `_` is a wildcard in a database-level GRANT: this covers our database too.
        f"GRANT SELECT ON `{db[:-3]}___`.* TO '{r['wildcard'].split('@')[0]}'@'%'",
        f"GRANT SELECT ON {q(db)}.tickets TO '{r['lead'].split('@')[0]}'@'%' WITH GRANT OPTION",
    ):
        s.execute(statement)
    return r


def levels(snapshot: SourceSnapshot, principal: str, path: str) -> set[str]:
    asset = snapshot.asset(path)
    assert asset is not None, path
    return access_levels(access_paths(snapshot, principal, asset)) - {"other"}


def test_accounts_roles_and_grants(mysql_server: MysqlServer, access: dict[str, str]) -> None:
    r = access
    db = r["db"]
    snapshot = probe(mysql_server.url(db), principals=(r["bot"], "support_bot"))
    grants = {(g.principal, g.privilege, g.target, g.scope, g.access, g.columns, g.public, g.via)
              for g in snapshot.grants}
    assert (r["reader"], "SELECT", db, "container", "read", (), False, f"GRANT SELECT ON {q(db)}.*") in grants
    assert (r["writer"], "DELETE", f"{db}.tickets", "asset", "write", (), False,
            f"GRANT DELETE ON {q(db)}.`tickets`") in grants
    assert (r["column_only"], "SELECT", f"{db}.customers", "column", "read", ("email", "id"), False,
            f"GRANT SELECT (email, id) ON {db}.customers") in grants
    assert ("PUBLIC", "SELECT", f"{db}.kb", "asset", "read", (), True, f"GRANT SELECT ON {q(db)}.`kb`") in grants
    # FILE makes the account privileged, but the server still checks table privileges
    assert (r["filer"], "FILE", "*", "source", "other", (), False, "GRANT FILE ON *.*") in grants
    assert (r["globalreader"], "SELECT", "*", "source", "read", (), False, "GRANT SELECT ON *.*") in grants
    assert (r["wildcard"], "SELECT", db, "container", "read", (), False, f"GRANT SELECT ON `{db[:-3]}___`.*") in grants
    assert (r["lead"], "GRANT OPTION", f"{db}.tickets", "asset", "other", (), False,
            f"GRANT USAGE ON {q(db)}.`tickets` WITH GRANT OPTION") in grants

    memberships = {(m.member, m.role, m.inherit) for m in snapshot.memberships}
    # bot's default role is active at login; the server merges reader's privileges into
    # analysts (and shadows database rows by the first match), so roles have no edges of their own.
    assert (r["bot"], r["analysts"], True) in memberships
    assert not [m for m in memberships if m[0] == r["analysts"]]
    assert (r["analysts"], "SELECT", db, "container", "read", (), False,
            f"GRANT SELECT ON {q(db)}.* TO {q(r['reader'])}") in grants
    principals = {p.name: p for p in snapshot.principals}
    assert principals[r["analysts"]].properties["granted_roles"] == [r["reader"]]
    assert principals[r["reader"]].kind == "role" and principals[r["bot"]].kind == "user"
    assert principals[r["bot"]].properties["any_host"] is True
    assert principals[r["bot"]].properties["default_role"] == r["analysts"]
    assert principals[r["writer"]].properties["host"] == "10.0.0.%"
    assert principals[r["filer"]].privileged and principals[r["filer"]].attributes == ("global_file",)
    assert not principals[r["globalreader"]].privileged
    root = next(p for name, p in principals.items() if name.startswith("root@"))
    assert root.privileged and "global_all" in root.attributes
    assert principals[r["anonymous"]].properties["anonymous"] is True
    assert any("anonymous account" in note for note in snapshot.notes)
    assert "PUBLIC" not in principals
    assert any("'support_bot' does not exist" in note and "user@host" in note for note in snapshot.notes)
    assert not any("bot-pass-123" in str(p.properties) for p in snapshot.principals)


def test_effective_access_follows_roles(mysql_server: MysqlServer, access: dict[str, str]) -> None:
    r = access
    db = r["db"]
    snapshot = probe(mysql_server.url(db))
    paths = access_paths(snapshot, r["bot"], snapshot.asset(f"{db}.customers"))  # type: ignore[arg-type]
    reads = [p for p in paths if p.privilege == "SELECT" and p.scope == "container"]
    assert reads and reads[0].chain == (r["bot"], r["analysts"]) and f"TO {q(r['reader'])}" in reads[0].via
    assert levels(snapshot, r["bot"], f"{db}.customers") == {"read"}
    assert levels(snapshot, r["writer"], f"{db}.tickets") == {"read", "write"}
    assert levels(snapshot, r["writer"], f"{db}.customers") == set()
    assert levels(snapshot, r["column_only"], f"{db}.kb") == {"read"}       # PUBLIC
    assert levels(snapshot, r["globalreader"], f"{db}.tickets") == {"read"}
    assert levels(snapshot, r["filer"], f"{db}.tickets") == set()   # privileged (a finding), no table access
    assert levels(snapshot, r["wildcard"], f"{db}.kb") == {"read"}
    assert levels(snapshot, r["lead"], f"{db}.tickets") == {"read"}


def test_access_is_resolved_as_the_server_does(mysql_server: MysqlServer) -> None:
    """The four rules issue 11 found broken, each against a literal case (the differential
    test checks the same on random estates)."""
    from scanner.access import LEVEL_SET_ROLE, access_report

    s = mysql_server
    prefix = f"srv{uuid.uuid4().hex[:6]}"
    d2, dx = s.create_database(f"{prefix}_d2"), s.create_database(f"{prefix}_dx")
    for db in (d2, dx):
        s.execute(f"CREATE TABLE {q(db)}.t (id INT)")
    user = f"{prefix}_u"
    anywhere, local = s.create_user("u", "%", user=user), s.create_user("u", "127.0.0.1", user=user)
    granter, alterer = s.create_user(f"{prefix}g"), s.create_user(f"{prefix}a")
    role = s.create_role(f"{prefix}r")
    for statement in (
        f"GRANT SELECT ON `{prefix}\\_d%`.* TO '{user}'@'%'",    # a wildcard row ...
        f"GRANT INSERT ON `{prefix}\\_d2`.* TO '{user}'@'%'",    # ... shadowed on d2 by the literal one
        f"GRANT USAGE ON *.* TO '{granter.split('@')[0]}'@'%' WITH GRANT OPTION",
        f"GRANT ALTER ON {q(dx)}.* TO '{alterer.split('@')[0]}'@'%'",
        f"GRANT SELECT ON {q(d2)}.* TO {q(role)}",
        f"GRANT {q(role)} TO '{user}'@'%'",                        # granted, not a default role
    ):
        s.execute(statement)
    snapshot = probe(s.url(), include=(f"{prefix}_*",))

    def report(principal: str, db: str):  # type: ignore[no-untyped-def]
        asset = snapshot.asset(f"{db}.t")
        assert asset is not None
        return access_report(snapshot, principal, asset)

    # The first matching mysql.db row rules: INSERT only on d2, SELECT on dx; and the account
    # on 127.0.0.1 uses the rows of the same user on '%'.
    for account in (anywhere, local):
        assert (report(account, d2).can_read, report(account, d2).can_write) == (False, True), account
        assert (report(account, dx).can_read, report(account, dx).can_write) == (True, False), account
        # the role is usable only after SET ROLE (and from 127.0.0.1 too: matched on user and host)
        assert {(m.role, m.inherit) for m in snapshot.memberships if m.member == account} == {(role, False)}
        assert report(account, d2).can("read", LEVEL_SET_ROLE)
        assert any(p.step == f"SET ROLE {role}" for p in report(account, d2).via_set_role)
    # GRANT OPTION on *.* passes on nothing it does not hold
    principals = {p.name: p for p in snapshot.principals}
    assert not principals[granter].privileged
    for db in (d2, dx):
        assert not report(granter, db).verdicts["escalation"]
    # ALTER changes the schema, not the data
    assert report(alterer, dx).can_alter and not report(alterer, dx).can_write


def test_an_account_without_the_grant_tables_sees_its_own_privileges(mysql_server: MysqlServer,
                                                                      access: dict[str, str]) -> None:
    r = access
    user = r["bot"].split("@")[0]
    snapshot = probe(mysql_server.url(r["db"], user=user, password="bot-pass-123"), secrets=("bot-pass-123",))
    assert any("cannot read the mysql grant tables" in note for note in snapshot.notes)
    assert {a.path for a in snapshot.assets} >= {f"{r['db']}.customers", f"{r['db']}.kb"}
    assert all(g.principal in (r["bot"], r["reader"], r["analysts"], "PUBLIC") for g in snapshot.grants)


def test_a_bare_user_name_resolves_to_its_one_account(mysql_server: MysqlServer, tmp_path: Path) -> None:
    """`runs_as: rev1_bot` (no @host) means the account rev1_bot@% when it is the only one."""
    s = mysql_server
    db = s.create_database()
    account = s.create_user("rev1bot")
    user, host = account.split("@")
    s.execute(f"CREATE TABLE {q(db)}.t (id INT)")
    s.execute(f"GRANT SELECT, INSERT ON {q(db)}.t TO %s@%s", (user, host))
    snapshot = probe(s.url(db), principals=(user,))
    assert snapshot.state["unknown_principals"] == []
    assert snapshot.state["resolved_principals"] == {user: account}
    assert any(f"{user!r}" in note and account in note for note in snapshot.notes)
    assert levels(snapshot, user, f"{db}.t") == {"read", "write"}
    paths = access_paths(snapshot, user, snapshot.asset(f"{db}.t"))  # type: ignore[arg-type]
    assert {p.chain for p in paths if p.privilege == "INSERT"} == {(user, account)}

    # Through the scan, the account's real write access is found rather than "no access".
    _, findings = scan_findings(tmp_path, "mysql", "shop", s.url(db), user, [f"{db}.t"])
    writes = [f for f in findings if f.kind == "over_permissioned" and f.subkind == "write_access"]
    assert len(writes) == 1 and writes[0].principal == user and account in writes[0].message
    assert not [f for f in findings if f.subkind == "unknown_principal"]


def test_an_ambiguous_or_missing_account_is_unknown(mysql_server: MysqlServer, tmp_path: Path) -> None:
    s = mysql_server
    db = s.create_database()
    s.execute(f"CREATE TABLE {q(db)}.t (id INT)")
    twice = f"twohost_{uuid.uuid4().hex[:10]}"
    first = s.create_user("unused", host="%", user=twice)
    second = s.create_user("unused", host="localhost", user=twice)
    missing = f"nobody_{uuid.uuid4().hex[:10]}"
    wrong_host = f"{twice}@10.9.8.7"
    snapshot = probe(s.url(db), principals=(twice, missing, wrong_host, "PUBLIC"))
    assert snapshot.state["unknown_principals"] == sorted([twice, missing, wrong_host])
    assert any(repr(wrong_host) in note and first in note for note in snapshot.notes)
    assert "resolved_principals" not in snapshot.state or not snapshot.state["resolved_principals"]
    ambiguous = [note for note in snapshot.notes if repr(twice) in note]
    assert len(ambiguous) == 1 and first in ambiguous[0] and second in ambiguous[0]
    assert any(repr(missing) in note and "does not exist" in note for note in snapshot.notes)

    stored, findings = scan_findings(tmp_path, "mysql", "shop", s.url(db), missing, [f"{db}.t"])
    assert stored.state["unknown_principals"] == [missing]
    unknown = [f for f in findings if f.kind == "over_permissioned" and f.subkind == "unknown_principal"]
    assert len(unknown) == 1 and unknown[0].principal == missing and unknown[0].severity == "high"
    assert "which source shop does not know: its access cannot be checked" in unknown[0].message


# ---------------------------------------------------------------------------------------
# Failures


def test_a_wrong_password_is_access_denied_and_never_in_the_message(mysql_server: MysqlServer,
                                                                       access: dict[str, str]) -> None:
    user = access["bot"].split("@")[0]
    error, _ = probe_error(mysql_server.url(access["db"], user=user, password="Wr0ng-Pa55word!"))
    assert error.reason == "access_denied" and not error.retryable
    assert "Access denied" in error.message
    assert "Wr0ng-Pa55word" not in error.message and "Wr0ng" not in error.message


def test_a_refused_connection_is_unreachable(closed_port: int) -> None:
    error, elapsed = probe_error(f"mysql://root:pw-xyz@127.0.0.1:{closed_port}/db")
    assert error.reason == "unreachable" and error.retryable and elapsed < 5
    assert "pw-xyz" not in error.message


def test_a_server_that_never_answers_times_out_within_the_budget(hanging_server: int) -> None:
    error, elapsed = probe_error(f"mysql://root@127.0.0.1:{hanging_server}/db", timeout=3)
    assert error.reason in ("timeout", "unreachable") and error.retryable
    assert elapsed < 4.5


def test_scan_through_the_cli(mysql_server: MysqlServer, shop: str, closed_port: int, tmp_path: Path,
                              ctxscan: Callable[..., Any]) -> None:
    inventory = tmp_path / "ctxscan.yaml"
    inventory.write_text(f"""
version: 1
owners: [{{id: data-eng}}]
sources:
  - id: shop
    connector: mysql
    url: {mysql_server.url(shop)}
    owner: data-eng
  - id: down
    connector: mysql
    url: mysql://bot:${{DOWN_PASSWORD}}@127.0.0.1:{closed_port}/shop
    owner: data-eng
workflows:
  - id: assistant
    owner: data-eng
    stage: poc
    reads: [{{asset: "shop:{shop}.customers"}}, {{asset: "down:shop.orders"}}]
""")
    env = {"DOWN_PASSWORD": "d0wn-pa55-xyz"}
    state = f"sqlite:///{tmp_path / 'state.db'}"
    result = ctxscan("-c", str(inventory), "--state", state, "scan", "--json", env=env)
    assert result.code == 1, result   # a source could not be probed (issue 18's exit-code contract)
    outcomes = {s["id"]: s for s in json.loads(result.out)["sources"]}
    assert outcomes["shop"]["status"] == "ok" and outcomes["shop"]["assets"] == 6
    assert outcomes["down"]["status"] == "failed" and outcomes["down"]["reason"] == "unreachable"
    findings = ctxscan("-c", str(inventory), "--state", state, "findings", "--json", env=env)
    assert {f["source"] for f in json.loads(findings.out) if f["kind"] == "probe_failed"} == {"down"}
    assert "d0wn-pa55-xyz" not in result.out + result.err + findings.out
