"""ctxscan's access verdicts against PostgreSQL's own answer, on seeded random estates.

Each seed builds a database with schemas with and without USAGE, INHERIT and NOINHERIT
chains three deep, column-only grants, PUBLIC grants, predefined roles, CREATEROLE, BYPASSRLS,
a member of a superuser role, an owner after REVOKE ALL and default privileges. For every
(role, table) pair, ctxscan's read and write verdicts at its three levels must equal the
server's:

- effective: `has_table_privilege` / `has_any_column_privilege` with `has_schema_privilege
  (..., 'USAGE')`, confirmed by running SELECT, INSERT, UPDATE, DELETE and TRUNCATE as the role;
- via SET ROLE: the same statements, run after `SET ROLE` to each role the server lets the
  principal switch to (`SET SESSION AUTHORIZATION` the principal, then `SET ROLE`);
- escalation: as the principal and each role it can switch to, try every grant to itself and
  to each role it can switch to (GRANT each role, GRANT ALL ON each table, USAGE ON each
  schema) until nothing more succeeds, then ask the server again.

All trials run in transactions that are rolled back. `CTXSCAN_DIFFERENTIAL_MATRIX=path`
writes the confusion matrix as JSON (the figures of issue 11 were measured with it).
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from connectors.postgres import PostgresConnector
from scanner.model import SourceSnapshot
from scanner.plugins import ProbeContext, SourceConfig

if TYPE_CHECKING:
    from tests.connectors.dbservers import PostgresServer

pytest_plugins = ("tests.connectors.dbservers",)

SEEDS = (11, 12, 13, 14, 15)
LEVELS = ("effective", "via_set_role", "escalation")
OPS = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
WRITE_OPS = ("INSERT", "UPDATE", "DELETE", "TRUNCATE")
COLUMNS = ("a", "b", "c")


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass
class Estate:
    db: str
    roles: list[str]
    schemas: list[str]
    tables: list[str] = field(default_factory=list)   # schema.table
    features: Counter[str] = field(default_factory=Counter)


def build_estate(server: PostgresServer, seed: int) -> Estate:
    """A random estate; every feature the issue names appears in each seed."""
    rng = random.Random(seed)
    db = server.create_database("ctxscan_diff")
    conn = server.connect(db)
    tag = f"s{seed}"
    options = ["LOGIN", "LOGIN NOINHERIT", "NOLOGIN", "NOLOGIN NOINHERIT"]
    roles = [server.role(f"d{tag}r{i}", rng.choice(options)) for i in range(11)]
    creator = server.role(f"d{tag}creator", "LOGIN CREATEROLE")
    bypass = server.role(f"d{tag}bypass", "LOGIN BYPASSRLS")
    superuser = server.role(f"d{tag}su", "NOLOGIN SUPERUSER")
    su_member = server.role(f"d{tag}sumember", "LOGIN" if rng.random() < 0.5 else "LOGIN NOINHERIT")
    owner = server.role(f"d{tag}owner", "LOGIN")
    everyone = roles + [creator, bypass, su_member, owner]
    estate = Estate(db, everyone + [superuser], ["public", f"with_usage_{tag}", f"no_usage_{tag}", f"public_usage_{tag}"])
    sql: list[str] = []
    for schema in estate.schemas[1:]:
        sql.append(f"CREATE SCHEMA {q(schema)}")
    # Schema USAGE: some to roles, one to PUBLIC, one to nobody.
    for role in rng.sample(everyone, 6):
        sql.append(f"GRANT USAGE ON SCHEMA {q(estate.schemas[1])} TO {q(role)}")
    sql.append(f"GRANT USAGE ON SCHEMA {q(estate.schemas[3])} TO PUBLIC")
    # Default privileges, materialised in the ACLs of the tables created next.
    for schema in estate.schemas[1:3]:
        grantee = rng.choice(roles)
        sql.append(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {q(schema)} GRANT SELECT, INSERT ON TABLES TO {q(grantee)}")
        estate.features["default privileges"] += 1
    for schema in estate.schemas:
        for i in range(7):
            table = f"{schema}.t{i}"
            estate.tables.append(table)
            sql.append(f"CREATE TABLE {q(schema)}.{q(f't{i}')} (a int, b text, c int)")
    # Membership: chains three deep with random INHERIT (the member's attribute before 16).
    shuffled = roles[:]
    rng.shuffle(shuffled)
    for chain in (shuffled[0:4], shuffled[4:8], shuffled[7:11]):
        for member, role in zip(chain, chain[1:], strict=False):
            admin = " WITH ADMIN OPTION" if rng.random() < 0.2 else ""
            sql.append(f"GRANT {q(role)} TO {q(member)}{admin}")
    sql.append(f"GRANT {q(superuser)} TO {q(su_member)}")
    sql.append(f"GRANT {q(rng.choice(roles))} TO {q(su_member)}")
    sql.append(f"GRANT pg_read_all_data TO {q(rng.choice(roles))}")
    sql.append(f"GRANT pg_write_all_data TO {q(rng.choice(roles))}")
    # Table, column and PUBLIC grants.
    grantees = everyone + ["PUBLIC"]
    for table in estate.tables:
        schema, name = table.split(".")
        target = f"{q(schema)}.{q(name)}"
        for _ in range(rng.randint(0, 3)):
            privilege = rng.choice(OPS)
            grantee = rng.choices(grantees, weights=[1] * len(everyone) + [3])[0]
            option = " WITH GRANT OPTION" if grantee != "PUBLIC" and rng.random() < 0.1 else ""
            sql.append(f"GRANT {privilege} ON {target} TO {'PUBLIC' if grantee == 'PUBLIC' else q(grantee)}{option}")
        if rng.random() < 0.25:
            privilege = rng.choice(("SELECT", "UPDATE", "INSERT"))
            column = rng.choice(COLUMNS)
            grantee = rng.choice(grantees)
            sql.append(f"GRANT {privilege} ({column}) ON {target} TO {'PUBLIC' if grantee == 'PUBLIC' else q(grantee)}")
            estate.features["column-only grant"] += 1
        if rng.random() < 0.15:
            sql.append(f"ALTER TABLE {target} OWNER TO {q(rng.choice(roles))}")
    # An owner after REVOKE ALL on its own table, in a schema where it has USAGE.
    for name in ("t0", "t1"):
        target = f"{q(estate.schemas[3])}.{q(name)}"
        sql.append(f"ALTER TABLE {target} OWNER TO {q(owner)}")
        sql.append(f"REVOKE ALL ON {target} FROM {q(owner)}")
    sql.append(f"GRANT SELECT ON {q(estate.schemas[2])}.t0 TO {q(bypass)}")
    conn.execute(";\n".join(sql))
    estate.features.update({"schemas": len(estate.schemas), "tables": len(estate.tables), "roles": len(everyone) + 1})
    return estate


# ---------------------------------------------------------------------------------------
# The server's answer


def _trial_block(statements: list[str]) -> str:
    """A DO block that runs each statement in a subtransaction it rolls back, and records
    which ones passed the privilege checks (another error, e.g. NOT NULL, still passed)."""
    body = ["DECLARE ok text := '';", "BEGIN"]
    for index, statement in enumerate(statements):
        body.append(f"""
  BEGIN
    EXECUTE {lit(statement)};
    RAISE EXCEPTION 'ctxscan-trial-ok';
  EXCEPTION
    WHEN insufficient_privilege THEN NULL;
    WHEN OTHERS THEN ok := ok || '{index},';
  END;""")
    body.append("  PERFORM set_config('ctxscan.trial', ok, true);\nEND")
    return "DO $ctxscan$\n" + "\n".join(body) + "\n$ctxscan$"


def _grant_block(statements: list[str]) -> str:
    """A DO block that keeps every statement that succeeds and counts them."""
    body = ["DECLARE done int := 0;", "BEGIN"]
    for statement in statements:
        body.append(f"""
  BEGIN
    EXECUTE {lit(statement)};
    done := done + 1;
  EXCEPTION WHEN OTHERS THEN NULL;
  END;""")
    body.append("  PERFORM set_config('ctxscan.granted', done::text, true);\nEND")
    return "DO $ctxscan$\n" + "\n".join(body) + "\n$ctxscan$"


def _trial_statements(table: str) -> list[tuple[str, str]]:
    schema, name = table.split(".")
    target = f"{q(schema)}.{q(name)}"
    out = [("SELECT", f"SELECT 1 FROM {target} LIMIT 0"), ("INSERT", f"INSERT INTO {target} DEFAULT VALUES")]
    for column in COLUMNS:   # any column the role may update
        out.append(("UPDATE", f"UPDATE {target} SET {q(column)} = NULL WHERE false"))
    out.append(("DELETE", f"DELETE FROM {target} WHERE false"))
    out.append(("TRUNCATE", f"TRUNCATE {target}"))
    return out


def trials_as(conn: Any, role: str, tables: list[str]) -> dict[str, set[str]]:
    """What `role` can do to each table, by running each statement as it (rolled back)."""
    plan = [(table, op, statement) for table in tables for op, statement in _trial_statements(table)]
    with conn.transaction(force_rollback=True):
        conn.execute(f"SET LOCAL ROLE {q(role)}")
        conn.execute(_trial_block([statement for _, _, statement in plan]))
        passed = conn.execute("SELECT current_setting('ctxscan.trial')").fetchone()[0]
    out: dict[str, set[str]] = {table: set() for table in tables}
    for index in filter(None, passed.split(",")):
        table, op, _ = plan[int(index)]
        out[table].add(op)
    return out


def settable_roles(conn: Any, principal: str, roles: list[str]) -> list[str]:
    """The roles the server lets `principal` SET ROLE to (tried, one savepoint each)."""
    out = []
    with conn.transaction(force_rollback=True):
        conn.execute(f"SET LOCAL SESSION AUTHORIZATION {q(principal)}")
        for role in roles:
            if role == principal:
                continue
            try:
                with conn.transaction(force_rollback=True):
                    conn.execute(f"SET LOCAL ROLE {q(role)}")
                out.append(role)
            except Exception:
                pass
    return out


# By oid and schema name: a name lookup would need USAGE of whoever runs the query.
ACCESS_SQL = """
SELECT c.oid, has_schema_privilege(%(role)s, c.relnamespace, 'USAGE')
          AND has_any_column_privilege(%(role)s, c.oid, 'SELECT'),
       has_schema_privilege(%(role)s, c.relnamespace, 'USAGE')
          AND (has_any_column_privilege(%(role)s, c.oid, 'INSERT')
               OR has_any_column_privilege(%(role)s, c.oid, 'UPDATE')
               OR has_table_privilege(%(role)s, c.oid, 'DELETE')
               OR has_table_privilege(%(role)s, c.oid, 'TRUNCATE'))
FROM pg_class c WHERE c.oid = ANY(%(oids)s::oid[])
"""


def functions_answer(conn: Any, role: str, tables: list[str]) -> dict[str, tuple[bool, bool]]:
    oids = table_oids(conn, tables)
    rows = conn.execute(ACCESS_SQL, {"role": role, "oids": list(oids)}).fetchall()
    return {oids[oid]: (bool(read), bool(write)) for oid, read, write in rows}


_OIDS: dict[tuple[int, tuple[str, ...]], dict[int, str]] = {}


def table_oids(conn: Any, tables: list[str]) -> dict[int, str]:
    key = (id(conn), tuple(tables))
    if key not in _OIDS:
        with conn.transaction(force_rollback=True):
            conn.execute("RESET SESSION AUTHORIZATION")
            rows = conn.execute("SELECT t::regclass::oid, t FROM unnest(%s::text[]) AS t", (tables,)).fetchall()
        _OIDS[key] = {oid: t for oid, t in rows}
    return _OIDS[key]


def escalated(conn: Any, principal: str, estate: Estate, everyone: list[str]) -> dict[str, tuple[bool, bool]]:
    """What `principal` can read and write after granting itself everything it can."""
    tables = estate.tables
    with conn.transaction(force_rollback=True):
        conn.execute(f"SET LOCAL SESSION AUTHORIZATION {q(principal)}")
        granted_before = -1
        for _ in range(6):
            actors = [principal]
            for role in everyone:
                if role == principal:
                    continue
                try:
                    with conn.transaction(force_rollback=True):
                        conn.execute(f"SET LOCAL ROLE {q(role)}")
                    actors.append(role)
                except Exception:
                    pass
            # Roles to itself and to every role it can act as (one statement each: a grant
            # that would close a membership cycle fails alone).
            statements = [f"GRANT {q(role)} TO {q(actor)}" for role in everyone for actor in actors if role != actor]
            to = ", ".join(q(actor) for actor in actors)
            for table in tables:
                schema, name = table.split(".")
                statements.append(f"GRANT ALL ON {q(schema)}.{q(name)} TO {to}")
            for schema in estate.schemas:
                statements.append(f"GRANT USAGE ON SCHEMA {q(schema)} TO {to}")
            granted = 0
            for actor in actors:
                conn.execute(f"SET LOCAL ROLE {q(actor)}")
                conn.execute(_grant_block(statements))
                granted += int(conn.execute("SELECT current_setting('ctxscan.granted')").fetchone()[0])
            conn.execute("RESET ROLE")
            if granted == granted_before:
                break
            granted_before = granted
        answers = [functions_answer(conn, actor, tables) for actor in actors]
        supers = {row[0] for row in conn.execute("SELECT rolname FROM pg_roles WHERE rolsuper").fetchall()}
    out = {}
    for table in tables:
        if any(actor in supers for actor in actors):
            out[table] = (True, True)
        else:
            out[table] = (any(a[table][0] for a in answers), any(a[table][1] for a in answers))
    return out


def server_verdicts(server: PostgresServer, estate: Estate) -> dict[tuple[str, str, str, str], bool]:
    """(principal, table, level, read|write) -> the server's answer."""
    conn = server.connect(estate.db)
    table_oids(conn, estate.tables)
    everyone = estate.roles + ["pg_read_all_data", "pg_write_all_data"]
    trials = {role: trials_as(conn, role, estate.tables) for role in everyone}
    out: dict[tuple[str, str, str, str], bool] = {}
    for principal in estate.roles:
        effective = functions_answer(conn, principal, estate.tables)
        reachable = [principal] + settable_roles(conn, principal, everyone)
        escalation = escalated(conn, principal, estate, everyone)
        for table in estate.tables:
            own = trials[principal][table]
            read, write = effective[table]
            # The functions and the statements agree on what the role can do as itself.
            assert read == ("SELECT" in own) and write == bool(own & set(WRITE_OPS)), (principal, table, own)
            via = set().union(*(trials[role][table] for role in reachable))
            out[(principal, table, "effective", "read")] = read
            out[(principal, table, "effective", "write")] = write
            out[(principal, table, "via_set_role", "read")] = "SELECT" in via
            out[(principal, table, "via_set_role", "write")] = bool(via & set(WRITE_OPS))
            out[(principal, table, "escalation", "read")] = escalation[table][0] or "SELECT" in via
            out[(principal, table, "escalation", "write")] = escalation[table][1] or bool(via & set(WRITE_OPS))
    return out


# ---------------------------------------------------------------------------------------
# ctxscan's answer


def probe(server: PostgresServer, estate: Estate) -> SourceSnapshot:
    source = SourceConfig(id="crm", connector="postgres", settings={"url": server.url(estate.db)})
    context = ProbeContext(now=datetime.now(UTC), previous=None, principals=frozenset(estate.roles), timeout=60)
    return PostgresConnector(source).probe(context)


def ctxscan_verdicts(snapshot: SourceSnapshot, estate: Estate) -> dict[tuple[str, str, str, str], bool]:
    """(principal, table, level, read|write) -> ctxscan's answer."""
    import scanner.access as access

    out: dict[tuple[str, str, str, str], bool] = {}
    for principal in estate.roles:
        model = access.PrincipalAccess(snapshot, principal) if hasattr(access, "PrincipalAccess") else None
        for table in estate.tables:
            asset = snapshot.asset(table)
            assert asset is not None, table
            report = model.report(asset) if model is not None else None
            if model is not None and report is not None:
                # The rules' fast answer (no paths, shared between assets) is the same answer.
                assert dict(model.verdicts(asset).all) == dict(report.verdicts), (principal, table)
            for level in LEVELS:
                for verdict in ("read", "write"):
                    if report is not None:
                        out[(principal, table, level, verdict)] = report.can(verdict, level)
                    else:  # the code before issue 11 had one level: what `why` said
                        levels = access.access_levels(access.access_paths(snapshot, principal, asset))
                        out[(principal, table, level, verdict)] = bool(levels & {verdict, "admin"})
    return out


def test_access_verdicts_equal_the_servers_answer(postgres_server: PostgresServer) -> None:
    matrix: dict[str, Counter[str]] = {level: Counter() for level in LEVELS}
    disagreements: list[str] = []
    features: Counter[str] = Counter()
    for seed in SEEDS:
        estate = build_estate(postgres_server, seed)
        features.update(estate.features)
        server = server_verdicts(postgres_server, estate)
        ours = ctxscan_verdicts(probe(postgres_server, estate), estate)
        for key, truth in server.items():
            said = ours[key]
            cell = {(True, True): "TP", (True, False): "FP", (False, True): "FN", (False, False): "TN"}[(said, truth)]
            matrix[key[2]][cell] += 1
            matrix[key[2]][f"{key[3]}:{cell}"] += 1
            if said != truth:
                disagreements.append(f"seed {seed}: {key[0]} {key[3]} {key[1]} at {key[2]}: "
                                     f"ctxscan {said}, server {truth}")
    report = {level: dict(sorted(counts.items())) for level, counts in matrix.items()}
    path = os.environ.get("CTXSCAN_DIFFERENTIAL_MATRIX")
    if path:
        with open(path, "w") as out:
            json.dump({"matrix": report, "disagreements": len(disagreements), "features": dict(features),
                       "examples": disagreements[:40]}, out, indent=2)
    # The estates really contain what they claim to test.
    assert features["column-only grant"] >= len(SEEDS) and features["default privileges"] == 2 * len(SEEDS)
    total = sum(matrix["effective"][cell] for cell in ("TP", "FP", "FN", "TN"))
    assert total == features["roles"] * 28 * 2 and features["tables"] == 28 * len(SEEDS)
    assert matrix["effective"]["TP"] and matrix["via_set_role"]["TP"] > matrix["effective"]["TP"]
    assert matrix["escalation"]["TP"] > matrix["via_set_role"]["TP"]
    assert not disagreements, f"{len(disagreements)} disagreements, e.g.\n" + "\n".join(disagreements[:20])
