"""`freshness_unknown`: an asset a workflow reads has no freshness evidence."""

from __future__ import annotations

from collections.abc import Iterator

from scanner.durations import format_duration
from scanner.model import Finding
from scanner.rules.base import (
    SEVERITIES,
    RuleContext,
    fingerprint,
    most_critical,
    severity_of,
    workflow_ids,
)
from scanner.rules.sla import carried_needs, effective_sla


def freshness_unknown(ctx: RuleContext) -> Iterator[Finding]:
    """Fires when an asset that a workflow reads has no freshness evidence (method `none`,
    or no change time): nothing tells how old it is, so it is never treated as fresh.

    Fix: declare `freshness.column` with a timestamp column the loader sets on every write,
    or use a connector that reports the system's last-modified time; for `observed`
    freshness, scan twice so the change counters can be compared.

    Not knowing is never more severe than being late would be: the severity follows the
    most critical workflow that states a need on the asset (a `max_age`, directly or through
    the workflows it feeds), those are the ones it blocks (`blocks`), and with no SLA
    anywhere it is `info` and blocks nobody.
    """
    for (source_id, path), pairs in sorted(ctx.read_index.items()):
        snapshot = ctx.snapshots.get(source_id)
        asset = ctx.asset(source_id, path)
        if asset is None:
            continue
        bound = asset.freshness.newest_age_seconds(ctx.now)
        if bound is not None:
            if not asset.freshness.lower_bound:
                continue
            # Unchanged counters prove only a lower bound: unknown until it passes the SLA,
            # stale from then on.
            sla = effective_sla(ctx, source_id, path)
            if sla is not None and sla.max_age is not None and bound > sla.max_age:
                continue
        affected = ctx.affected_by_asset(source_id, path)
        needing = carried_needs(ctx, source_id, path)
        if needing:
            top = most_critical(w for w in affected if w.id in needing)
            stage = top.stage if top else None
            severity = min(severity_of("freshness_unknown", stage), severity_of("stale", stage),
                           key=SEVERITIES.index)
        else:  # no SLA to check: being late could not be judged either
            top, severity = most_critical(affected), "info"
        readers = sorted({w.id for w, _ in pairs})
        detail = asset.freshness.detail
        if bound is not None:
            detail = f"{detail or 'unchanged'}; at least {format_duration(bound)} old, perhaps more"
        yield Finding(
            kind="freshness_unknown",
            severity=severity,
            message=(f"{source_id}:{path} has no freshness evidence"
                     + (f" ({detail})" if detail else "")
                     + f"; read by {', '.join(readers)}, it is never treated as fresh"),
            fingerprint=fingerprint("freshness_unknown", source_id, path),
            source=source_id,
            asset=f"{source_id}:{path}",
            workflow=top.id if top else None,
            remediation=("Declare freshness.column with a timestamp the loader sets on every write, "
                         "or a source whose system reports when it last changed."),
            evidence={"method": asset.freshness.method, "detail": detail,
                      "caveat": asset.freshness.caveat, "probed_at": snapshot.probed_at.isoformat()
                      if snapshot else None,
                      "readers": readers, "workflows": workflow_ids(affected),
                      "blocks": sorted(needing)},
        )
