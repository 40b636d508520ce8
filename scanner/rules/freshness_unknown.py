"""`freshness_unknown`: an asset a workflow reads has no freshness evidence."""

from __future__ import annotations

from collections.abc import Iterator

from scanner.model import Finding
from scanner.rules.base import RuleContext, fingerprint, most_critical, severity_of, workflow_ids


def freshness_unknown(ctx: RuleContext) -> Iterator[Finding]:
    """Fires when an asset that a workflow reads has no freshness evidence (method `none`,
    or no change time): nothing tells how old it is, so it is never treated as fresh.

    Fix: declare `freshness.column` with a timestamp column the loader sets on every write,
    or use a connector that reports the system's last-modified time; for `observed`
    freshness, scan twice so the change counters can be compared.
    """
    for (source_id, path), pairs in sorted(ctx.read_index.items()):
        snapshot = ctx.snapshots.get(source_id)
        asset = ctx.asset(source_id, path)
        if asset is None or asset.freshness.newest_age_seconds(ctx.now) is not None:
            continue
        affected = ctx.affected_by_asset(source_id, path)
        top = most_critical(affected)
        readers = sorted({w.id for w, _ in pairs})
        detail = asset.freshness.detail
        yield Finding(
            kind="freshness_unknown",
            severity=severity_of("freshness_unknown", top.stage if top else None),
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
                      "readers": readers, "workflows": workflow_ids(affected)},
        )
