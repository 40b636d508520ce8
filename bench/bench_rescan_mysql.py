"""Benchmark: an unchanged MariaDB database rescanned, against the catalog floor, in one run.

    .venv/bin/python bench/bench_rescan_mysql.py [--tables 5000] [--repeat 7] [--keep | --reuse DATABASE]

Builds one database of `--tables` tables (12 columns each, a view per 100 tables) and three
accounts with database, table and column grants (three grants per table), then, in one
process, interleaved, `--repeat` times:

  floor (catalog)   the connector's own catalog queries, bare, rows fetched: SCHEMATA, TABLES,
                    COLUMNS and the grant tables: what any full read costs
  full probe        `MysqlConnector.probe()` with no previous snapshot (a full read)
  rescan            the same probe given the previous snapshot of the unchanged database: the
                    tables' CREATE_TIME and the grants match, so it reads TABLES, the grant
                    tables and the views' columns, and reuses the tables' columns

Times run from connecting to the last row, without the interpreter's start. Target (issue 19,
item 3, as for PostgreSQL): rescan within 0.3x the floor, best runs. It also checks that the
rescan's snapshot equals the full read's. Latest figures: bench/README.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ADMIN = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}


def connect(database: str | None = None):  # type: ignore[no-untyped-def]
    import pymysql

    return pymysql.connect(**ADMIN, database=database, autocommit=True, charset="utf8mb4")


def build(database: str, tables: int, accounts: list[str]) -> None:
    conn = connect()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}`")
        cur.execute(f"USE `{database}`")
        columns = ", ".join(f"c{j} {'int' if j % 3 else 'varchar(40)'} COMMENT 'column {j}'" for j in range(10))
        for i in range(tables):
            cur.execute(f"CREATE TABLE t{i:05d} (id int PRIMARY KEY, {columns}, updated_at datetime) "
                        f"COMMENT 'table {i}'")
            if i % 100 == 0:
                cur.execute(f"CREATE VIEW v{i:05d} AS SELECT id, c1 FROM t{i:05d}")
        for account in accounts:
            cur.execute(f"CREATE USER '{account}'@'%'")
        reader, writer, analyst = accounts
        cur.execute(f"GRANT SELECT ON `{database}`.* TO '{reader}'@'%'")
        for i in range(tables):
            cur.execute(f"GRANT SELECT, INSERT ON `{database}`.t{i:05d} TO '{writer}'@'%'")
            cur.execute(f"GRANT SELECT (id, c1) ON `{database}`.t{i:05d} TO '{analyst}'@'%'")
            cur.execute(f"GRANT UPDATE (c2) ON `{database}`.t{i:05d} TO '{reader}'@'%'")
    conn.close()
    time.sleep(2.2)  # past CREATE_TIME's one-second resolution (connectors.mysql.catalog_key_of)


def drop(database: str, accounts: list[str]) -> None:
    conn = connect()
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
        for account in accounts:
            cur.execute(f"DROP USER IF EXISTS '{account}'@'%'")
    conn.close()


def floor(database: str) -> float:
    began = time.perf_counter()
    conn = connect(database)
    with conn.cursor() as cur:
        for query, params in (
                ("SELECT * FROM information_schema.SCHEMATA", None),
                ("SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE, ENGINE, TABLE_ROWS, DATA_LENGTH, INDEX_LENGTH,"
                 " UPDATE_TIME, CAST(CREATE_TIME AS CHAR) AS CREATE_TIME, CREATE_OPTIONS, TABLE_COMMENT FROM information_schema.TABLES"
                 " WHERE TABLE_SCHEMA IN %s", ([database],)),
                ("SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_COMMENT"
                 " FROM information_schema.COLUMNS WHERE TABLE_SCHEMA IN %s"
                 " ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION", ([database],)),
                ("SELECT * FROM mysql.global_priv", None), ("SELECT * FROM mysql.db", None),
                ("SELECT User, Host, Db, Table_name, Table_priv FROM mysql.tables_priv", None),
                ("SELECT User, Host, Db, Table_name, Column_name, Column_priv FROM mysql.columns_priv", None),
                ("SELECT User, Host, Role FROM mysql.roles_mapping", None)):
            cur.execute(query, params)
            cur.fetchall()
    conn.close()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tables", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the database (prints its name)")
    parser.add_argument("--reuse", metavar="DATABASE", help="a database an earlier --keep built")
    args = parser.parse_args()
    import gc

    from connectors.mysql import MysqlConnector
    from scanner.plugins import ProbeContext, SourceConfig

    suffix = args.reuse.rsplit("_", 1)[-1] if args.reuse else uuid.uuid4().hex[:8]
    database = args.reuse or f"ctxscan_bench_{suffix}"
    accounts = [f"ctxscan_bench_{k}_{suffix}" for k in ("reader", "writer", "analyst")]
    if not args.reuse:
        began = time.perf_counter()
        build(database, args.tables, accounts)
        print(f"built {database}: {args.tables} tables in {time.perf_counter() - began:.1f} s")
    try:
        source = SourceConfig(id="bench", connector="mysql", settings={"url": f"mysql://root@127.0.0.1:3306/{database}"})
        gc.disable()  # as the CLI runs
        times: dict[str, list[float]] = {"floor (catalog)": [], "full probe": [], "rescan": []}
        full = rescanned = None
        for _ in range(args.repeat):
            times["floor (catalog)"].append(floor(database))
            began = time.perf_counter()
            full = MysqlConnector(source).probe(ProbeContext(now=datetime.now(UTC), timeout=600))
            times["full probe"].append(time.perf_counter() - began)
            began = time.perf_counter()
            rescanned = MysqlConnector(source).probe(ProbeContext(now=datetime.now(UTC), previous=full, timeout=600))
            times["rescan"].append(time.perf_counter() - began)
            gc.collect()
        assert full is not None and rescanned is not None
        assert rescanned.state.get("catalog_read") == "reused", "the rescan read the catalog again"
        same = ([(a.path, a.kind, a.columns, a.container, a.owner, a.properties) for a in full.assets]
                == [(a.path, a.kind, a.columns, a.container, a.owner, a.properties) for a in rescanned.assets]
                and full.grants == rescanned.grants and full.principals == rescanned.principals
                and full.memberships == rescanned.memberships)
        base = min(times["floor (catalog)"])
        print(f"MariaDB {database}: {len(full.assets)} assets, {sum(len(a.columns) for a in full.assets)} columns, "
              f"{len(full.grants)} grants; {args.repeat} runs, in-process, best and median")
        for name, runs in times.items():
            print(f"{name:16} {min(runs):7.3f}s {statistics.median(runs):7.3f}s  {min(runs) / base:5.2f}x floor")
        ratio = min(times["rescan"]) / base
        print(f"rescan snapshot equals the full read's: {same}; rescan {ratio:.2f}x the floor "
              f"({'ok' if ratio <= 0.3 else 'MISSED'}: target <= 0.3x)")
    finally:
        if args.keep or args.reuse:
            print(f"kept {database} (drop it: DROP DATABASE `{database}`; and its accounts {', '.join(accounts)})")
        else:
            drop(database, accounts)


if __name__ == "__main__":
    main()
