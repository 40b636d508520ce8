"""Environments and counterparts: what `environment:` and `same_as:` mean to the rules.

A source's `environment` is free text compared as written; `prod` and `production` (any
case) are production. `same_as: crm` on `crm-staging` says both are the same system in two
environments: the rules compare what a workflow depends on in one with the other.
"""

from __future__ import annotations

from collections.abc import Iterable

from scanner.access import LEVEL_EFFECTIVE, LEVEL_ESCALATION, LEVEL_SET_ROLE, PrincipalAccess
from scanner.inventory import Inventory, WorkflowConfig
from scanner.model import ACCESS_ALTER, ACCESS_READ, ACCESS_WRITE, PUBLIC_PRINCIPALS, Asset, SourceSnapshot

PRODUCTION = frozenset({"prod", "production"})
# What the access comparisons look at, per principal and asset.
READ = "read"
WRITE = "write"
# A world-readable file is the POSIX default and says nothing about the network (as in
# over_permissioned): only world-writable counts as public for files.
LOCAL_WORLD = "world"


def is_production(environment: str | None) -> bool:
    """Whether an environment name means production."""
    return environment is not None and environment.strip().lower() in PRODUCTION


def counterparts(inventory: Inventory, source_id: str) -> list[str]:
    """The sources declared the same system as `source_id` (either side of `same_as`), sorted."""
    found: set[str] = set()
    source = inventory.sources.get(source_id)
    if source is not None and source.same_as is not None and source.same_as in inventory.sources:
        found.add(source.same_as)
    for other in inventory.sources.values():
        if other.same_as == source_id:
            found.add(other.id)
    # one hop through a shared counterpart: staging -> prod <- dev makes staging ~ dev too
    for middle in list(found):
        for other in inventory.sources.values():
            if other.same_as == middle and other.id != source_id:
                found.add(other.id)
        target = inventory.sources[middle].same_as
        if target and target != source_id and target in inventory.sources:
            found.add(target)
    found.discard(source_id)
    return sorted(found)


def principal_in(workflow: WorkflowConfig, source_id: str, fallback: str | None) -> str | None:
    """The principal a workflow uses in a source: its `runs_as`, else the counterpart's name."""
    return workflow.runs_as.get(source_id) or fallback


def same_access_facts(before: SourceSnapshot, after: SourceSnapshot) -> bool:
    """Whether two snapshots report the same grants, memberships and principals: then every
    asset both hold gives every principal the same access, and only new assets need a look."""
    return (before.grants == after.grants and before.memberships == after.memberships
            and before.principals == after.principals and before.container_usage == after.container_usage)


def access_by_asset(snapshot: SourceSnapshot, principal: str,
                    paths: Iterable[str] | None = None) -> dict[str, frozenset[str]]:
    """What a principal can do to each asset of a snapshot (or to the assets named by
    `paths`), as itself or after SET ROLE (the access model's `effective` and `via_set_role`
    levels): asset path -> {"read", "write"}. Altering (ALTER, DROP, CREATE) counts as write:
    the data can change. Superuser-like status is reported by `is_privileged`."""
    access = PrincipalAccess(snapshot, principal)
    result: dict[str, frozenset[str]] = {}
    # Only assets some role it can act as holds a grant on can give it anything.
    for asset in access.touched_assets() if paths is None else _assets(snapshot, paths):
        # The verdicts alone (no paths), shared between assets reached the same way.
        verdicts = access.verdicts(asset).all.get(LEVEL_SET_ROLE, frozenset())
        levels = _levels(verdicts)
        if levels:
            result[asset.path] = levels
    return result


def is_privileged(snapshot: SourceSnapshot, principal: str) -> str | None:
    """How a principal is superuser-like (at any level: itself, after SET ROLE, or by what it
    can grant itself), as a readable chain, or None."""
    access = PrincipalAccess(snapshot, principal)
    for actor in access.privileged_actors():
        holder = actor.all_access or actor.role
        roles = list(actor.chain or (principal,))
        roles += [r for r in actor.closure.get(holder, ())[1:] if r not in roles]
        attributes = ", ".join(access.principals[holder].attributes) if holder in access.principals else ""
        how = f"{' -> '.join(roles)} ({attributes or 'all privileges'})"
        if actor.level == LEVEL_SET_ROLE:
            return f"{how} after {actor.step}" if actor.step else f"{how} via SET ROLE"
        if actor.level == LEVEL_ESCALATION:
            return f"{how} by escalation: {actor.step}" if actor.step else f"{how} by escalation"
        return how
    return None


def public_by_asset(snapshot: SourceSnapshot, paths: Iterable[str] | None = None) -> dict[str, frozenset[str]]:
    """Assets (of the snapshot, or named by `paths`) a public principal (PUBLIC, allUsers, a
    public bucket, world-writable) can really read or write, container USAGE included: asset
    path -> levels. A world-readable file is the POSIX default and does not count."""
    if not PUBLIC_PRINCIPALS & snapshot.grantees:
        return {}
    anyone = PrincipalAccess(snapshot, None)
    result: dict[str, frozenset[str]] = {}
    for asset in anyone.touched_assets() if paths is None else _assets(snapshot, paths):
        # The cheap verdicts first; paths (to leave out world-readable files) only where they give.
        if not anyone.verdicts(asset).all[LEVEL_EFFECTIVE] & {ACCESS_READ, ACCESS_WRITE, ACCESS_ALTER}:
            continue
        report = anyone.report(asset)
        gives: set[str] = set()
        for path in report.effective:
            given = set(path.gives)
            if path.chain and path.chain[-1] == LOCAL_WORLD:
                given.discard(ACCESS_READ)
            gives |= given
        levels = _levels(frozenset(gives))
        if levels:
            result[asset.path] = levels
    return result


def _assets(snapshot: SourceSnapshot, paths: Iterable[str] | None) -> list[Asset]:
    if paths is None:
        return list(snapshot.assets)
    return [asset for path in paths if (asset := snapshot.asset(path)) is not None]


def _levels(verdicts: frozenset[str]) -> frozenset[str]:
    found = set()
    if ACCESS_READ in verdicts:
        found.add(READ)
    if verdicts & {ACCESS_WRITE, ACCESS_ALTER}:
        found.add(WRITE)
    return frozenset(found)
