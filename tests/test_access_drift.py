"""Access drift and environment parity on real servers, through the CLI.

A PostgreSQL production database and its staging copy (two databases on the local server,
with their own grants and schemas) and a MariaDB database are changed between scans with
GRANT, REVOKE, GRANT ... TO PUBLIC, a new role membership and a dropped column; the findings
must follow each change, stay open while it holds and resolve when it is reverted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.connectors.dbservers import MysqlServer, PostgresServer, mysql_server, postgres_server  # noqa: F401

__all__ = ["mysql_server", "postgres_server"]


def _findings(ctxscan: Callable[..., Any], config: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    result = ctxscan("findings", "-c", str(config), "--json", env=env)
    assert result.code == 0, result.err
    return json.loads(result.out)


def _scan(ctxscan: Callable[..., Any], config: Path, env: dict[str, str]) -> None:
    result = ctxscan("scan", "-c", str(config), "--json", env=env)
    assert result.code in (0, 1), result.err
    report = json.loads(result.out)
    assert all(s["status"] == "ok" for s in report["sources"]), report["sources"]


def _of(findings: list[dict[str, Any]], kind: str, subkind: str | None = None) -> list[dict[str, Any]]:
    return [f for f in findings if f["kind"] == kind and (subkind is None or f["subkind"] == subkind)]


def test_postgres_access_drift_follows_grants_and_resolves_on_revert(
        postgres_server: PostgresServer, tmp_path: Path, ctxscan: Callable[..., Any]) -> None:
    pg = postgres_server
    bot = pg.role("bot", "LOGIN")
    writers = pg.role("writers")
    db = pg.create_database("ctxscan_drift")
    conn = pg.connect(db)
    conn.execute("CREATE TABLE customers (id int, email text); CREATE TABLE tickets (id int, body text);"
                 "CREATE TABLE payroll (id int, salary int)")
    conn.execute(f'GRANT SELECT ON customers, tickets TO "{bot}"; GRANT UPDATE ON tickets TO "{writers}"')
    conn.execute("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC")
    config = tmp_path / "ctxscan.yaml"
    config.write_text(f"""
version: 1
owners: [{{id: data}}]
sources:
  - {{id: crm, connector: postgres, url: "${{DRIFT_URL}}", owner: data, include: ["public.*"]}}
workflows:
  - id: bot
    owner: data
    stage: production
    runs_as: {{crm: {bot}}}
    reads: ["crm:public.customers", "crm:public.tickets"]
""")
    env = {**os.environ, "DRIFT_URL": pg.url(db), "CTXSCAN_STATE": str(tmp_path / "state.db")}
    _scan(ctxscan, config, env)
    assert not _of(_findings(ctxscan, config, env), "access_drift")

    # The bot quietly gains DELETE, a role that can UPDATE and a read of payroll; PUBLIC gains
    # customers; the bot loses its declared read of tickets.
    conn.execute(f'GRANT DELETE ON customers TO "{bot}"; GRANT "{writers}" TO "{bot}";'
                 f'GRANT SELECT ON payroll TO "{bot}"; GRANT SELECT ON customers TO PUBLIC;'
                 f'REVOKE SELECT ON tickets FROM "{bot}"')
    _scan(ctxscan, config, env)
    found = _of(_findings(ctxscan, config, env), "access_drift")
    by = {(f["subkind"], f["asset"]): f for f in found}
    assert by[("gained_write", "crm:public.customers")]["severity"] == "critical"
    assert "DELETE" in " ".join(by[("gained_write", "crm:public.customers")]["evidence"]["paths"])
    tickets_write = by[("gained_write", "crm:public.tickets")]
    assert any(writers in p for p in tickets_write["evidence"]["paths"]), tickets_write
    gained_read = by[("gained_read", "crm:public.payroll")]
    assert gained_read["evidence"]["assets"] == ["public.payroll"] and gained_read["severity"] == "high"
    lost = by[("lost_access", "crm:public.tickets")]
    assert lost["severity"] == "critical" and "can no longer read" in lost["message"]
    public = by[("became_public", "crm:public.customers")]
    assert public["severity"] == "critical" and "PUBLIC" in public["message"]
    assert set(by) == {("gained_write", "crm:public.customers"), ("gained_write", "crm:public.tickets"),
                       ("gained_read", "crm:public.payroll"), ("lost_access", "crm:public.tickets"),
                       ("became_public", "crm:public.customers")}

    # Nothing changes: every drift stays open (it is not "resolved" one scan later).
    _scan(ctxscan, config, env)
    assert {(f["subkind"], f["asset"]) for f in _of(_findings(ctxscan, config, env), "access_drift")} == set(by)

    # Revert everything: all of it resolves.
    conn.execute(f'REVOKE DELETE ON customers FROM "{bot}"; REVOKE "{writers}" FROM "{bot}";'
                 f'REVOKE SELECT ON payroll FROM "{bot}"; REVOKE SELECT ON customers FROM PUBLIC;'
                 f'GRANT SELECT ON tickets TO "{bot}"')
    _scan(ctxscan, config, env)
    assert not _of(_findings(ctxscan, config, env), "access_drift")
    resolved = ctxscan("findings", "-c", str(config), "--json", "--status", "resolved", "--kind", "access_drift",
                       env=env)
    assert len(json.loads(resolved.out)) == 5
    conn.execute(f'DROP OWNED BY "{bot}"')


def test_postgres_environment_parity(postgres_server: PostgresServer, tmp_path: Path,
                                     ctxscan: Callable[..., Any]) -> None:
    pg = postgres_server
    bot = pg.role("bot", "LOGIN")
    prod, staging = pg.create_database("ctxscan_prod"), pg.create_database("ctxscan_stg")
    for db, extra in ((prod, ", tier text"), (staging, "")):
        conn = pg.connect(db)
        conn.execute(f"CREATE TABLE customers (id int, email text{extra})")
        conn.execute(f'GRANT SELECT ON customers TO "{bot}"')
    # The PoC worked in staging, where the bot could also write.
    pg.connect(staging).execute(f'GRANT UPDATE ON customers TO "{bot}"')
    config = tmp_path / "ctxscan.yaml"
    config.write_text(f"""
version: 1
owners: [{{id: data}}]
sources:
  - {{id: crm, connector: postgres, url: "${{PROD_URL}}", owner: data, environment: prod}}
  - {{id: crm-staging, connector: postgres, url: "${{STG_URL}}", owner: data, environment: staging,
     same_as: crm}}
workflows:
  - id: assistant
    owner: data
    stage: production
    runs_as: {{crm: {bot}, crm-staging: {bot}}}
    reads: [{{asset: "crm:public.customers", columns: [email, tier]}}]
  - id: poc
    owner: data
    stage: poc
    runs_as: {{crm: {bot}}}
    reads: ["crm:public.customers"]
    feeds: []
""")
    env = {**os.environ, "PROD_URL": pg.url(prod), "STG_URL": pg.url(staging),
           "CTXSCAN_STATE": str(tmp_path / "state.db")}
    _scan(ctxscan, config, env)
    findings = _findings(ctxscan, config, env)
    access = _of(findings, "access_drift", "environment")
    assert {f["workflow"] for f in access} == {"assistant", "poc"}
    assert access[0]["evidence"]["access"] in ({"crm": "read", "crm-staging": "read, write"},)
    schema = _of(findings, "schema_drift", "environment")
    assert [f["evidence"]["column"] for f in schema] == ["tier"]
    assert "exists in crm (text) but not in crm-staging" in schema[0]["message"]
    mismatch = _of(findings, "environment_mismatch")
    assert [(f["workflow"], f["subkind"]) for f in mismatch] == [("poc", "nonproduction_reads_production")]
    card = json.loads(ctxscan("readiness", "assistant", "-c", str(config), "--json", env=env).out)
    environment = next(c for c in card["workflows"][0]["checks"] if c["check"] == "environment")
    assert environment["ok"] is False and "tier" in environment["reason"]

    # Bring staging in line: parity holds, the card's environment check passes.
    stg = pg.connect(staging)
    stg.execute(f'REVOKE UPDATE ON customers FROM "{bot}"; ALTER TABLE customers ADD COLUMN tier text')
    _scan(ctxscan, config, env)
    findings = _findings(ctxscan, config, env)
    assert not _of(findings, "access_drift") and not _of(findings, "schema_drift")
    card = json.loads(ctxscan("readiness", "assistant", "-c", str(config), "--json", env=env).out)
    environment = next(c for c in card["workflows"][0]["checks"] if c["check"] == "environment")
    assert environment["ok"] is True and "crm-staging" in environment["reason"]
    for db in (prod, staging):
        pg.connect(db).execute(f'DROP OWNED BY "{bot}"')


def test_mariadb_access_drift(mysql_server: MysqlServer, tmp_path: Path, ctxscan: Callable[..., Any]) -> None:
    my = mysql_server
    db = my.create_database()
    account = my.create_user("bot", host="%")
    user = account.split("@")[0]
    my.execute(f"CREATE TABLE `{db}`.orders (id int, total int)")
    my.execute(f"GRANT SELECT ON `{db}`.orders TO %s@'%%'", (user,))
    config = tmp_path / "ctxscan.yaml"
    config.write_text(f"""
version: 1
owners: [{{id: data}}]
sources:
  - {{id: shop, connector: mysql, url: "${{SHOP_URL}}", owner: data, include: ["{db}.*"]}}
workflows:
  - {{id: bot, owner: data, stage: pilot, runs_as: {{shop: "{account}"}}, reads: ["shop:{db}.orders"]}}
""")
    env = {**os.environ, "SHOP_URL": my.url(db), "CTXSCAN_STATE": str(tmp_path / "state.db")}
    _scan(ctxscan, config, env)
    assert not _of(_findings(ctxscan, config, env), "access_drift")
    my.execute(f"GRANT INSERT, UPDATE ON `{db}`.orders TO %s@'%%'", (user,))
    _scan(ctxscan, config, env)
    drift = _of(_findings(ctxscan, config, env), "access_drift")
    assert [(f["subkind"], f["asset"], f["severity"]) for f in drift] == [
        ("gained_write", f"shop:{db}.orders", "high")]
    my.execute(f"REVOKE INSERT, UPDATE, SELECT ON `{db}`.orders FROM %s@'%%'", (user,))
    _scan(ctxscan, config, env)
    drift = _of(_findings(ctxscan, config, env), "access_drift")
    assert [(f["subkind"], f["asset"]) for f in drift] == [("lost_access", f"shop:{db}.orders")]
