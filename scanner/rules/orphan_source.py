"""`orphan_source`: a source that feeds no workflow."""

from __future__ import annotations

from collections.abc import Iterator

from scanner.model import Finding
from scanner.rules.base import RuleContext, fingerprint, severity_of


def orphan_source(ctx: RuleContext) -> Iterator[Finding]:
    """Fires (info) for a declared source from which no workflow reads anything: it is
    scanned and stored, but feeds nothing this inventory knows.

    Fix: add the workflow that uses it (with its reads), or remove the source from the
    inventory if nothing uses it any more.
    """
    for source_id, source in sorted(ctx.inventory.sources.items()):
        if any(r.source == source_id for w in ctx.inventory.workflows.values() for r in w.reads):
            continue
        runs_as = sorted(w.id for w in ctx.inventory.workflows.values() if source_id in w.runs_as)
        snapshot = ctx.snapshots.get(source_id)
        yield Finding(
            kind="orphan_source",
            severity=severity_of("orphan_source", None),
            message=f"source {source_id} feeds no workflow",
            fingerprint=fingerprint("orphan_source", source_id),
            source=source_id,
            remediation="Declare the workflow that reads it, or remove the source from the inventory.",
            evidence={"connector": source.connector, "assets": len(snapshot.assets) if snapshot else None,
                      "runs_as_only": runs_as, "workflows": []},  # it feeds none
        )
