"""Benchmark: an unchanged PostgreSQL database rescanned, against the catalog floor, in one run.

    .venv/bin/python bench/bench_rescan.py DATABASE [--repeat 7] [--column updated_at]

DATABASE is one that `bench/bench_postgres.py --keep` built (or any database on the local
server). In one process, over one connection each, interleaved, `--repeat` times:

  floor (catalog)   the connector's own catalog queries (`connectors.postgres.*_SQL`), bare,
                    rows fetched: what any full read costs
  full probe        `PostgresConnector.probe()` with no previous snapshot (a full read)
  rescan            the same probe given the previous snapshot of the unchanged database:
                    the fingerprint matches, so it reads the counters (and freshness.column
                    with --column) and reuses the catalog part

Times are from connecting to the last row, without the interpreter's start (which every
process pays alike). Target: rescan within 0.3x the floor (best runs). It also checks that
the rescan's snapshot equals the full read's, but for freshness.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def floor(url: str) -> float:
    import psycopg

    from connectors import postgres as pg

    began = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        server = conn.execute(pg.SERVER_SQL).fetchall()
        conn.execute(pg.ROLES_SQL).fetchall()
        conn.execute(pg.member_query(server[0][2])).fetchall()
        relations = conn.execute(pg.RELATIONS_SQL).fetchall()
        oids = pg.oid_array(r[0] for r in relations if not r[4])
        schemas = sorted({r[1] for r in relations if not r[4]})
        for query, params in ((pg.COLUMNS_SQL, (oids,)), (pg.RELATION_ACL_SQL, (oids,)),
                              (pg.COLUMN_ACL_SQL, (oids,)), (pg.SCHEMAS_SQL, (schemas,)),
                              (pg.COUNTERS_SQL, (oids,))):
            conn.execute(query, params).fetchall()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("database")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--column", default=None)
    args = parser.parse_args()
    import gc
    import resource

    from connectors.postgres import PostgresConnector
    from scanner.plugins import FreshnessConfig, ProbeContext, SourceConfig

    url = f"postgresql://postgres@127.0.0.1:5432/{args.database}"
    source = SourceConfig(id="bench", connector="postgres", settings={"url": url},
                          freshness=FreshnessConfig(column=args.column))
    gc.disable()  # as the CLI runs
    times: dict[str, list[float]] = {"floor (catalog)": [], "full probe": [], "rescan": []}
    full = rescanned = None
    for _ in range(args.repeat):
        times["floor (catalog)"].append(floor(url))
        began = time.perf_counter()
        full = PostgresConnector(source).probe(ProbeContext(now=datetime.now(UTC), timeout=600))
        times["full probe"].append(time.perf_counter() - began)
        began = time.perf_counter()
        rescanned = PostgresConnector(source).probe(ProbeContext(now=datetime.now(UTC), previous=full,
                                                                 timeout=600))
        times["rescan"].append(time.perf_counter() - began)
        gc.collect()
    assert full is not None and rescanned is not None
    assert rescanned.state.get("catalog_read") == "reused", "the rescan read the catalog again"
    same = ([(a.path, a.kind, a.columns, a.container, a.owner, a.properties) for a in full.assets]
            == [(a.path, a.kind, a.columns, a.container, a.owner, a.properties) for a in rescanned.assets]
            and full.grants == rescanned.grants and full.principals == rescanned.principals
            and full.memberships == rescanned.memberships
            and full.container_usage == rescanned.container_usage)
    base = min(times["floor (catalog)"])
    print(f"PostgreSQL {args.database}: {len(full.assets)} assets, {sum(len(a.columns) for a in full.assets)} "
          f"columns, {len(full.grants)} grants; {args.repeat} runs, in-process, best and median")
    for name, runs in times.items():
        print(f"{name:16} {min(runs):7.3f}s {statistics.median(runs):7.3f}s  {min(runs) / base:5.2f}x floor")
    ratio = min(times["rescan"]) / base
    print(f"rescan snapshot equals the full read's (but freshness): {same}; rescan {ratio:.2f}x the floor "
          f"({'ok' if ratio <= 0.3 else 'MISSED'}: target <= 0.3x); peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
