"""Benchmark: scanning a 5,000-table PostgreSQL database against the floor, in one run.

    python bench/bench_postgres.py [--tables-per-schema 1000] [--repeat 5] [--keep | --reuse DATABASE]

It builds its own uniquely named database on the local server (5 schemas x 1,000 tables,
12 columns each, an indexed `updated_at`, one row per table, grants to a few roles) and
drops it (and its roles) at the end unless --keep, and when the build itself fails (a batch
that finds the server's shared lock table full, which other sessions use too, is retried).
Every measurement is a fresh process, timed from start to exit, with its peak memory
(ru_maxrss):

  floor (catalog)   bare psycopg running the connector's own catalog queries, rows fetched
  probe             PostgresConnector.probe() alone
  ctxscan scan      the full CLI: `ctxscan -c FILE --state sqlite:///... scan --json`
                    (probe, store, rules, and the graph-cache step at >= 20,000 assets:
                    `--tables-per-schema 10000`), first scan of a fresh state store; one
                    more, untimed run samples the PSS of its process tree (what the machine
                    gives it, each shared page once; ru_maxrss is one process's most)
  floor (max)       bare psycopg running batched max(updated_at), 200 tables a statement
  ... + column      the probe and the scan with `freshness: {column: updated_at}` (the
                    probe shares the max() batches over 2 connections by default; the
                    `1 conn` line is the same probe on one connection, like the floor)

Each is run --repeat times, interleaved; ratios compare the best (least disturbed) runs,
measured in the same run on the same machine, and the medians are printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("CTXSCAN_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

FLOOR_CATALOG = """
import sys
import psycopg
from connectors import postgres as pg
conn = psycopg.connect(sys.argv[1], autocommit=True)
server = conn.execute(pg.SERVER_SQL).fetchall()
conn.execute(pg.ROLES_SQL).fetchall()
conn.execute(pg.member_query(server[0][2])).fetchall()
relations = conn.execute(pg.RELATIONS_SQL).fetchall()
oids = [r[0] for r in relations if not r[4]]
schemas = sorted({r[1] for r in relations if not r[4]})
rows = 0
for query, params in ((pg.COLUMNS_SQL, (oids,)), (pg.RELATION_ACL_SQL, (oids,)), (pg.COLUMN_ACL_SQL, (oids,)),
                      (pg.SCHEMAS_SQL, (schemas,)), (pg.COUNTERS_SQL, (oids,))):
    rows += len(conn.execute(query, params).fetchall())
print(rows)
"""

FLOOR_MAX = """
import sys
import psycopg
from psycopg import sql
conn = psycopg.connect(sys.argv[1], autocommit=True)
tables = conn.execute("SELECT c.oid, n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                      " WHERE c.relkind = 'r' AND n.nspname LIKE 's%'").fetchall()
column = sql.Identifier("updated_at").as_string(conn)
found = 0
for start in range(0, len(tables), 200):
    parts = [f"SELECT {oid}::oid, max({column})::timestamptz FROM {sql.Identifier(s, t).as_string(conn)}"
             for oid, s, t in tables[start:start + 200]]
    found += len(conn.execute(" UNION ALL ".join(parts)).fetchall())
print(found)
"""

PROBE = """
import sys
from datetime import UTC, datetime
from connectors.postgres import PostgresConnector
from scanner.plugins import FreshnessConfig, ProbeContext, SourceConfig
column = sys.argv[2] or None
settings = {"url": sys.argv[1], "connections": int(sys.argv[3]) if len(sys.argv) > 3 else 2}
source = SourceConfig(id="bench", connector="postgres", settings=settings, freshness=FreshnessConfig(column=column))
snapshot = PostgresConnector(source).probe(ProbeContext(now=datetime.now(UTC), timeout=600))
print(len(snapshot.assets), len(snapshot.grants), sum(len(a.columns) for a in snapshot.assets))
"""


def run_measured(args: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run a process; return (wall seconds, peak memory MB, stdout)."""
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    out = proc.stdout.read().decode() if proc.stdout else ""
    err = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args[:3])} failed ({proc.returncode}):\n{out}\n{err}")
    return wall, usage.ru_maxrss / 1024.0, out.strip()


def peak_pss(args: list[str]) -> float:
    """Run a process; return the highest sum of its and its descendants' proportional set
    size (each shared page counted once), in MB, sampled every 20 ms from /proc."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT)

    def tree(pid: int) -> list[int]:
        found = [pid]
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as handle:
                    for child in handle.read().split():
                        found += tree(int(child))
        except OSError:
            pass
        return found

    peak = 0
    while proc.poll() is None:
        total = 0
        for pid in tree(proc.pid):
            try:
                with open(f"/proc/{pid}/smaps_rollup") as handle:
                    total += sum(int(line.split()[1]) for line in handle if line.startswith("Pss:"))
            except OSError:
                pass
        peak = max(peak, total)
        time.sleep(0.02)
    return peak / 1024.0


def build(database: str, tables_per_schema: int, roles: dict[str, str]) -> None:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
        for name in roles.values():
            admin.execute(f'CREATE ROLE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + database
    with psycopg.connect(url, autocommit=True) as conn:
        for s in range(5):
            conn.execute(f"CREATE SCHEMA s{s}")
    columns = ("id bigint PRIMARY KEY, updated_at timestamptz NOT NULL DEFAULT now(), name text, email text,"
               " status text, amount numeric(12,2), quantity integer, active boolean, created date,"
               " notes text, payload jsonb, ref uuid")
    errors: list[BaseException] = []

    def create(schema: int) -> None:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("SET synchronous_commit = off")
                # 50 tables a transaction: five builders at once stay well inside the server's shared
                # lock table (max_locks_per_transaction x connections), which others use too.
                for start in range(0, tables_per_schema, 50):
                    names = [f"s{schema}.t{i:04d}" for i in range(start, min(tables_per_schema, start + 50))]
                    for attempt in range(10):
                        try:
                            with conn.transaction():
                                conn.execute(";".join(
                                    f"CREATE TABLE {n} ({columns}); CREATE INDEX ON {n} (updated_at);"
                                    f" INSERT INTO {n} (id, name) VALUES (1, 'x')" for n in names))
                            break
                        except psycopg.errors.OutOfMemory:
                            # The shared lock table is the server's, and other sessions' tests fill
                            # it too: wait for them and try the batch again (it rolled back).
                            if attempt == 9:
                                raise
                            time.sleep(1 + attempt)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(s,)) for s in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    with psycopg.connect(url, autocommit=True) as conn:
        r = {k: f'"{v}"' for k, v in roles.items()}
        for s in range(5):
            conn.execute(f"GRANT USAGE ON SCHEMA s{s} TO {r['reader']}, {r['writer']};"
                         f"GRANT SELECT ON ALL TABLES IN SCHEMA s{s} TO {r['reader']}")
        conn.execute(f"GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA s1 TO {r['writer']};"
                     f"GRANT SELECT (id, email) ON ALL TABLES IN SCHEMA s2 TO {r['analyst']};"
                     f"GRANT SELECT ON ALL TABLES IN SCHEMA s3 TO PUBLIC;"
                     f"GRANT {r['reader']} TO {r['bot']}")
        conn.execute("VACUUM ANALYZE")


def drop(database: str, roles: dict[str, str]) -> None:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        for name in roles.values():
            admin.execute(f'DROP ROLE IF EXISTS "{name}"')


def inventory(path: Path, url: str, column: str | None, bot: str) -> Path:
    freshness = f"\n    freshness: {{column: {column}, max_age: 1d}}" if column else ""
    path.write_text(textwrap.dedent(f"""\
        version: 1
        owners: [{{id: data-eng}}]
        sources:
          - id: bench
            connector: postgres
            url: {url}
            owner: data-eng
            timeout: 600s""") + freshness + textwrap.dedent(f"""
        workflows:
          - id: assistant
            owner: data-eng
            stage: production
            runs_as: {{bench: {bot}}}
            reads: [{{asset: "bench:s0.t0001"}}, {{asset: "bench:s1.t0002"}}]
        """))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables-per-schema", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the database and roles (printed)")
    parser.add_argument("--reuse", metavar="DATABASE", help="measure a database kept by an earlier --keep")
    parser.add_argument("--catalog-only", action="store_true",
                        help="skip the max(updated_at) measurements (50,000 tables: see README)")
    options = parser.parse_args()

    if options.reuse:
        database = options.reuse
        suffix = database.rsplit("_", 1)[-1]
    else:
        suffix = uuid.uuid4().hex[:8]
        database = f"ctxscan_bench_{suffix}"
    roles = {k: f"ctxscan_bench_{k}_{suffix}" for k in ("reader", "writer", "analyst", "bot")}
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + database
    if not options.reuse:
        started = time.perf_counter()
        try:
            build(database, options.tables_per_schema, roles)
        except BaseException:
            drop(database, roles)
            raise
        print(f"built {database}: {5 * options.tables_per_schema} tables in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)
    python = sys.executable
    # A regular `pip install` byte-compiles ctxscan; an editable install under
    # PYTHONDONTWRITEBYTECODE=1 would recompile it in every process and charge that to the scan.
    subprocess.run([python, "-m", "compileall", "-q", str(ROOT / "scanner"), str(ROOT / "connectors")],
                   check=True)
    ctxscan = [python, "-m", "scanner"]
    results: dict[str, list[tuple[float, float]]] = {}
    outputs: dict[str, str] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            plain = inventory(Path(tmp) / "plain.yaml", url, None, roles["bot"])
            with_column = inventory(Path(tmp) / "column.yaml", url, "updated_at", roles["bot"])
            cases: list[tuple[str, list[str]]] = [
                ("floor (catalog)", [python, "-c", FLOOR_CATALOG, url]),
                ("probe", [python, "-c", PROBE, url, ""]),
                ("ctxscan scan", ctxscan + ["-c", str(plain), "--state", "{state}", "scan", "--json"]),
                ("floor (max)", [python, "-c", FLOOR_MAX, url]),
                ("probe + column", [python, "-c", PROBE, url, "updated_at"]),
                ("probe + column, 1 conn", [python, "-c", PROBE, url, "updated_at", "1"]),
                ("ctxscan scan + column", ctxscan + ["-c", str(with_column), "--state", "{state}", "scan", "--json"]),
            ]
            if options.catalog_only:
                cases = [case for case in cases if "max" not in case[0] and "column" not in case[0]]
            for run in range(options.repeat):
                for name, args in cases:
                    state = f"sqlite:///{tmp}/state-{run}-{len(results.get(name, []))}-{name.split()[-1]}.db"
                    wall, memory, out = run_measured([a.replace("{state}", state) for a in args])
                    results.setdefault(name, []).append((wall, memory))
                    outputs[name] = out
                    print(f"  run {run + 1} {name}: {wall:.2f} s, {memory:.0f} MB", file=sys.stderr)
            # Memory as the machine sees it, processes it starts included, in one more, untimed run.
            pss = peak_pss(ctxscan + ["-c", str(plain), "--state", f"sqlite:///{tmp}/pss.db", "scan", "--json"])
            # A second scan of the same state: previous snapshot loaded, counters compared.
            second = f"sqlite:///{tmp}/second.db"
            run_measured(ctxscan + ["-c", str(plain), "--state", second, "scan", "--json"])
            results["ctxscan scan (second)"] = [run_measured(
                ctxscan + ["-c", str(plain), "--state", second, "scan", "--json"])[:2]]
    finally:
        if options.keep or options.reuse:
            print(f"kept {database} and roles {', '.join(roles.values())}", file=sys.stderr)
        else:
            drop(database, roles)

    def best(name: str) -> tuple[float, float, float]:
        """The fastest run (the least disturbed by anything else on the machine), the
        median, and the highest peak memory of any run."""
        runs = results[name]
        return min(w for w, _ in runs), statistics.median(w for w, _ in runs), max(m for _, m in runs)

    scan_summary = json.loads(outputs["ctxscan scan"])["sources"][0]
    assets, grants, columns = outputs["probe"].split()
    print(f"PostgreSQL, {assets} assets, {columns} columns, {grants} grants; {options.repeat} runs each, "
          f"each a fresh process (wall time to exit, peak RSS); ratios of the best runs")
    print(f"{'measurement':<26} {'best':>8} {'median':>8} {'peak':>8} {'ratio':>8}  baseline")
    catalog = best("floor (catalog)")[0]
    maximum = best("floor (max)")[0] if "floor (max)" in results else 0.0
    for name, baseline, base_name in (
        ("floor (catalog)", None, ""), ("probe", catalog, "floor (catalog)"),
        ("ctxscan scan", catalog, "floor (catalog)"), ("ctxscan scan (second)", catalog, "floor (catalog)"),
        ("floor (max)", None, ""), ("probe + column", maximum, "floor (max)"),
        ("probe + column, 1 conn", maximum, "floor (max)"),
        ("ctxscan scan + column", maximum, "floor (max)"),
        ("ctxscan scan + column ", catalog + maximum, "floor (catalog) + floor (max)"),
    ):
        if name.strip() not in results:
            continue
        wall, middle, memory = best(name.strip())
        ratio = f"{wall / baseline:.2f}x" if baseline else "-"
        print(f"{name.strip():<26} {wall:>7.2f}s {middle:>7.2f}s {memory:>6.0f}MB {ratio:>8}  {base_name}")
    print(f"ctxscan scan: peak PSS of its process tree {pss:.0f} MB (sampled every 20 ms, untimed run)")
    print(f"scan status: {scan_summary['status']}, {scan_summary['assets']} assets")


if __name__ == "__main__":
    main()
