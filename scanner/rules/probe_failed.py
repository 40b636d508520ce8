"""`probe_failed`: a source could not be scanned."""

from __future__ import annotations

from collections.abc import Iterator

from scanner.model import Finding
from scanner.rules.base import RuleContext, fingerprint, most_critical, severity_of, workflow_ids


def probe_failed(ctx: RuleContext) -> Iterator[Finding]:
    """Fires when a source's newest probe failed or timed out.

    Fix: read the reason (connection refused, access denied, timeout), repair the source or
    its credentials, and scan again; the finding resolves on the next successful probe.
    """
    for source_id, result in sorted(ctx.results.items()):
        if source_id not in ctx.inventory.sources or result.status == "ok":
            continue
        affected = ctx.affected_by_source(source_id)
        top = most_critical(affected)
        yield Finding(
            kind="probe_failed",
            severity=severity_of("probe_failed", top.stage if top else None),
            message=f"source {source_id} could not be scanned: {result.error}",
            fingerprint=fingerprint("probe_failed", source_id),
            source=source_id,
            workflow=top.id if top else None,
            subkind=result.reason,
            remediation="Fix the source's reachability or credentials named in the reason, then rescan.",
            evidence={"status": result.status, "reason": result.reason, "error": result.error,
                      "probed_at": result.probed_at.isoformat(), "scan_id": result.scan_id,
                      "workflows": workflow_ids(affected)},
        )
