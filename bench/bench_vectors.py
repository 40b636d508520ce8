"""The chroma probe's cost against the bare chromadb client, on a real `chroma run` on 127.0.0.1.

One collection of N records (default 10,000, dimension 32) in a Chroma server started from
.venv-chroma (tests/services/install-chroma.sh). Each figure is the median of R runs:

- baseline "count": the bare client lists the collections and counts the records;
- baseline "pages": the bare client also reads ids, documents and metadata in pages of 1,000
  (what the content fingerprint needs);
- the connector's probe with `fingerprint_limit: 0` (count only) and with the default (10,000).

Ratios: probe(count only) / bare count, probe(default) / bare pages.

    python bench/bench_vectors.py [--records 10000] [--runs 5]
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def median_seconds(function, runs: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    chroma = ROOT / ".venv-chroma" / "bin" / "chroma"
    if not chroma.exists():
        sys.exit("run `bash tests/services/install-chroma.sh` first")
    import chromadb
    from chromadb.config import Settings

    from connectors.chroma import ChromaConnector
    from scanner.plugins import ProbeContext, SourceConfig

    port = free_port()
    folder = tempfile.mkdtemp(prefix="ctxscan-bench-chroma-")
    server = subprocess.Popen([str(chroma), "run", "--path", folder, "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        client = chromadb.HttpClient(host="127.0.0.1", port=port, settings=Settings(anonymized_telemetry=False))
        collection = client.create_collection("bench", embedding_function=None)
        for start in range(0, args.records, 1000):
            ids = [f"r{i}" for i in range(start, min(start + 1000, args.records))]
            collection.add(ids=ids, embeddings=[[random.random() for _ in range(32)] for _ in ids],
                           documents=[f"document {i} " * 8 for i in ids], metadatas=[{"n": i} for i in ids])

        def bare_count() -> None:
            bare = chromadb.HttpClient(host="127.0.0.1", port=port, settings=Settings(anonymized_telemetry=False))
            for found in bare.list_collections():
                found.count()

        def bare_pages() -> None:
            bare = chromadb.HttpClient(host="127.0.0.1", port=port, settings=Settings(anonymized_telemetry=False))
            for found in bare.list_collections():
                total = found.count()
                for offset in range(0, min(total, 10_000), 1000):
                    found.get(limit=1000, offset=offset, include=["documents", "metadatas"])

        def probe(limit: int | None) -> None:
            settings: dict[str, object] = {"url": f"http://127.0.0.1:{port}"}
            if limit is not None:
                settings["fingerprint_limit"] = limit
            config = SourceConfig(id="bench", connector="chroma", settings=settings)
            ChromaConnector(config).probe(ProbeContext(now=datetime.now(UTC), timeout=60))

        bare_count()  # warm the imports and the server's caches
        count_s = median_seconds(bare_count, args.runs)
        pages_s = median_seconds(bare_pages, args.runs)
        probe_count_s = median_seconds(lambda: probe(0), args.runs)
        probe_full_s = median_seconds(lambda: probe(None), args.runs)
        print(f"chroma, 1 collection of {args.records:,} records, median of {args.runs}")
        print(f"  bare count            {count_s * 1000:8.1f} ms")
        print(f"  probe, count only     {probe_count_s * 1000:8.1f} ms   ratio {probe_count_s / count_s:.2f}x")
        print(f"  bare pages            {pages_s * 1000:8.1f} ms")
        print(f"  probe, fingerprinted  {probe_full_s * 1000:8.1f} ms   ratio {probe_full_s / pages_s:.2f}x")
    finally:
        server.terminate()
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
