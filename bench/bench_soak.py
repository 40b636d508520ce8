"""Soak: the daemon runs 1,000 scheduled scan cycles with the fake connector; memory stays flat.

Run: python bench/bench_soak.py [--cycles 1000]

One in-process daemon (APScheduler, the local executor, a SQLite state store, a file and a
webhook target on 127.0.0.1, the HTTP endpoint) scans four fake sources on a 20 ms schedule.
Every 100 cycles the inventory is rewritten and reloaded so a finding opens or resolves and
notifications flow; /metrics and /healthz are scraped every 50 cycles. A cycle is one
scheduled scan of one source: probe, store, evaluate the rules, reconcile notifications.

Memory is measured after a warm-up of 200 cycles (imports, SQLAlchemy's statement cache and
the thread pools are filled by then) and again at the end: the resident set size and the
number of live Python objects after a full collection. Both ratios end/start must stay
close to 1.0 (the script flags anything above 1.10).
Latest (2 cores): see bench/README.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scanner.daemon import Daemon, DaemonOptions  # noqa: E402
from scanner.inventory import load_inventory  # noqa: E402
from scanner.store import Store  # noqa: E402

WARM_UP = 200
SOURCES = 4
INVENTORY = """
version: 1
owners: [{{id: team}}]
sources:
{sources}
workflows:
  - {{id: bot, owner: team, stage: production, reads: [{{asset: "s0:public.orders", max_age: 1h}}]}}
notify:
  - {{type: file, path: findings.jsonl}}
  - {{type: webhook, url: "http://127.0.0.1:{port}/hook", timeout: 2s}}
"""


def rss_bytes() -> int:
    """The process's resident set size, from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def sqlite_bytes() -> int | None:
    """Memory SQLite holds (page caches grow with the database, up to cache_size per connection)."""
    try:
        import ctypes
        import ctypes.util

        library = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
        library.sqlite3_memory_used.restype = ctypes.c_int64
        return int(library.sqlite3_memory_used())
    except (OSError, AttributeError):
        return None


def live_objects() -> int:
    gc.collect()
    return len(gc.get_objects())


class Receiver(BaseHTTPRequestHandler):
    count = 0

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Receiver.count += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def write_inventory(path: Path, port: int, stale: bool) -> None:
    age = "3h" if stale else "1m"
    sources = "\n".join(
        f"  - {{id: s{i}, connector: fake, owner: team, schedule: 0.02s, "
        f"tables: [public.orders@{age if i == 0 else '1m'}, public.items@5m], columns: [id:int, at:timestamp]}}"
        for i in range(SOURCES))
    path.write_text(INVENTORY.format(sources=sources, port=port), encoding="utf-8")


def main() -> None:
    """Run the soak and print memory at the start and the end, and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=1000)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="ctxscan-soak-") as folder:
        config = Path(folder) / "ctxscan.yaml"
        write_inventory(config, server.server_address[1], stale=True)
        store = Store.open(f"sqlite:///{Path(folder) / 'state.db'}")
        daemon = Daemon(load_inventory([config]), store, [str(config)],
                        DaemonOptions(metrics_port=0, retry_initial=0.1, retry_max=1.0))
        import logging

        logging.getLogger().setLevel(logging.ERROR)
        daemon.start()
        assert daemon.server is not None
        base = f"http://127.0.0.1:{daemon.server.port}"

        def cycles() -> int:
            return sum(s["scans_since_start"] for s in daemon.health()[1]["sources"].values())

        started = time.perf_counter()
        stale, next_flip, next_scrape = True, 100, 50
        start_rss = start_objects = 0
        start_sqlite: int | None = None
        samples: list[int] = []
        next_sample = args.cycles // 10
        done = 0
        while done < args.cycles:
            time.sleep(0.01)
            done = cycles()
            if done >= WARM_UP and not start_rss:
                start_rss, start_objects, start_sqlite = rss_bytes(), live_objects(), sqlite_bytes()
            if done >= next_flip:
                stale = not stale
                write_inventory(config, server.server_address[1], stale)
                daemon.reload()
                next_flip += 100
            if done >= next_sample:
                samples.append(rss_bytes())
                next_sample += args.cycles // 10
            if done >= next_scrape:
                with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
                    response.read()
                with urllib.request.urlopen(base + "/healthz", timeout=5) as response:
                    json.loads(response.read())
                next_scrape += 50
        elapsed = time.perf_counter() - started
        assert daemon.scheduler is not None
        daemon.scheduler.pause()
        time.sleep(0.5)  # let the last scans finish
        daemon.dispatcher.reconcile(daemon.inventory)
        daemon.dispatcher.flush(10)
        end_rss, end_objects, end_sqlite = rss_bytes(), live_objects(), sqlite_bytes()
        lines = len((Path(folder) / "findings.jsonl").read_text().splitlines())
        daemon.shutdown()
        store.close()
    server.shutdown()
    rss_ratio = end_rss / start_rss
    objects_ratio = end_objects / start_objects
    print(f"cycles         : {done} scheduled scans of {SOURCES} fake sources in {elapsed:.1f}s "
          f"({done / elapsed:.0f}/s); {lines} file notifications, {Receiver.count} webhook deliveries")
    print(f"RSS            : {start_rss / 2**20:7.1f} MiB after {WARM_UP} cycles (baseline), "
          f"{end_rss / 2**20:7.1f} MiB at the end  ratio {rss_ratio:.3f}x  "
          f"{'flat' if rss_ratio < 1.10 else 'GROWING'}")
    print("RSS every 10%  : " + " ".join(f"{value / 2**20:.0f}" for value in samples) + " MiB")
    if start_sqlite is not None and end_sqlite is not None:
        rest_start, rest_end = start_rss - start_sqlite, end_rss - end_sqlite
        print(f"SQLite memory  : {start_sqlite / 2**20:7.1f} MiB (baseline), {end_sqlite / 2**20:7.1f} MiB at the end"
              f"; RSS without it {rest_start / 2**20:.1f} -> {rest_end / 2**20:.1f} MiB  "
              f"ratio {rest_end / rest_start:.3f}x")
    print(f"live objects   : {start_objects:8d} (baseline), {end_objects:8d} at the end  "
          f"ratio {objects_ratio:.3f}x  {'flat' if objects_ratio < 1.10 else 'GROWING'}")


if __name__ == "__main__":
    main()
