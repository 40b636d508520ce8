"""Immutable values that connectors return and the core stores, evaluates and graphs.

A connector turns one source into a `SourceSnapshot`. Everything in it is plain data
(strings, numbers, UTC datetimes, tuples) so it serialises to JSON and back without loss.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import itertools
import json
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, NamedTuple

# Freshness methods, in PRODUCT.md's words.
METHOD_COLUMN = "column"
METHOD_METADATA = "metadata"
METHOD_OBSERVED = "observed"
METHOD_NONE = "none"
FRESHNESS_METHODS = (METHOD_COLUMN, METHOD_METADATA, METHOD_OBSERVED, METHOD_NONE)

# What a grant lets a principal do, coarsely; connectors map vendor privileges onto these.
ACCESS_READ = "read"
ACCESS_WRITE = "write"
ACCESS_ADMIN = "admin"
ACCESS_OTHER = "other"
# Change the asset's definition (ALTER, DROP, CREATE in it), not its data.
ACCESS_ALTER = "alter"
ACCESS_LEVELS = (ACCESS_READ, ACCESS_WRITE, ACCESS_ADMIN, ACCESS_OTHER, ACCESS_ALTER)

# Vendor privilege words the access model reads: USAGE on a container (with
# `SourceSnapshot.container_usage`) and ownership, which can grant itself back what was revoked.
PRIVILEGE_USAGE = "USAGE"
PRIVILEGE_OWNER = "OWNER"
GRANT_OPTION_SUFFIX = " WITH GRANT OPTION"

# What a grant applies to.
SCOPE_ASSET = "asset"        # one asset, `target` is the asset path
SCOPE_CONTAINER = "container"  # a schema, dataset or folder: `target` is its name, assets under it
SCOPE_SOURCE = "source"      # the whole source (bucket, database, project); `target` is "*"
SCOPE_COLUMN = "column"      # some columns of one asset; `target` is the asset path
GRANT_SCOPES = (SCOPE_ASSET, SCOPE_CONTAINER, SCOPE_SOURCE, SCOPE_COLUMN)

# Principals that stand for "everyone".
PUBLIC_PRINCIPALS = frozenset({"PUBLIC", "allUsers", "allAuthenticatedUsers", "*", "AllUsers",
                               "AuthenticatedUsers", "world"})


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class Column(NamedTuple):
    """One field of an asset.

    A named tuple rather than a frozen dataclass: assets can have thousands of columns and
    a tuple serialises to JSON as it is, which keeps storing a 5,000-table snapshot cheap.
    """

    name: str
    type: str
    nullable: bool = True
    comment: str | None = None


@dataclass(frozen=True)
class FreshnessObservation:
    """When an asset last changed, and how we know.

    `last_changed` is the newest evidence of change. For `observed`, the change lies in
    (`changed_after`, `last_changed`]: counters moved between two scans, so the age is at
    most now - `changed_after`. `caveat` says what can make the evidence wrong.
    """

    method: str = METHOD_NONE
    last_changed: datetime | None = None
    changed_after: datetime | None = None
    caveat: str | None = None
    detail: str | None = None

    def age_seconds(self, now: datetime) -> float | None:
        """Seconds since the change, conservatively (the oldest the evidence allows)."""
        if self.method == METHOD_NONE or self.last_changed is None:
            return None
        reference = self.changed_after if self.changed_after is not None else self.last_changed
        return max(0.0, (now - reference).total_seconds())

    @property
    def lower_bound(self) -> bool:
        """Whether the evidence only proves no change since `last_changed` (change counters
        that held still): the age is at least now - `last_changed`, perhaps much more."""
        return self.method == METHOD_OBSERVED and self.changed_after is None and self.last_changed is not None

    def newest_age_seconds(self, now: datetime) -> float | None:
        """Seconds since the change, optimistically (the youngest the evidence allows)."""
        if self.method == METHOD_NONE or self.last_changed is None:
            return None
        return max(0.0, (now - self.last_changed).total_seconds())


@dataclass(frozen=True)
class DiscoveredOwner:
    """An owner and where it came from: `config`, `tag:KEY`, `label:KEY`, ..."""

    owner: str
    provenance: str


@dataclass(frozen=True)
class Asset:
    """One object inside a source: a table, a view, a prefix, a folder or a file."""

    path: str
    kind: str
    columns: tuple[Column, ...] = ()
    # The schema, dataset or folder that holds it; container-scoped grants apply through it.
    container: str | None = None
    row_count: int | None = None
    size_bytes: int | None = None
    freshness: FreshnessObservation = field(default_factory=FreshnessObservation)
    owner: DiscoveredOwner | None = None
    # Connector-specific facts worth showing a reviewer (labels, owner role, file count...).
    properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Principal:
    """An account as the source sees it, with attributes that make it privileged."""

    name: str
    kind: str = "role"
    # Attributes such as superuser, bypassrls, createrole, global_all, dataset_owner, s3:*.
    attributes: tuple[str, ...] = ()
    privileged: bool = False
    properties: Mapping[str, Any] = field(default_factory=dict)
    # Whether `privileged` means every privilege on every asset (superuser, global ALL); None
    # means "as privileged says". PostgreSQL's BYPASSRLS and CREATEROLE are privileged (a
    # finding) but give no table access.
    all_access: bool | None = None
    # Whether members that inherit from it get its all access too. PostgreSQL role attributes
    # are never inherited: a member of a superuser role is superuser only after SET ROLE.
    inherited: bool = True
    # Roles it can make itself a member of while acting as itself (PostgreSQL CREATEROLE before
    # 16: every role but superusers); "*" means every principal without all access whose
    # properties do not say `grantable: false`. The reason names the attribute.
    grants_itself: tuple[str, ...] = ()
    grants_itself_reason: str = ""

    @property
    def has_all_access(self) -> bool:
        """Whether acting as this principal gives every privilege on every asset."""
        return self.privileged if self.all_access is None else self.all_access


@dataclass(frozen=True)
class Membership:
    """`member` is a member of `role`; with `inherit` it uses the role's privileges as itself,
    without it only after SET ROLE (when `can_set`); with `admin` it can grant `role` on."""

    member: str
    role: str
    inherit: bool = True
    admin: bool = False
    can_set: bool = True


@dataclass(frozen=True)
class Grant:
    """principal -> privilege -> target, as the source reports it.

    `scope` says whether `target` is one asset, a container (schema, dataset), the whole
    source, or some `columns` of one asset. `access` is the coarse level the core reasons
    with; `privilege` is the vendor's word. `via` names what gave it (an ACL, a policy
    statement) for `ctxscan why`.
    """

    principal: str
    privilege: str
    target: str
    scope: str = SCOPE_ASSET
    access: str = ACCESS_READ
    columns: tuple[str, ...] = ()
    public: bool = False
    via: str = ""


_new = object.__new__


def new_grant(principal: str, privilege: str, target: str, scope: str, access: str,
              columns: tuple[str, ...], public: bool, via: str) -> Grant:
    """`Grant(...)` with all eight fields, for a probe that makes 100,000s of them (a
    50,000-table catalog): the frozen dataclass's __init__ sets each field through
    object.__setattr__, ~4x slower than filling its __dict__. The __dict__ it fills costs ~64
    bytes more a grant than the constructor's, so the snapshot decoder, whose snapshots sit
    beside the next scan's, keeps the constructor."""
    grant = _new(Grant)
    fields = grant.__dict__
    fields["principal"] = principal
    fields["privilege"] = privilege
    fields["target"] = target
    fields["scope"] = scope
    fields["access"] = access
    fields["columns"] = columns
    fields["public"] = public
    fields["via"] = via
    return grant


@dataclass(frozen=True)
class SourceSnapshot:
    """What one probe of one source found."""

    source_id: str
    connector: str
    probed_at: datetime
    assets: tuple[Asset, ...] = ()
    principals: tuple[Principal, ...] = ()
    memberships: tuple[Membership, ...] = ()
    grants: tuple[Grant, ...] = ()
    owner: DiscoveredOwner | None = None
    # True when the probe stopped early (an object cap, a time budget): the result is
    # incomplete and says so rather than pretending.
    partial: bool = False
    # Things the user should know: unreadable entries, caveats, "reports no grants".
    notes: tuple[str, ...] = ()
    # Whether the connector reports access at all; False means "unknown", never "none".
    reports_grants: bool = True
    # Whether an asset is reachable only with USAGE on its container besides the asset
    # privilege (PostgreSQL schemas); USAGE is a container- or source-scoped grant.
    container_usage: bool = False
    # Connector state carried to the next probe (change counters, stats reset time...).
    state: Mapping[str, Any] = field(default_factory=dict)

    def asset(self, path: str) -> Asset | None:
        """The asset with this path, if the probe found it."""
        return self._assets_by_path.get(path)

    @cached_property
    def grantees(self) -> frozenset[str]:
        """Every principal that holds at least one grant (computed once per snapshot)."""
        return frozenset(grant.principal for grant in self.grants)

    @cached_property
    def _assets_by_path(self) -> dict[str, Asset]:
        # Built once per snapshot: connectors and rules look assets up by path for every
        # table, which a linear search would make quadratic on a 5,000-table source.
        return {asset.path: asset for asset in self.assets}


@dataclass(frozen=True)
class Finding:
    """Something wrong, with a stable fingerprint so it can be tracked across scans."""

    kind: str
    severity: str
    message: str
    fingerprint: str
    source: str | None = None
    asset: str | None = None
    workflow: str | None = None
    principal: str | None = None
    subkind: str | None = None
    remediation: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# JSON round trip. Hand-written so the store never depends on pickle and stays readable.

def _dt(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_dt(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def encode_snapshot(snapshot: SourceSnapshot) -> bytes:
    """A snapshot as the store keeps it: zlib-compressed JSON of `snapshot_to_dict`.

    msgspec encodes a 5,000-table snapshot about seven times faster than the json module.
    Property values JSON has no type for are stored as msgspec writes them (datetimes as
    ISO strings, anything else as `str`). A snapshot is immutable, so its bytes are kept on
    it: a snapshot decoded from a blob (the store's, a zone worker's) encodes to that blob
    again for free, and a zone worker's answer is stored as the worker wrote it.
    """
    cached = snapshot.__dict__.get(_BLOB)
    if cached is not None:
        return cached
    compressor = zlib.compressobj(1)
    with _collector_paused():
        # The same bytes as compressing the whole JSON at once, without ever holding it whole
        # (60 MB at 50,000 tables) or the dicts it is made from.
        blob = b"".join([compressor.compress(part) for part in _json_parts(snapshot)] + [compressor.flush()])
    object.__setattr__(snapshot, _BLOB, blob)
    return blob


# Assets and grants are encoded this many at a time.
_BATCH = 2000


def _json_parts(snapshot: SourceSnapshot) -> Iterator[bytes | memoryview]:
    """`msgspec.json.encode(snapshot_to_dict(snapshot), enc_hook=str)`, in pieces: the assets
    and the grants a batch at a time."""
    import msgspec.json

    encode = msgspec.json.Encoder(enc_hook=str).encode
    yield b"{"
    for n, (key, value) in enumerate(_snapshot_fields(snapshot).items()):
        yield (b"," if n else b"") + encode(key) + b":"
        convert = _BATCHED.get(key)
        if convert is not None:
            items = getattr(snapshot, key)
            yield b"["
            for start in range(0, len(items), _BATCH):
                data = encode([convert(item) for item in items[start:start + _BATCH]])
                if start:
                    yield b","
                yield memoryview(data)[1:-1]  # the batch's elements, without its brackets
            yield b"]"
        else:
            yield encode(value)
    yield b"}"


def decode_snapshot(blob: bytes) -> SourceSnapshot:
    """The inverse of `encode_snapshot`.

    msgspec decodes straight into the dataclasses (a 5,000-table snapshot in ~65 ms against
    ~220 ms through dicts); a blob that this typed reading refuses (written by an older
    version) is read through `snapshot_from_dict`, which accepts every shape ever stored.
    """
    raw = zlib.decompress(blob)
    with _collector_paused():
        try:
            snapshot = _typed_snapshot(raw)
        except Exception:  # noqa: BLE001 (msgspec.ValidationError, or an odd stored value)
            snapshot = snapshot_from_dict(json.loads(raw))
    object.__setattr__(snapshot, _BLOB, bytes(blob))
    return snapshot


_BLOB = "_encoded"


def keep_encoding(snapshot: SourceSnapshot, blob: bytes) -> SourceSnapshot:
    """Let `snapshot` (rebuilt from a delta, say) encode to `blob`, once `blob` is checked to
    be its encoding: ValueError when it is not (truncated, garbled, written by another
    version, or holding values that merely compare equal, as 1 and True). Encoding without
    compressing and comparing costs about a third of decoding the blob."""
    import msgspec.json

    try:
        raw = zlib.decompress(blob)
    except zlib.error as exc:
        raise ValueError(f"the bytes are not a stored snapshot ({exc})") from None
    with _collector_paused():
        mine = msgspec.json.encode(snapshot_to_dict(snapshot), enc_hook=str)
    if mine != raw:
        raise ValueError("the bytes hold another snapshot")
    object.__setattr__(snapshot, _BLOB, bytes(blob))
    return snapshot


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic collector while a snapshot's ~150,000 objects are made: it would
    traverse them again and again for garbage that is never cyclic (3x the decode time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_SNAPSHOT_DECODER: Any = None


def _typed_snapshot(raw: bytes) -> SourceSnapshot:
    global _SNAPSHOT_DECODER
    if _SNAPSHOT_DECODER is None:
        from scanner import wire as typed

        _SNAPSHOT_DECODER = typed.snapshot_decoder()
    wire = _SNAPSHOT_DECODER.decode(raw)
    for asset in wire.assets:  # the dict path reads a zone-less time as UTC: so does this one
        f = asset.freshness
        if (f.last_changed is not None and f.last_changed.tzinfo is None) or (
                f.changed_after is not None and f.changed_after.tzinfo is None):
            raise ValueError("a naive datetime")
    rest = snapshot_from_dict({"source_id": wire.source_id, "connector": wire.connector,
                               "probed_at": wire.probed_at, "principals": wire.principals,
                               "memberships": wire.memberships})
    return dataclasses.replace(rest, assets=wire.assets, grants=tuple(itertools.starmap(Grant, wire.grants)),
                               owner=wire.owner, partial=wire.partial,
                               notes=wire.notes, reports_grants=wire.reports_grants,
                               container_usage=wire.container_usage, state=wire.state)


def snapshot_to_dict(snapshot: SourceSnapshot) -> dict[str, Any]:
    """A JSON-ready dict of a snapshot."""
    fields = _snapshot_fields(snapshot)
    for key, convert in _BATCHED.items():
        fields[key] = [convert(item) for item in getattr(snapshot, key)]
    return fields


def _snapshot_fields(snapshot: SourceSnapshot) -> dict[str, Any]:
    """`snapshot_to_dict`'s keys in order, the assets and grants (`_BATCHED`) still None."""
    return {
        "source_id": snapshot.source_id,
        "connector": snapshot.connector,
        "probed_at": _dt(snapshot.probed_at),
        "partial": snapshot.partial,
        "notes": list(snapshot.notes),
        "reports_grants": snapshot.reports_grants,
        "state": dict(snapshot.state),
        "owner": _owner_dict(snapshot.owner),
        "assets": None,
        "principals": _principal_list(snapshot.principals),
        "container_usage": snapshot.container_usage,
        "memberships": _membership_list(snapshot.memberships),
        "grants": None,
    }


def _owner_dict(value: DiscoveredOwner | None) -> dict[str, str] | None:
    return dataclasses.asdict(value) if value else None


def _freshness_dict(f: FreshnessObservation) -> dict[str, Any]:
    return {"method": f.method, "last_changed": _dt(f.last_changed), "changed_after": _dt(f.changed_after),
            "caveat": f.caveat, "detail": f.detail}


def _asset_dict(a: Asset) -> dict[str, Any]:
    return {
        "path": a.path,
        "kind": a.kind,
        "container": a.container,
        "columns": a.columns,  # named tuples: JSON arrays [name, type, nullable, comment]
        "row_count": a.row_count,
        "size_bytes": a.size_bytes,
        "freshness": _freshness_dict(a.freshness),
        "owner": _owner_dict(a.owner),
        "properties": dict(a.properties),
    }


def _principal_list(principals: tuple[Principal, ...]) -> list[dict[str, Any]]:
    return [{"name": p.name, "kind": p.kind, "attributes": list(p.attributes),
             "privileged": p.privileged, "properties": dict(p.properties),
             **({"all_access": p.all_access} if p.all_access is not None else {}),
             **({"inherited": False} if not p.inherited else {}),
             **({"grants_itself": list(p.grants_itself), "grants_itself_reason": p.grants_itself_reason}
                if p.grants_itself else {})}
            for p in principals]


def _membership_list(memberships: tuple[Membership, ...]) -> list[list[Any]]:
    return [[m.member, m.role, m.inherit, m.admin, m.can_set] for m in memberships]


def _grant_list(grants: tuple[Grant, ...]) -> list[list[Any]]:
    return [_grant_row(g) for g in grants]


def _grant_row(g: Grant) -> list[Any]:
    return [g.principal, g.privilege, g.target, g.scope, g.access, list(g.columns), g.public, g.via]


# The bulk of a snapshot: the fields (`snapshot_to_dict` keys) made JSON-ready item by item.
_BATCHED: dict[str, Callable[[Any], Any]] = {"assets": _asset_dict, "grants": _grant_row}


# ---------------------------------------------------------------------------------------
# Deltas: a snapshot as the changes from a previous one both sides hold (a zone worker and
# the daemon that sent it the previous snapshot). Rebuilding the new snapshot from the
# previous one's objects costs a fraction of decoding it whole: an unchanged 5,000-table
# rescan reuses every column.
_ASSET_FIELDS = ("kind", "container", "columns", "row_count", "size_bytes", "freshness", "owner", "properties")
_SNAPSHOT_FIELDS: dict[str, Any] = {
    "source_id": None, "connector": None, "probed_at": _dt, "partial": None, "notes": list,
    "reports_grants": None, "state": dict, "owner": _owner_dict, "container_usage": None,
    "principals": _principal_list, "memberships": _membership_list, "grants": _grant_list}


def snapshot_delta(previous: SourceSnapshot, snapshot: SourceSnapshot) -> bytes:
    """What `apply_snapshot_delta(previous, ...)` needs to rebuild `snapshot`: zlib-compressed
    JSON (msgspec writes the model's dataclasses and datetimes itself).

    Top-level fields that differ are sent whole; each asset is the index of an equal asset of
    `previous`, or that index with the fields that differ, or (a new path) the whole asset in
    a one-element array.
    """
    import msgspec.json

    with _collector_paused():
        fields = {}
        for name, encode in _SNAPSHOT_FIELDS.items():
            value = getattr(snapshot, name)
            if value is not getattr(previous, name) and value != getattr(previous, name):
                fields[name] = encode(value) if encode is not None else value
        index = {a.path: i for i, a in enumerate(previous.assets)}
        before = previous.assets
        assets: list[Any] = []
        for asset in snapshot.assets:
            i = index.get(asset.path)
            if i is None:
                assets.append([asset])  # an array: never mistaken for a changed one
                continue
            old = before[i]
            if asset is old or asset == old:
                assets.append(i)
                continue
            changed: dict[str, Any] = {"i": i}
            for name in _ASSET_FIELDS:
                value = getattr(asset, name)
                if value is not getattr(old, name) and value != getattr(old, name):
                    changed[name] = value
            assets.append(changed)
        return zlib.compress(msgspec.json.encode({"fields": fields, "assets": assets}, enc_hook=str), 1)


_DELTA_DECODER: Any = None


def apply_snapshot_delta(previous: SourceSnapshot, delta: bytes) -> SourceSnapshot:
    """The snapshot `snapshot_delta(previous, snapshot)` describes; a delta that does not fit
    `previous` raises ValueError (the caller decodes the whole snapshot instead)."""
    global _DELTA_DECODER
    if _DELTA_DECODER is None:
        from scanner import wire as typed

        _DELTA_DECODER = typed.delta_decoder(), typed.Patch
    decoder, patch_type = _DELTA_DECODER
    import msgspec

    unset = msgspec.UNSET
    with _collector_paused():
        try:
            changes = decoder.decode(zlib.decompress(delta))
        except Exception as exc:  # noqa: BLE001 (zlib's and msgspec's errors)
            raise ValueError(f"unreadable delta: {exc}") from None
        before = previous.assets
        assets = []
        for entry in changes.assets:
            at = entry if isinstance(entry, int) else entry.i if isinstance(entry, patch_type) else 0
            if not 0 <= at < len(before) and not isinstance(entry, tuple):
                raise ValueError(f"asset {at} of a delta is not in the previous snapshot")
            if isinstance(entry, int):
                assets.append(before[entry])
                continue
            if isinstance(entry, patch_type):
                patched = {name: value for name in _ASSET_FIELDS if (value := getattr(entry, name)) is not unset}
                entry = dataclasses.replace(before[entry.i], **patched)
            else:
                entry = entry[0]
            f = entry.freshness
            if (f.last_changed is not None and f.last_changed.tzinfo is None) or (
                    f.changed_after is not None and f.changed_after.tzinfo is None):
                raise ValueError("a naive datetime in a delta")
            assets.append(entry)
        rebuilt: dict[str, Any] = {}
        if changes.fields:
            unknown = set(changes.fields) - set(_SNAPSHOT_FIELDS)
            if unknown:
                raise ValueError(f"unknown fields in a delta: {sorted(unknown)}")
            decoded = snapshot_from_dict({"source_id": previous.source_id, "connector": previous.connector,
                                          "probed_at": _dt(previous.probed_at), **changes.fields})
            rebuilt = {name: getattr(decoded, name) for name in changes.fields}
        return dataclasses.replace(previous, assets=tuple(assets), **rebuilt)


def snapshot_from_dict(data: Mapping[str, Any]) -> SourceSnapshot:
    """The inverse of `snapshot_to_dict`."""
    def owner(value: Mapping[str, str] | None) -> DiscoveredOwner | None:
        return DiscoveredOwner(value["owner"], value["provenance"]) if value else None

    assets = []
    for a in data.get("assets", ()):
        f = a.get("freshness") or {}
        assets.append(Asset(
            path=a["path"],
            kind=a["kind"],
            columns=tuple(map(Column._make, a.get("columns", ()))),
            container=a.get("container"),
            row_count=a.get("row_count"),
            size_bytes=a.get("size_bytes"),
            freshness=FreshnessObservation(
                method=f.get("method", METHOD_NONE),
                last_changed=_parse_dt(f.get("last_changed")),
                changed_after=_parse_dt(f.get("changed_after")),
                caveat=f.get("caveat"),
                detail=f.get("detail"),
            ),
            owner=owner(a.get("owner")),
            properties=a.get("properties") or {},
        ))
    probed_at = _parse_dt(data["probed_at"])
    assert probed_at is not None
    return SourceSnapshot(
        source_id=data["source_id"],
        connector=data["connector"],
        probed_at=probed_at,
        assets=tuple(assets),
        principals=tuple(
            Principal(p["name"], p.get("kind", "role"), tuple(p.get("attributes", ())),
                      bool(p.get("privileged")), p.get("properties") or {}, p.get("all_access"),
                      bool(p.get("inherited", True)), tuple(p.get("grants_itself", ())),
                      p.get("grants_itself_reason", ""))
            for p in data.get("principals", ())
        ),
        memberships=tuple(Membership(m[0], m[1], bool(m[2]), bool(m[3]) if len(m) > 3 else False,
                                     bool(m[4]) if len(m) > 4 else True)
                          for m in data.get("memberships", ())),
        container_usage=bool(data.get("container_usage", False)),
        grants=tuple(
            Grant(g[0], g[1], g[2], g[3], g[4], tuple(g[5]), bool(g[6]), g[7])
            for g in data.get("grants", ())
        ),
        owner=owner(data.get("owner")),
        partial=bool(data.get("partial")),
        notes=tuple(data.get("notes", ())),
        reports_grants=bool(data.get("reports_grants", True)),
        state=data.get("state") or {},
    )
