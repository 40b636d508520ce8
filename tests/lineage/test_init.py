"""`ctxscan init` on the real PostgreSQL, MariaDB and a folder, followed by validate and scan."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from tests.conftest import run_ctxscan

if TYPE_CHECKING:
    from tests.connectors.dbservers import MysqlServer, PostgresServer

pytest_plugins = ("tests.connectors.dbservers",)


def test_init_probes_postgres_mariadb_and_a_folder_then_validate_and_scan(
        postgres_server: PostgresServer, mysql_server: MysqlServer, tmp_path: Path) -> None:
    pg = postgres_server.create_database("ctxscan_init")
    conn = postgres_server.connect(pg)
    conn.execute("CREATE SCHEMA sales")
    conn.execute("COMMENT ON SCHEMA sales IS 'orders and refunds; owner: sales-team'")
    conn.execute("CREATE TABLE sales.orders (id int, updated_at timestamptz DEFAULT now())")
    conn.execute("CREATE TABLE public.customers (id int, updated_at timestamptz DEFAULT now())")
    conn.execute("COMMENT ON TABLE public.customers IS 'CRM customers (owner: crm-team)'")
    conn.execute("INSERT INTO public.customers (id) VALUES (1)")
    my = mysql_server.create_database()
    mysql_server.execute(f"CREATE TABLE `{my}`.tickets (id int, modified_at datetime) COMMENT='owner=support'")
    password = "pw-" + uuid.uuid4().hex
    account = mysql_server.create_user("initbot", password=password)
    user = account.split("@")[0]
    mysql_server.execute(f"GRANT SELECT ON `{my}`.* TO {account.split('@')[0]!r}@'%'")
    folder = tmp_path / "kb"
    (folder / "articles").mkdir(parents=True)
    (folder / "articles" / "refunds.md").write_text("# Refunds\n", encoding="utf-8")
    (folder / "faq.txt").write_text("faq\n", encoding="utf-8")
    pg_url = postgres_server.url(pg, password="not-needed-" + uuid.uuid4().hex[:6])   # trust auth ignores it
    my_url = mysql_server.url(my, user=user, password=password)
    work = tmp_path / "work"
    work.mkdir()

    result = run_ctxscan("init", pg_url, my_url, str(folder), cwd=work)
    assert result.code == 0, result
    text = (work / "ctxscan.yaml").read_text(encoding="utf-8")
    assert password not in text and "not-needed-" not in text
    assert password not in result.out + result.err
    pg_id, my_id = pg, my
    pg_var, my_var = f"{pg_id.upper()}_PASSWORD", f"{my_id.upper()}_PASSWORD"
    assert f"${{{pg_var}}}" in text and f"${{{my_var}}}" in text and "# workflows:" in text
    data = yaml.safe_load(text)
    sources = {s["id"]: s for s in data["sources"]}
    assert set(sources) == {pg_id, my_id, "kb"}
    assert sources[pg_id]["connector"] == "postgres" and sources[pg_id]["include"] == ["public.*", "sales.*"]
    assert sources[pg_id]["freshness"] == {"column": "updated_at", "max_age": "24h"}
    # Owners from comments: a table's, and a schema's for its tables.
    owners = {sources[pg_id]["owner"]} | {a["owner"] for a in sources[pg_id].get("assets", ())}
    assert owners == {"crm-team", "sales-team"}
    assert sources[my_id]["owner"] == "support" and sources[my_id]["include"] == [f"{my}.*"]
    assert sources["kb"]["connector"] == "files" and sources["kb"]["include"] == ["articles", "faq.txt"]
    assert sources[pg_id]["owner_tag"] == "owner" and "owner_tag" not in sources["kb"]   # files have no tags
    assert {o["id"] for o in data["owners"]} == {"crm-team", "sales-team", "support"}

    # validate names the missing variables; with them exported it passes, and the scan works.
    refused = run_ctxscan("validate", cwd=work)
    assert refused.code == 2 and pg_var in refused.err
    env = {pg_var: "unused", my_var: password}
    assert run_ctxscan("validate", cwd=work, env=env).code == 0
    scan = run_ctxscan("scan", "--json", cwd=work, env=env)
    assert scan.code == 0, scan
    report = json.loads(scan.out)
    statuses = {s["id"]: (s["status"], s["assets"]) for s in report["sources"]}
    assert statuses == {pg_id: ("ok", 2), my_id: ("ok", 1), "kb": ("ok", 2)}, report

    # It never overwrites a file.
    again = run_ctxscan("init", str(folder), cwd=work)
    assert again.code == 2 and "never overwrites" in again.err
    assert (work / "ctxscan.yaml").read_text(encoding="utf-8") == text


def test_init_without_targets_an_unknown_target_and_an_unreachable_one(tmp_path: Path, closed_port: int) -> None:
    assert run_ctxscan("init", cwd=tmp_path).code == 0
    assert run_ctxscan("validate", cwd=tmp_path).code == 0
    result = run_ctxscan("init", "ftp://example/x", "-o", "other.yaml", cwd=tmp_path)
    assert result.code == 2 and "unknown URL scheme" in result.err and not (tmp_path / "other.yaml").exists()
    result = run_ctxscan("init", "/no/such/folder", "-o", "other.yaml", cwd=tmp_path)
    assert result.code == 2 and "not a folder" in result.err
    url = f"postgresql://bot:pw-{uuid.uuid4().hex}@127.0.0.1:{closed_port}/shop"
    result = run_ctxscan("init", url, "-o", "down.yaml", "--timeout", "5s", cwd=tmp_path)
    assert result.code == 1, result   # written, but one target could not be probed
    text = (tmp_path / "down.yaml").read_text(encoding="utf-8")
    assert "# could not probe it:" in text and url.split(":")[2].split("@")[0] not in text
    assert run_ctxscan("validate", "-c", "down.yaml", cwd=tmp_path, env={"SHOP_PASSWORD": "x"}).code == 0
