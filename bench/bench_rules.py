"""Rule evaluation on a large estate, against decoding the same snapshots, in the same run.

Run: python bench/bench_rules.py
Builds in memory one source of N tables (40 schemas, 12 columns each, schema- and table-
level grants, role chains, PUBLIC grants, a previous snapshot with type changes) and 60
workflows in feeds chains reading tables and schema globs, then times `evaluate()` for N
and 10 N. The baseline is decoding those snapshots from their stored JSON form, which every
evaluation already pays (`build_context` reads them from the store). Latest figures: see
bench/README.md.
"""

from __future__ import annotations

import json
import statistics
import time
from datetime import UTC, datetime, timedelta

from scanner.inventory import Defaults, Inventory, Owner, ReadDeclaration, WorkflowConfig
from scanner.model import (
    Asset,
    Column,
    FreshnessObservation,
    Grant,
    Membership,
    Principal,
    SourceSnapshot,
    snapshot_from_dict,
    snapshot_to_dict,
)
from scanner.plugins import FreshnessConfig, SourceConfig
from scanner.rules import evaluate
from scanner.rules.base import RuleContext

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SCHEMAS = 40
WORKFLOWS = 60
RUNS = 5


def estate(tables: int) -> tuple[Inventory, SourceSnapshot, SourceSnapshot]:
    """An inventory and two snapshots (previous, newest) of one big source."""
    def assets(drift: bool) -> tuple[Asset, ...]:
        out = []
        for i in range(tables):
            schema = f"s{i % SCHEMAS}"
            columns = tuple(Column(f"c{j}", "bigint" if drift and j == 3 and i % 7 == 0 else "integer")
                            for j in range(12))
            out.append(Asset(f"{schema}.t{i}", "table", columns, container=schema, freshness=FreshnessObservation(
                "column", NOW - timedelta(minutes=(i * 37) % 5000))))
        return tuple(out)

    grants = [Grant(f"bot{w}", "SELECT", f"s{w % SCHEMAS}", "container") for w in range(WORKFLOWS)]
    grants += [Grant(f"bot{w}", "INSERT", f"s{w % SCHEMAS}.t{w}", "asset", "write") for w in range(WORKFLOWS)]
    grants += [Grant("PUBLIC", "SELECT", f"s{i % SCHEMAS}.t{i}", "asset", public=True)
               for i in range(0, tables, 50)]
    grants += [Grant("analysts", "SELECT", f"s{i % SCHEMAS}.t{i}", "asset") for i in range(0, tables, 3)]
    members = [Membership(f"bot{w}", "analysts") for w in range(0, WORKFLOWS, 4)]
    principals = [Principal("admin", privileged=True, attributes=("superuser",))]
    members += [Membership("bot7", "admin")]

    def snapshot(drift: bool, at: datetime) -> SourceSnapshot:
        return SourceSnapshot("wh", "fake", at, assets(drift), tuple(principals), tuple(members), tuple(grants))

    workflows = {}
    for w in range(WORKFLOWS):
        reads = [ReadDeclaration(f"wh:s{w % SCHEMAS}.t{w + k * SCHEMAS}", "wh", f"s{w % SCHEMAS}.t{w + k * SCHEMAS}",
                                 max_age=3600.0 * (1 + w % 5)) for k in range(5)]
        reads.append(ReadDeclaration(f"wh:s{(w + 1) % SCHEMAS}.*", "wh", f"s{(w + 1) % SCHEMAS}.*"))
        workflows[f"w{w}"] = WorkflowConfig(
            f"w{w}", owner="team" if w % 3 else None, stage=("poc", "pilot", "production")[w % 3],
            runs_as={"wh": f"bot{w}"}, reads=tuple(reads), feeds=(f"w{w + 1}",) if w % 10 != 9 else ())
    inventory = Inventory(files=(), sources={"wh": SourceConfig("wh", "fake", freshness=FreshnessConfig(86400.0))},
                          workflows=workflows, owners={"team": Owner("team")}, defaults=Defaults())
    return inventory, snapshot(False, NOW - timedelta(hours=1)), snapshot(True, NOW)


def median(action) -> float:  # type: ignore[no-untyped-def]
    """Median wall time of an action over RUNS runs."""
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(tables: int) -> tuple[float, float, int]:
    """(decode seconds, evaluate seconds, findings) for an estate of `tables` tables."""
    inventory, previous, newest = estate(tables)
    blobs = [json.dumps(snapshot_to_dict(s)) for s in (previous, newest)]
    decode = median(lambda: [snapshot_from_dict(json.loads(b)) for b in blobs])
    found: list[int] = []

    def run() -> None:
        ctx = RuleContext(inventory, {"wh": newest}, {}, NOW, {"wh": previous})
        found.append(len(evaluate(ctx)))
    return decode, median(run), found[-1]


def main() -> None:
    """Print both sizes, their ratios to the decode baseline, and the scaling factor."""
    small, large = 2_000, 20_000
    d1, e1, f1 = measure(small)
    d2, e2, f2 = measure(large)
    print(f"{small:>6} tables: decode {d1 * 1000:8.1f} ms (baseline)  evaluate {e1 * 1000:8.1f} ms  "
          f"ratio {e1 / d1:.2f}x  ({f1} findings)")
    print(f"{large:>6} tables: decode {d2 * 1000:8.1f} ms (baseline)  evaluate {e2 * 1000:8.1f} ms  "
          f"ratio {e2 / d2:.2f}x  ({f2} findings)")
    print(f"10x the tables: evaluate x{e2 / e1:.1f}, decode x{d2 / d1:.1f} (linear is x10)")


if __name__ == "__main__":
    main()
