"""Lineage imports at scale, against a baseline measured in the same run.

Run: .venv/bin/python bench/bench_lineage.py [--models 5000] [--exposures 500] [--events 10000]

1. `ctxscan import dbt`: a synthetic dbt manifest (schema v12 shape) of 5,000 models in
   layers over 1,000 source tables, each model on 1-3 upstream nodes, and 500 exposures.
   Timed: the whole command in a fresh process (read, map, render, write), then loading
   the merged inventory (hand-written + imported: what every later command pays, including
   the derived_from checks). Baseline: `python -c "import json; json.load(...)"` of the same
   manifest in a fresh process. Target: the import under 5 s.
2. OpenLineage: 10,000 run events (START/COMPLETE pairs of 5,000 runs over 500 jobs, each
   with 2-4 inputs and 1 output) ingested into a fresh SQLite store, by
   `ctxscan import openlineage FILE.jsonl` in a fresh process, and by the daemon's endpoint
   (`POST /api/v1/lineage`, one event per request as the HTTP transport sends them, 4
   clients on loopback). Baseline: parsing the same lines with json.loads, in process.
   Target: 10,000 events under 10 s.
3. What the imported lineage costs later: `ctxscan scan` of one `fake` source holding every
   table the manifest names (5,900), then the first `ctxscan feeds` (which builds the graph:
   effective SLAs through derived_from for every asset) and a second one (from the cache),
   with the imported file merged, against the same without it (no overrides, no lineage,
   no workflows).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def manifest(models: int, exposures: int, sources: int) -> dict:
    rng = random.Random(7)
    nodes: dict[str, dict] = {}
    source_nodes: dict[str, dict] = {}
    for i in range(sources):
        uid = f"source.shop.raw.t{i}"
        source_nodes[uid] = {
            "resource_type": "source", "database": "wh", "schema": "raw", "name": f"t{i}", "identifier": f"t{i}",
            "loaded_at_field": "loaded_at", "unique_id": uid,
            "freshness": {"warn_after": {"count": 12, "period": "hour"}, "error_after": {"count": 1, "period": "day"}},
            "meta": {"owner": f"team{i % 20}"}, "config": {"enabled": True}, "tags": [], "columns": {}}
    ids = list(source_nodes)
    for i in range(models):
        uid = f"model.shop.m{i}"
        parents = rng.sample(ids, k=min(len(ids), rng.randint(1, 3)))
        nodes[uid] = {
            "resource_type": "model", "database": "wh", "schema": f"mart{i % 10}", "name": f"m{i}", "alias": f"m{i}",
            "unique_id": uid, "depends_on": {"nodes": parents, "macros": []},
            "config": {"materialized": "ephemeral" if i % 50 == 0 else "table", "meta": {}, "enabled": True},
            "group": f"g{i % 5}", "meta": {}, "tags": ["nightly"], "columns": {}, "description": "x" * 200}
        ids.append(uid)
    groups = {f"group.shop.g{g}": {"name": f"g{g}", "owner": {"name": f"Group {g}", "email": f"g{g}@x.io"}}
              for g in range(5)}
    exposures_map = {}
    model_ids = [u for u in nodes]
    for i in range(exposures):
        uid = f"exposure.shop.e{i}"
        exposures_map[uid] = {
            "name": f"e{i}", "type": ["ml", "application", "analysis", "notebook", "dashboard"][i % 5],
            "maturity": ["high", "medium", "low"][i % 3], "owner": {"name": f"Owner {i % 30}"},
            "depends_on": {"nodes": rng.sample(model_ids, k=4)}, "unique_id": uid, "config": {"enabled": True}}
    return {"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json",
                         "dbt_version": "1.11.16", "project_name": "shop"},
            "nodes": nodes, "sources": source_nodes, "exposures": exposures_map, "groups": groups,
            "metrics": {}, "semantic_models": {}, "parent_map": {}, "child_map": {}}


def timed(args: list[str], env: dict | None = None) -> float:
    began = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT)
    elapsed = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def bench_dbt(work: Path, models: int, exposures: int) -> None:
    data = manifest(models, exposures, sources=max(1, models // 5))
    path = work / "manifest.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    hand = work / "ctxscan.yaml"
    hand.write_text("version: 1\nsources:\n  - {id: wh, connector: postgres, url: 'postgresql://u@127.0.0.1:1/wh'}\n",
                    encoding="utf-8")
    baseline = min(timed([PY, "-c", f"import json; json.load(open({str(path)!r}))"]) for _ in range(3))
    out = work / "ctxscan.dbt.yaml"
    runs = [timed([PY, "-m", "scanner", "import", "dbt", str(path), "--source", "wh", "-o", str(out)])
            for _ in range(3)]
    load = [timed([PY, "-m", "scanner", "validate", "-c", str(hand), "-c", str(out)]) for _ in range(3)]
    size = path.stat().st_size / 1e6
    print(f"dbt manifest: {models} models, {len(data['sources'])} sources, {exposures} exposures, {size:.1f} MB")
    print(f"  baseline json.load (fresh process): {baseline:.2f} s")
    print(f"  ctxscan import dbt: best {min(runs):.2f} s (runs {', '.join(f'{r:.2f}' for r in runs)}), "
          f"ratio {min(runs) / baseline:.2f}x; output {out.stat().st_size / 1e6:.1f} MB")
    print(f"  ctxscan validate (hand-written + imported): best {min(load):.2f} s")


def bench_scan_with_lineage(work: Path) -> None:
    import yaml

    imported = work / "ctxscan.dbt.yaml"
    data = yaml.safe_load(imported.read_text(encoding="utf-8"))
    paths = [a["path"] for a in data["sources"][0]["assets"]]
    tables = [f"{p}@{1 + (i * 7) % 50}h" for i, p in enumerate(paths)]
    (work / "fake.yaml").write_text(yaml.safe_dump({"version": 1, "sources": [
        {"id": "wh", "connector": "fake", "owner": "data", "tables": tables}]}), encoding="utf-8")
    figures = {}
    for label, files in (("without the import", [work / "fake.yaml"]),
                         ("with the import", [work / "fake.yaml", imported])):
        config = [arg for f in files for arg in ("-c", str(f))]
        state = ["--state", f"sqlite:///{work / (label.replace(' ', '-') + '.db')}"]
        scan = timed([PY, "-m", "scanner", "scan", *config, *state, "--json"])
        first = timed([PY, "-m", "scanner", "feeds", *config, *state, "wh:raw.t1"])
        second = timed([PY, "-m", "scanner", "feeds", *config, *state, "wh:raw.t1"])
        figures[label] = (scan, first, second)
        print(f"  {label}: scan {scan:.2f} s, first feeds (builds the graph) {first:.2f} s, "
              f"second feeds {second:.2f} s")
    base, lineage = figures["without the import"], figures["with the import"]
    print(f"  ratios with/without: scan {lineage[0] / base[0]:.2f}x, first feeds {lineage[1] / base[1]:.2f}x, "
          f"second feeds {lineage[2] / base[2]:.2f}x")


def events(count: int) -> list[str]:
    rng = random.Random(11)
    start = datetime.now(UTC) - timedelta(days=2)
    lines = []
    for run in range(count // 2):
        job = f"job{run % 500}"
        run_id = f"00000000-0000-4000-8000-{run:012d}"
        inputs = [{"namespace": "postgres://127.0.0.1:5432", "name": f"wh.raw.t{rng.randrange(1000)}"}
                  for _ in range(rng.randint(2, 4))]
        outputs = [{"namespace": "postgres://127.0.0.1:5432", "name": f"wh.mart.m{run % 700}"}]
        for offset, state in ((0, "START"), (60, "COMPLETE")):
            when = start + timedelta(seconds=run * 10 + offset)
            lines.append(json.dumps({
                "eventType": state, "eventTime": when.isoformat(), "producer": "bench",
                "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
                "run": {"runId": run_id, "facets": {}}, "job": {"namespace": "airflow", "name": job, "facets": {}},
                "inputs": inputs, "outputs": outputs}))
    return lines


def bench_openlineage(work: Path, count: int) -> None:
    lines = events(count)
    path = work / "events.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = work / "ol.yaml"
    config.write_text("version: 1\nsources:\n  - {id: wh, connector: postgres, url: 'postgresql://u@127.0.0.1:5432/wh'}\n"
                      "workflows:\n" + "".join(f"  - {{id: job{i}, reads: ['wh:raw.t{i}']}}\n" for i in range(500)),
                      encoding="utf-8")
    began = time.perf_counter()
    for line in lines:
        json.loads(line)
    baseline = time.perf_counter() - began
    runs = []
    for i in range(3):
        state = work / f"file-{i}.db"
        runs.append(timed([PY, "-m", "scanner", "import", "openlineage", "-c", str(config), "--state",
                           f"sqlite:///{state}", str(path)]))
    print(f"OpenLineage: {count} events ({path.stat().st_size / 1e6:.1f} MB)")
    print(f"  baseline json.loads of every line (in process): {baseline:.3f} s")
    print(f"  ctxscan import openlineage (fresh process, fresh store): best {min(runs):.2f} s "
          f"(runs {', '.join(f'{r:.2f}' for r in runs)}), ratio {min(runs) / baseline:.1f}x")

    from scanner.lineage.openlineage import LineageEndpoint
    from scanner.metrics import DaemonMetrics, HealthServer
    from scanner.store import Store

    store = Store.open(f"sqlite:///{work / 'http.db'}")
    endpoint = LineageEndpoint(store, "bench-token")
    metrics = DaemonMetrics(lambda: None)  # type: ignore[arg-type,return-value]  # never scraped here
    server = HealthServer("127.0.0.1", 0, lambda: (200, {}), metrics, {endpoint.path: endpoint})
    server.start()
    # The senders are separate processes (as real integrations are), so they do not share
    # the server's interpreter lock.
    chunks = []
    for i in range(4):
        chunk = work / f"chunk-{i}.jsonl"
        chunk.write_text("\n".join(lines[i::4]) + "\n", encoding="utf-8")
        chunks.append(chunk)
    sender = (
        "import http.client, sys\n"
        "conn_args = ('127.0.0.1', int(sys.argv[1]))\n"
        "for line in open(sys.argv[2], 'rb'):\n"
        "    conn = http.client.HTTPConnection(*conn_args, timeout=30)\n"
        "    conn.request('POST', '/api/v1/lineage', body=line.rstrip(b'\\n'), headers={\n"
        "        'Content-Type': 'application/json', 'Authorization': 'Bearer bench-token'})\n"
        "    status = conn.getresponse().status\n"
        "    conn.close()\n"
        "    if status != 201: sys.exit(f'status {status}')\n")
    began = time.perf_counter()
    procs = [subprocess.Popen([PY, "-c", sender, str(server.port), str(chunk)]) for chunk in chunks]
    codes = [proc.wait() for proc in procs]
    elapsed = time.perf_counter() - began
    server.stop()
    jobs = store.lineage_jobs()
    store.close()
    assert codes == [0, 0, 0, 0] and sum(j["events"] for j in jobs) == count
    print(f"  POST /api/v1/lineage, one event a request, 4 sender processes: {elapsed:.2f} s "
          f"({count / elapsed:.0f} events/s), ratio {elapsed / baseline:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=5000)
    parser.add_argument("--exposures", type=int, default=500)
    parser.add_argument("--events", type=int, default=10000)
    args = parser.parse_args()
    os.environ.pop("CTXSCAN_CONFIG", None)
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        bench_dbt(work, args.models, args.exposures)
        print(f"Scanning {args.models} models' tables with and without the imported lineage")
        bench_scan_with_lineage(work)
        bench_openlineage(work, args.events)


if __name__ == "__main__":
    main()
