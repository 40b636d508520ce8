"""`index_lag`: an asset built from others (a vector index, an extract) trails what it was built from."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from scanner.durations import format_duration
from scanner.model import Asset, Finding
from scanner.plugins import AssetOverride
from scanner.rules.base import RuleContext, fingerprint, most_critical, severity_of, workflow_ids
from scanner.rules.sla import ORIGIN_DERIVED, ORIGIN_DOWNSTREAM, ORIGIN_READ, requirements

KIND = "index_lag"
UNCHANGED_SINCE = "unchanged_since"


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")


def _derived_assets(ctx: RuleContext) -> Iterator[tuple[str, Asset, AssetOverride]]:
    """(source id, scanned asset, its override) for every scanned asset declared `derived_from`."""
    for source_id in sorted(ctx.inventory.sources):
        source = ctx.inventory.sources[source_id]
        scanned = ctx.assets_by_path.get(source_id)
        if not scanned:
            continue
        seen: set[str] = set()
        for override in source.assets:
            if not override.derived_from:
                continue
            if any(ch in override.path for ch in "*?["):
                paths = sorted(p for p in scanned if fnmatch.fnmatchcase(p, override.path))
            else:
                paths = [override.path] if override.path in scanned else []
            for path in paths:
                if path not in seen:  # the first override that names an asset speaks for it
                    seen.add(path)
                    yield source_id, scanned[path], override


def _written(asset: Asset) -> tuple[datetime | None, str]:
    """The latest moment the index can have been written, and the evidence for it.

    Its freshness says when it last changed; for a lower bound (change counters or a content
    fingerprint that held still since a scan, `FreshnessObservation.lower_bound`) the index was
    written at or before that scan: `unchanged_since`.
    """
    if asset.freshness.method == "none" or asset.freshness.last_changed is None:
        return None, "none"
    if asset.freshness.lower_bound:
        return asset.freshness.last_changed, UNCHANGED_SINCE
    return asset.freshness.last_changed, asset.freshness.method


def _records(asset: Asset) -> int | None:
    """An asset's documents, rows or objects: its row count, or an S3 prefix's object count."""
    if asset.row_count is not None:
        return asset.row_count
    count = asset.properties.get("object_count")
    return int(count) if isinstance(count, int) and not isinstance(count, bool) else None


def _default_max_lag(ctx: RuleContext, source_id: str, path: str) -> tuple[float | None, str | None]:
    """The smallest `max_age` among the workflows reading the index (directly, through feeds or
    through assets derived from it), and the workflow that declared it."""
    needs = [n for n in requirements(ctx, source_id, path)
             if n.max_age is not None and n.origin in (ORIGIN_READ, ORIGIN_DOWNSTREAM, ORIGIN_DERIVED)]
    if not needs:
        return None, None
    best = min(needs, key=lambda n: (n.max_age or 0.0, n.workflow))
    return best.max_age, best.workflow


def index_lag(ctx: RuleContext) -> Iterator[Finding]:
    """Fires for an asset declared `derived_from` others (a vector index built from a folder of
    articles, an extract of a table) when an upstream asset changed more than `max_lag` after
    the derived asset was last written: the index no longer holds what its source says.
    `max_lag` is the asset override's, else the smallest `max_age` of the workflows reading
    the index. The lag is proven, never guessed: it runs from the latest moment the index can
    have been written (for `observed` freshness, the scan that saw it change; for counters or
    a content fingerprint unchanged since a scan, that scan: "at least" in the message) to the
    earliest moment the upstream
    can have changed; without freshness evidence on both sides nothing fires
    (`freshness_unknown` covers that).

    With `expect_count_ratio`, it also fires (sub-kind `count_ratio`) when the index holds
    fewer records than that share of its upstream assets' documents, rows or objects: an
    index missing part of its source (a failed batch, a filter that drops documents).

    Fix: rebuild or resume the job that writes the index from its source (the finding resolves
    at the next scan after the rebuild), or raise `max_lag` if the workflows can live with it.
    """
    for source_id, asset, override in _derived_assets(ctx):
        snapshot = ctx.snapshots[source_id]
        as_of = min(ctx.now, snapshot.probed_at)
        asset_id = f"{source_id}:{asset.path}"
        affected = ctx.affected_by_asset(source_id, asset.path)
        top = most_critical(affected)
        upstreams: list[tuple[str, Asset]] = []
        for entry in override.derived_from:
            upstream_source, _, upstream_path = entry.partition(":")
            upstream = ctx.asset(upstream_source, upstream_path)
            if upstream is not None:
                upstreams.append((entry, upstream))
        max_lag: float | None
        set_by: str | None
        lag_origin: str | None
        if override.max_lag is not None:
            max_lag, lag_origin, set_by = override.max_lag, "asset", None
        else:
            max_lag, set_by = _default_max_lag(ctx, source_id, asset.path)
            lag_origin = "workflow" if max_lag is not None else None
        written, index_method = _written(asset)
        if max_lag is not None and written is not None:
            for entry, upstream in upstreams:
                fresh = upstream.freshness
                if fresh.method == "none" or fresh.last_changed is None:
                    continue
                changed = fresh.changed_after if fresh.changed_after is not None else fresh.last_changed
                lag = (changed - written).total_seconds()
                if lag <= max_lag:
                    continue
                limit = (f"max_lag {format_duration(max_lag)}" if lag_origin == "asset"
                         else f"max_lag {format_duration(max_lag)}, the max_age of workflow {set_by}")
                if index_method == UNCHANGED_SINCE:
                    message = (f"{asset_id} is at least {format_duration(lag)} behind {entry} ({upstream.path} "
                               f"changed {_when(changed)}, index unchanged since {_when(written)}; {limit})")
                else:
                    message = (f"{asset_id} is {format_duration(lag)} behind {entry} ({upstream.path} changed "
                               f"{_when(changed)}, index written {_when(written)}; {limit})")
                evidence: dict[str, Any] = {
                    "upstream": entry, "lag_seconds": round(lag), "max_lag_seconds": max_lag,
                    "max_lag_origin": lag_origin, "max_lag_set_by": set_by,
                    "upstream_changed": changed.isoformat(), "upstream_method": fresh.method,
                    "index_written": written.isoformat(), "index_method": index_method,
                    "as_of": as_of.isoformat(), "workflows": workflow_ids(affected),
                }
                yield Finding(
                    kind=KIND, severity=severity_of(KIND, top.stage if top else None), message=message,
                    fingerprint=fingerprint(KIND, source_id, asset.path, entry), source=source_id,
                    asset=asset_id, workflow=set_by if set_by else (top.id if top else None),
                    remediation=("Rebuild or resume the job that writes the index from its source, "
                                 "or raise max_lag if its workflows can live with the lag."),
                    evidence=evidence)
        ratio = override.expect_count_ratio
        if ratio is None or asset.row_count is None or not upstreams:
            continue
        counts = [_records(u) for _, u in upstreams]
        if any(c is None for c in counts):
            continue
        expected = sum(c or 0 for c in counts)
        if expected == 0 or asset.row_count >= ratio * expected:
            continue
        names = ", ".join(entry for entry, _ in upstreams)
        share = asset.row_count / expected
        yield Finding(
            kind=KIND, subkind="count_ratio", severity=severity_of(KIND, top.stage if top else None, "count_ratio"),
            message=(f"{asset_id} holds {asset.row_count} records for {expected} in {names}: "
                     f"{share:.0%} where at least {ratio:.0%} is expected"),
            fingerprint=fingerprint(KIND, "count_ratio", source_id, asset.path), source=source_id,
            asset=asset_id, workflow=top.id if top else None,
            remediation=("Find the documents the index build skipped or failed on and rebuild it, "
                         "or lower expect_count_ratio if the index filters on purpose."),
            evidence={"records": asset.row_count, "upstream_records": expected, "ratio": round(share, 4),
                      "expect_count_ratio": ratio, "upstreams": [e for e, _ in upstreams],
                      "workflows": workflow_ids(affected)})
