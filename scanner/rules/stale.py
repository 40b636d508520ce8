"""`stale`: an asset is older than its effective SLA."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from scanner.durations import format_duration
from scanner.model import METHOD_OBSERVED, Finding
from scanner.rules.base import RuleContext, fingerprint, most_critical, severity_of, workflow_ids
from scanner.rules.sla import blocked_workflows, effective_sla


def stale(ctx: RuleContext) -> Iterator[Finding]:
    """Fires when an asset that feeds a workflow is proven older than its effective SLA (see
    `scanner.rules.sla`): the strictest requirement of every workflow it feeds. A workflow
    that reads the asset itself requires that read's `max_age`, else the source's per-asset
    override, else the source's `freshness.max_age`; a workflow it reaches only through
    `feeds` requires the strictest `max_age` among its own reads. The finding names the
    workflow that set the SLA and the path through feeds, and lists in `blocks` the
    workflows whose readiness it fails: each workflow whose own need the age breaches,
    directly or through a workflow it feeds (it carries that workflow's need); its severity
    follows the most critical of those. Past `warn_after` but within `max_age` it fires as
    the `warning` sub-kind, with a low severity and blocking nobody; past `max_age` the same
    finding escalates.

    Ages are judged at the time of evaluation (a query judges them now), from the youngest
    age the evidence allows: an `observed` change (counters moved somewhere between two scans) is stale only
    when even its latest possible moment is older than the SLA. Change counters that held
    still since a scan at T0 prove an age of at least now - T0: stale once that passes the
    SLA ("unchanged for at least 9d"), `freshness_unknown` before. An asset without evidence
    is `freshness_unknown`, never stale and never fresh.

    Fix: find why the asset stopped loading (a failed job, a paused sync) and reload it, or
    relax the SLA of the workflow named in the finding if it can live with older data.
    """
    for source_id, snapshot in sorted(ctx.snapshots.items()):
        if source_id not in ctx.inventory.sources:
            continue
        # Judged now, not at the probe: an asset fresh at the last scan may be stale by the
        # time anyone asks (nothing newer than the probe is known, so its age only grows).
        as_of = ctx.now
        for asset in snapshot.assets:
            derived = ctx.derived_readers(source_id, asset.path)
            if not ctx.asset_readers(source_id, asset.path) and not derived:
                continue  # feeds no workflow: its age matters to nobody this inventory knows
            freshness = asset.freshness
            youngest = freshness.newest_age_seconds(as_of)
            if youngest is None:
                continue
            sla = effective_sla(ctx, source_id, asset.path)
            if sla is None:
                continue
            if sla.max_age is not None and youngest > sla.max_age:
                level, limit = None, sla.max_age
            elif sla.warn_after is not None and youngest > sla.warn_after:
                level, limit = "warning", sla.warn_after
            else:
                continue
            affected = ctx.affected_by_asset(source_id, asset.path)
            blocks = blocked_workflows(ctx, source_id, asset.path, youngest) if level is None else []
            # Severity follows the workflows whose need it breaches, not every one it reaches.
            top = most_critical([w for w in affected if w.id in blocks] if blocks else affected)
            asset_id = f"{source_id}:{asset.path}"
            oldest = freshness.age_seconds(as_of) or youngest
            if freshness.lower_bound:  # counters held still since then: at least this old
                age_text = f"unchanged for at least {format_duration(youngest)}"
            elif freshness.method == METHOD_OBSERVED and oldest > youngest:
                age_text = (f"changed between {format_duration(oldest)} and "
                            f"{format_duration(youngest)} ago")
            else:
                age_text = f"is {format_duration(youngest)} old"
            if level is None:
                message = (f"{asset_id} {age_text}, past its SLA of {format_duration(limit)} "
                           f"(set by {sla.describe()})")
            else:
                sla_text = format_duration(sla.max_age) if sla.max_age is not None else "none"
                message = (f"{asset_id} {age_text}, past its warning level of {format_duration(limit)} "
                           f"(SLA {sla_text}, set by {sla.describe()})")
            evidence: dict[str, Any] = {
                "level": level or "breach",
                "age_seconds": round(youngest),
                "oldest_age_seconds": round(oldest),
                "sla_seconds": sla.max_age,
                "warn_after_seconds": sla.warn_after,
                "sla_origin": sla.origin,
                "sla_set_by": sla.set_by,
                "sla_path": list(sla.path),
                "method": freshness.method,
                "last_changed": freshness.last_changed.isoformat() if freshness.last_changed else None,
                "changed_after": freshness.changed_after.isoformat() if freshness.changed_after else None,
                "as_of": as_of.isoformat(),
                "workflows": workflow_ids(affected),
                # whose readiness it blocks: every direct reader, and each downstream
                # workflow whose own need it breaks; a warning blocks nobody
                "blocks": blocks,
            }
            if sla.via:
                evidence["sla_via"] = list(sla.via)
            if derived:
                # Workflows that read something built from this asset, and the lineage path.
                paths: dict[str, list[str]] = {}
                for workflow, _, chain in derived:
                    candidate = [*chain, workflow.id]
                    if workflow.id not in paths or (len(candidate), candidate) < (len(paths[workflow.id]),
                                                                                   paths[workflow.id]):
                        paths[workflow.id] = candidate
                evidence["derived_readers"] = [{"workflow": w, "path": paths[w]} for w in sorted(paths)]
                if not sla.via:
                    first = min(paths.values(), key=lambda p: (len(p), p))
                    message += f"; read through lineage by {first[-1]} ({' -> '.join(first[:-1])})"
            if freshness.caveat:
                evidence["caveat"] = freshness.caveat
            if freshness.detail:
                evidence["detail"] = freshness.detail
            yield Finding(
                kind="stale",
                subkind=level,
                severity=severity_of("stale", top.stage if top else None, level),
                message=message,
                fingerprint=fingerprint("stale", source_id, asset.path),
                source=source_id,
                asset=asset_id,
                workflow=sla.set_by or (top.id if top else None),
                remediation=("Find why the asset stopped loading (a failed job, a paused sync) and "
                             "reload it, or relax the max_age of the workflow that set the SLA."),
                evidence=evidence,
            )
