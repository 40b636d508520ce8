"""`access_drift`: a principal's access changed since the previous scan, or differs between
the counterpart sources of two environments."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from scanner.access import access_paths, grant_covers
from scanner.inventory import WorkflowConfig
from scanner.model import PUBLIC_PRINCIPALS, Finding, SourceSnapshot
from scanner.rules.base import RuleContext, fingerprint, most_critical, severity_of, workflow_ids
from scanner.rules.parity import (
    READ,
    WRITE,
    access_by_asset,
    counterparts,
    is_privileged,
    principal_in,
    public_by_asset,
    same_access_facts,
)

KIND = "access_drift"
EXAMPLES = 20


def access_drift(ctx: RuleContext) -> Iterator[Finding]:
    """Fires when, between the previous successful scan of a source and the newest, for a
    principal a workflow runs as:

    - `gained_write`: it can now change an asset the workflow does not declare `access: write` on;
    - `gained_privileged`: it became superuser-like (itself or through a role it inherits);
    - `gained_read`: it can now read assets the workflow does not declare;
    - `lost_access`: it can no longer read (or write) an asset the workflow declares: the
      workflow is about to break;

    and, for any asset of the source,
    - `became_public`: a public principal (PUBLIC, allUsers, a bucket policy, a world-writable
      file) can now read or change it (critical whatever the stage);

    and, across environments,
    - `environment`: the workflow's principal has different access to the same asset path in
      two counterpart sources (`same_as`), e.g. a PoC that worked in staging with broader grants.

    A change stays open while it holds: it resolves when it is reverted (the grant revoked,
    the access restored) or the inventory declares the new access (`access: write`, the read).
    Sources whose connector reports no grants are not judged. Fix: revoke (or restore) the
    grant the evidence names, or declare the access the workflow really needs.
    """
    found: dict[str, Finding] = {}
    for source_id in sorted(ctx.snapshots):
        snapshot = ctx.snapshots[source_id]
        before = ctx.previous.get(source_id)
        if before is None or not (snapshot.reports_grants and before.reports_grants):
            continue
        for change in _changes(ctx, source_id, before, snapshot):
            finding = change.finding(ctx)
            found.setdefault(finding.fingerprint, finding)
    for change in _still_open(ctx):
        finding = change.finding(ctx)
        found.setdefault(finding.fingerprint, finding)
    for finding in _environment(ctx):
        found.setdefault(finding.fingerprint, finding)
    yield from found.values()


# ---------------------------------------------------------------------------------------

@dataclass
class _Change:
    """One change of access, before it becomes a finding (also rebuilt from an open one)."""

    subkind: str
    source: str
    workflow: str | None
    principal: str | None
    assets: list[str]
    level: str
    before: Mapping[str, Any]
    after: Mapping[str, Any]
    paths: list[str] = field(default_factory=list)

    def finding(self, ctx: RuleContext) -> Finding:
        workflow = ctx.inventory.workflows.get(self.workflow) if self.workflow else None
        if workflow is not None:
            affected = ctx.with_downstream([workflow])
        else:
            affected = [w for path in self.assets for w in ctx.affected_by_asset(self.source, path)]
            affected = list({w.id: w for w in affected}.values())
        top = most_critical(affected)
        shown = ", ".join(self.assets[:5]) + (f" and {len(self.assets) - 5} more" if len(self.assets) > 5 else "")
        one = len(self.assets) == 1
        asset_id = f"{self.source}:{self.assets[0]}" if one else None
        who = f"{self.principal} (runs {self.workflow})" if self.workflow else str(self.principal)
        if self.subkind == "gained_write":
            message = (f"{who} can now change {self.source}:{shown}, which the workflow only reads "
                       f"(since the previous scan)")
            fix = (f"Revoke the new write grant of {self.principal} on {shown} (evidence: paths), or "
                   f"declare access: write with an approval on the read of {self.workflow}.")
        elif self.subkind == "gained_privileged":
            message = f"{who} became privileged in {self.source} ({self.after.get('privileged')})"
            fix = (f"Remove the superuser-like attribute or the membership that made {self.principal} "
                   "privileged.")
        elif self.subkind == "gained_read":
            message = (f"{who} can now read {len(self.assets)} asset{'' if one else 's'} of "
                       f"{self.source} the workflow does not declare: {shown}")
            fix = (f"Revoke the new read grants of {self.principal}, or declare the reads in "
                   f"{self.workflow}.")
        elif self.subkind == "lost_access":
            message = (f"{who} can no longer {self.level} {self.source}:{shown}, which the workflow "
                       "declares: it is about to break")
            fix = (f"Restore the grant of {self.principal} on {shown}, or remove the read from "
                   f"{self.workflow}.")
        else:  # became_public
            message = (f"{self.source}:{shown} became {'writable' if WRITE in self.level else 'readable'} "
                       f"by the public ({self.after.get('principals', 'PUBLIC')})")
            fix = "Remove the public grant the evidence names and grant the workflows' principals instead."
        parts: list[object] = [self.subkind, self.workflow, self.source, self.principal]
        if self.subkind in ("gained_write", "lost_access", "became_public"):
            parts.append(self.assets[0])
        if self.subkind == "became_public":
            severity = severity_of(KIND, None, "became_public")
        else:
            severity = severity_of(KIND, top.stage if top else None, self.subkind)
        return Finding(
            kind=KIND, subkind=self.subkind, severity=severity, message=message,
            fingerprint=fingerprint(KIND, *parts),
            source=self.source, asset=asset_id, workflow=self.workflow or (top.id if top else None),
            principal=self.principal, remediation=fix,
            evidence={"change": self.subkind, "source": self.source, "assets": self.assets[:EXAMPLES * 5],
                      "level": self.level, "before": dict(self.before), "after": dict(self.after),
                      "paths": self.paths, "workflows": workflow_ids(affected),
                      **({"subject": "workflow"} if asset_id is None and self.workflow else {})},
        )


def _declared(workflow: WorkflowConfig, source_id: str, path: str) -> set[str]:
    """What the workflow declares on an asset: {"read"} or {"read", "write"}, or nothing."""
    declared: set[str] = set()
    for read in workflow.reads:
        if read.source != source_id:
            continue
        if fnmatch.fnmatchcase(path, read.path) if read.is_glob else read.path == path:
            declared.add(READ)
            if read.access == "write":
                declared.add(WRITE)
    return declared


def _principals(ctx: RuleContext, source_id: str) -> list[tuple[WorkflowConfig, str]]:
    return [(w, w.runs_as[source_id]) for _, w in sorted(ctx.inventory.workflows.items())
            if source_id in w.runs_as]


def _paths(snapshot: SourceSnapshot, principal: str, path: str, level: str) -> list[str]:
    asset = snapshot.asset(path)
    if asset is None:
        return []
    wanted = {"write", "admin"} if level == WRITE else {"read", "admin"}
    return [p.describe() for p in access_paths(snapshot, principal, asset)
            if p.access in wanted and not p.public][:3]


def _levels_text(levels: frozenset[str] | set[str] | None) -> str:
    return ", ".join(sorted(levels)) if levels else "none"


def _changes(ctx: RuleContext, source_id: str, before: SourceSnapshot,
             after: SourceSnapshot) -> Iterator[_Change]:
    existed = {a.path for a in before.assets}
    # Unchanged grants, memberships and principals give every principal the same access to
    # every asset both snapshots hold: only new assets need a look (the common rescan).
    paths = None if not same_access_facts(before, after) else [
        a.path for a in after.assets if a.path not in existed]
    if paths == []:
        return
    cache: dict[tuple[int, str], dict[str, frozenset[str]]] = {}

    def access(snapshot: SourceSnapshot, principal: str) -> dict[str, frozenset[str]]:
        key = (id(snapshot), principal)
        if key not in cache:
            cache[key] = access_by_asset(snapshot, principal, paths)
        return cache[key]

    for workflow, principal in _principals(ctx, source_id):
        how = is_privileged(after, principal)
        if how and not is_privileged(before, principal):
            # one finding says it all: a new superuser can change everything
            yield _Change("gained_privileged", source_id, workflow.id, principal, [], "privileged",
                          {"privileged": None}, {"privileged": how}, [how])
            continue
        old, new = access(before, principal), access(after, principal)
        gained_read: list[str] = []
        for path in sorted(set(old) | set(new)):
            was, now = old.get(path, frozenset()), new.get(path, frozenset())
            declared = _declared(workflow, source_id, path)
            if WRITE in now - was and WRITE not in declared:
                yield _Change("gained_write", source_id, workflow.id, principal, [path], WRITE,
                              {"levels": _levels_text(was)}, {"levels": _levels_text(now)},
                              _paths(after, principal, path, WRITE))
            if READ in now - was and not declared:
                gained_read.append(path)
            lost = sorted((was - now) & declared)
            if lost and path in existed and after.asset(path) is not None:
                yield _Change("lost_access", source_id, workflow.id, principal, [path], ", ".join(lost),
                              {"levels": _levels_text(was)}, {"levels": _levels_text(now)},
                              _paths(before, principal, path, READ if READ in lost else WRITE))
        if gained_read:
            yield _Change("gained_read", source_id, workflow.id, principal, gained_read, READ,
                          {"levels": "none"}, {"levels": "read"},
                          _paths(after, principal, gained_read[0], READ))
    public_before, public_after = public_by_asset(before, paths), public_by_asset(after, paths)
    for path in sorted(public_after):
        gained = public_after[path] - public_before.get(path, frozenset())
        if gained:
            asset = after.asset(path)
            principals = sorted({g.principal for g in after.grants
                                 if (g.public or g.principal in PUBLIC_PRINCIPALS)
                                 and asset is not None and grant_covers(g, asset)})
            yield _Change("became_public", source_id, None, None, [path], _levels_text(public_after[path]),
                          {"public": _levels_text(public_before.get(path))},
                          {"public": _levels_text(public_after[path]), "principals": ", ".join(principals) or "PUBLIC"})


def _still_open(ctx: RuleContext) -> Iterator[_Change]:
    """Open changes that still hold in the newest snapshot stay open (until reverted or declared)."""
    for stored in ctx.open_findings(KIND):
        evidence = stored.evidence
        change = evidence.get("change")
        source_id = stored.source
        if change not in ("gained_write", "gained_read", "lost_access", "gained_privileged", "became_public"):
            continue
        snapshot = ctx.snapshots.get(source_id or "")
        if snapshot is None or not snapshot.reports_grants or source_id is None:
            continue
        assets = [a for a in evidence.get("assets", []) if isinstance(a, str)]
        if change == "became_public":
            public = public_by_asset(snapshot, assets)
            held = [a for a in assets if public.get(a)]
            if held:
                yield _Change(change, source_id, None, None, held, _levels_text(public[held[0]]),
                              evidence.get("before", {}), {**evidence.get("after", {}),
                                                           "public": _levels_text(public[held[0]])})
            continue
        workflow = ctx.inventory.workflows.get(stored.workflow or "")
        principal = stored.principal
        if workflow is None or principal is None or workflow.runs_as.get(source_id) != principal:
            continue
        if change == "gained_privileged":
            if is_privileged(snapshot, principal):
                yield _Change(change, source_id, workflow.id, principal, [], "privileged",
                              evidence.get("before", {}), evidence.get("after", {}), evidence.get("paths", []))
            continue
        now = access_by_asset(snapshot, principal, assets)
        if change == "gained_write":
            held = [a for a in assets if WRITE in now.get(a, ()) and WRITE not in _declared(workflow, source_id, a)]
        elif change == "gained_read":
            held = [a for a in assets if READ in now.get(a, ()) and not _declared(workflow, source_id, a)]
        else:
            levels = [level.strip() for level in str(evidence.get("level", "")).split(",") if level.strip()]
            held = [a for a in assets if snapshot.asset(a) is not None
                    and any(level not in now.get(a, ()) and level in _declared(workflow, source_id, a)
                            for level in levels)]
        if held:
            yield _Change(change, source_id, workflow.id, principal, held, str(evidence.get("level", "")),
                          evidence.get("before", {}), {"levels": _levels_text(now.get(held[0]))},
                          evidence.get("paths", []))


def _environment(ctx: RuleContext) -> Iterator[Finding]:
    """The same workflow principal with different access to one asset path in two counterparts."""
    cache: dict[tuple[str, str], dict[str, frozenset[str]]] = {}

    def access(source_id: str, principal: str) -> dict[str, frozenset[str]]:
        if (source_id, principal) not in cache:
            cache[(source_id, principal)] = access_by_asset(ctx.snapshots[source_id], principal)
        return cache[(source_id, principal)]

    for workflow_id, workflow in sorted(ctx.inventory.workflows.items()):
        for source_id in sorted({r.source for r in workflow.reads}):
            snapshot = ctx.snapshots.get(source_id)
            principal = workflow.runs_as.get(source_id)
            if snapshot is None or principal is None or not snapshot.reports_grants:
                continue
            paths = sorted({a.path for r in workflow.reads if r.source == source_id for a in ctx.read_matches(r)})
            for other_id in counterparts(ctx.inventory, source_id):
                other = ctx.snapshots.get(other_id)
                theirs = principal_in(workflow, other_id, principal)
                if other is None or theirs is None or not other.reports_grants:
                    continue
                for path in paths:
                    if other.asset(path) is None:
                        continue
                    here = access(source_id, principal).get(path, frozenset())
                    there = access(other_id, theirs).get(path, frozenset())
                    if here == there:
                        continue
                    pair = sorted((source_id, other_id))
                    affected = ctx.with_downstream([workflow])
                    top = most_critical(affected)
                    env_here = ctx.inventory.sources[source_id].environment or source_id
                    env_there = ctx.inventory.sources[other_id].environment or other_id
                    yield Finding(
                        kind=KIND, subkind="environment",
                        severity=severity_of(KIND, top.stage if top else None, "environment"),
                        message=(f"{workflow_id}'s principal has {_levels_text(here)} access to {path} in "
                                 f"{source_id} ({env_here}) but {_levels_text(there)} in {other_id} "
                                 f"({env_there}): what was proven in one environment will not hold in the other"),
                        fingerprint=fingerprint(KIND, "environment", workflow_id, pair[0], pair[1], path),
                        source=source_id, asset=f"{source_id}:{path}", workflow=workflow_id,
                        principal=principal,
                        remediation=(f"Grant {principal} the same privileges on {path} in both {source_id} "
                                     f"and {other_id} (the least the workflow needs)."),
                        evidence={"change": "environment", "reason": "environment", "counterpart": other_id,
                                  "principals": {source_id: principal, other_id: theirs},
                                  "access": {source_id: _levels_text(here), other_id: _levels_text(there)},
                                  "paths": {source_id: _paths(snapshot, principal, path, WRITE if WRITE in here
                                                              else READ),
                                            other_id: _paths(other, theirs, path, WRITE if WRITE in there
                                                             else READ)},
                                  "workflows": workflow_ids(affected)},
                    )
