"""`stale`: an asset is older than its effective SLA."""

from __future__ import annotations

from collections.abc import Iterator

from scanner.durations import format_duration
from scanner.model import Finding
from scanner.rules.base import RuleContext, fingerprint, severity_for


def stale(ctx: RuleContext) -> Iterator[Finding]:
    """Fires when an asset a workflow reads is older than the `max_age` of that read, else
    than its source's `freshness.max_age`.

    Fix: find why the asset stopped loading (a failed job, a paused sync) and reload it, or
    relax the SLA if the workflow can live with older data.
    """
    strictest: dict[tuple[str, str], tuple[float, str | None, str]] = {}
    for workflow, read, asset in ctx.readers():
        source = ctx.inventory.sources[read.source]
        sla = read.max_age or source.freshness.max_age
        if sla is None:
            continue
        key = (read.source, asset.path)
        current = strictest.get(key)
        if current is None or sla < current[0]:
            strictest[key] = (sla, workflow.id, workflow.stage)
    for (source_id, path), (sla, workflow_id, stage) in sorted(strictest.items()):
        found = ctx.snapshots[source_id].asset(path)
        if found is None:
            continue
        age = found.freshness.age_seconds(ctx.now)
        if age is None or age <= sla:
            continue
        yield Finding(
            kind="stale",
            severity=severity_for("high", stage),
            message=(f"{source_id}:{path} is {format_duration(age)} old, older than its SLA of "
                     f"{format_duration(sla)} (set by workflow {workflow_id})"),
            fingerprint=fingerprint("stale", source_id, path),
            source=source_id,
            asset=f"{source_id}:{path}",
            workflow=workflow_id,
            remediation="Find why the asset stopped loading and reload it, or relax the SLA.",
            evidence={"age_seconds": round(age), "sla_seconds": sla, "method": found.freshness.method,
                      "last_changed": found.freshness.last_changed.isoformat()
                      if found.freshness.last_changed else None,
                      "sla_set_by": workflow_id},
        )
