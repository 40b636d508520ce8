"""`missing_asset`: a workflow reads an asset that the scan did not find."""

from __future__ import annotations

from collections.abc import Iterator

from scanner.model import Finding
from scanner.rules.base import RuleContext, fingerprint, most_critical, severity_of, workflow_ids


def missing_asset(ctx: RuleContext) -> Iterator[Finding]:
    """Fires when a workflow declares a read (an asset id, or a glob) that matches nothing in
    the newest successful snapshot of its source. A source that was never scanned
    successfully is `probe_failed` instead, and a partial snapshot (a probe cut short) proves
    nothing missing, so neither fires this. A `stale` or `freshness_unknown` finding about
    the asset from before it vanished gives way to this one (`evidence.supersedes`): the store
    resolves it saying so, not as if it had been fixed.

    Fix: correct the asset id in the workflow's `reads` (check the source's `include` and
    `exclude` too), or restore the table, prefix or folder at the source.
    """
    for workflow_id, workflow in sorted(ctx.inventory.workflows.items()):
        affected = ctx.with_downstream([workflow])
        top = most_critical(affected)
        for read in workflow.reads:
            snapshot = ctx.snapshots.get(read.source)
            if snapshot is None or snapshot.partial or ctx.read_matches(read):
                continue
            source = ctx.inventory.sources.get(read.source)
            excluded = source is not None and not read.is_glob and not source.wants(read.path)
            reason = (" (the source's include/exclude filters it out)" if excluded else "")
            yield Finding(
                kind="missing_asset",
                severity=severity_of("missing_asset", top.stage if top else workflow.stage),
                message=(f"workflow {workflow_id} reads {read.asset}, which "
                         f"{'matches nothing' if read.is_glob else 'was not found'} in the scan of "
                         f"{read.source}{reason}"),
                fingerprint=fingerprint("missing_asset", workflow_id, read.asset),
                source=read.source, asset=read.asset, workflow=workflow_id,
                remediation=("Correct the asset id in the workflow's reads (and the source's "
                             "include/exclude), or restore the asset at the source."),
                evidence={"declared": read.asset, "glob": read.is_glob, "line": read.line,
                          "probed_at": snapshot.probed_at.isoformat(),
                          "assets_in_source": len(snapshot.assets), "filtered_out": excluded,
                          "workflows": workflow_ids(affected),
                          # what was said about the asset while it existed gives way to this
                          # finding (the store resolves those saying so, not as if fixed)
                          "supersedes": [] if read.is_glob else
                          [fingerprint(kind, read.source, read.path) for kind in ("stale", "freshness_unknown")]},
            )
