"""`unobserved_read`: a declared read that lineage has not seen while the workflow's job ran."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from scanner.durations import format_duration
from scanner.lineage.observed import recent, unobserved_after
from scanner.model import Finding
from scanner.rules.base import RuleContext, fingerprint, severity_of, workflow_ids


def unobserved_read(ctx: RuleContext) -> Iterator[Finding]:
    """Fires (info) when a workflow's OpenLineage job has been seen for at least its
    `unobserved_after` (30 days by default) and was seen within it, yet no event in that
    window shows it reading an asset the workflow declares in `reads` (an exact asset id;
    a glob is satisfied by any asset it matches). The declaration is probably stale: the
    workflow no longer uses that data, or reads it some way lineage does not see. A workflow
    whose job was never seen is not judged.

    Fix: remove the read from the workflow's `reads` if the workflow no longer uses it, or
    make the job report it (an OpenLineage integration that emits its inputs).
    """
    lineage = ctx.lineage
    if lineage is None or not lineage.jobs:
        return
    import fnmatch

    for workflow_id, job in sorted(lineage.jobs.items()):
        workflow = ctx.inventory.workflows.get(workflow_id)
        if workflow is None:
            continue
        window = unobserved_after(workflow)
        start = ctx.now - timedelta(seconds=window)
        if job.first_seen > start or job.last_seen < start:
            continue  # not watched long enough, or not running any more
        inputs = [e for e in lineage.inputs(workflow_id) if recent(e, ctx.now, window)]
        for read in workflow.reads:
            if read.access == "write":
                continue   # a writer's declaration is about its outputs
            if any(e.asset is not None and e.asset[0] == read.source
                   and (e.asset[1] == read.path or (read.is_glob and fnmatch.fnmatchcase(e.asset[1], read.path)))
                   for e in inputs):
                continue
            last = max((e.last_seen for e in lineage.inputs(workflow_id)
                        if e.asset == (read.source, read.path)), default=None)
            yield Finding(
                kind="unobserved_read",
                severity=severity_of("unobserved_read", workflow.stage),
                message=(f"workflow {workflow_id} declares a read of {read.asset}, but its job {job.job} was "
                         f"not seen reading it in the last {format_duration(window)}"
                         + (f" (last seen {format_duration((ctx.now - last).total_seconds())} ago)" if last
                            else " (never seen)")),
                fingerprint=fingerprint("unobserved_read", workflow_id, read.asset),
                source=read.source, asset=read.asset, workflow=workflow_id,
                remediation=("Remove the read if the workflow no longer uses it, or make its job report its "
                             "inputs to OpenLineage."),
                evidence={"job": job.job, "job_first_seen": job.first_seen.isoformat(),
                          "job_last_seen": job.last_seen.isoformat(), "unobserved_after_seconds": window,
                          "last_read_seen": last.isoformat() if last else None,
                          "workflows": workflow_ids([workflow])},
            )
