"""Benchmark the graph queries and exports on a generated 50,000-asset estate.

    .venv/bin/python bench/bench_queries.py [--dir build/bench-estate] [--runs 7]

Generates the estate first when `--dir` holds none (bench/generate_estate.py). Every figure
is the wall time of a whole `ctxscan` process, start included, as a user sees it; each is
printed with its ratio to two baselines measured in the same run: `python -c pass` (the
interpreter) and `ctxscan --help` (the CLI's own start). Targets: `feeds` and `depends`
under 0.5 s, `graph export --format graphml` under 5 s, with the graph cached; the first
(cold) call, which builds and caches the graph, is reported too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGETS = {"feeds": 0.3, "depends": 0.3, "graph export": 5.0}


def timed(command: list[str], cwd: Path, env: dict[str, str], ok: tuple[int, ...] = (0,)) -> float:
    began = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    elapsed = time.perf_counter() - began
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default=str(ROOT / "build" / "bench-estate"))
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--regenerate", action="store_true", help="generate the estate even if present")
    args = parser.parse_args()
    estate = Path(args.dir).resolve()
    config = estate / "ctxscan.yaml"
    if args.regenerate or not config.exists():
        from bench.generate_estate import generate

        began = time.perf_counter()
        generate(estate)
        print(f"generated {estate} in {time.perf_counter() - began:.1f}s")
    python = sys.executable
    ctxscan = [python, "-m", "scanner"]
    env = {**os.environ, "CTXSCAN_CONFIG": str(config)}
    env.pop("CTXSCAN_STATE", None)
    out = estate / "bench-export.graphml"

    # A change to the inventory file's bytes is a cache miss: touch nothing, but time the first
    # call after dropping the cache (a fresh store state makes a new key).
    import sqlite3

    from scanner.store import default_state_url, sqlite_path

    path = sqlite_path(default_state_url([str(config)]))
    assert path is not None, "the benchmark estate keeps its state in SQLite"
    # A real scan (of the estate's small `live` source: the rules run over all 50,000 assets
    # and the scan readies the graph cache), then the first query after it.
    scan_time = timed([*ctxscan, "scan", "--source", "live"], estate, env, ok=(0, 1))
    first = timed([*ctxscan, "feeds", "src03"], estate, env)
    connection = sqlite3.connect(path)
    with connection:
        connection.execute("DELETE FROM graph_cache")
    connection.close()
    cold = timed([*ctxscan, "feeds", "src03"], estate, env)

    cases = [
        ("python -c pass", [python, "-c", "pass"], None),
        ("ctxscan --help", [*ctxscan, "--help"], None),
        ("feeds SOURCE", [*ctxscan, "feeds", "src03"], "feeds"),
        ("feeds ASSET", [*ctxscan, "feeds", "src07:schema1.table0001"], "feeds"),
        ("feeds GLOB", [*ctxscan, "feeds", "src11:schema2.*"], "feeds"),
        ("feeds SOURCE --json", [*ctxscan, "feeds", "src03", "--json"], "feeds"),
        ("depends WORKFLOW", [*ctxscan, "depends", "wf499"], "depends"),
        ("depends WORKFLOW --json", [*ctxscan, "depends", "wf250", "--json"], "depends"),
        ("graph export graphml", [*ctxscan, "graph", "export", "--format", "graphml", "-o", str(out)],
         "graph export"),
    ]
    results = []
    for name, command, _ in cases:
        runs = max(1, args.runs if "export" not in name else max(2, args.runs // 2))
        times = [timed(command, estate, env) for _ in range(runs)]
        results.append((name, statistics.median(times), min(times)))
    base_python = results[0][1]
    base_help = results[1][1]
    print(f"estate: {estate} (50,000 assets, 500 workflows); {args.runs} runs each, median and best")
    print(f"scan --source live (rules over the estate, readies the graph cache): {scan_time:.2f}s")
    print(f"first query after that scan: {first:.3f}s ({'ok' if first < 1 else 'MISSED'}: target < 1s)")
    print(f"cold first query without a readied cache (builds and caches the graph): {cold:.2f}s")
    print(f"{'command':28} {'median':>8} {'best':>8} {'x python':>9} {'x --help':>9}  target")
    failed = False
    for (name, median, best), (_, _, target_key) in zip(results, cases, strict=True):
        target = TARGETS.get(target_key or "")
        verdict = ""
        if target is not None:
            ok = median < target
            failed |= not ok
            verdict = f"< {target:g}s {'ok' if ok else 'MISSED'}"
        print(f"{name:28} {median:8.3f} {best:8.3f} {median / base_python:9.1f} {median / base_help:9.1f}  {verdict}")
    if failed:
        print("some targets were missed (a loaded machine inflates every figure: compare the ratios)")


if __name__ == "__main__":
    main()
