"""`over_permissioned`: a workflow's principal can do more than the workflow needs.

Sub-kinds: `write_access`, `undeclared_read`, `privileged_principal`, `unknown_principal` (per
workflow and the principal it runs as in a source) and `public_access` (per asset that feeds a
workflow).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from dataclasses import replace

from scanner.access import access_paths, role_chains
from scanner.inventory import WorkflowConfig
from scanner.model import (
    ACCESS_ADMIN,
    ACCESS_READ,
    ACCESS_WRITE,
    PUBLIC_PRINCIPALS,
    SCOPE_CONTAINER,
    SCOPE_SOURCE,
    Asset,
    Finding,
    Grant,
    SourceSnapshot,
)
from scanner.rules.base import (
    RuleContext,
    fingerprint,
    most_critical,
    severity_for,
    severity_of,
    workflow_ids,
)
from scanner.rules.remediation import public_access_remediation

KIND = "over_permissioned"
EXAMPLES = 10
# A world-readable file is the POSIX default (umask 022) and says nothing about the network;
# a world-*writable* one, and every other public principal, is reported.
LOCAL_WORLD = "world"


def _declares(workflow: WorkflowConfig, source_id: str, path: str) -> list[str]:
    """The access levels (`read`, `write`) the workflow declares on an asset; empty if none."""
    return [r.access for r in workflow.reads if r.source == source_id
            and (fnmatch.fnmatchcase(path, r.path) if r.is_glob else r.path == path)]


def _is_public(principal: str, public_flag: bool) -> bool:
    return public_flag or principal in PUBLIC_PRINCIPALS


def over_permissioned(ctx: RuleContext) -> Iterator[Finding]:
    """Fires, for each workflow and the principal it `runs_as` in a source, when:

    - `write_access`: the principal can change an asset the workflow only reads (a grant of a
      write or admin privilege, directly or through role membership); `access: write` on the
      read declares a legitimate writer;
    - `undeclared_read`: it can read assets of that source the workflow does not declare;
    - `privileged_principal`: it is, or inherits, a superuser-like principal (superuser,
      bypass-RLS, create-role, global ALL, dataset OWNER, `s3:*`);
    - `unknown_principal`: the source does not know the principal (a typo, a dropped role, a
      MySQL account without its `@host`), so its access cannot be checked at all;

    and, for each asset that feeds a workflow, when
    - `public_access`: a public principal (PUBLIC, allUsers, allAuthenticatedUsers, a public
      bucket, a world-writable file) can read or change it.

    Sources whose connector reports no grants are not judged (unknown is not "none").
    Fix: revoke the grant or role membership the evidence names, give the workflow its own
    least-privileged principal, or declare the access it really needs (`access: write` with an
    `approval`, or add the read).
    """
    for _, workflow in sorted(ctx.inventory.workflows.items()):
        affected = ctx.with_downstream([workflow])
        stage = most_critical(affected)
        stage_name = stage.stage if stage else workflow.stage
        for source_id, principal in sorted(workflow.runs_as.items()):
            snapshot = ctx.snapshots.get(source_id)
            if snapshot is None:
                continue
            if principal in snapshot.state.get("unknown_principals", ()):
                yield _unknown_principal(ctx, workflow, source_id, principal, snapshot, stage_name)
                continue
            if not snapshot.reports_grants:
                continue
            chains = role_chains(snapshot, principal)
            for finding in (*_privileged(workflow, source_id, principal, snapshot, stage_name, chains),
                            *_write_access(ctx, workflow, source_id, principal, snapshot, stage_name, chains),
                            *_undeclared_read(ctx, workflow, source_id, principal, snapshot, stage_name, chains)):
                # the workflow and everything it feeds: what `findings --workflow` matches
                yield replace(finding, evidence={**finding.evidence, "workflows": workflow_ids(affected)})
    yield from _public_access(ctx)


def _unknown_principal(ctx: RuleContext, workflow: WorkflowConfig, source_id: str, principal: str,
                       snapshot: SourceSnapshot, stage: str) -> Finding:
    # A base of medium, shifted by stage: no access is known, so none is proven too broad.
    return Finding(
        kind=KIND, subkind="unknown_principal", severity=severity_for("medium", stage),
        message=(f"workflow {workflow.id} runs as {principal}, which source {source_id} does not "
                 "know: its access cannot be checked"),
        fingerprint=fingerprint(KIND, "unknown_principal", workflow.id, source_id, principal),
        source=source_id, workflow=workflow.id, principal=principal,
        remediation="Fix runs_as to name an existing role or account (MySQL: user@host).",
        evidence={"principal": principal, "connector": snapshot.connector,
                  "notes": [note for note in snapshot.notes if repr(principal) in note],
                  "workflows": workflow_ids(ctx.with_downstream([workflow]))},
    )


def _privileged(workflow: WorkflowConfig, source_id: str, principal: str,
                snapshot: SourceSnapshot, stage: str, chains: dict[str, tuple[str, ...]]) -> Iterator[Finding]:
    privileged = {p.name: p for p in snapshot.principals if p.privileged}
    hits = sorted((chains[name], privileged[name]) for name in chains if name in privileged)
    if not hits:
        return
    chain, account = min(hits, key=lambda hit: len(hit[0]))
    attributes = ", ".join(account.attributes) or "privileged"
    through = f" through {' -> '.join(chain)}" if len(chain) > 1 else ""
    yield Finding(
        kind=KIND, subkind="privileged_principal",
        severity=severity_of(KIND, stage, "privileged_principal"),
        message=(f"workflow {workflow.id} runs as {principal} in {source_id}, which is "
                 f"privileged ({attributes}){through}"),
        fingerprint=fingerprint(KIND, "privileged_principal", workflow.id, source_id, principal),
        source=source_id, workflow=workflow.id, principal=principal,
        remediation=(f"Run {workflow.id} as a dedicated principal without superuser-like "
                     "attributes or role memberships, granted only what it reads."),
        evidence={"chain": list(chain), "privileged_principal": account.name,
                  "attributes": list(account.attributes),
                  "all_chains": [list(c) for c, _ in hits]},
    )


class _OwnGrants:
    """The grants a principal holds through its own role chain (not public, not privileged),
    indexed by scope so each asset is checked in constant time."""

    def __init__(self, snapshot: SourceSnapshot, chains: dict[str, tuple[str, ...]],
                 levels: tuple[str, ...]) -> None:
        own = {role for role in chains if role not in PUBLIC_PRINCIPALS}
        self.everything = False
        self.containers: set[str] = set()
        self.targets: set[str] = set()
        for grant in snapshot.grants:
            if grant.principal not in own or grant.public or grant.access not in levels:
                continue
            if grant.scope == SCOPE_SOURCE:
                self.everything = True
            elif grant.scope == SCOPE_CONTAINER:
                self.containers.add(grant.target)
            else:
                self.targets.add(grant.target)

    def covers(self, asset: Asset) -> bool:
        """Whether one of the grants reaches the asset."""
        return (self.everything or asset.path in self.targets
                or (asset.container is not None and asset.container in self.containers))


def _write_access(ctx: RuleContext, workflow: WorkflowConfig, source_id: str, principal: str,
                  snapshot: SourceSnapshot, stage: str, chains: dict[str, tuple[str, ...]]) -> Iterator[Finding]:
    writers = _OwnGrants(snapshot, chains, (ACCESS_WRITE, ACCESS_ADMIN))
    seen: set[str] = set()
    for read in workflow.reads:
        if read.source != source_id:
            continue
        for asset in ctx.read_matches(read):
            if asset.path in seen or not writers.covers(asset):
                continue
            seen.add(asset.path)
            if "write" in _declares(workflow, source_id, asset.path):
                continue
            writes = [p for p in access_paths(snapshot, principal, asset)
                      if not p.privileged and not p.public and p.access in (ACCESS_WRITE, ACCESS_ADMIN)]
            if not writes:
                continue
            yield Finding(
                kind=KIND, subkind="write_access",
                severity=severity_of(KIND, stage, "write_access"),
                message=(f"workflow {workflow.id} only reads {source_id}:{asset.path}, but its "
                         f"principal {principal} can change it ({writes[0].describe()})"),
                fingerprint=fingerprint(KIND, "write_access", workflow.id, source_id, asset.path, principal),
                source=source_id, asset=f"{source_id}:{asset.path}", workflow=workflow.id,
                principal=principal,
                remediation=(f"Revoke the write privileges of {principal} on {asset.path} (or the "
                             "membership that gives them), or declare access: write with an approval."),
                evidence={"paths": [p.describe() for p in writes],
                          "privileges": sorted({p.privilege for p in writes}),
                          "declared_access": "read"},
            )


def _readable(snapshot: SourceSnapshot, chains: dict[str, tuple[str, ...]]) -> list[Asset]:
    """Assets the principal can read through its own grants (not public, not privileged)."""
    readers = _OwnGrants(snapshot, chains, (ACCESS_READ, ACCESS_ADMIN))
    return [a for a in snapshot.assets if readers.covers(a)]


def _undeclared_read(ctx: RuleContext, workflow: WorkflowConfig, source_id: str, principal: str,
                     snapshot: SourceSnapshot, stage: str, chains: dict[str, tuple[str, ...]]) -> Iterator[Finding]:
    declared = {a.path for r in workflow.reads if r.source == source_id for a in ctx.read_matches(r)}
    undeclared = [a for a in _readable(snapshot, chains) if a.path not in declared]
    if not undeclared:
        return
    undeclared.sort(key=lambda a: a.path)
    names = [a.path for a in undeclared]
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    examples = {}
    for asset in undeclared[:3]:
        paths = [p for p in access_paths(snapshot, principal, asset) if not p.privileged and not p.public]
        examples[asset.path] = [p.describe() for p in paths[:3]]
    yield Finding(
        kind=KIND, subkind="undeclared_read",
        severity=severity_of(KIND, stage, "undeclared_read"),
        message=(f"workflow {workflow.id}'s principal {principal} can read {len(names)} "
                 f"asset{'s' if len(names) != 1 else ''} of {source_id} it does not declare: {shown}"),
        fingerprint=fingerprint(KIND, "undeclared_read", workflow.id, source_id, principal),
        source=source_id, workflow=workflow.id, principal=principal,
        remediation=(f"Narrow the grants of {principal} to the assets {workflow.id} reads (replace "
                     "schema- or source-wide grants with per-table ones), or declare the reads."),
        evidence={"count": len(names), "assets": names[:EXAMPLES * 5], "paths": examples},
    )


def _public_access(ctx: RuleContext) -> Iterator[Finding]:
    from scanner.access import grant_covers

    public_grants: dict[str, dict[str, list[Grant]]] = {}
    for (source_id, path), pairs in sorted(ctx.read_index.items()):
        snapshot = ctx.snapshots.get(source_id)
        asset = ctx.asset(source_id, path)
        if snapshot is None or asset is None or not snapshot.reports_grants:
            continue
        if source_id not in public_grants:
            index: dict[str, list[Grant]] = {}
            for g in snapshot.grants:
                if (_is_public(g.principal, g.public) and g.access in (ACCESS_READ, ACCESS_WRITE, ACCESS_ADMIN)
                        and not (g.principal == LOCAL_WORLD and g.access == ACCESS_READ)):
                    index.setdefault("*" if g.scope == SCOPE_SOURCE else g.target, []).append(g)
            public_grants[source_id] = index
        index = public_grants[source_id]
        nearby = index.get("*", []) + index.get(path, []) + (index.get(asset.container, []) if asset.container else [])
        public = [g for g in nearby if grant_covers(g, asset)]
        if not public:
            continue
        affected = ctx.affected_by_asset(source_id, path)
        top = most_critical(affected)
        writable = any(g.access in (ACCESS_WRITE, ACCESS_ADMIN) for g in public)
        principals = sorted({g.principal for g in public})
        privileges = sorted({g.privilege for g in public})
        readers = sorted({w.id for w, _ in pairs})
        yield Finding(
            kind=KIND, subkind="public_access",
            severity=severity_of(KIND, top.stage if top else None, "public_access"),
            message=(f"{source_id}:{path}, read by {', '.join(readers)}, is "
                     f"{'writable' if writable else 'readable'} by {', '.join(principals)} "
                     f"({', '.join(privileges)})"),
            fingerprint=fingerprint(KIND, "public_access", source_id, path),
            source=source_id, asset=f"{source_id}:{path}", workflow=top.id if top else None,
            principal=", ".join(principals),
            remediation=public_access_remediation(snapshot.connector, principals, writable),
            evidence={"grants": [{"principal": g.principal, "privilege": g.privilege, "scope": g.scope,
                                  "target": g.target, "access": g.access, "via": g.via} for g in public],
                      "writable": writable, "readers": readers,
                      "workflows": workflow_ids(affected)},
        )
