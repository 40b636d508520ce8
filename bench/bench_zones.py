"""Zones: 200 fake sources (0.5 s each) scanned in-process, then through 1, 2 and 4 zone workers.

Run: python bench/bench_zones.py [--sources 200] [--latency 0.5] [--worker-concurrency 8]

A private redis-server on a free loopback port is the broker and result backend; workers are
real `ctxscan worker --zone bench` subprocesses (threads pool, `--worker-concurrency` probes
each). The baseline is the local executor with the same number of probes at once as one
worker (`defaults.concurrency` = worker concurrency); the zoned scans run `run_scan` with the
zone dispatcher and enough waiting threads for every worker slot. Throughput is sources per
second of wall time; the target is 4 workers >= 3.5x the throughput of 1.

Dispatch overhead: 100 sources with no latency, one at a time (concurrency 1), local against
one worker; each probe's duration as `run_scan` measured it (dispatch, queue, worker, answer),
p50 and p99.
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
    parser.add_argument("--worker-concurrency", type=int, default=8)
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
                                    per_worker * count + 8, "bench")
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


if __name__ == "__main__":
    main()
