"""`ctxscan --help` start-up against a bare interpreter start, in the same run.

Run: python bench/bench_startup.py
Latest (2 cores): see bench/README.md.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 20
CTXSCAN = [sys.executable, "-m", "scanner", "--help"]
BASELINE = [sys.executable, "-c", "pass"]


def median_seconds(command: list[str]) -> float:
    """The median wall time of a command over RUNS runs."""
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=Path(__file__).parent.parent)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    """Print both medians and their ratio."""
    baseline = median_seconds(BASELINE)
    help_time = median_seconds(CTXSCAN)
    print(f"python -c pass : {baseline * 1000:7.1f} ms (baseline)")
    print(f"ctxscan --help : {help_time * 1000:7.1f} ms  ratio {help_time / baseline:.2f}x  "
          f"target < 300 ms: {'ok' if help_time < 0.3 else 'MISSED'}")


if __name__ == "__main__":
    main()
