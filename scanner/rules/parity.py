"""Environments and counterparts: what `environment:` and `same_as:` mean to the rules.

A source's `environment` is free text compared as written; `prod` and `production` (any
case) are production. `same_as: crm` on `crm-staging` says both are the same system in two
environments: the rules compare what a workflow depends on in one with the other.
"""

from __future__ import annotations

from scanner.access import role_chains
from scanner.inventory import Inventory, WorkflowConfig
from scanner.model import (
    ACCESS_ADMIN,
    ACCESS_READ,
    ACCESS_WRITE,
    PUBLIC_PRINCIPALS,
    SCOPE_CONTAINER,
    SCOPE_SOURCE,
    SourceSnapshot,
)

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


def access_by_asset(snapshot: SourceSnapshot, principal: str) -> dict[str, frozenset[str]]:
    """What a principal can do to each asset of a snapshot through its own role chain:
    asset path -> {"read", "write"}; privileged principals are reported by `is_privileged`.

    Grants are indexed by scope once, so a 5,000-table source costs one pass over grants.
    """
    chains = role_chains(snapshot, principal)
    own = {role for role in chains if role not in PUBLIC_PRINCIPALS}
    everything: set[str] = set()
    containers: dict[str, set[str]] = {}
    targets: dict[str, set[str]] = {}
    for grant in snapshot.grants:
        if grant.principal not in own or grant.public:
            continue
        levels = _levels(grant.access)
        if not levels:
            continue
        if grant.scope == SCOPE_SOURCE:
            everything |= levels
        elif grant.scope == SCOPE_CONTAINER:
            containers.setdefault(grant.target, set()).update(levels)
        else:
            targets.setdefault(grant.target, set()).update(levels)
    result: dict[str, frozenset[str]] = {}
    for asset in snapshot.assets:
        levels = set(everything) | targets.get(asset.path, set())
        if asset.container is not None:
            levels |= containers.get(asset.container, set())
        if levels:
            result[asset.path] = frozenset(levels)
    return result


def is_privileged(snapshot: SourceSnapshot, principal: str) -> tuple[str, ...] | None:
    """The chain to a superuser-like principal the principal acts as, or None."""
    privileged = {p.name for p in snapshot.principals if p.privileged}
    chains = role_chains(snapshot, principal)
    hits = sorted((chain for role, chain in chains.items() if role in privileged), key=len)
    return hits[0] if hits else None


def public_by_asset(snapshot: SourceSnapshot) -> dict[str, frozenset[str]]:
    """Assets a public principal (PUBLIC, allUsers, a public bucket, world-writable) can
    read or write: asset path -> levels."""
    everything: set[str] = set()
    containers: dict[str, set[str]] = {}
    targets: dict[str, set[str]] = {}
    for grant in snapshot.grants:
        if not (grant.public or grant.principal in PUBLIC_PRINCIPALS):
            continue
        levels = _levels(grant.access)
        if grant.principal == LOCAL_WORLD:
            levels.discard(READ)
        if not levels:
            continue
        if grant.scope == SCOPE_SOURCE:
            everything |= levels
        elif grant.scope == SCOPE_CONTAINER:
            containers.setdefault(grant.target, set()).update(levels)
        else:
            targets.setdefault(grant.target, set()).update(levels)
    result: dict[str, frozenset[str]] = {}
    for asset in snapshot.assets:
        levels = set(everything) | targets.get(asset.path, set())
        if asset.container is not None:
            levels |= containers.get(asset.container, set())
        if levels:
            result[asset.path] = frozenset(levels)
    return result


def _levels(access: str) -> set[str]:
    if access == ACCESS_READ:
        return {READ}
    if access == ACCESS_WRITE:
        return {WRITE}
    if access == ACCESS_ADMIN:
        return {READ, WRITE}
    return set()
