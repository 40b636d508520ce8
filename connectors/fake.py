"""`fake`: a connector with knobs (latency, failure, hang) that needs no system.

It drives the scan, scheduler and fault tests, and lets anyone try ctxscan's orchestration.
Its assets are declared in the inventory; nothing is read from anywhere.
"""

from __future__ import annotations

from datetime import timedelta

from scanner.errors import ProbeError
from scanner.model import (
    ACCESS_ADMIN,
    ACCESS_OTHER,
    ACCESS_READ,
    ACCESS_WRITE,
    PUBLIC_PRINCIPALS,
    SCOPE_ASSET,
    SCOPE_CONTAINER,
    SCOPE_SOURCE,
    Asset,
    Column,
    DiscoveredOwner,
    FreshnessObservation,
    Grant,
    Membership,
    Principal,
    SourceSnapshot,
)
from scanner.plugins import Connector, ProbeContext, Setting


class FakeConnector(Connector):
    """A fake source: `tables` are `path` or `path@age` (age like 2h) or `path@none`."""

    kind = "fake"
    description = "a fake source for tests and trials: declared assets, latency and failure knobs"
    settings = (
        Setting("tables", list, help="asset paths, each `path`, `path@AGE` (e.g. 2h), `path@none`, or "
                                     "`path@observed:OLDEST:NEWEST` (changed between two scans), or "
                                     "`path@unchanged:AGE` (counters unchanged for at least AGE)"),
        Setting("columns", list, help="columns of every asset, each `name:type`"),
        Setting("asset_columns", list, help="columns of one asset, each `path=name:type,name:type` "
                                            "(instead of `columns`)"),
        Setting("tags", list, help="source tags, each `key=value`; `owner_tag` discovers the owner here"),
        Setting("asset_tags", list, help="asset labels, each `path:key=value`; `owner_tag` discovers "
                                         "the asset's owner here"),
        Setting("latency", float, help="seconds each probe sleeps"),
        Setting("fail", str, help="fail every probe with this message"),
        Setting("hang", bool, help="never return (until cancelled)"),
        Setting("grants", list, help="grants, each `principal:privilege:target` (write privileges: "
                                     "INSERT, UPDATE, DELETE, WRITE; ALL and OWNER are admin); the "
                                     "target is an asset, `schema.*` (container) or `*` (source)"),
        Setting("members", list, help="role memberships, each `member:role` or `member:role:noinherit` "
                "(usable only after SET ROLE)"),
        Setting("superusers", list, help="principals that are superuser"),
        Setting("container_usage", bool, help="assets need a USAGE grant on their container "
                "(`PUBLIC:USAGE:public.*`), as PostgreSQL schemas do"),
        Setting("unknown_principals", list, help="principals the source says do not exist (as the "
                                                 "database connectors record runs_as typos)"),
        Setting("token", str, secret=True, help="a secret, to test redaction"),
        Setting("row_counts", list, help="row counts, each `path=N` (default 0)"),
    )

    def probe(self, context: ProbeContext) -> SourceSnapshot:
        """Sleep, hang or fail as told, else return the declared assets."""
        settings = self.source.settings
        if settings.get("hang"):
            while not context.cancelled.wait(0.05):
                pass
            raise ProbeError("cancelled", reason="timeout")
        latency = float(settings.get("latency") or 0)
        if latency and context.cancelled.wait(latency):
            raise ProbeError("cancelled", reason="timeout")
        if settings.get("fail"):
            raise ProbeError(str(settings["fail"]), reason="unreachable", retryable=True)
        columns = []
        for spec in settings.get("columns") or ():
            name, _, typ = str(spec).partition(":")
            columns.append(Column(name, typ or "text"))
        per_asset: dict[str, tuple[Column, ...]] = {}
        for spec in settings.get("asset_columns") or ():
            path, _, specs = str(spec).partition("=")
            per_asset[path] = tuple(Column(n, t or "text") for n, _, t in
                                    (c.strip().partition(":") for c in specs.split(",") if c.strip()))
        owner_tag = self.source.owner_tag
        source_owner = None
        for spec in settings.get("tags") or ():
            key, _, value = str(spec).partition("=")
            if owner_tag and key == owner_tag and value:
                source_owner = DiscoveredOwner(value, f"tag:{key}")
        asset_owners: dict[str, DiscoveredOwner] = {}
        for spec in settings.get("asset_tags") or ():
            path, _, tag = str(spec).partition(":")
            key, _, value = tag.partition("=")
            if owner_tag and key == owner_tag and value:
                asset_owners[path] = DiscoveredOwner(value, f"label:{key}")
        rows = {path: int(count) for path, _, count in
                (str(spec).partition("=") for spec in settings.get("row_counts") or ())}
        assets = []
        for spec in settings.get("tables") or ():
            path, _, age = str(spec).partition("@")
            if not self.source.wants(path):
                continue
            if age == "none":
                freshness = FreshnessObservation()
            elif age.startswith("unchanged:"):  # counters unchanged for at least this long
                from scanner.durations import parse_duration

                freshness = FreshnessObservation(
                    method="observed", detail="change counters unchanged",
                    last_changed=context.now - timedelta(seconds=parse_duration(age.split(":", 1)[1])))
            elif age.startswith("observed:"):
                from scanner.durations import parse_duration

                _, oldest, newest = age.split(":", 2)
                freshness = FreshnessObservation(
                    method="observed",
                    changed_after=context.now - timedelta(seconds=parse_duration(oldest)),
                    last_changed=context.now - timedelta(seconds=parse_duration(newest)))
            else:
                from scanner.durations import parse_duration

                seconds = parse_duration(age) if age else 0
                freshness = FreshnessObservation(method="metadata",
                                                 last_changed=context.now - timedelta(seconds=seconds))
            assets.append(Asset(path=path, kind="table", columns=per_asset.get(path, tuple(columns)),
                                freshness=freshness, owner=asset_owners.get(path), row_count=rows.get(path, 0),
                                container=path.rsplit(".", 1)[0] if "." in path else None))
        grants = []
        principals = {}
        for spec in settings.get("grants") or ():
            principal, privilege, target = str(spec).split(":", 2)
            write = privilege.upper() in ("INSERT", "UPDATE", "DELETE", "WRITE")
            access = ACCESS_ADMIN if privilege.upper() in ("ALL", "OWNER") else (
                ACCESS_WRITE if write else ACCESS_OTHER if privilege.upper() == "USAGE" else ACCESS_READ)
            public = principal in PUBLIC_PRINCIPALS
            scope = SCOPE_ASSET
            if target == "*":
                scope = SCOPE_SOURCE
            elif target.endswith(".*"):
                scope, target = SCOPE_CONTAINER, target[:-2]
            grants.append(Grant(principal, privilege.upper(), target, scope, access, public=public,
                                via=f"fake {spec}"))
            principals[principal] = Principal(principal, "public" if public else "role")
        for name in settings.get("superusers") or ():
            principals[name] = Principal(name, "role", ("superuser",), privileged=True)
        members = []
        for spec in settings.get("members") or ():
            member, _, role = str(spec).partition(":")
            role, _, option = role.partition(":")
            members.append(Membership(member, role, inherit=option != "noinherit"))
        state: dict[str, list[str]] = {}
        if settings.get("unknown_principals"):
            state["unknown_principals"] = sorted(str(name) for name in settings["unknown_principals"])
        return SourceSnapshot(source_id=self.source.id, connector=self.kind, probed_at=context.now,
                              assets=tuple(assets), grants=tuple(grants), owner=source_owner,
                              principals=tuple(principals.values()), memberships=tuple(members),
                              state=state, container_usage=bool(settings.get("container_usage")))
