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
    roles = {name: f"ctxscan_why_{name}_{suffix}" for name in ("bot", "team", "readers")}
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
        config = tmp_path / "ctxscan.yaml"
        config.write_text(f"""
version: 1
owners: [{{id: data}}]
sources:
  - {{id: crm, connector: postgres, url: "{dsn}", owner: data, include: ["public.*"]}}
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
