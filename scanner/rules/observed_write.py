"""Writes that lineage observed, for the `over_permissioned` rule's `write_access` sub-kind."""

from __future__ import annotations

from collections.abc import Iterator

from scanner.durations import format_duration
from scanner.lineage.observed import declares, recent, unobserved_after
from scanner.model import Finding
from scanner.rules.base import RuleContext, fingerprint, most_critical, severity_of, workflow_ids


def observed_writes(ctx: RuleContext) -> Iterator[Finding]:
    """`over_permissioned/write_access` when an OpenLineage event shows a workflow's job
    writing (an output) to an asset the workflow declares read-only, within its
    `unobserved_after`: not only can it write, it did."""
    lineage = ctx.lineage
    if lineage is None:
        return
    for edge in sorted(lineage.edges, key=lambda e: (e.workflows, e.asset or ("", ""), e.job)):
        if edge.direction != "output" or edge.asset is None:
            continue
        source_id, path = edge.asset
        for workflow_id in edge.workflows:
            workflow = ctx.inventory.workflows[workflow_id]
            if not declares(workflow, source_id, path) or declares(workflow, source_id, path, "write"):
                continue
            if not recent(edge, ctx.now, unobserved_after(workflow)):
                continue
            affected = ctx.with_downstream([workflow])
            top = most_critical(affected)
            asset_id = f"{source_id}:{path}"
            age = max(0.0, (ctx.now - edge.last_seen).total_seconds())
            yield Finding(
                kind="over_permissioned", subkind="write_access",
                severity=severity_of("over_permissioned", top.stage if top else workflow.stage, "write_access"),
                message=(f"workflow {workflow_id} wrote to {asset_id}, which it declares read-only "
                         f"(OpenLineage job {edge.job}, last seen {format_duration(age)} ago)"),
                fingerprint=fingerprint("over_permissioned", "write_access", "observed", workflow_id, asset_id),
                source=source_id, asset=asset_id, workflow=workflow_id,
                remediation=("Revoke the write (the job should only read this asset), or declare "
                             "access: write on the read with an approval point."),
                evidence={"observed": True, "job": edge.job, "dataset": edge.dataset,
                          "first_seen": edge.first_seen.isoformat(), "last_seen": edge.last_seen.isoformat(),
                          "events": edge.events, "workflows": workflow_ids(affected)},
            )
