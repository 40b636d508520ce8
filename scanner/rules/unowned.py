"""`unowned`: a source, workflow or read asset with no owner, or with one not in `owners`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from scanner.model import Asset, Finding, SourceSnapshot
from scanner.plugins import SourceConfig
from scanner.rules.base import RuleContext, fingerprint, most_critical, severity_of, workflow_ids
from scanner.rules.sla import asset_override


@dataclass(frozen=True)
class OwnerClaim:
    """Who owns something and where that came from: `config`, `tag:owner`, `label:team`..."""

    owner: str
    provenance: str


def source_owner(source: SourceConfig, snapshot: SourceSnapshot | None) -> OwnerClaim | None:
    """The inventory's owner of a source, else the owner its system reports."""
    if source.owner:
        return OwnerClaim(source.owner, "config")
    if snapshot is not None and snapshot.owner is not None:
        return OwnerClaim(snapshot.owner.owner, snapshot.owner.provenance)
    return None


def asset_owner(source: SourceConfig, asset: Asset) -> OwnerClaim | None:
    """An asset's own owner: an `assets:` override, else discovered; None means "the source's"."""
    override = asset_override(source, asset.path)
    if override is not None and override.owner:
        return OwnerClaim(override.owner, f"config:assets[{override.path}]")
    if asset.owner is not None:
        return OwnerClaim(asset.owner.owner, asset.owner.provenance)
    return None


def _problem(claim: OwnerClaim | None, known: set[str]) -> str | None:
    if claim is None:
        return "no_owner"
    return None if claim.owner in known else "unknown_owner"


def unowned(ctx: RuleContext) -> Iterator[Finding]:
    """Fires for a source with no owner (none declared, none discovered through `owner_tag`),
    a workflow with no owner, an asset a workflow reads whose own owner (an `assets:` entry or
    a discovered tag/label) is not known, and for any of these whose owner is not listed in
    `owners`. An asset without its own owner inherits its source's, so an unowned source is
    reported once, on the source.

    Fix: set `owner:` on the source, workflow or `assets:` entry (or tag the system with the
    `owner_tag` key) and list that owner under `owners:` with a contact.
    """
    known = set(ctx.inventory.owners)
    listed = ", ".join(sorted(known)) or "none"
    remediation = ("Declare an owner (owner: on the source, workflow or assets: entry, or the "
                   "owner_tag on the system) and list it under owners: with a contact.")

    for source_id, source in sorted(ctx.inventory.sources.items()):
        snapshot = ctx.snapshots.get(source_id)
        claim = source_owner(source, snapshot)
        problem = _problem(claim, known)
        if problem is None:
            continue
        affected = ctx.affected_by_source(source_id)
        top = most_critical(affected)
        if claim is None:
            how = f" (no {source.owner_tag!r} tag found)" if source.owner_tag else ""
            message = f"source {source_id} has no owner{how}"
        else:
            message = (f"source {source_id} is owned by {claim.owner!r} ({claim.provenance}), "
                       f"who is not listed in owners ({listed})")
        yield Finding(
            kind="unowned", subkind=problem,
            severity=severity_of("unowned", top.stage if top else None),
            message=message, fingerprint=fingerprint("unowned", "source", source_id),
            source=source_id, workflow=top.id if top else None, remediation=remediation,
            evidence={"subject": "source", "owner": claim.owner if claim else None,
                      "provenance": claim.provenance if claim else None,
                      "owner_tag": source.owner_tag, "known_owners": sorted(known),
                      "workflows": workflow_ids(affected)},
        )

    for workflow_id, workflow in sorted(ctx.inventory.workflows.items()):
        claim = OwnerClaim(workflow.owner, "config") if workflow.owner else None
        problem = _problem(claim, known)
        if problem is None:
            continue
        affected = ctx.with_downstream([workflow])
        top = most_critical(affected)
        message = (f"workflow {workflow_id} has no owner" if claim is None else
                   f"workflow {workflow_id} is owned by {claim.owner!r}, who is not listed in "
                   f"owners ({listed})")
        yield Finding(
            kind="unowned", subkind=problem,
            severity=severity_of("unowned", top.stage if top else workflow.stage),
            message=message, fingerprint=fingerprint("unowned", "workflow", workflow_id),
            workflow=workflow_id, remediation=remediation,
            evidence={"subject": "workflow", "owner": workflow.owner,
                      "provenance": "config" if workflow.owner else None, "stage": workflow.stage,
                      "known_owners": sorted(known), "workflows": workflow_ids(affected)},
        )

    for (source_id, path), pairs in sorted(ctx.read_index.items()):
        source = ctx.inventory.sources[source_id]
        snapshot = ctx.snapshots.get(source_id)
        asset = ctx.asset(source_id, path)
        if asset is None:
            continue
        claim = asset_owner(source, asset)
        if claim is None or claim.owner in known:
            continue  # inherits the source's owner, reported on the source if missing
        affected = ctx.affected_by_asset(source_id, path)
        top = most_critical(affected)
        yield Finding(
            kind="unowned", subkind="unknown_owner",
            severity=severity_of("unowned", top.stage if top else None),
            message=(f"{source_id}:{path} is owned by {claim.owner!r} ({claim.provenance}), who is "
                     f"not listed in owners ({listed})"),
            fingerprint=fingerprint("unowned", "asset", source_id, path),
            source=source_id, asset=f"{source_id}:{path}", workflow=top.id if top else None,
            remediation=remediation,
            evidence={"subject": "asset", "owner": claim.owner, "provenance": claim.provenance,
                      "readers": sorted({w.id for w, _ in pairs}), "known_owners": sorted(known),
                      "workflows": workflow_ids(affected)},
        )
