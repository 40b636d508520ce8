"""Incremental MariaDB rescans on the real server: a rescan whose tables all keep their
CREATE_TIME reuses the previous columns, every kind of change to a table's definition makes
it read information_schema.COLUMNS again, and the incremental answer equals a full read's."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.mysql import MysqlConnector
from scanner.model import SourceSnapshot
from scanner.plugins import ProbeContext, SourceConfig
from tests.connectors.dbservers import MysqlServer, mysql_server  # noqa: F401 (a fixture)

# Each change runs in a database of its own, all probed together: (statement, read again?).
CHANGES: dict[str, tuple[str | None, bool]] = {
    "nothing": (None, False),
    "column added (instant)": ("ALTER TABLE t ADD COLUMN extra int, ALGORITHM=INSTANT", True),
    "type changed": ("ALTER TABLE t MODIFY c bigint COMMENT 'the c'", True),
    "column comment": ("ALTER TABLE t MODIFY c int COMMENT 'changed'", True),
    "table comment": ("ALTER TABLE t COMMENT = 'owner: team-b'", True),
    "column renamed": ("ALTER TABLE t RENAME COLUMN note TO remark", True),
    "column dropped": ("ALTER TABLE t DROP COLUMN note", True),
    "nullability": ("ALTER TABLE t MODIFY c int NOT NULL COMMENT 'the c'", True),
    "default": ("ALTER TABLE t ALTER COLUMN c SET DEFAULT 7", True),
    "index added": ("ALTER TABLE t ADD INDEX by_c (c)", True),
    "table dropped": ("DROP TABLE u", True),
    "table created": ("CREATE TABLE n (id int)", True),
    "table renamed": ("RENAME TABLE u TO u2", True),
    # TRUNCATE keeps the definition (and CREATE_TIME): nothing the catalog holds changed.
    "truncated": ("TRUNCATE TABLE t", False),
    # A view has no CREATE_TIME: its columns are read on every scan, the tables' are reused.
    "view redefined": ("CREATE OR REPLACE VIEW v AS SELECT id, c FROM t", False),
    # Grants are read on every scan, and they are part of the key: the scanning account's
    # privileges decide which columns information_schema shows it.
    "grant": ("GRANT SELECT (c) ON t TO {account}", True),
}

NOT_IN_SNAPSHOT = {"default", "index added", "grant"}
# Changes that leave every remaining table's CREATE_TIME as it was.
KEEP_CREATE_TIME = {"table dropped", "grant"}


def _probe(url: str, previous: SourceSnapshot | None) -> SourceSnapshot:
    source = SourceConfig(id="db", connector="mysql", settings={"url": url})
    return MysqlConnector(source).probe(ProbeContext(now=datetime.now(UTC), previous=previous, timeout=60))


def _catalog(snapshot: SourceSnapshot) -> list[tuple[Any, ...]]:
    return sorted((a.path, a.kind, a.container, a.columns, dict(a.properties), a.owner) for a in snapshot.assets)


def _grants(snapshot: SourceSnapshot) -> set[tuple[Any, ...]]:
    return {(g.principal, g.privilege, g.target, g.scope, tuple(g.columns or ())) for g in snapshot.grants}


def test_unchanged_tables_reuse_their_columns_and_every_change_reads_them_again(mysql_server: MysqlServer) -> None:  # noqa: F811
    if not mysql_server.mariadb:
        pytest.skip("the CREATE_TIME fingerprint is used on MariaDB only")
    account = mysql_server.create_user("ctxscan_rescan")
    user, host = account.split("@")
    databases = {}
    for name in CHANGES:
        db = mysql_server.create_database()
        databases[name] = db
        for statement in ("CREATE TABLE t (id int PRIMARY KEY, c int COMMENT 'the c', note varchar(20))"
                          " COMMENT = 'owner: team-a'",
                          "CREATE TABLE u (id int)", "CREATE VIEW v AS SELECT id FROM t",
                          "INSERT INTO t VALUES (1, 1, 'a'), (2, 2, 'b')"):
            mysql_server.execute(f"USE `{db}`")
            mysql_server.execute(statement)
    urls = {name: mysql_server.url(db) for name, db in databases.items()}
    time.sleep(2.2)  # past CREATE_TIME's one-second resolution: the tables' key is settled

    first = {name: _probe(url, None) for name, url in urls.items()}
    for name, snapshot in first.items():
        assert snapshot.state.get("catalog_key") and snapshot.state.get("catalog_read") is None, name
    again = {name: _probe(url, first[name]) for name, url in urls.items()}
    for name, snapshot in again.items():
        assert snapshot.state.get("catalog_read") == "reused", name
        assert _catalog(snapshot) == _catalog(first[name]) and _grants(snapshot) == _grants(first[name]), name
        assert snapshot.state["catalog_key"] == first[name].state["catalog_key"]

    for name, (statement, _) in CHANGES.items():
        if statement:
            mysql_server.execute(f"USE `{databases[name]}`")
            mysql_server.execute(statement.format(account=f"'{user}'@'{host}'"))
    after = {name: _probe(url, again[name]) for name, url in urls.items()}
    full = {name: _probe(url, None) for name, url in urls.items()}
    for name, (_, read_again) in CHANGES.items():
        snapshot = after[name]
        # The incremental answer is the full read's, whatever changed.
        assert _catalog(snapshot) == _catalog(full[name]), name
        assert _grants(snapshot) == _grants(full[name]), name
        if read_again:
            assert snapshot.state.get("catalog_read") is None, name
            # A default, an index or a grant is not in the catalog; the rest shows.
            assert (_catalog(snapshot) != _catalog(first[name])) == (name not in NOT_IN_SNAPSHOT), name
            assert snapshot.state.get("catalog_key") != again[name].state["catalog_key"], name
            # A table defined within the last two seconds: no key, so the next scan reads it all
            # again.
            assert (snapshot.state.get("catalog_key") is None) == (name not in KEEP_CREATE_TIME), name
        else:
            assert snapshot.state.get("catalog_read") == "reused", name
    by_path = {name: {a.path: a for a in after[name].assets} for name in CHANGES}
    db = databases
    assert [c.name for c in by_path["column added (instant)"][f"{db['column added (instant)']}.t"].columns][-1] == "extra"
    assert by_path["type changed"][f"{db['type changed']}.t"].columns[1].type == "bigint(20)"
    assert by_path["column comment"][f"{db['column comment']}.t"].columns[1].comment == "changed"
    assert by_path["table comment"][f"{db['table comment']}.t"].properties["comment"] == "owner: team-b"
    assert "remark" in [c.name for c in by_path["column renamed"][f"{db['column renamed']}.t"].columns]
    assert [c.name for c in by_path["column dropped"][f"{db['column dropped']}.t"].columns] == ["id", "c"]
    assert by_path["nullability"][f"{db['nullability']}.t"].columns[1].nullable is False
    assert f"{db['table dropped']}.u" not in by_path["table dropped"]
    assert f"{db['table created']}.n" in by_path["table created"]
    assert f"{db['table renamed']}.u2" in by_path["table renamed"]
    assert f"{db['table renamed']}.u" not in by_path["table renamed"]
    assert [c.name for c in by_path["view redefined"][f"{db['view redefined']}.v"].columns] == ["id", "c"]
    assert (f"{user}@{host}", "SELECT", f"{db['grant']}.t", "column", ("c",)) in _grants(after["grant"])

    # Once the changes are two seconds old, a scan reads everything and keeps a key again,
    # and the scan after it reuses that.
    time.sleep(2.2)
    settled = {name: _probe(urls[name], after[name]) for name in CHANGES if not after[name].state.get("catalog_key")}
    assert len(settled) == sum(read_again for _, read_again in CHANGES.values()) - len(KEEP_CREATE_TIME)
    for name, snapshot in settled.items():
        assert snapshot.state.get("catalog_read") is None and snapshot.state.get("catalog_key"), name
        reused = _probe(urls[name], snapshot)
        assert reused.state.get("catalog_read") == "reused", name
        assert _catalog(reused) == _catalog(snapshot), name


def test_a_previous_snapshot_that_left_tables_out_is_not_reused(mysql_server: MysqlServer) -> None:  # noqa: F811
    if not mysql_server.mariadb:
        pytest.skip("the CREATE_TIME fingerprint is used on MariaDB only")
    db = mysql_server.create_database()
    mysql_server.execute(f"USE `{db}`")
    mysql_server.execute("CREATE TABLE a (id int)")
    mysql_server.execute("CREATE TABLE b (x int, y int)")
    time.sleep(2.2)
    url = mysql_server.url(db)
    narrow = SourceConfig(id="db", connector="mysql", settings={"url": url}, include=(f"{db}.a",))
    only_a = MysqlConnector(narrow).probe(ProbeContext(now=datetime.now(UTC), timeout=60))
    assert [a.path for a in only_a.assets] == [f"{db}.a"]
    # The same tables and CREATE_TIMEs, but b's columns were never read: read them now.
    wide = _probe(url, only_a)
    assert wide.state.get("catalog_read") is None
    assert [c.name for c in next(a for a in wide.assets if a.path == f"{db}.b").columns] == ["x", "y"]


def test_a_column_granted_to_the_scanning_account_is_seen_on_a_rescan(mysql_server: MysqlServer) -> None:  # noqa: F811
    if not mysql_server.mariadb:
        pytest.skip("the CREATE_TIME fingerprint is used on MariaDB only")
    db = mysql_server.create_database()
    mysql_server.execute(f"USE `{db}`")
    mysql_server.execute("CREATE TABLE t (id int, secret int, shown int)")
    account = mysql_server.create_user("ctxscan_colscan", password="pw-" + db[-6:])
    user, host = account.split("@")
    mysql_server.execute(f"GRANT SELECT (id) ON `{db}`.t TO %s@%s", (user, host))
    time.sleep(2.2)
    url = mysql_server.url(db, user=user, password="pw-" + db[-6:])
    first = _probe(url, None)
    assert [c.name for c in first.assets[0].columns] == ["id"]  # information_schema shows it no more
    assert _probe(url, first).state.get("catalog_read") == "reused"
    mysql_server.execute(f"GRANT SELECT (shown) ON `{db}`.t TO %s@%s", (user, host))
    after = _probe(url, first)
    assert after.state.get("catalog_read") is None
    assert [c.name for c in after.assets[0].columns] == [c.name for c in _probe(url, None).assets[0].columns] \
        == ["id", "shown"]


def test_account_role_and_database_grants_make_a_rescan_read_access_again(mysql_server: MysqlServer) -> None:  # noqa: F811
    if not mysql_server.mariadb:
        pytest.skip("the grant tables' digest is used on MariaDB only")
    db = mysql_server.create_database()
    mysql_server.execute(f"USE `{db}`")
    mysql_server.execute("CREATE TABLE t (id int)")
    account = mysql_server.create_user("ctxscan_acc")
    role = mysql_server.create_role("ctxscan_role")
    user, host = account.split("@")
    mysql_server.execute(f"GRANT SELECT ON `{db}`.t TO `{role}`")
    time.sleep(2.2)
    url = mysql_server.url(db)
    previous = _probe(url, None)
    assert _probe(url, previous).state.get("access_read") == "reused"
    for change, holds in (
            (f"GRANT `{role}` TO '{user}'@'{host}'",                       # mysql.roles_mapping
             lambda s: any(m.member == account and m.role == role for m in s.memberships)),
            (f"GRANT INSERT ON `{db}`.* TO '{user}'@'{host}'",             # mysql.db
             lambda s: ("INSERT", account) in {(g.privilege, g.principal) for g in s.grants}),
            (f"GRANT FILE ON *.* TO '{user}'@'{host}'",                    # mysql.global_priv
             lambda s: any(p.name == account and p.privileged for p in s.principals)),
            (f"REVOKE SELECT ON `{db}`.t FROM `{role}`",                   # mysql.tables_priv
             lambda s: not any(g.principal == role for g in s.grants))):
        mysql_server.execute(change)
        after = _probe(url, previous)
        assert after.state.get("access_read") is None and after.state.get("catalog_read") is None, change
        assert holds(after) and not holds(previous), change
        full = _probe(url, None)
        assert _grants(after) == _grants(full) and after.memberships == full.memberships, change
        assert after.principals == full.principals, change
        previous = after
