"""`undeclared_dependency`: lineage observed a workflow reading an asset it does not declare."""

from __future__ import annotations

from collections.abc import Iterator

from scanner.durations import format_duration
from scanner.lineage.observed import declares, recent, unobserved_after
from scanner.model import Finding
from scanner.rules.base import RuleContext, fingerprint, most_critical, severity_of, workflow_ids


def undeclared_dependency(ctx: RuleContext) -> Iterator[Finding]:
    """Fires when an OpenLineage event (received by the daemon at `POST /api/v1/lineage`, or
    read by `ctxscan import openlineage`) shows the job of a workflow reading a dataset that
    maps to an asset the workflow does not declare in `reads` (by id or glob). Only reads
    observed within the workflow's `unobserved_after` (30 days by default) count: an old
    observation fades. The severity follows the most critical stage the workflow reaches,
    like the other kinds: its answers depend on data nobody tracks for it (no SLA, no owner
    check, no schema-drift check).

    Fix: add the asset to the workflow's `reads` (with the `max_age` it needs), or stop the
    job reading it.
    """
    lineage = ctx.lineage
    if lineage is None:
        return
    seen: set[tuple[str, str]] = set()
    for edge in sorted(lineage.edges, key=lambda e: (e.workflows, e.asset or ("", ""), e.job)):
        if edge.direction != "input" or edge.asset is None:
            continue
        source_id, path = edge.asset
        for workflow_id in edge.workflows:
            workflow = ctx.inventory.workflows[workflow_id]
            asset_id = f"{source_id}:{path}"
            if (workflow_id, asset_id) in seen or declares(workflow, source_id, path):
                continue
            if not recent(edge, ctx.now, unobserved_after(workflow)):
                continue
            seen.add((workflow_id, asset_id))
            affected = ctx.with_downstream([workflow])
            top = most_critical(affected)
            age = max(0.0, (ctx.now - edge.last_seen).total_seconds())
            yield Finding(
                kind="undeclared_dependency",
                severity=severity_of("undeclared_dependency", top.stage if top else workflow.stage),
                message=(f"workflow {workflow_id} reads {asset_id}, which it does not declare "
                         f"(OpenLineage job {edge.job}, last seen {format_duration(age)} ago)"),
                fingerprint=fingerprint("undeclared_dependency", workflow_id, asset_id),
                source=source_id, asset=asset_id, workflow=workflow_id,
                remediation=("Add the asset to the workflow's reads with the max_age it needs, or stop "
                             "the job reading it."),
                evidence={"job": edge.job, "dataset": edge.dataset, "first_seen": edge.first_seen.isoformat(),
                          "last_seen": edge.last_seen.isoformat(), "events": edge.events,
                          "last_event_type": edge.last_event_type, "workflows": workflow_ids(affected)},
            )
