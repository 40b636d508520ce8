"""Benchmark: ctxscan's S3 probe against a bare boto3 paginated listing of the same prefix.

Both run in the same process, against the same moto_server on 127.0.0.1, over a prefix of
20,000 objects (by default), alternating, several rounds; the medians are compared. The
baseline is what any script would do: make a client and page through list_objects_v2,
counting objects and bytes. The probe does that and everything else it reports (newest and
oldest LastModified, storage classes, ACL, policy, policy status, public-access blocks,
ownership controls, tags).

    .venv/bin/python bench/bench_s3.py                      # starts its own moto_server
    .venv/bin/python bench/bench_s3.py --objects 5000 --rounds 5
    .venv/bin/python bench/bench_s3.py --endpoint http://127.0.0.1:5000 --keep

Creating objects costs moto about 4 ms each even with parallel raw PUTs (20,000 take about
80 s). With `--endpoint` the bucket is reused when it already holds the objects, so a second
run against a moto_server left running skips the creation.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUCKET = "ctxscan-bench"
PREFIX = "corpus/"
TARGET = 1.2

os.environ.update({
    "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    """moto_server on a free loopback port, ready."""
    port = free_port()
    binary = Path(sys.executable).parent / "moto_server"
    process = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
            return process, endpoint
        except OSError:
            if process.poll() is not None:
                sys.exit(f"moto_server exited with code {process.returncode}")
            time.sleep(0.2)
    process.kill()
    sys.exit("moto_server did not start within 30 s")


def client(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def populate(endpoint: str, count: int, workers: int) -> float:
    """Make BUCKET hold `count` objects under PREFIX; returns the seconds it took (0 if reused)."""
    s3 = client(endpoint)
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if BUCKET in existing:
        have = sum(p.get("KeyCount", 0) for p in s3.get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, Prefix=PREFIX))
        if have == count:
            return 0.0
        sys.exit(f"bucket {BUCKET} holds {have} objects under {PREFIX}, not {count}; use a fresh moto_server")
    s3.create_bucket(Bucket=BUCKET)
    port = int(urllib.parse.urlsplit(endpoint).port or 80)
    local = threading.local()
    started = time.monotonic()

    def put(index: int) -> None:
        # moto checks no signatures, so raw PUTs spare the client SigV4's cost.
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        body = b"x" * (index % 97 + 1)
        conn.request("PUT", f"/{BUCKET}/{PREFIX}doc-{index:06d}.md", body=body,
                     headers={"Content-Length": str(len(body))})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"PUT failed: HTTP {response.status}")

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(put, range(count)))
    return time.monotonic() - started


def baseline(endpoint: str) -> tuple[int, int]:
    """A bare boto3 paginated listing: object count and total bytes."""
    s3 = client(endpoint)
    count = size = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX):
        for item in page.get("Contents", ()):
            count += 1
            size += item["Size"]
    return count, size


def ctxscan_probe(endpoint: str) -> tuple[int, int]:
    """ctxscan's S3 probe of the same prefix, with all it reports."""
    from connectors.s3 import S3Connector
    from scanner.plugins import ProbeContext, SourceConfig

    config = SourceConfig(id="bench", connector="s3", owner_tag="owner",
                          settings={"bucket": BUCKET, "prefixes": [PREFIX], "endpoint_url": endpoint,
                                    "region": "us-east-1"})
    snapshot = S3Connector(config).probe(ProbeContext(now=datetime.now(UTC), timeout=600))
    asset = snapshot.assets[0]
    return int(asset.properties["object_count"]), int(asset.size_bytes or 0)


def timed(function: Any, endpoint: str) -> tuple[float, tuple[int, int]]:
    started = time.perf_counter()
    result = function(endpoint)
    return time.perf_counter() - started, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=8, help="parallel PUTs while creating objects")
    parser.add_argument("--endpoint", help="use this moto_server instead of starting one")
    parser.add_argument("--keep", action="store_true", help="leave the moto_server we started running")
    args = parser.parse_args()

    process = None
    endpoint = args.endpoint
    if endpoint is None:
        process, endpoint = start_moto()
    try:
        took = populate(endpoint, args.objects, args.workers)
        print(f"objects: {args.objects} under s3://{BUCKET}/{PREFIX} on {endpoint}"
              + (f" (created in {took:.1f} s)" if took else " (reused)"), flush=True)
        expected = baseline(endpoint)  # also warms moto and the client libraries
        assert expected[0] == args.objects, expected
        assert ctxscan_probe(endpoint) == expected
        times: dict[str, list[float]] = {"boto3 paginated listing": [], "ctxscan s3 probe": []}
        for _ in range(args.rounds):
            for name, function in (("boto3 paginated listing", baseline), ("ctxscan s3 probe", ctxscan_probe)):
                seconds, result = timed(function, endpoint)
                assert result == expected, (name, result, expected)
                times[name].append(seconds)
        base = statistics.median(times["boto3 paginated listing"])
        ours = statistics.median(times["ctxscan s3 probe"])
        for name, values in times.items():
            print(f"{name:26s} median {statistics.median(values):7.3f} s   "
                  f"runs {' '.join(f'{v:.3f}' for v in values)}")
        ratio = ours / base
        verdict = "within" if ratio <= TARGET else "OVER"
        print(f"ratio ctxscan/boto3: {ratio:.3f}  ({verdict} the {TARGET}x target)")
        return 0 if ratio <= TARGET else 1
    finally:
        if process is not None:
            if args.keep:
                print(f"moto_server left running at {endpoint} (pid {process.pid})")
            else:
                process.terminate()
                process.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
