"""`environment_mismatch`: a workflow reads a source of another environment than its own."""

from __future__ import annotations

from collections.abc import Iterator

from scanner.model import Finding
from scanner.rules.base import RuleContext, fingerprint, most_critical, severity_of, workflow_ids
from scanner.rules.parity import is_production

KIND = "environment_mismatch"


def environment_mismatch(ctx: RuleContext) -> Iterator[Finding]:
    """Fires for each workflow and each source it reads whose `environment` does not fit it:

    - `production_reads_nonproduction`: the workflow is production (its `stage`, or its
      `environment` is `prod`/`production`) and the source's environment is not production;
    - `nonproduction_reads_production`: a PoC (or a workflow whose own environment is not
      production) reads a production source: production data in a place not built for it;
    - `other_environment`: both declare an environment, neither is production, and they
      differ (compared as written: `staging` is not `dev`).

    Sources without `environment:` are not judged. Fix: point the workflow at the source of
    its own environment (its `same_as` counterpart), or correct the `environment:` or the
    workflow's `stage`.
    """
    for workflow_id, workflow in sorted(ctx.inventory.workflows.items()):
        production = workflow.stage == "production" or is_production(workflow.environment)
        for source_id in sorted({r.source for r in workflow.reads}):
            source = ctx.inventory.sources.get(source_id)
            if source is None or source.environment is None:
                continue
            theirs = source.environment
            if production and not is_production(theirs):
                reason = "production_reads_nonproduction"
                what = (f"production workflow {workflow_id} reads {source_id}, a "
                        f"{theirs} source")
                fix = (f"Point {workflow_id} at the production counterpart of {source_id}, or "
                       "correct the source's environment.")
            elif is_production(theirs) and not production and (
                    workflow.stage == "poc" or workflow.environment is not None):
                reason = "nonproduction_reads_production"
                mine = (f"{workflow.environment} workflow" if workflow.environment
                        else f"{workflow.stage} workflow")
                what = f"{mine} {workflow_id} reads production data from {source_id}"
                fix = (f"Give {workflow_id} a non-production copy of {source_id} (a same_as "
                       "counterpart), or promote the workflow.")
            elif (workflow.environment is not None and not production
                  and workflow.environment != theirs):
                reason = "other_environment"
                what = (f"{workflow.environment} workflow {workflow_id} reads {source_id}, a "
                        f"{theirs} source")
                fix = (f"Point {workflow_id} at the {workflow.environment} counterpart of "
                       f"{source_id}, or correct either environment.")
            else:
                continue
            affected = ctx.with_downstream([workflow])
            top = most_critical(affected)
            yield Finding(
                kind=KIND, subkind=reason,
                severity=severity_of(KIND, top.stage if top else workflow.stage),
                message=what,
                fingerprint=fingerprint(KIND, workflow_id, source_id),
                source=source_id, workflow=workflow_id,
                remediation=fix,
                evidence={"workflow_stage": workflow.stage, "workflow_environment": workflow.environment,
                          "source_environment": theirs, "reason": reason, "subject": "workflow",
                          "workflows": workflow_ids(affected)},
            )
