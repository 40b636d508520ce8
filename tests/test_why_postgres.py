"""`ctxscan feeds`, `why` and `depends` end to end against the real PostgreSQL: a two-level
role chain, a PUBLIC grant and a write grant, scanned by the CLI and answered from the store."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.conftest import PG_ADMIN_DSN


@pytest.fixture
def estate(pg_database: str, tmp_path: Path):
    suffix = uuid.uuid4().hex[:8]
    roles = {name: f"ctxscan_why_{name}_{suffix}" for name in ("bot", "team", "readers", "ticket_writer")}
    dsn = pg_database.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        for role in roles.values():
            admin.execute(f'CREATE ROLE "{role}"')
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE public.customers (id int, email text)")
            conn.execute("CREATE TABLE public.faq (id int, body text)")
            conn.execute("CREATE TABLE public.tickets (id int)")
            # bot -> team -> readers, which may read customers; everyone may read faq.
            conn.execute(f'GRANT "{roles["readers"]}" TO "{roles["team"]}"')
            conn.execute(f'GRANT "{roles["team"]}" TO "{roles["bot"]}"')
            conn.execute(f'GRANT SELECT ON public.customers TO "{roles["readers"]}"')
            conn.execute("GRANT SELECT ON public.faq TO PUBLIC")
            conn.execute(f'GRANT INSERT ON public.tickets TO "{roles["team"]}"')
            # A NOINHERIT membership: TRUNCATE only after SET ROLE ticket_writer.
            conn.execute(f'ALTER ROLE "{roles["ticket_writer"]}" NOINHERIT')
            conn.execute(f'GRANT TRUNCATE ON public.tickets TO "{roles["ticket_writer"]}"')
            conn.execute(f'GRANT "{roles["ticket_writer"]}" TO "{roles["readers"]}"')
            # A schema bot may use, with no table in it it may read; one it may not use at all.
            conn.execute("CREATE SCHEMA hr")
            conn.execute("CREATE TABLE hr.salaries (id int)")
            conn.execute(f'GRANT USAGE ON SCHEMA hr TO "{roles["team"]}"')
            conn.execute("CREATE SCHEMA vault")
            conn.execute("CREATE TABLE vault.keys (id int)")
            conn.execute("GRANT SELECT ON vault.keys TO PUBLIC")
        config = tmp_path / "ctxscan.yaml"
        config.write_text(f"""
version: 1
owners: [{{id: data}}]
sources:
  - {{id: crm, connector: postgres, url: "{dsn}", owner: data, include: ["public.*", "hr.*", "vault.*"]}}
workflows:
  - id: assistant
    owner: data
    stage: production
    runs_as: {{crm: {roles["bot"]}}}
    reads: ["crm:public.customers", "crm:public.faq", "crm:public.tickets"]
    feeds: [router]
  - {{id: router, owner: data, stage: pilot}}
""", encoding="utf-8")
        yield config, roles
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:  # grants first, then the roles
            conn.execute("DROP SCHEMA IF EXISTS hr, vault CASCADE")
            for role in roles.values():
                conn.execute(f'DROP OWNED BY "{role}"')
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            for role in roles.values():
                admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_why_feeds_and_depends_from_a_real_scan(estate, ctxscan) -> None:
    config, roles = estate
    state = str(config.parent / "state.db")
    scan = ctxscan("scan", "-c", str(config), "--state", state, "--json")
    assert scan.code == 0 and json.loads(scan.out)["status"] == "ok", scan

    why = json.loads(ctxscan("why", "assistant", "crm:public.customers", "-c", str(config),
                             "--state", state, "--json").out)
    chains = [p["chain"] for p in why["paths"]]
    assert [roles["bot"], roles["team"], roles["readers"]] in chains
    assert why["can_read"] is True and why["can_write"] is False

    public = json.loads(ctxscan("why", "assistant", "crm:public.faq", "-c", str(config),
                                "--state", state, "--json").out)
    assert any(p["chain"][-1] == "PUBLIC" and p["public"] for p in public["paths"]), public

    tickets = json.loads(ctxscan("why", "assistant", "crm:public.tickets", "-c", str(config),
                                 "--state", state, "--json").out)
    assert tickets["can_write"] is True
    assert any(p["chain"] == [roles["bot"], roles["team"]] and p["privilege"] == "INSERT"
               for p in tickets["paths"])

    feeds = json.loads(ctxscan("feeds", "crm:public.customers", "-c", str(config), "--state", state,
                               "--json").out)
    assert {(w["id"], w["direct"]) for w in feeds["workflows"]} == {("assistant", True), ("router", False)}
    router = next(w for w in feeds["workflows"] if w["id"] == "router")
    assert router["path"][-2:] == ["workflow:assistant", "workflow:router"]

    findings = json.loads(ctxscan("findings", "-c", str(config), "--state", state, "--json",
                                  "--kind", "over_permissioned").out)
    subkinds = {f["subkind"] for f in findings}
    assert {"write_access", "public_access"} <= subkinds, findings


def test_why_answers_at_three_levels_and_for_a_whole_workflow(estate, ctxscan) -> None:
    config, roles = estate
    state = str(config.parent / "state.db")
    assert ctxscan("scan", "-c", str(config), "--state", state, "--json").code == 0
    bot = roles["bot"]

    tickets = json.loads(ctxscan("why", "assistant", "crm:public.tickets", "-c", str(config),
                                 "--state", state, "--json").out)
    # INSERT through team, TRUNCATE through readers -> ticket_writer: NOINHERIT is
    # ticket_writer's own attribute (it inherits nothing), so readers still inherits from it.
    assert tickets["can_write"] is True and tickets["can_write_via_set_role"] is True
    assert tickets["can_read"] is False and tickets["can_read_escalation"] is False
    human = ctxscan("why", "assistant", "crm:public.tickets", "-c", str(config), "--state", state)
    assert f"{bot} can write public.tickets through 2 paths" in human.out, human.out

    customers = json.loads(ctxscan("why", "assistant", "crm:public.customers", "-c", str(config),
                                   "--state", state, "--json").out)
    assert customers["sentences"] == [f"{bot} can read public.customers through 1 path"]
    assert customers["can_read_via_set_role"] is True and customers["escalation"] == []

    everything = json.loads(ctxscan("why", "assistant", "-c", str(config), "--state", state, "--json").out)
    by_asset = {a["asset"]: a for a in everything}
    assert set(by_asset) == {"crm:public.customers", "crm:public.faq", "crm:public.tickets",
                             "crm:hr.salaries", "crm:vault.keys"}
    assert by_asset["crm:public.tickets"] == tickets  # the same objects as one `why` each
    assert by_asset["crm:hr.salaries"]["container_reachable"] is True
    assert f"{bot} can reach schema hr (USAGE) but no table in it" in by_asset["crm:hr.salaries"]["sentences"]
    # PUBLIC may SELECT vault.keys, but nobody has USAGE on vault: no access, and the reason.
    keys = by_asset["crm:vault.keys"]
    assert keys["can_read"] is False and keys["container_reachable"] is False
    assert keys["sentences"] == [f"{bot} cannot read or write vault.keys: it holds SELECT but no USAGE on vault"]
    table = ctxscan("why", "assistant", "-c", str(config), "--state", state)
    assert table.code == 0 and "AFTER SET ROLE" in table.out and "crm:hr.salaries" in table.out, table.out
    assert f"{bot} can reach schema hr (USAGE) but no table in it" in table.out


def test_why_after_set_role(pg_database: str, tmp_path, ctxscan) -> None:
    """"support_bot can write public.tickets after SET ROLE ticket_writer": a NOINHERIT bot."""
    suffix = uuid.uuid4().hex[:8]
    bot, writer = f"ctxscan_why_sr_bot_{suffix}", f"ctxscan_why_sr_writer_{suffix}"
    dsn = pg_database.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{bot}" NOINHERIT')
        admin.execute(f'CREATE ROLE "{writer}"')
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE public.tickets (id int)")
            conn.execute(f'GRANT INSERT ON public.tickets TO "{writer}"')
            conn.execute(f'GRANT "{writer}" TO "{bot}"')
        config = tmp_path / "ctxscan.yaml"
        config.write_text(f"""
version: 1
owners: [{{id: data}}]
sources: [{{id: crm, connector: postgres, url: "{dsn}", owner: data}}]
workflows:
  - {{id: support, owner: data, stage: pilot, runs_as: {{crm: {bot}}}, reads: ["crm:public.tickets"]}}
""", encoding="utf-8")
        state = str(tmp_path / "state.db")
        assert ctxscan("scan", "-c", str(config), "--state", state).code in (0, 1)
        answer = json.loads(ctxscan("why", "support", "crm:public.tickets", "-c", str(config),
                                    "--state", state, "--json").out)
        assert answer["can_write"] is False and answer["can_write_via_set_role"] is True
        assert [p["step"] for p in answer["paths_via_set_role"]] == [f"SET ROLE {writer}"]
        human = ctxscan("why", "support", "crm:public.tickets", "-c", str(config), "--state", state)
        assert f"{bot} can write public.tickets after SET ROLE {writer}" in human.out, human.out
        findings = json.loads(ctxscan("findings", "-c", str(config), "--state", state, "--json").out)
        [write] = [f for f in findings if f["subkind"] == "write_access"]
        assert f"after SET ROLE {writer}" in write["message"]
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for role in (bot, writer):
                conn.execute(f'DROP OWNED BY "{role}"')
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            for role in (bot, writer):
                admin.execute(f'DROP ROLE IF EXISTS "{role}"')
