"""Access: what a principal can do to an asset, at three levels, and every path that grants it.

Connectors report raw facts (grants, memberships with their INHERIT/SET/ADMIN options,
principals with attributes); this module turns them into access the same way for every system.
The principal acts as some role (an *actor*):

- `effective`: as itself, now: its own grants, those of every role it inherits through
  INHERIT memberships, and the public principals' grants. A role attribute that gives all
  access (superuser) counts only for the principal itself, or for an inherited role whose
  attribute the system lets members inherit (`Principal.inherited`).
- `via_set_role`: after SET ROLE to any role it is a member of, INHERIT or not (NOINHERIT
  memberships are traversed only here); SET ROLE to a superuser role makes it superuser.
- `escalation`: what it could grant itself: roles (CREATEROLE, ADMIN OPTION), privileges on
  what it owns (an owner after REVOKE ALL), USAGE on a container it owns.

Where the system requires it (`SourceSnapshot.container_usage`: PostgreSQL schemas), an asset
privilege counts only when the same actor also holds USAGE on the asset's container; a grant
without it is reported as a blocked path. The verdicts are cumulative: what is effective is
also possible via SET ROLE, and both are possible by escalation.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from scanner.model import (
    ACCESS_ADMIN,
    ACCESS_ALTER,
    ACCESS_READ,
    ACCESS_WRITE,
    GRANT_OPTION_SUFFIX,
    PRIVILEGE_OWNER,
    PRIVILEGE_USAGE,
    PUBLIC_PRINCIPALS,
    SCOPE_ASSET,
    SCOPE_COLUMN,
    SCOPE_CONTAINER,
    SCOPE_SOURCE,
    Asset,
    Grant,
    Principal,
    SourceSnapshot,
)

LEVEL_EFFECTIVE = "effective"
LEVEL_SET_ROLE = "via_set_role"
LEVEL_ESCALATION = "escalation"
LEVELS = (LEVEL_EFFECTIVE, LEVEL_SET_ROLE, LEVEL_ESCALATION)
_RANK = {level: rank for rank, level in enumerate(LEVELS)}
# The data verdicts: each is given by its own access level or by admin (all of them).
DATA_ACCESS = (ACCESS_READ, ACCESS_WRITE, ACCESS_ALTER)
_GIVES = {ACCESS_READ: ACCESS_READ, ACCESS_WRITE: ACCESS_WRITE, ACCESS_ALTER: ACCESS_ALTER}


@dataclass(frozen=True)
class AccessPath:
    """One way a principal reaches an asset: the chain of principals and the grant at its end."""

    principal: str
    chain: tuple[str, ...]            # principal, role, role..., the grantee
    privilege: str
    access: str                       # read, write, alter, admin, other
    scope: str
    via: str
    public: bool = False
    columns: tuple[str, ...] = ()
    privileged: bool = False          # the acting role has all access (superuser-like)
    level: str = LEVEL_EFFECTIVE
    step: str = ""                    # "SET ROLE finance_writer", "CREATEROLE: can grant itself ..."
    blocked: str = ""                 # why this grant gives nothing ("no USAGE on schema hr")

    def describe(self) -> str:
        """One line: `support_bot -> analysts -> SELECT on public.customers (GRANT ...)`."""
        chain = " -> ".join(self.chain)
        what = "all privileges (privileged principal)" if self.privileged else self.privilege
        cols = f" ({', '.join(self.columns)})" if self.columns else ""
        text = f"{chain}: {what}{cols} [{self.scope}] {self.via}".rstrip()
        if self.step:
            text += f"; after {self.step}" if self.level == LEVEL_SET_ROLE else f"; escalation: {self.step}"
        if self.blocked:
            text += f"; gives nothing: {self.blocked}"
        return text

    @property
    def gives(self) -> frozenset[str]:
        """The data verdicts (read, write, alter) this path gives, unless blocked."""
        if self.blocked:
            return frozenset()
        if self.access == ACCESS_ADMIN:
            return frozenset(DATA_ACCESS)
        return frozenset({self.access}) & frozenset(DATA_ACCESS)


@dataclass(frozen=True)
class AccessReport:
    """A principal's access to one asset: the paths of each level and the cumulative verdicts."""

    principal: str
    asset: str
    effective: tuple[AccessPath, ...] = ()
    via_set_role: tuple[AccessPath, ...] = ()     # paths that need SET ROLE (not already effective)
    escalation: tuple[AccessPath, ...] = ()       # what it could grant itself, when that adds access
    # Per level, the verdicts (read, write, alter) it reaches at that level or below.
    verdicts: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Per level, whether it reaches the asset's container (USAGE) at that level or below.
    container_reachable: Mapping[str, bool] = field(default_factory=dict)

    def can(self, access: str, level: str = LEVEL_EFFECTIVE) -> bool:
        """Whether it can `access` (read, write, alter) at `level` or below."""
        return access in self.verdicts.get(level, frozenset())

    @property
    def can_read(self) -> bool:
        return self.can(ACCESS_READ)

    @property
    def can_write(self) -> bool:
        return self.can(ACCESS_WRITE)

    @property
    def can_alter(self) -> bool:
        return self.can(ACCESS_ALTER)

    def level_of(self, access: str) -> str | None:
        """The lowest level at which it can `access`, or None."""
        return next((level for level in LEVELS if self.can(access, level)), None)

    def paths_giving(self, access: str) -> list[AccessPath]:
        """The paths of the lowest level that give `access` (empty if none does)."""
        level = self.level_of(access)
        if level is None:
            return []
        every = self.effective + self.via_set_role + self.escalation
        found = [p for p in every if p.level == level and access in p.gives]
        return found or [p for p in every if p.level == level and not p.blocked]


@dataclass(frozen=True)
class AssetVerdicts:
    """Per level, the cumulative verdicts (read, write, alter): `all` of them, `plain` without
    what only all access (superuser) gives, `own` without all access and public grants."""

    all: Mapping[str, frozenset[str]]
    plain: Mapping[str, frozenset[str]]
    own: Mapping[str, frozenset[str]]
    reachable: Mapping[str, bool]


_NOTHING = {level: frozenset[str]() for level in LEVELS}
_NO_VERDICTS = AssetVerdicts(_NOTHING, _NOTHING, _NOTHING, dict.fromkeys(LEVELS, False))


@dataclass
class _Actor:
    """A role the principal can act as: current_user after its step."""

    role: str
    level: str
    chain: tuple[str, ...]
    step: str
    closure: dict[str, tuple[str, ...]]   # roles whose privileges it uses, chain from `role`
    all_access: str | None                # the role that gives it every privilege
    # For an actor that granted roles to itself: the step that brought each role in.
    reasons: dict[str, str] = field(default_factory=dict)


def _target_key(grant: Grant) -> tuple[str, str]:
    if grant.scope == SCOPE_SOURCE:
        return ("*", "")
    if grant.scope == SCOPE_COLUMN:
        return (SCOPE_ASSET, grant.target)
    return (grant.scope, grant.target)


_INDEX_ATTRIBUTE = "_access_grant_index"


def _grant_index(snapshot: SourceSnapshot) -> dict[tuple[str, str], list[Grant]]:
    """Grants by what they cover, kept on the snapshot: every principal's model shares it."""
    cached = snapshot.__dict__.get(_INDEX_ATTRIBUTE)
    if cached is None:
        cached = {}
        for grant in snapshot.grants:
            cached.setdefault(_target_key(grant), []).append(grant)
        snapshot.__dict__[_INDEX_ATTRIBUTE] = cached  # a frozen dataclass: set as cached_property does
    return cached


def _targets_by_grantee(snapshot: SourceSnapshot) -> dict[str, frozenset[tuple[str, str]]]:
    cached = snapshot.__dict__.get(_INDEX_ATTRIBUTE + "_grantee")
    if cached is None:
        targets: dict[str, set[tuple[str, str]]] = {}
        for grant in snapshot.grants:
            targets.setdefault(grant.principal, set()).add(_target_key(grant))
        cached = {name: frozenset(keys) for name, keys in targets.items()}
        snapshot.__dict__[_INDEX_ATTRIBUTE + "_grantee"] = cached
    return cached


def _assets_by_container(snapshot: SourceSnapshot) -> dict[str, list[Asset]]:
    cached = snapshot.__dict__.get(_INDEX_ATTRIBUTE + "_container")
    if cached is None:
        cached = {}
        for asset in snapshot.assets:
            if asset.container is not None:
                cached.setdefault(asset.container, []).append(asset)
        snapshot.__dict__[_INDEX_ATTRIBUTE + "_container"] = cached
    return cached


def _join(actor: _Actor, role: str) -> tuple[str, ...]:
    """The chain from the principal through the actor to a role it uses."""
    return actor.chain + actor.closure[role][1:] if actor.chain else actor.closure[role]


def _is_owner(grant: Grant) -> bool:
    return grant.privilege == PRIVILEGE_OWNER or grant.privilege.startswith(PRIVILEGE_OWNER + " ")


def grant_covers(grant: Grant, asset: Asset) -> bool:
    """Whether a grant's scope reaches an asset."""
    if grant.scope == SCOPE_SOURCE:
        return True
    if grant.scope in (SCOPE_ASSET, SCOPE_COLUMN):
        return grant.target == asset.path
    if grant.scope == SCOPE_CONTAINER:
        return asset.container is not None and grant.target == asset.container
    return False


class PrincipalAccess:
    """One principal's actors in one snapshot, built once and asked about many assets.

    `principal=None` asks what anyone can do: only the public principals' grants.
    """

    def __init__(self, snapshot: SourceSnapshot, principal: str | None) -> None:
        self.snapshot = snapshot
        self.principal = principal if principal is not None else "PUBLIC"
        self.principals: dict[str, Principal] = {p.name: p for p in snapshot.principals}
        self.inherit_edges: dict[str, list[str]] = {}
        self.set_edges: dict[str, list[str]] = {}
        self.admin_edges: dict[str, list[str]] = {}
        self.member_edges: dict[str, list[str]] = {}
        for m in snapshot.memberships:
            self.member_edges.setdefault(m.member, []).append(m.role)
            if m.inherit:
                self.inherit_edges.setdefault(m.member, []).append(m.role)
            if m.can_set:
                self.set_edges.setdefault(m.member, []).append(m.role)
            if m.admin:
                self.admin_edges.setdefault(m.member, []).append(m.role)
        self.publics = sorted(PUBLIC_PRINCIPALS & snapshot.grantees)
        self.actors: list[_Actor] = []
        if principal is None:
            self.actors.append(_Actor(self.principal, LEVEL_EFFECTIVE, (), "",
                                      {p: (p,) for p in self.publics}, None))
        else:
            self._build(principal)
        # Grants by what they cover (built once per snapshot), and for each grantee the actors
        # that use it; `held_targets` lets an asset no actor holds anything on skip all work.
        self.by_target = _grant_index(snapshot)
        self.holders: dict[str, list[int]] = {}
        for index, actor in enumerate(self.actors):
            for role in actor.closure:
                self.holders.setdefault(role, []).append(index)
        by_grantee = _targets_by_grantee(snapshot)
        self.held_targets: set[tuple[str, str]] = set()
        for role in self.holders:
            self.held_targets |= by_grantee.get(role, frozenset())
        self.any_all_access = any(a.all_access is not None for a in self.actors)
        self._verdict_cache: dict[tuple[object, ...], AssetVerdicts] = {}
        self._path_cache: dict[tuple[object, ...], tuple[tuple[AccessPath, ...], tuple[AccessPath, ...]]] = {}

    # -- actors ------------------------------------------------------------------------

    def _closure(self, role: str) -> dict[str, tuple[str, ...]]:
        chains: dict[str, tuple[str, ...]] = {role: (role,)}
        todo = deque([role])
        while todo:
            current = todo.popleft()
            for parent in sorted(self.inherit_edges.get(current, ())):
                if parent not in chains:
                    chains[parent] = chains[current] + (parent,)
                    todo.append(parent)
        for public in self.publics:
            chains.setdefault(public, (role, public))
        return chains

    def _all_access(self, role: str, closure: Mapping[str, tuple[str, ...]]) -> str | None:
        own = self.principals.get(role)
        if own is not None and own.has_all_access:
            return role
        for name in sorted(closure, key=lambda n: (len(closure[n]), n)):
            other = self.principals.get(name)
            if name != role and other is not None and other.has_all_access and other.inherited:
                return name
        return None

    def _add(self, role: str, level: str, chain: tuple[str, ...], step: str, known: dict[str, _Actor]) -> bool:
        if role in known:
            return False
        closure = self._closure(role)
        actor = _Actor(role, level, chain, step, closure, self._all_access(role, closure))
        known[role] = actor
        self.actors.append(actor)
        return True

    def _set_role_reach(self, start: str, chain: tuple[str, ...]) -> list[tuple[str, tuple[str, ...]]]:
        """Roles reachable from `start` through memberships SET ROLE may use, shortest first."""
        chains: dict[str, tuple[str, ...]] = {start: chain}
        order: list[tuple[str, tuple[str, ...]]] = []
        todo = deque([start])
        while todo:
            current = todo.popleft()
            for parent in sorted(self.set_edges.get(current, ())):
                if parent not in chains:
                    chains[parent] = chains[current] + (parent,)
                    order.append((parent, chains[parent]))
                    todo.append(parent)
        return order

    def _build(self, principal: str) -> None:
        known: dict[str, _Actor] = {}
        self._add(principal, LEVEL_EFFECTIVE, (principal,), "", known)
        for role, chain in self._set_role_reach(principal, (principal,)):
            self._add(role, LEVEL_SET_ROLE, chain, f"SET ROLE {role}", known)
        # Escalation: roles some actor can grant the principal, to a fixpoint.
        grantable: dict[str, str] = {}
        done = 0
        while done < len(self.actors):
            actor = self.actors[done]
            done += 1
            found = self._grantable(actor)
            for role, reason in found:
                grantable.setdefault(role, reason)
            # Direct grants first, so each role gets its shortest step.
            added = [(role, reason) for role, reason in found
                     if self._add(role, LEVEL_ESCALATION, (principal, role), reason, known)]
            for role, reason in added:
                for further, further_chain in self._set_role_reach(role, (principal, role)):
                    self._add(further, LEVEL_ESCALATION, further_chain, f"{reason}, then SET ROLE {further}", known)
        self._merge(grantable)

    def _merge(self, grantable: Mapping[str, str]) -> None:
        """A granted role's privileges join those of the role it is granted to, when that role
        inherits: an actor can combine what it holds (USAGE) with what a grantable role holds
        (SELECT), which neither SET ROLE alone gives."""
        targets = _targets_by_grantee(self.snapshot)
        useful: dict[str, dict[str, tuple[str, ...]]] = {}
        for role in sorted(grantable):
            closure = self._closure(role)
            if any(r in targets for r in closure if r not in PUBLIC_PRINCIPALS):
                useful[role] = closure
        if not useful:
            return
        for actor in list(self.actors):
            account = self.principals.get(actor.role)
            if account is not None and account.properties.get("inherits_grants", True) is False:
                continue
            merged = dict(actor.closure)
            reasons: dict[str, str] = {}
            for role, closure in useful.items():
                if role in merged or actor.role in self._member_reach(role):
                    continue  # already used, or the grant would close a membership cycle
                for name, chain in closure.items():
                    if name not in merged:
                        merged[name] = (actor.role, *chain)
                        reasons[name] = f"{grantable[role]} (GRANT {role} TO {actor.role})"
            if reasons:
                first = next(iter(reasons.values()))
                self.actors.append(_Actor(actor.role, LEVEL_ESCALATION, actor.chain,
                                          first if actor.level == LEVEL_EFFECTIVE else f"{actor.step}, {first}",
                                          merged, self._all_access(actor.role, merged), reasons))

    def _member_reach(self, role: str) -> set[str]:
        """Every role `role` is a member of, through any membership."""
        seen: set[str] = set()
        todo = [role]
        while todo:
            for parent in self.member_edges.get(todo.pop(), ()):
                if parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
        return seen

    def _grantable(self, actor: _Actor) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        own = self.principals.get(actor.role)
        if own is not None and own.grants_itself:
            label = own.grants_itself_reason or "can grant roles"
            if "*" in own.grants_itself:
                names = [p.name for p in self.snapshot.principals if not p.has_all_access
                         and p.properties.get("grantable", True) is not False and p.name not in PUBLIC_PRINCIPALS]
            else:
                names = list(own.grants_itself)
            out.extend((name, f"{label}: can grant itself {name}") for name in sorted(names))
        for role in actor.closure:
            for target in sorted(self.admin_edges.get(role, ())):
                out.append((target, f"ADMIN OPTION on {target}: can grant itself {target}"))
        if actor.level == LEVEL_EFFECTIVE and own is not None and own.properties.get("admin_of_itself"):
            out.append((actor.role, f"{actor.role} may grant itself to the roles it can SET ROLE to"))
        return out

    @property
    def set_role_targets(self) -> list[str]:
        """The roles it can SET ROLE to (not itself)."""
        return [a.role for a in self.actors if a.level == LEVEL_SET_ROLE]

    def escalation_actors(self) -> list[_Actor]:
        """Roles it could grant itself that give something (a grant, all access), those with
        source-wide grants (pg_write_all_data) first, then by the shortest step."""
        targets = _targets_by_grantee(self.snapshot)

        def holds(actor: _Actor) -> tuple[bool, bool]:
            keys = set().union(*(targets.get(role, frozenset()) for role in actor.closure
                                 if role not in PUBLIC_PRINCIPALS))
            return actor.all_access is not None or ("*", "") in keys, bool(keys)

        found = [(holds(a), a) for a in self.actors if a.level == LEVEL_ESCALATION and not a.reasons]
        found = [(h, a) for h, a in found if h[0] or h[1]]
        found.sort(key=lambda item: (not item[0][0], len(item[1].chain), item[1].role))
        return [a for _, a in found]

    def privileged_actors(self) -> list[_Actor]:
        """Actors with all access, lowest level first."""
        return [a for a in self.actors if a.all_access is not None]

    # -- one asset ---------------------------------------------------------------------

    def covering(self, asset: Asset) -> list[Grant]:
        """The grants whose scope reaches the asset, whoever holds them."""
        found = list(self.by_target.get(("*", ""), ()))
        found += self.by_target.get((SCOPE_ASSET, asset.path), ())
        if asset.container is not None:
            found += self.by_target.get((SCOPE_CONTAINER, asset.container), ())
        return found

    def _held(self, asset: Asset) -> dict[int, list[Grant]]:
        held: dict[int, list[Grant]] = {}
        for grant in self.covering(asset):
            for index in self.holders.get(grant.principal, ()):
                held.setdefault(index, []).append(grant)
        return held

    def touched_assets(self) -> list[Asset]:
        """The assets some actor holds a grant on (every asset with all access or a source-wide
        grant), in snapshot order: the others have no access at any level."""
        if self.any_all_access or ("*", "") in self.held_targets:
            return list(self.snapshot.assets)
        found: dict[str, Asset] = {}
        in_container = _assets_by_container(self.snapshot)
        for scope, target in self.held_targets:
            if scope == SCOPE_CONTAINER:
                found.update((a.path, a) for a in in_container.get(target, ()))
            elif scope == SCOPE_ASSET:
                asset = self.snapshot.asset(target)
                if asset is not None:
                    found[asset.path] = asset
        return [found[path] for path in sorted(found)]

    def _touches(self, asset: Asset) -> bool:
        held = self.held_targets
        return (self.any_all_access or ("*", "") in held or (SCOPE_ASSET, asset.path) in held
                or (asset.container is not None and (SCOPE_CONTAINER, asset.container) in held))

    def _shape(self, asset: Asset, paths: bool) -> tuple[object, ...]:
        """What an asset's verdicts depend on besides the source- and container-wide grants:
        its container and its own grants that an actor holds, without the asset's name; for
        its paths (`paths`), each grant's `via` and `columns` too, which the paths show."""
        holders = self.holders
        own = tuple((g.principal, g.privilege, g.access, g.scope, g.public, *((g.via, g.columns) if paths else ()))
                    for g in self.by_target.get((SCOPE_ASSET, asset.path), ()) if g.principal in holders)
        return (asset.container, own)

    def verdicts(self, asset: Asset) -> AssetVerdicts:
        """The cumulative verdicts per level, without building paths: all of them, without
        what only all access gives, and the principal's own (neither all access nor public)."""
        if not self._touches(asset):
            return _NO_VERDICTS
        # The answer depends on the source- and container-wide grants (the same for every asset
        # of a container) and on what the asset's own grants are, not on which asset they name:
        # assets whose own grants have the same shape share it.
        key = self._shape(asset, False)
        found = self._verdict_cache.get(key)
        if found is None:
            found = self._verdict_cache[key] = self._evaluate(asset, self._held(asset))[0]
        return found

    def _evaluate(self, asset: Asset, held: Mapping[int, list[Grant]]) -> tuple[
            AssetVerdicts, dict[int, bool], set[str], bool]:
        needs_usage = self.snapshot.container_usage and asset.container is not None
        usage: dict[int, bool] = {}
        plain_usage: dict[int, bool] = {}       # usage without counting all access
        gives: dict[int, set[str]] = {}
        gives_plain: dict[int, set[str]] = {}   # all access left out
        gives_own: dict[int, set[str]] = {}     # all access and public grants left out
        # What an actor can grant anyone (it owns the asset, holds a grant option): only an
        # actor that can name the asset, i.e. has or can get USAGE, can pass it on.
        transfer_by: dict[int, set[str]] = {}
        transfer_usage = False
        for index, actor in enumerate(self.actors):
            grants = held.get(index, ())
            plain_usage[index] = not needs_usage or any(
                g.privilege == PRIVILEGE_USAGE and g.scope in (SCOPE_CONTAINER, SCOPE_SOURCE) for g in grants)
            usage[index] = actor.all_access is not None or plain_usage[index]
            got: set[str] = set()
            own: set[str] = set()
            passes: set[str] = set()
            for g in grants:
                this: set[str] = set()
                if g.access == ACCESS_ADMIN:
                    this = set(DATA_ACCESS)
                elif g.access in _GIVES:
                    this = {g.access}
                got |= this
                if not (g.public or g.principal in PUBLIC_PRINCIPALS):
                    own |= this
                if g.scope in (SCOPE_ASSET, SCOPE_COLUMN) and _is_owner(g):
                    passes |= {ACCESS_READ, ACCESS_WRITE}
                elif g.scope in (SCOPE_CONTAINER, SCOPE_SOURCE) and (
                        _is_owner(g) or g.privilege == PRIVILEGE_USAGE + GRANT_OPTION_SUFFIX):
                    transfer_usage = True
                elif g.privilege.endswith(GRANT_OPTION_SUFFIX) and g.scope in (SCOPE_ASSET, SCOPE_COLUMN, SCOPE_SOURCE):
                    base = g.privilege[: -len(GRANT_OPTION_SUFFIX)]
                    passes |= {access for privilege, access in _BASE_ACCESS.items() if privilege == base}
            gives_plain[index] = set(got)
            gives_own[index] = own
            if actor.all_access is not None:
                got |= set(DATA_ACCESS)
            gives[index] = got
            transfer_by[index] = passes
        transfer: set[str] = set()
        for index in transfer_by:
            if usage[index] or transfer_usage:
                transfer |= transfer_by[index]
        verdicts: dict[str, frozenset[str]] = {}
        plain: dict[str, frozenset[str]] = {}
        own_verdicts: dict[str, frozenset[str]] = {}
        reachable: dict[str, bool] = {}
        so_far: set[str] = set()
        so_far_plain: set[str] = set()
        so_far_own: set[str] = set()
        reach = False
        for level in LEVELS:
            for index, actor in enumerate(self.actors):
                if _RANK[actor.level] > _RANK[level]:
                    continue
                if usage[index]:
                    so_far |= gives[index]
                    reach = reach or needs_usage
                if plain_usage[index]:
                    so_far_plain |= gives_plain[index]
                    so_far_own |= gives_own[index]
                if level == LEVEL_ESCALATION:
                    if usage[index] or transfer_usage:
                        so_far |= transfer | gives[index]
                        reach = reach or needs_usage
            verdicts[level] = frozenset(so_far)
            plain[level] = frozenset(so_far_plain)
            own_verdicts[level] = frozenset(so_far_own)
            reachable[level] = reach
        return AssetVerdicts(verdicts, plain, own_verdicts, reachable), usage, transfer, transfer_usage

    def report(self, asset: Asset) -> AccessReport:
        """Every level's paths and verdicts for one asset."""
        needs_usage = self.snapshot.container_usage and asset.container is not None
        held = self._held(asset)
        found, usage, transfer, transfer_usage = self._evaluate(asset, held)
        verdicts, reachable = found.all, found.reachable
        paths = self._paths(asset, held, usage, needs_usage)
        effective = tuple(p for p in paths if p.level == LEVEL_EFFECTIVE)
        set_role = tuple(p for p in paths if p.level == LEVEL_SET_ROLE)
        escalation: tuple[AccessPath, ...] = ()
        if verdicts[LEVEL_ESCALATION] - verdicts[LEVEL_SET_ROLE]:
            escalation = tuple(p for p in paths if p.level == LEVEL_ESCALATION)
            escalation += self._transfer_paths(asset, held, usage, transfer, transfer_usage)
        return AccessReport(self.principal, asset.path, effective, set_role, escalation, verdicts, reachable)

    def plain_paths(self, asset: Asset) -> tuple[tuple[AccessPath, ...], tuple[AccessPath, ...]]:
        """`report(asset)`'s effective and SET ROLE paths. A path names no asset (its chain, and
        its grant's privilege, access, scope, via, columns; a block names the container), so the
        assets of a container whose own grants have the same shape share them, as they share
        verdicts: worked out once per shape (`write_access` asks for 166,000 tables' paths)."""
        key = self._shape(asset, True)
        found = self._path_cache.get(key)
        if found is None:
            report = self.report(asset)
            found = self._path_cache[key] = (report.effective, report.via_set_role)
        return found

    def _paths(self, asset: Asset, held: Mapping[int, list[Grant]], usage: Mapping[int, bool],
               needs_usage: bool) -> list[AccessPath]:
        """Every effective path (blocked ones marked), then for each grant that only SET ROLE or
        escalation makes usable, its shortest path."""
        effective: list[AccessPath] = []
        usable: set[tuple[object, ...]] = set()
        upper: dict[tuple[object, ...], AccessPath] = {}
        for index, actor in enumerate(self.actors):
            is_effective = actor.level == LEVEL_EFFECTIVE
            candidates: list[tuple[tuple[object, ...], AccessPath]] = []
            if actor.all_access is not None:
                holder = self.principals[actor.all_access]
                candidates.append((("all",), AccessPath(
                    self.principal, _join(actor, actor.all_access), "ALL", ACCESS_ADMIN, SCOPE_SOURCE,
                    f"privileged: {', '.join(holder.attributes) or 'yes'}", privileged=True,
                    level=actor.level, step=actor.reasons.get(actor.all_access, actor.step))))
            for grant in held.get(index, ()):
                blocked = ""
                gives_data = grant.access in (ACCESS_READ, ACCESS_WRITE, ACCESS_ALTER, ACCESS_ADMIN)
                if gives_data and needs_usage and not usage[index]:
                    blocked = f"no USAGE on {asset.container}"
                if not is_effective and (blocked or not gives_data):
                    continue
                key: tuple[object, ...] = (grant.principal, grant.privilege, grant.scope, grant.target,
                                           grant.columns, grant.via)
                candidates.append((key, AccessPath(
                    self.principal, _join(actor, grant.principal), grant.privilege, grant.access, grant.scope,
                    grant.via, grant.public or grant.principal in PUBLIC_PRINCIPALS, grant.columns,
                    level=actor.level, step=actor.reasons.get(grant.principal, actor.step), blocked=blocked)))
            for key, path in candidates:
                if is_effective:
                    effective.append(path)
                    if not path.blocked:
                        usable.add(key)
                    continue
                current = upper.get(key)
                rank = (_RANK[path.level], len(path.chain), path.chain)
                if current is None or rank < (_RANK[current.level], len(current.chain), current.chain):
                    upper[key] = path
        paths = effective + [path for key, path in upper.items() if key not in usable]
        paths.sort(key=lambda p: (_RANK[p.level], len(p.chain), p.chain, p.access, p.privilege, p.scope, p.via))
        return paths

    def _transfer_paths(self, asset: Asset, held: Mapping[int, list[Grant]], usage: Mapping[int, bool],
                        transfer: set[str], transfer_usage: bool) -> tuple[AccessPath, ...]:
        out: list[AccessPath] = []
        seen: set[tuple[str, str]] = set()
        for index, actor in enumerate(self.actors):
            if not (usage[index] or transfer_usage):
                continue
            for grant in held.get(index, ()):
                if (grant.principal, grant.privilege) in seen:
                    continue
                chain = _join(actor, grant.principal)
                owner = _is_owner(grant)
                if grant.scope in (SCOPE_ASSET, SCOPE_COLUMN) and owner:
                    step = f"owner of {asset.path}: can grant itself every privilege on it back"
                    access = ACCESS_ADMIN
                elif grant.scope in (SCOPE_CONTAINER, SCOPE_SOURCE) and transfer_usage and (
                        owner or grant.privilege == PRIVILEGE_USAGE + GRANT_OPTION_SUFFIX):
                    step = f"can grant itself USAGE on {asset.container}"
                    access = "other"
                elif grant.privilege.endswith(GRANT_OPTION_SUFFIX) and transfer:
                    step = f"holds {grant.privilege}: can grant it to itself"
                    access = "other"
                else:
                    continue
                seen.add((grant.principal, grant.privilege))
                if actor.level != LEVEL_EFFECTIVE:
                    step = f"{actor.step}, then {step}"
                out.append(AccessPath(self.principal, chain, grant.privilege, access, grant.scope, grant.via,
                                      level=LEVEL_ESCALATION, step=step))
        return tuple(out)


# What each privilege with a grant option can be passed on as (PostgreSQL's and SQL's words).
_BASE_ACCESS = {"SELECT": ACCESS_READ, "INSERT": ACCESS_WRITE, "UPDATE": ACCESS_WRITE,
                "DELETE": ACCESS_WRITE, "TRUNCATE": ACCESS_WRITE}


def access_report(snapshot: SourceSnapshot, principal: str, asset: Asset) -> AccessReport:
    """A principal's access to one asset at all three levels."""
    return PrincipalAccess(snapshot, principal).report(asset)


def public_report(snapshot: SourceSnapshot, asset: Asset) -> AccessReport:
    """What anyone (the public principals) can do to an asset, schema USAGE included."""
    return PrincipalAccess(snapshot, None).report(asset)


def role_chains(snapshot: SourceSnapshot, principal: str) -> dict[str, tuple[str, ...]]:
    """Every role a principal acts as effectively (itself included), with the shortest chain to it.

    Membership is followed only where it inherits; public principals are reachable by anyone.
    """
    return PrincipalAccess(snapshot, principal).actors[0].closure


def access_paths(snapshot: SourceSnapshot, principal: str, asset: Asset) -> list[AccessPath]:
    """The effective paths from `principal` to `asset` (blocked ones included, marked), sorted."""
    return list(access_report(snapshot, principal, asset).effective)


def access_levels(paths: Iterable[AccessPath]) -> set[str]:
    """The coarse levels (read, write, alter, admin) that effective, unblocked paths give;
    admin implies all."""
    levels = {p.access for p in paths if not p.blocked and p.level == LEVEL_EFFECTIVE}
    if ACCESS_ADMIN in levels:
        levels |= set(DATA_ACCESS)
    return levels


def can_write(paths: Iterable[AccessPath]) -> bool:
    """Whether any effective path lets the principal change the asset's data."""
    return bool(access_levels(paths) & {ACCESS_WRITE, ACCESS_ADMIN})


def can_read(paths: Iterable[AccessPath]) -> bool:
    """Whether any effective path lets the principal read the asset (whole or some columns)."""
    return bool(access_levels(paths) & {ACCESS_READ, ACCESS_ADMIN})
