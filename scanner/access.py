"""Effective access: what a principal can do to an asset, and every path that grants it.

Connectors report raw facts (grants, memberships, privileged principals); this module
turns them into access paths the same way for every system: the principal itself, every
role it inherits through membership chains, and the public principals; grants whose scope
covers the asset (the asset, a column of it, its container, the whole source); and
privileged principals, which can do everything.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from scanner.model import (
    ACCESS_ADMIN,
    ACCESS_READ,
    ACCESS_WRITE,
    PUBLIC_PRINCIPALS,
    SCOPE_ASSET,
    SCOPE_COLUMN,
    SCOPE_CONTAINER,
    SCOPE_SOURCE,
    Asset,
    Grant,
    SourceSnapshot,
)


@dataclass(frozen=True)
class AccessPath:
    """One way a principal reaches an asset: the chain of principals and the grant at its end."""

    principal: str
    chain: tuple[str, ...]            # principal, role, role..., the grantee
    privilege: str
    access: str                       # read, write, admin, other
    scope: str
    via: str
    public: bool = False
    columns: tuple[str, ...] = ()
    privileged: bool = False          # the grantee is superuser-like: all access

    def describe(self) -> str:
        """One line: `support_bot -> analysts -> SELECT on public.customers (GRANT ...)`."""
        chain = " -> ".join(self.chain)
        what = "all privileges (privileged principal)" if self.privileged else self.privilege
        cols = f" ({', '.join(self.columns)})" if self.columns else ""
        return f"{chain}: {what}{cols} [{self.scope}] {self.via}".rstrip()


def role_chains(snapshot: SourceSnapshot, principal: str) -> dict[str, tuple[str, ...]]:
    """Every role a principal acts as (itself included), with the shortest chain to it.

    Membership is followed only where it inherits; public principals are reachable by anyone.
    """
    edges: dict[str, list[str]] = {}
    for membership in snapshot.memberships:
        if membership.inherit:
            edges.setdefault(membership.member, []).append(membership.role)
    chains: dict[str, tuple[str, ...]] = {principal: (principal,)}
    todo = deque([principal])
    while todo:
        current = todo.popleft()
        for role in sorted(edges.get(current, ())):
            if role not in chains:
                chains[role] = chains[current] + (role,)
                todo.append(role)
    for public in sorted(PUBLIC_PRINCIPALS & snapshot.grantees):
        if public not in chains:
            chains[public] = (principal, public)
    return chains


def grant_covers(grant: Grant, asset: Asset) -> bool:
    """Whether a grant's scope reaches an asset."""
    if grant.scope == SCOPE_SOURCE:
        return True
    if grant.scope in (SCOPE_ASSET, SCOPE_COLUMN):
        return grant.target == asset.path
    if grant.scope == SCOPE_CONTAINER:
        return asset.container is not None and grant.target == asset.container
    return False


def access_paths(snapshot: SourceSnapshot, principal: str, asset: Asset) -> list[AccessPath]:
    """Every path from `principal` to `asset` in one snapshot, sorted for stable output."""
    chains = role_chains(snapshot, principal)
    privileged = {p.name for p in snapshot.principals if p.privileged}
    paths: list[AccessPath] = []
    for role, chain in chains.items():
        if role in privileged:
            attributes = next((p.attributes for p in snapshot.principals if p.name == role), ())
            paths.append(AccessPath(principal, chain, "ALL", ACCESS_ADMIN, SCOPE_SOURCE,
                                    f"privileged: {', '.join(attributes) or 'yes'}", privileged=True))
    for grant in snapshot.grants:
        grantee_chain = chains.get(grant.principal)
        if grantee_chain is None or not grant_covers(grant, asset):
            continue
        paths.append(AccessPath(principal, grantee_chain, grant.privilege, grant.access, grant.scope,
                                grant.via, grant.public or grant.principal in PUBLIC_PRINCIPALS,
                                grant.columns))
    paths.sort(key=lambda p: (len(p.chain), p.chain, p.access, p.privilege, p.scope, p.via))
    return paths


def access_levels(paths: Iterable[AccessPath]) -> set[str]:
    """The coarse levels (read, write, admin) that a set of paths gives; admin implies all."""
    levels = {p.access for p in paths}
    if ACCESS_ADMIN in levels:
        levels |= {ACCESS_READ, ACCESS_WRITE}
    return levels


def can_write(paths: Iterable[AccessPath]) -> bool:
    """Whether any path lets the principal change the asset."""
    return bool(access_levels(paths) & {ACCESS_WRITE, ACCESS_ADMIN})


def can_read(paths: Iterable[AccessPath]) -> bool:
    """Whether any path lets the principal read the asset (whole or some columns)."""
    return bool(access_levels(paths) & {ACCESS_READ, ACCESS_ADMIN})
