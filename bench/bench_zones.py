"""Zones: 200 fake sources (0.5 s each) scanned in-process, then through 1, 2 and 4 zone workers.

Run: python bench/bench_zones.py [--sources 200] [--latency 0.5] [--worker-concurrency 4]

A private redis-server on a free loopback port is the broker and result backend; workers are
real `ctxscan worker --zone bench` subprocesses (threads pool, `--worker-concurrency` probes
each; 4 by default, as `ctxscan worker`'s own default). The baseline is the local executor with the same number of probes at once as one
worker (`defaults.concurrency` = worker concurrency); the zoned scans run `run_scan` with the
zone dispatcher and enough waiting threads for every worker slot. Throughput is sources per
second of wall time; the target is 4 workers >= 3.5x the throughput of 1.

Dispatch overhead: 100 sources with no latency, one at a time (concurrency 1), local against
one worker; each probe's duration as `run_scan` measured it (dispatch, queue, worker, answer),
p50 and p99.

With --postgres: a 5,000-table PostgreSQL database (bench/bench_postgres.py's builder) is
scanned in-process and through one zone worker (the URL only in the worker's environment),
each a first scan (fresh store) and a second scan (the previous snapshot goes along to the
worker), best of --repeat interleaved runs; target: the zone within 1.3x of local.
Latest figures: bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scanner.inventory import load_inventory  # noqa: E402
from scanner.scan import run_scan  # noqa: E402
from scanner.store import Store  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_inventory(folder: Path, name: str, sources: int, latency: float, concurrency: int,
                    zone: str | None) -> Path:
    zone_text = f", zone: {zone}" if zone else ""
    lines = [f"  - {{id: s{i}, connector: fake, latency: {latency}, tables: [t]{zone_text}}}" for i in range(sources)]
    path = folder / f"{name}.yaml"
    path.write_text(f"version: 1\ndefaults: {{concurrency: {concurrency}, timeout: 120s}}\nsources:\n"
                    + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def timed_scan(config: Path, folder: Path, prober: object | None) -> tuple[float, list[float], int]:
    """Wall seconds, each probe's duration, and how many sources failed."""
    store = Store.open(f"sqlite:///{folder / (config.stem + str(time.monotonic_ns()) + '.db')}")
    inventory = load_inventory([config])
    began = time.perf_counter()
    report = run_scan(inventory, store, prober=prober)  # type: ignore[arg-type]
    wall = time.perf_counter() - began
    store.close()
    failed = sum(1 for o in report.outcomes if o.status != "ok")
    return wall, [o.duration for o in report.outcomes], failed


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of a process (this one by default), from /proc."""
    fields = Path(f"/proc/{pid or 'self'}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--worker-concurrency", type=int, default=4)
    parser.add_argument("--postgres", action="store_true", help="also: 5,000 PostgreSQL tables through a zone")
    parser.add_argument("--only-postgres", action="store_true", help="only the PostgreSQL comparison")
    parser.add_argument("--tables-per-schema", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="ctxscan-bench-zones-"))
    port = free_port()
    redis = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
                              "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    broker = f"redis://127.0.0.1:{port}/0"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTXSCAN_")}
    workers: list[subprocess.Popen[bytes]] = []
    try:
        from scanner.zones.dispatch import ZoneDispatcher

        dispatcher = ZoneDispatcher(broker)

        def add_worker() -> None:
            log = (folder / f"worker-{len(workers)}.log").open("wb")
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "scanner", "worker", "--zone", "bench", "--broker", broker,
                 "--concurrency", str(args.worker_concurrency), "--log-level", "warning"],
                stdout=log, stderr=subprocess.STDOUT, env=env))
            deadline = time.monotonic() + 60
            while len(dispatcher.live_workers("bench", fresh=True)) < len(workers):
                if time.monotonic() > deadline:
                    raise SystemExit("workers did not come up")
                time.sleep(0.5)

        if args.only_postgres:
            add_worker_env = {"BENCH_PG_URL": ""}  # set below
            postgres_comparison(args, folder, broker, dispatcher, env, workers, add_worker_env)
            return
        per_worker = args.worker_concurrency
        local = write_inventory(folder, "local", args.sources, args.latency, per_worker, None)
        cpu_before_local = cpu_seconds()
        wall, _, failed = timed_scan(local, folder, None)
        base = args.sources / wall
        print(f"  (CPU ms per probe, local: {(cpu_seconds() - cpu_before_local) * 1000 / args.sources:.1f})")
        print(f"local executor ({per_worker} at once): {wall:6.2f} s, {base:6.1f} sources/s, failed {failed}")
        rates = {}
        for count in (1, 2, 4):
            while len(workers) < count:
                add_worker()
            zoned = write_inventory(folder, f"zoned{count}", args.sources, args.latency,
                                    args.sources, "bench")
            cpu_before = cpu_seconds(), sum(cpu_seconds(w.pid) for w in workers)
            wall, durations, failed = timed_scan(zoned, folder, dispatcher)
            cpu_after = cpu_seconds(), sum(cpu_seconds(w.pid) for w in workers)
            rates[count] = args.sources / wall
            print(f"{count} worker(s) x {per_worker}: {wall:6.2f} s, {rates[count]:6.1f} sources/s, "
                  f"{rates[count] / base:4.2f}x local, failed {failed}; CPU ms per probe: dispatcher "
                  f"{(cpu_after[0] - cpu_before[0]) * 1000 / args.sources:.1f}, workers "
                  f"{(cpu_after[1] - cpu_before[1]) * 1000 / args.sources:.1f}")
        print(f"4 workers / 1 worker throughput: {rates[4] / rates[1]:.2f}x (target >= 3.5x)")

        # Dispatch overhead: one probe at a time, no latency, one worker.
        while len(workers) > 1:
            victim = workers.pop()
            victim.terminate()
            victim.wait(30)
        quick_local = write_inventory(folder, "quick-local", 100, 0.0, 1, None)
        quick_zoned = write_inventory(folder, "quick-zoned", 100, 0.0, 1, "bench")
        timed_scan(quick_zoned, folder, dispatcher)  # warm-up: connections, the worker's first task
        _, local_durations, _ = timed_scan(quick_local, folder, None)
        _, zoned_durations, failed = timed_scan(quick_zoned, folder, dispatcher)
        for name, values in (("local", local_durations), ("zone", zoned_durations)):
            print(f"per-probe {name:5s}: p50 {quantile(values, 0.5) * 1000:7.2f} ms, "
                  f"p99 {quantile(values, 0.99) * 1000:7.2f} ms, mean {statistics.mean(values) * 1000:7.2f} ms")
        print(f"dispatch overhead (zone - local): p50 "
              f"{(quantile(zoned_durations, 0.5) - quantile(local_durations, 0.5)) * 1000:.1f} ms, p99 "
              f"{(quantile(zoned_durations, 0.99) - quantile(local_durations, 0.99)) * 1000:.1f} ms; failed {failed}")
        if args.postgres:
            postgres_comparison(args, folder, broker, dispatcher, env, workers, {})
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        redis.kill()
        redis.wait()
        shutil.rmtree(folder, ignore_errors=True)


def postgres_comparison(args: argparse.Namespace, folder: Path, broker: str, dispatcher: object,
                        env: dict[str, str], workers: list[subprocess.Popen[bytes]], _extra: dict[str, str]) -> None:
    """5,000 tables: local run_scan against run_scan through one zone worker."""
    import uuid

    import bench_postgres as pg

    for worker in workers:  # a worker of its own, with the database URL in its environment
        worker.terminate()
        worker.wait(30)
    workers.clear()
    suffix = uuid.uuid4().hex[:8]
    database = f"ctxscan_bench_{suffix}"
    roles = {k: f"ctxscan_bench_{k}_{suffix}" for k in ("reader", "writer", "analyst", "bot")}
    url = pg.ADMIN_URL.rsplit("/", 1)[0] + "/" + database
    began = time.perf_counter()
    pg.build(database, args.tables_per_schema, roles)
    print(f"built {database}: {5 * args.tables_per_schema} tables in {time.perf_counter() - began:.1f} s")
    try:
        log = (folder / "worker-pg.log").open("wb")
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "scanner", "worker", "--zone", "pg", "--broker", broker, "--concurrency", "2",
             "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT, env={**env, "BENCH_PG_URL": url}))
        deadline = time.monotonic() + 60
        while not dispatcher.live_workers("pg", fresh=True):  # type: ignore[attr-defined]
            if time.monotonic() > deadline:
                raise SystemExit("the pg worker did not come up")
            time.sleep(0.5)
        local = folder / "pg-local.yaml"
        local.write_text(f"version: 1\nsources:\n  - {{id: bench, connector: postgres, url: '{url}', timeout: 600s}}\n")
        zoned = folder / "pg-zoned.yaml"
        zoned.write_text("version: 1\nsources:\n  - {id: bench, connector: postgres, zone: pg, "
                         "url: '${BENCH_PG_URL}', timeout: 600s}\n")
        times: dict[str, list[float]] = {}
        for run in range(args.repeat):
            for name, config, prober in (("local", local, None), ("zone", zoned, dispatcher)):
                store_url = f"sqlite:///{folder / f'pg-{name}-{run}.db'}"
                for attempt in ("first", "second"):
                    store = Store.open(store_url)
                    inventory = load_inventory([config])
                    start = time.perf_counter()
                    report = run_scan(inventory, store, prober=prober)  # type: ignore[arg-type]
                    wall = time.perf_counter() - start
                    store.close()
                    assert report.outcomes[0].status == "ok", report.outcomes[0].error
                    times.setdefault(f"{name} {attempt}", []).append(wall)
        for attempt in ("first", "second"):
            best_local, best_zone = min(times[f"local {attempt}"]), min(times[f"zone {attempt}"])
            print(f"5,000 tables, {attempt} scan: local {best_local:.2f} s (median "
                  f"{statistics.median(times[f'local {attempt}']):.2f}), zone {best_zone:.2f} s (median "
                  f"{statistics.median(times[f'zone {attempt}']):.2f}): {best_zone / best_local:.2f}x (target <= 1.3x)")
    finally:
        pg.drop(database, roles)


if __name__ == "__main__":
    main()
