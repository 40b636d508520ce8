"""Incremental PostgreSQL rescans on the real server: an unchanged catalog is reused, and every
kind of change to what the snapshot holds makes the probe read the catalog again."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from connectors.postgres import PostgresConnector
from scanner.model import Asset, SourceSnapshot
from scanner.plugins import FreshnessConfig, ProbeContext, SourceConfig
from tests.conftest import PG_ADMIN_DSN


@pytest.fixture
def roles(pg_database: str) -> Iterator[dict[str, str]]:
    suffix = uuid.uuid4().hex[:8]
    names = {k: f"ctxscan_rescan_{k}_{suffix}" for k in ("reader", "member", "owner")}
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        for name in names.values():
            conn.execute(f'CREATE ROLE "{name}"')
    yield names
    quoted = ", ".join(f'"{name}"' for name in names.values())
    with psycopg.connect(pg_database.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f"DROP OWNED BY {quoted}")  # their grants in the test database
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        for name in names.values():
            conn.execute(f'DROP ROLE IF EXISTS "{name}"')


def _probe(url: str, previous: SourceSnapshot | None, column: str | None = None,
           connections: int = 2, **settings: str) -> SourceSnapshot:
    # connections=1: the fingerprint is read in the probe's own pipeline, not aside.
    source = SourceConfig(id="db", connector="postgres",
                          settings={"url": url, "connections": connections, **settings},
                          freshness=FreshnessConfig(column=column))
    # A runs_as principal the server lacks: each snapshot notes it exactly once, however the
    # probe got there (a rescan builds the reuse before the key arrives and drops it, notes
    # included, when the key moved).
    return PostgresConnector(source).probe(ProbeContext(now=datetime.now(UTC), previous=previous, timeout=60,
                                                        principals=frozenset({GHOST})))


GHOST = "ctxscan_rescan_no_such_role"


def _prepared(url: str, *statements: str) -> str:
    """Run `statements` in the test database; its libpq DSN."""
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)
    return dsn


def _ghost_notes(snapshot: SourceSnapshot) -> int:
    return sum(1 for note in snapshot.notes if GHOST in note)


def _asset(snapshot: SourceSnapshot, path: str) -> Asset | None:
    return next((a for a in snapshot.assets if a.path == path), None)


def _grants(snapshot: SourceSnapshot, principal: str) -> set[tuple[str, str, str, tuple[str, ...]]]:
    return {(g.privilege, g.target, g.scope, tuple(g.columns or ())) for g in snapshot.grants
            if g.principal == principal}


@pytest.mark.parametrize("connections", [2, 1])
def test_unchanged_catalog_is_reused_and_every_change_reads_it_again(pg_database: str, roles: dict[str, str],
                                                                      connections: int) -> None:
    url = pg_database
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    reader, member, owner = roles["reader"], roles["member"], roles["owner"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA s")
        conn.execute("CREATE TABLE s.t1 (id int, updated_at timestamptz DEFAULT now())")
        conn.execute("CREATE TABLE s.t2 (id int)")
        conn.execute("INSERT INTO s.t1 (id) VALUES (1)")

    first = _probe(url, None, connections=connections)
    assert first.state.get("catalog_read") is None and first.state.get("catalog_key")
    again = _probe(url, first, connections=connections)
    assert again.state.get("catalog_read") == "reused"
    assert _ghost_notes(first) == _ghost_notes(again) == 1, again.notes
    assert [(a.path, a.columns, a.properties, a.owner) for a in again.assets] == \
        [(a.path, a.columns, a.properties, a.owner) for a in first.assets]
    assert (again.grants, again.principals, again.memberships) == \
        (first.grants, first.principals, first.memberships)
    # Without container_usage the rules would judge schema USAGE differently: every asset
    # "became public" on the second CLI scan of a 50,000-table database.
    assert again.container_usage is first.container_usage is True
    # Counters and freshness.column are read on a reused catalog too.
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO s.t1 (id) VALUES (2)")
    with_column = _probe(url, _probe(url, None, "updated_at", connections), "updated_at", connections)
    assert with_column.state.get("catalog_read") == "reused"
    t1 = _asset(with_column, "s.t1")
    assert t1 is not None and t1.freshness.method == "column" and t1.freshness.last_changed is not None

    def change(sql: str) -> SourceSnapshot:
        nonlocal again
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql)
        snapshot = _probe(url, again, connections=connections)
        assert snapshot.state.get("catalog_read") is None, f"{sql}: the catalog was not read again"
        assert _ghost_notes(snapshot) == 1, snapshot.notes
        again = snapshot
        return snapshot

    def columns(snapshot: SourceSnapshot, path: str) -> dict[str, Any]:
        asset = _asset(snapshot, path)
        assert asset is not None
        return {c.name: c for c in asset.columns}

    assert columns(change("ALTER TABLE s.t1 ADD COLUMN note text"), "s.t1")["note"].type == "text"
    assert columns(change("ALTER TABLE s.t1 ALTER COLUMN note TYPE varchar(20)"), "s.t1")["note"].type == \
        "character varying(20)"
    assert columns(change("COMMENT ON COLUMN s.t1.note IS 'free text'"), "s.t1")["note"].comment == "free text"
    # Column changes that leave pg_class alone (only pg_attribute gets a new row version).
    assert columns(change("ALTER TABLE s.t1 ALTER COLUMN note TYPE varchar(40)"), "s.t1")["note"].type == \
        "character varying(40)"
    assert "remark" in columns(change("ALTER TABLE s.t1 RENAME COLUMN note TO remark"), "s.t1")
    assert columns(change("ALTER TABLE s.t1 ALTER COLUMN id SET NOT NULL"), "s.t1")["id"].nullable is False
    assert "remark" not in columns(change("ALTER TABLE s.t1 DROP COLUMN remark"), "s.t1")
    assert ("SELECT", "s.t2", "asset", ()) in _grants(change(f'GRANT SELECT ON s.t2 TO "{reader}"'), reader)
    assert not _grants(change(f'REVOKE SELECT ON s.t2 FROM "{reader}"'), reader)
    assert any(g[2] == "column" for g in _grants(change(f'GRANT SELECT (id) ON s.t1 TO "{reader}"'), reader))
    snapshot = change(f'GRANT "{reader}" TO "{member}"')
    assert any(m.member == member and m.role == reader for m in snapshot.memberships)
    t1_asset = _asset(change("COMMENT ON TABLE s.t1 IS 'orders'"), "s.t1")
    assert t1_asset is not None and t1_asset.properties.get("comment") == "orders"
    t2_asset = _asset(change(f'ALTER TABLE s.t2 OWNER TO "{owner}"'), "s.t2")
    assert t2_asset is not None and t2_asset.properties["owner_role"] == owner
    # A role that owns something here renamed: only pg_authid changes (the cluster's catalog).
    t2_asset = _asset(change(f'ALTER ROLE "{owner}" RENAME TO "{owner}_x"'), "s.t2")
    assert t2_asset is not None and t2_asset.properties["owner_role"] == f"{owner}_x"
    t2_asset = _asset(change(f'ALTER ROLE "{owner}_x" RENAME TO "{owner}"'), "s.t2")
    assert t2_asset is not None and t2_asset.properties["owner_role"] == owner
    t1_asset = _asset(change("ALTER TABLE s.t1 ENABLE ROW LEVEL SECURITY"), "s.t1")
    assert t1_asset is not None and t1_asset.properties["rls_enabled"] is True
    t1_asset = _asset(change("CREATE POLICY mine ON s.t1 USING (true)"), "s.t1")
    assert t1_asset is not None and t1_asset.properties["rls_policies"] == 1
    assert _asset(change(f'GRANT USAGE ON SCHEMA s TO "{reader}"'), "s.t1") is not None
    assert _asset(change("DROP TABLE s.t2"), "s.t2") is None
    assert _asset(change("CREATE TABLE s.t3 (id int)"), "s.t3") is not None
    assert _probe(url, again, connections=connections).state.get("catalog_read") == "reused"  # settled again

    # A previous snapshot that holds an asset the database lacks is never carried over: the
    # probe reads the catalog, so only a full read can find an asset missing.
    ghost = Asset(path="s.ghost", kind="table")
    stale = dataclasses.replace(again, assets=again.assets + (ghost,))
    fresh = _probe(url, stale, connections=connections)
    assert fresh.state.get("catalog_read") is None and _asset(fresh, "s.ghost") is None


def test_reused_catalog_reads_row_estimates_and_malformed_state_reads_everything(pg_database: str) -> None:
    url = pg_database
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA r")
        conn.execute("CREATE TABLE r.events (id int PRIMARY KEY, body text)")
        conn.execute("CREATE TABLE r.parts (id int, day date) PARTITION BY RANGE (day)")
        conn.execute("CREATE TABLE r.parts_1 PARTITION OF r.parts FOR VALUES FROM ('2026-01-01') TO ('2026-02-01')")
        conn.execute("ANALYZE r.events")
        conn.execute("ANALYZE r.parts")
    first = _probe(url, None)
    with psycopg.connect(dsn, autocommit=True) as conn:
        # ANALYZE and VACUUM update pg_class in place: no new row version, so the catalog is
        # reused, but the row estimates and sizes must be this scan's.
        conn.execute("INSERT INTO r.events SELECT g, repeat('x', 200) FROM generate_series(1, 3000) g")
        conn.execute("INSERT INTO r.parts SELECT g, '2026-01-05' FROM generate_series(1, 500) g")
        conn.execute("ANALYZE r.events")
        conn.execute("ANALYZE r.parts_1")
        full = {row[0]: row[1:] for row in conn.execute(
            "SELECT c.relname, c.reltuples::int8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'r'").fetchall()}
    again = _probe(url, first)
    assert again.state.get("catalog_read") == "reused"
    reread = _probe(url, None)
    for path in ("r.events", "r.parts"):
        reused, read = _asset(again, path), _asset(reread, path)
        assert reused is not None and read is not None
        assert (reused.row_count, reused.size_bytes) == (read.row_count, read.size_bytes), path
    events = _asset(again, "r.events")
    assert events is not None and events.row_count == full["events"][0] == 3000
    parts = _asset(again, "r.parts")
    assert parts is not None and parts.row_count == 500 and parts.properties["partitions"] == 1

    # Recorded relations that are not what the probe wrote: the relation list is read again
    # (the unchanged fingerprint still spares the columns and ACLs) and recorded afresh.
    for broken in ([["r", "events"]], [["r", "events", "x", "r", 1, 0]], "nonsense",
                   [["r", "events", 1, "r", 0, 0, "r.events"]]):
        state = dict(again.state, catalog_relations=broken)
        snapshot = _probe(url, dataclasses.replace(again, state=state))
        assert [(a.path, a.columns, a.row_count, a.properties) for a in snapshot.assets] == \
            [(a.path, a.columns, a.row_count, a.properties) for a in reread.assets], broken
        assert snapshot.state["catalog_relations"] == again.state["catalog_relations"], broken


def test_unrelated_roles_do_not_force_a_read_and_relevant_memberships_do(pg_database: str,
                                                                        roles: dict[str, str]) -> None:
    url = pg_database
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    reader, member, owner = roles["reader"], roles["member"], roles["owner"]
    suffix = uuid.uuid4().hex[:8]
    superuser, group, other = (f"ctxscan_rescan_{k}_{suffix}" for k in ("super", "group", "other"))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA s")
        conn.execute("CREATE TABLE s.t1 (id int)")
        conn.execute(f'GRANT SELECT ON s.t1 TO "{reader}"')
    first = _probe(url, None)
    admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True)
    try:
        # Roles created and joined for another database, one of them a superuser: the catalog
        # here is reused, and the principals and memberships are this scan's, as a full read's.
        for name in (superuser, group, other):
            admin.execute(f'CREATE ROLE "{name}"' + (" SUPERUSER" if name == superuser else ""))
        admin.execute(f'GRANT "{group}" TO "{superuser}"')
        again = _probe(url, first)
        assert again.state.get("catalog_read") == "reused"
        full = _probe(url, None)
        assert (again.principals, again.memberships, again.grants) == (full.principals, full.memberships, full.grants)
        assert any(p.name == superuser and p.all_access for p in again.principals)
        assert any(m.member == superuser and m.role == group for m in again.memberships)

        # A role that holds a grant here gains a member: the catalog is read again.
        admin.execute(f'GRANT "{reader}" TO "{member}"')
        joined = _probe(url, again)
        assert joined.state.get("catalog_read") is None
        assert any(m.member == member and m.role == reader for m in joined.memberships)
        settled = _probe(url, joined)
        assert settled.state.get("catalog_read") == "reused"
        # ... and at one remove: a member of that member.
        admin.execute(f'GRANT "{member}" TO "{owner}"')
        deeper = _probe(url, settled)
        assert deeper.state.get("catalog_read") is None
        # An unrelated group joining a relevant role makes it and its members relevant.
        admin.execute(f'GRANT "{reader}" TO "{group}"')
        linked = _probe(url, deeper)
        assert linked.state.get("catalog_read") is None
        admin.execute(f'DROP ROLE "{superuser}"')  # a member of that group, now relevant
        dropped = _probe(url, linked)
        assert dropped.state.get("catalog_read") is None
        assert not any(p.name == superuser for p in dropped.principals)
        # An unrelated role dropped: reused, and gone from the principals.
        admin.execute(f'DROP ROLE "{other}"')
        unrelated = _probe(url, dropped)
        assert unrelated.state.get("catalog_read") == "reused"
        assert not any(p.name == other for p in unrelated.principals)
        assert unrelated.principals == _probe(url, None).principals
    finally:
        for name in (superuser, group, other):
            admin.execute(f'DROP ROLE IF EXISTS "{name}"')
        admin.close()


def test_reused_catalog_reads_each_assets_own_freshness_column(pg_database: str) -> None:
    # An `assets:` entry's column (a dbt loaded_at_field) applies on a reused catalog too,
    # as on a full read: max(loaded_at) for that table, counters for the other.
    from scanner.plugins import AssetOverride

    url = pg_database
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA f")
        conn.execute("CREATE TABLE f.loaded (id int, loaded_at timestamptz)")
        conn.execute("CREATE TABLE f.plain (id int)")
        conn.execute("INSERT INTO f.loaded VALUES (1, '2026-01-02 03:04:05+00')")
    source = SourceConfig(id="db", connector="postgres", settings={"url": url},
                          assets=(AssetOverride(path="f.loaded", column="loaded_at"),))

    def probe(previous: SourceSnapshot | None) -> SourceSnapshot:
        return PostgresConnector(source).probe(ProbeContext(now=datetime.now(UTC), previous=previous, timeout=60))

    first = probe(None)
    again = probe(first)
    assert again.state.get("catalog_read") == "reused"
    for snapshot in (first, again):
        loaded, plain = _asset(snapshot, "f.loaded"), _asset(snapshot, "f.plain")
        assert loaded is not None and plain is not None
        assert loaded.freshness.method == "column"
        assert loaded.freshness.last_changed == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        assert plain.freshness.method != "column"


def test_a_role_allowed_one_connection_probes_and_rescans(pg_database: str) -> None:
    # The fingerprint's second connection must never take the only connection a role has: the
    # probe's own comes first, and the fingerprint falls back to it when the second fails.
    dsn = pg_database.replace("postgresql+psycopg://", "postgresql://")
    role = f"ctxscan_rescan_single_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 1')
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA one")
            conn.execute("CREATE TABLE one.t (id int)")
            conn.execute(f'GRANT USAGE ON SCHEMA one TO "{role}"; GRANT SELECT ON one.t TO "{role}"')
        url = dsn.replace("postgres@", f"{role}@", 1)

        def idle() -> None:
            # A closed connection's server process takes a moment to exit and free the slot:
            # wait for it, as one scanner after another would.
            with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
                for _ in range(200):
                    if not admin.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s",
                                         (role,)).fetchone()[0]:  # type: ignore[index]
                        return
                    time.sleep(0.01)

        snapshot = _probe(url, None)
        for _ in range(3):
            idle()
            snapshot = _probe(url, snapshot)
            assert snapshot.state.get("catalog_read") == "reused"
            assert _asset(snapshot, "one.t") is not None
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_a_change_after_the_full_reads_snapshot_is_neither_read_nor_fingerprinted(pg_database: str,
                                                                                   monkeypatch: Any) -> None:
    # A full read takes its catalog in one REPEATABLE READ snapshot, and the second connection
    # reads the fingerprint in that same snapshot. A column added just after the snapshot was
    # taken and before the fingerprint is read is in neither: the next rescan sees the
    # fingerprint move and reads the catalog again, finding the column. (Read in its own, later
    # snapshot, the fingerprint would hold the column the catalog lacks, and every rescan would
    # reuse a snapshot without it.)
    import connectors.postgres as pg

    dsn = _prepared(pg_database, "CREATE SCHEMA r",
                    "CREATE TABLE r.t (id int)")
    share = pg._Aside.share
    shared: list[str] = []

    def column_in_between(self: Any, snapshot: str) -> Any:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("ALTER TABLE r.t ADD COLUMN late text")
        shared.append(snapshot)
        return share(self, snapshot)

    monkeypatch.setattr(pg._Aside, "share", column_in_between)
    first = _probe(pg_database, None)
    monkeypatch.setattr(pg._Aside, "share", share)
    assert shared, "the full read did not share its snapshot"

    def names(snapshot: SourceSnapshot) -> list[str]:
        asset = _asset(snapshot, "r.t")
        assert asset is not None
        return [c.name for c in asset.columns]

    assert names(first) == ["id"]
    again = _probe(pg_database, first)
    assert again.state.get("catalog_read") != "reused"
    assert names(again) == ["id", "late"]
    assert _probe(pg_database, again).state.get("catalog_read") == "reused"


@pytest.mark.parametrize("fault", ["no snapshot to join", "no export", "aside down"])
def test_a_full_read_without_the_second_connections_help_reads_the_same(pg_database: str, roles: dict[str, str],
                                                                        monkeypatch: Any, fault: str) -> None:
    # Whatever the second connection cannot do (join the snapshot, exist at all) and whatever
    # the server cannot (export a snapshot, as behind some poolers), the probe's own connection
    # does: the same snapshot, the same key, and the next rescan reuses it.
    import connectors.postgres as pg

    _prepared(pg_database, "CREATE SCHEMA h",
              "CREATE TABLE h.t (id int, note text)",
              f'GRANT SELECT ON h.t TO "{roles["reader"]}"; GRANT UPDATE (note) ON h.t TO "{roles["reader"]}"')
    expected = _probe(pg_database, None)
    if fault == "no snapshot to join":
        monkeypatch.setattr(pg, "_SNAPSHOT_ID", __import__("re").compile("never"))
    elif fault == "no export":
        # What a server that cannot export one answers: an error, the transaction aborted.
        monkeypatch.setattr(pg, "EXPORT_SNAPSHOT_SQL", "SELECT pg_export_snapshot(), 1 / 0")
    else:
        real_connect = pg._connect

        def aside_fails(url: str, limits: Any) -> Any:
            import threading
            if threading.current_thread().name == "ctxscan-pg-aside":
                raise OSError("connection refused")
            return real_connect(url, limits)

        monkeypatch.setattr(pg, "_connect", aside_fails)
    got = _probe(pg_database, None)
    assert got.state.get("catalog_key") == expected.state.get("catalog_key")
    assert [dataclasses.replace(a, freshness=None) for a in got.assets] == \
        [dataclasses.replace(a, freshness=None) for a in expected.assets]
    assert sorted(got.grants, key=repr) == sorted(expected.grants, key=repr)
    monkeypatch.undo()
    assert _probe(pg_database, got).state.get("catalog_read") == "reused"


def test_a_failing_query_on_the_second_connection_fails_the_probe_in_one_line(pg_database: str,
                                                                               monkeypatch: Any) -> None:
    # The ACL, schema and counter queries run on the second connection during a full read; one
    # that fails there fails the probe as it would on the probe's own connection.
    import connectors.postgres as pg
    from scanner.errors import ProbeError

    _prepared(pg_database, "CREATE SCHEMA f",
              "CREATE TABLE f.t (id int)")
    monkeypatch.setattr(pg, "COLUMN_ACL_SQL", "SELECT 1 / 0 WHERE %s::oid[] IS NOT NULL")
    with pytest.raises(ProbeError) as caught:
        _probe(pg_database, None)
    assert "\n" not in caught.value.message and "PostgreSQL probe failed" in caught.value.message


def test_a_probe_that_fails_stops_what_its_second_connection_still_runs(pg_database: str,
                                                                        monkeypatch: Any) -> None:
    # The columns fail on the probe's own connection while the second one is in a long
    # statement: the probe fails at once, and the server stops that statement.
    import connectors.postgres as pg
    from scanner.errors import ProbeError

    _prepared(pg_database, "CREATE SCHEMA w",
              "CREATE TABLE w.t (id int)")
    marker = f"ctxscan_slow_{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(pg, "RELATION_ACL_SQL", f"SELECT pg_sleep(30), '{marker}' WHERE %s::oid[] IS NOT NULL")
    monkeypatch.setattr(pg, "COLUMNS_SQL", "SELECT 1 / 0 WHERE %s::oid[] IS NOT NULL")
    began = time.monotonic()
    with pytest.raises(ProbeError):
        _probe(pg_database, None)
    assert time.monotonic() - began < 10
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        for _ in range(100):
            running = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s",
                                    (f"%{marker}%",)).fetchone()
            if running is not None and running[0] == 0:
                break
            time.sleep(0.05)
        assert running is not None and running[0] == 0, "the second connection's statement still runs"


def _slow(query: str, seconds: float) -> str:
    """`query` with a pause: its rows as they were, each statement taking `seconds` more."""
    return f"SELECT q.* FROM ({query}) q CROSS JOIN pg_sleep({seconds})"


def test_a_full_read_waits_on_its_second_connection_longer_than_a_statement(pg_database: str, roles: dict[str, str],
                                                                             monkeypatch: Any) -> None:
    # With a 1 s statement timeout, the second connection's three slow queries (0.7 s each)
    # keep the first idle in its transaction for ~2 s: longer than a statement, well within
    # the probe. The server must not end that session as idle.
    import connectors.postgres as pg

    _prepared(pg_database, "CREATE SCHEMA i",
              "CREATE TABLE i.t (id int, note text)",
              f'GRANT SELECT ON i.t TO "{roles["reader"]}"; GRANT UPDATE (note) ON i.t TO "{roles["reader"]}"')

    def probe() -> SourceSnapshot:
        return _probe(pg_database, None, statement_timeout="1s")

    expected = probe()
    for name in ("RELATION_ACL_SQL", "COLUMN_ACL_SQL", "COUNTERS_SQL"):
        monkeypatch.setattr(pg, name, _slow(getattr(pg, name), 0.7))
    got = probe()
    assert got.state.get("catalog_key") == expected.state.get("catalog_key")
    assert sorted(got.grants, key=repr) == sorted(expected.grants, key=repr)


def test_a_second_connection_that_does_not_answer_leaves_the_work_to_the_first(pg_database: str,
                                                                                monkeypatch: Any) -> None:
    # A second connection stuck (a network that went quiet) past what its statements may take:
    # the probe's own connection reads the ACLs, schemas and counters itself.
    import connectors.postgres as pg

    _prepared(pg_database, "CREATE SCHEMA n",
              "CREATE TABLE n.t (id int)")

    def probe() -> SourceSnapshot:
        return _probe(pg_database, None, statement_timeout="0.5s", connect_timeout="1s")

    expected = probe()

    def stuck(self: Any, queries: Any) -> Any:
        return self._submit(lambda conn: time.sleep(30), quiet=False, statements=len(queries))

    monkeypatch.setattr(pg._Aside, "fetch_all", stuck)
    began = time.monotonic()
    got = probe()
    assert time.monotonic() - began < 20
    assert got.state.get("catalog_key") == expected.state.get("catalog_key")
    assert [a.path for a in got.assets] == [a.path for a in expected.assets]
    assert sorted(got.grants, key=repr) == sorted(expected.grants, key=repr)
