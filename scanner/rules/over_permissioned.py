"""`over_permissioned`: a workflow's principal can do more than the workflow needs.

Sub-kinds: `write_access`, `undeclared_read`, `privileged_principal`, `unknown_principal` (per
workflow and the principal it runs as in a source) and `public_access` (per asset that feeds a
workflow).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator

from scanner.access import (
    LEVEL_EFFECTIVE,
    LEVEL_ESCALATION,
    LEVEL_SET_ROLE,
    LEVELS,
    AccessPath,
    AssetVerdicts,
    PrincipalAccess,
)
from scanner.inventory import WorkflowConfig
from scanner.model import (
    ACCESS_ALTER,
    ACCESS_READ,
    ACCESS_WRITE,
    PUBLIC_PRINCIPALS,
    SCOPE_CONTAINER,
    Asset,
    Finding,
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
from scanner.rules.observed_write import observed_writes
from scanner.rules.remediation import public_access_remediation

KIND = "over_permissioned"
EXAMPLES = 10
# A world-readable file is the POSIX default (umask 022) and says nothing about the network;
# a world-*writable* one, and every other public principal, is reported.
LOCAL_WORLD = "world"


_CHANGES = frozenset({ACCESS_WRITE, ACCESS_ALTER})


def _declares(workflow: WorkflowConfig, source_id: str, path: str) -> list[str]:
    """The access levels (`read`, `write`) the workflow declares on an asset; empty if none."""
    return [r.access for r in workflow.reads if r.source == source_id
            and (fnmatch.fnmatchcase(path, r.path) if r.is_glob else r.path == path)]


def _is_public(principal: str, public_flag: bool) -> bool:
    return public_flag or principal in PUBLIC_PRINCIPALS


def over_permissioned(ctx: RuleContext) -> Iterator[Finding]:
    """Fires, for each workflow and the principal it `runs_as` in a source, when:

    - `write_access`: the principal can change an asset (its data, or its definition: ALTER,
      DROP) that the workflow does not declare `access: write` on, whether the workflow reads
      it or not, as itself or after SET ROLE, through its own grants, role membership or a
      PUBLIC grant (the path says which); `access: write` on the read declares a legitimate writer;
    - `undeclared_read`: it can read, as itself or after SET ROLE, assets of that source the
      workflow does not declare (through its own grants and roles; PUBLIC is `public_access`);
    - `privileged_principal`: it is superuser-like (superuser, global ALL, dataset OWNER,
      `s3:*`), as itself or after SET ROLE, holds a risky attribute (BYPASSRLS, CREATEROLE),
      or could grant itself more (escalation: CREATEROLE, ADMIN OPTION, an owner after a
      revoke); the evidence gives each reason;
    - `unknown_principal`: the source does not know the principal (a typo, a dropped role, a
      MySQL account without its `@host`), so its access cannot be checked at all;

    and, for each asset that feeds a workflow, when
    - `public_access`: a public principal (PUBLIC, allUsers, allAuthenticatedUsers, a public
      bucket, a world-writable file) really reaches it (PostgreSQL: schema USAGE included).

    A principal with all access gets `privileged_principal`, not one finding per asset.
    Sources whose connector reports no grants are not judged (unknown is not "none").
    Fix: revoke the grant or role membership the evidence names, give the workflow its own
    least-privileged principal, or declare the access it really needs (`access: write` with an
    `approval`, or add the read).
    """
    # A principal's access model and verdicts depend on the snapshot alone, not on the workflow:
    # workflows that run as the same principal share them (500 workflows, a few principals).
    models: dict[tuple[str, str], tuple[PrincipalAccess, list[tuple[Asset, AssetVerdicts]]]] = {}
    for _, workflow in sorted(ctx.inventory.workflows.items()):
        affected = ctx.with_downstream([workflow])
        stage = most_critical(affected)
        stage_name = stage.stage if stage else workflow.stage
        listed = workflow_ids(affected)
        for source_id, principal in sorted(workflow.runs_as.items()):
            snapshot = ctx.snapshots.get(source_id)
            if snapshot is None:
                continue
            if principal in snapshot.state.get("unknown_principals", ()):
                yield _unknown_principal(ctx, workflow, source_id, principal, snapshot, stage_name)
                continue
            if not snapshot.reports_grants:
                continue
            shared = models.get((source_id, principal))
            if shared is None:
                model = PrincipalAccess(snapshot, principal)
                # Verdicts for every asset (cheap); paths only for the assets a finding names.
                shared = models[(source_id, principal)] = (
                    model, [(asset, model.verdicts(asset)) for asset in model.touched_assets()])
            model, verdicts = shared
            for finding in (*_privileged(workflow, source_id, principal, model, verdicts, stage_name),
                            *_write_access(ctx, workflow, source_id, principal, model, verdicts, stage_name),
                            *_undeclared_read(ctx, workflow, source_id, principal, model, verdicts, stage_name)):
                # the workflow and everything it feeds: what `findings --workflow` matches
                yield _with_evidence(finding, workflows=list(listed))
    yield from _public_access(ctx)
    yield from observed_writes(ctx)   # lineage saw it write where it declares a read (scanner.lineage)


def _with_evidence(finding: Finding, **more: object) -> Finding:
    """`replace(finding, evidence={**finding.evidence, **more})`, as replace() makes it (a copy
    of the fields), without running the frozen __init__ again: 166,000 `write_access` findings."""
    copy = object.__new__(Finding)
    copy.__dict__.update(finding.__dict__)
    copy.__dict__["evidence"] = {**finding.evidence, **more}
    return copy


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


def _privileged(workflow: WorkflowConfig, source_id: str, principal: str, model: PrincipalAccess,
                verdicts: list[tuple[Asset, AssetVerdicts]], stage: str) -> Iterator[Finding]:
    """Reasons, lowest level first: all access, risky attributes, then escalation."""
    reasons: list[dict[str, object]] = []
    for actor in model.actors:
        if actor.level == LEVEL_ESCALATION:
            continue
        # All access, and risky attributes, of the roles it acts as or inherits from.
        for role, tail in sorted(actor.closure.items(), key=lambda item: (len(item[1]), item[0])):
            account = model.principals.get(role)
            if account is None or not account.privileged:
                continue
            if role != actor.role and not account.inherited:
                continue  # an attribute counts only after SET ROLE to its holder
            chain = actor.chain + tail[1:]
            reasons.append({"level": actor.level, "chain": list(chain), "privileged_principal": role,
                            "attributes": list(account.attributes),
                            "step": actor.step, "reason": ", ".join(account.attributes) or "privileged"})
    seen = {str(r["privileged_principal"]) for r in reasons}
    for actor in model.escalation_actors():
        if len(reasons) < EXAMPLES * 2:
            if actor.role in seen:
                continue
            seen.add(actor.role)
            reasons.append({"level": LEVEL_ESCALATION, "chain": list(actor.chain), "step": actor.step,
                            "reason": actor.step})
    # Cumulative verdicts: escalation adds something when it holds more.
    escalated = [model.report(asset) for asset, found in verdicts
                 if len(found.all[LEVEL_ESCALATION]) != len(found.all[LEVEL_SET_ROLE])][:EXAMPLES]
    for report in escalated:
        step = report.escalation[0].step
        reasons.append({"level": LEVEL_ESCALATION, "chain": list(report.escalation[0].chain), "step": step,
                        "asset": report.asset, "reason": f"{report.asset}: {step}"})
    if not reasons:
        return
    first = reasons[0]
    first_chain = [str(c) for c in first["chain"]]  # type: ignore[attr-defined]
    if first["level"] == LEVEL_ESCALATION:
        what = f"could grant itself more ({first['reason']})"
    else:
        what = f"privileged ({first['reason']})"
        if first["level"] == LEVEL_SET_ROLE:
            what += f" after {first['step']}"
        elif len(first_chain) > 1:
            what += f" through {' -> '.join(first_chain)}"
    more = len(reasons) - 1
    yield Finding(
        kind=KIND, subkind="privileged_principal",
        severity=severity_of(KIND, stage, "privileged_principal"),
        message=(f"workflow {workflow.id} runs as {principal} in {source_id}, which is {what}"
                 + (f" and {more} more reason{'s' if more != 1 else ''}" if more else "")),
        fingerprint=fingerprint(KIND, "privileged_principal", workflow.id, source_id, principal),
        source=source_id, workflow=workflow.id, principal=principal,
        remediation=(f"Run {workflow.id} as a dedicated principal without superuser-like "
                     "attributes, role memberships it can switch to, or objects it owns, granted "
                     "only what it reads."),
        evidence={"chain": first_chain, "privileged_principal": first.get("privileged_principal"),
                  "attributes": first.get("attributes", []), "level": first["level"],
                  "reasons": reasons[:EXAMPLES * 2],
                  "all_chains": [r["chain"] for r in reasons if r["level"] != LEVEL_ESCALATION]},
    )


def _write_access(ctx: RuleContext, workflow: WorkflowConfig, source_id: str, principal: str,
                  model: PrincipalAccess, verdicts: list[tuple[Asset, AssetVerdicts]],
                  stage: str) -> Iterator[Finding]:
    declared = {a.path for r in workflow.reads if r.source == source_id for a in ctx.read_matches(r)}
    writes_declared = any(r.source == source_id and r.access == "write" for r in workflow.reads)
    # The paths that give the writes, and what the evidence says of them, follow from the
    # asset's paths and verdicts, which assets of the same shape share (the same objects).
    worked_out: dict[tuple[int, int], tuple[list[AccessPath], list[str], list[str], list[str], bool]] = {}
    for asset, found in verdicts:
        # All but what only all access gives (privileged_principal says that); PUBLIC counts.
        if found.plain[LEVEL_SET_ROLE].isdisjoint(_CHANGES):
            continue
        if writes_declared and "write" in _declares(workflow, source_id, asset.path):
            continue
        paths = model.plain_paths(asset)
        known = worked_out.get((id(paths), id(found)))
        if known is None:
            effective, via_set_role = paths
            writes: list[AccessPath] = []
            for access in (ACCESS_WRITE, ACCESS_ALTER):
                level = next((lv for lv in (LEVEL_EFFECTIVE, LEVEL_SET_ROLE) if access in found.plain[lv]), None)
                if level is None:
                    continue
                writes += [p for p in effective + via_set_role
                           if p.level == level and access in p.gives and not p.privileged and p not in writes]
            known = worked_out[(id(paths), id(found))] = (
                writes, [p.describe() for p in writes], sorted({p.privilege for p in writes}),
                sorted({p.level for p in writes}, key=LEVELS.index), any(p.public for p in writes))
        writes, described, privileges, levels, public = known
        if not writes:
            continue
        verb = "change" if ACCESS_WRITE in found.plain[LEVEL_SET_ROLE] else "alter or drop"
        if asset.path in declared:
            what = f"only reads {source_id}:{asset.path}, but its principal {principal} can {verb} it"
        else:
            what = f"does not declare {source_id}:{asset.path}, but its principal {principal} can {verb} it"
        yield Finding(
            kind=KIND, subkind="write_access",
            severity=severity_of(KIND, stage, "write_access"),
            message=f"workflow {workflow.id} {what} ({described[0]})",
            fingerprint=fingerprint(KIND, "write_access", workflow.id, source_id, asset.path, principal),
            source=source_id, asset=f"{source_id}:{asset.path}", workflow=workflow.id,
            principal=principal,
            remediation=(f"Revoke the write privileges of {principal} on {asset.path} (or the "
                         "membership, ownership or PUBLIC grant that gives them), or declare access: "
                         "write with an approval."),
            evidence={"paths": list(described), "privileges": list(privileges), "levels": list(levels),
                      "public": public, "declared_access": "read" if asset.path in declared else None},
        )


def _undeclared_read(ctx: RuleContext, workflow: WorkflowConfig, source_id: str, principal: str,
                     model: PrincipalAccess, verdicts: list[tuple[Asset, AssetVerdicts]],
                     stage: str) -> Iterator[Finding]:
    declared = {a.path for r in workflow.reads if r.source == source_id for a in ctx.read_matches(r)}
    # Its own reads (not all access, not PUBLIC's), as itself or after SET ROLE.
    undeclared = [(asset, found) for asset, found in verdicts
                  if asset.path not in declared and ACCESS_READ in found.own[LEVEL_SET_ROLE]]
    if not undeclared:
        return
    undeclared.sort(key=lambda item: item[0].path)
    names = [asset.path for asset, _ in undeclared]
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    examples = {}
    for asset, found in undeclared[:3]:
        report = model.report(asset)
        level = LEVEL_EFFECTIVE if ACCESS_READ in found.own[LEVEL_EFFECTIVE] else LEVEL_SET_ROLE
        paths = [p for p in report.effective + report.via_set_role
                 if p.level == level and ACCESS_READ in p.gives and not p.privileged and not p.public]
        examples[asset.path] = [p.describe() for p in paths[:3]]
    after_set_role = [asset.path for asset, found in undeclared if ACCESS_READ not in found.own[LEVEL_EFFECTIVE]]
    yield Finding(
        kind=KIND, subkind="undeclared_read",
        severity=severity_of(KIND, stage, "undeclared_read"),
        message=(f"workflow {workflow.id}'s principal {principal} can read {len(names)} "
                 f"asset{'s' if len(names) != 1 else ''} of {source_id} it does not declare: {shown}"
                 + (f" ({len(after_set_role)} after SET ROLE)" if after_set_role else "")),
        fingerprint=fingerprint(KIND, "undeclared_read", workflow.id, source_id, principal),
        source=source_id, workflow=workflow.id, principal=principal,
        remediation=(f"Narrow the grants and role memberships of {principal} to the assets {workflow.id} "
                     "reads (replace schema- or source-wide grants with per-table ones), or declare the reads."),
        evidence={"count": len(names), "assets": names[:EXAMPLES * 5], "paths": examples,
                  "after_set_role": after_set_role[:EXAMPLES * 5]},
    )


def _public_access(ctx: RuleContext) -> Iterator[Finding]:
    models: dict[str, PrincipalAccess] = {}
    for (source_id, path), pairs in sorted(ctx.read_index.items()):
        snapshot = ctx.snapshots.get(source_id)
        asset = ctx.asset(source_id, path)
        if snapshot is None or asset is None or not snapshot.reports_grants:
            continue
        if source_id not in models:
            models[source_id] = PrincipalAccess(snapshot, None)
        if not models[source_id].verdicts(asset).all[LEVEL_EFFECTIVE] & {ACCESS_READ, ACCESS_WRITE}:
            continue
        report = models[source_id].report(asset)
        public = [p for p in report.effective if p.gives & {ACCESS_READ, ACCESS_WRITE}
                  and not (p.chain[-1] == LOCAL_WORLD and p.access == ACCESS_READ)]
        if not public:
            continue
        affected = ctx.affected_by_asset(source_id, path)
        top = most_critical(affected)
        writable = any(ACCESS_WRITE in p.gives for p in public)
        principals = sorted({p.chain[-1] for p in public})
        privileges = sorted({p.privilege for p in public})
        readers = sorted({w.id for w, _ in pairs})
        grants = [g for g in models[source_id].covering(asset) if _is_public(g.principal, g.public)]
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
                                  "target": g.target, "access": g.access, "via": g.via} for g in grants
                                 if g.privilege in privileges or g.scope == SCOPE_CONTAINER],
                      "writable": writable, "readers": readers,
                      "workflows": workflow_ids(affected)},
        )
