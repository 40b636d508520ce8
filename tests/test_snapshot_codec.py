"""The snapshot codec: the typed decoder reads exactly what the dict reader reads, a decoded
snapshot encodes to its own bytes again, and blobs of other shapes still decode."""

from __future__ import annotations

import json
import random
import zlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from scanner.model import (
    Asset,
    Column,
    DiscoveredOwner,
    FreshnessObservation,
    Grant,
    Membership,
    Principal,
    SourceSnapshot,
    _typed_snapshot,
    apply_snapshot_delta,
    decode_snapshot,
    encode_snapshot,
    keep_encoding,
    new_grant,
    snapshot_delta,
    snapshot_from_dict,
)

HOSTILE = ["plain", "", "ünïcode", "<script>alert(1)</script>", "a\x1b[31mb", "line\nbreak", "q\"uo'te",
           "x" * 2000, "\u202eevil", "emoji \U0001f600", "back\\slash", "nul\x00byte"]


def _text(rng: random.Random) -> str:
    return rng.choice(HOSTILE) + str(rng.randrange(1000))


def _when(rng: random.Random) -> datetime | None:
    if rng.random() < 0.3:
        return None
    zone = rng.choice([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))])
    return datetime(2020, 1, 1, tzinfo=zone) + timedelta(seconds=rng.randrange(10**8), microseconds=rng.randrange(10**6))


def _value(rng: random.Random, depth: int = 0) -> object:
    kinds = ["int", "big", "float", "str", "bool", "none"] + (["list", "dict"] if depth < 2 else [])
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.randrange(-10**6, 10**6)
    if kind == "big":
        return rng.choice([2**63 - 1, -(2**63), 2**62])
    if kind == "float":
        return rng.uniform(-1e9, 1e9)
    if kind == "str":
        return _text(rng)
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "none":
        return None
    if kind == "list":
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {_text(rng): _value(rng, depth + 1) for _ in range(rng.randrange(4))}


def random_snapshot(rng: random.Random) -> SourceSnapshot:
    def owner() -> DiscoveredOwner | None:
        return DiscoveredOwner(_text(rng), "tag:owner") if rng.random() < 0.3 else None

    assets = tuple(
        Asset(path=f"s{i % 3}.{_text(rng)}", kind=rng.choice(["table", "view", "prefix", "file"]),
              columns=tuple(Column(_text(rng), rng.choice(["int", "text", "jsonb"]), rng.random() < 0.5,
                                   _text(rng) if rng.random() < 0.3 else None)
                            for _ in range(rng.randrange(5))),
              container=f"s{i % 3}" if rng.random() < 0.8 else None,
              row_count=rng.choice([None, 0, rng.randrange(10**12)]),
              size_bytes=rng.choice([None, rng.randrange(10**15)]),
              freshness=FreshnessObservation(rng.choice(["column", "metadata", "observed", "none"]), _when(rng),
                                             _when(rng), _text(rng) if rng.random() < 0.3 else None,
                                             _text(rng) if rng.random() < 0.3 else None),
              owner=owner(),
              properties={_text(rng): _value(rng) for _ in range(rng.randrange(4))})
        for i in range(rng.randrange(30)))
    principals = tuple(
        Principal(_text(rng), rng.choice(["role", "user", "service_account"]),
                  tuple(_text(rng) for _ in range(rng.randrange(3))), rng.random() < 0.3,
                  {_text(rng): _value(rng) for _ in range(rng.randrange(3))},
                  rng.choice([None, True, False]), rng.random() < 0.8,
                  tuple(_text(rng) for _ in range(rng.randrange(2))), _text(rng))
        for _ in range(rng.randrange(6)))
    memberships = tuple(Membership(_text(rng), _text(rng), rng.random() < 0.5, rng.random() < 0.5,
                                   rng.random() < 0.5) for _ in range(rng.randrange(5)))
    grants = tuple(Grant(_text(rng), rng.choice(["SELECT", "INSERT", "USAGE", "OWNER"]), _text(rng),
                         rng.choice(["asset", "container", "source", "column"]),
                         rng.choice(["read", "write", "admin", "alter", "other"]),
                         tuple(_text(rng) for _ in range(rng.randrange(3))), rng.random() < 0.2, _text(rng))
                   for _ in range(rng.randrange(40)))
    return SourceSnapshot(
        source_id=_text(rng), connector=rng.choice(["postgres", "s3", "fake"]),
        probed_at=_when(rng) or datetime(2026, 12, 1, tzinfo=UTC), assets=assets, principals=principals,
        memberships=memberships, grants=grants, owner=owner(), partial=rng.random() < 0.2,
        notes=tuple(_text(rng) for _ in range(rng.randrange(3))), reports_grants=rng.random() < 0.8,
        container_usage=rng.random() < 0.5, state={_text(rng): _value(rng) for _ in range(rng.randrange(4))})


def _dict_reader(blob: bytes) -> SourceSnapshot:
    return snapshot_from_dict(json.loads(zlib.decompress(blob)))


@pytest.mark.parametrize("seed", range(200))
def test_typed_decoding_equals_the_dict_reader_on_random_snapshots(seed: int) -> None:
    snapshot = random_snapshot(random.Random(seed))
    blob = encode_snapshot(snapshot)
    decoded = decode_snapshot(blob)
    assert decoded == _dict_reader(blob)
    # ... and it was the typed reading that answered, not its fallback.
    assert _typed_snapshot(zlib.decompress(blob)) == decoded
    # Datetimes keep their instant and offset; tuples stay tuples where the model says so.
    for mine, theirs in zip(decoded.assets, snapshot.assets, strict=True):
        assert mine.freshness == theirs.freshness and mine.columns == theirs.columns
        assert all(type(c) is Column for c in mine.columns)
    assert decoded.grants == snapshot.grants and decoded.memberships == snapshot.memberships
    assert decoded.principals == _dict_reader(blob).principals


def test_a_decoded_snapshot_encodes_to_its_own_bytes() -> None:
    snapshot = random_snapshot(random.Random(7))
    blob = encode_snapshot(snapshot)
    assert encode_snapshot(snapshot) is blob  # kept on the immutable snapshot
    decoded = decode_snapshot(blob)
    assert encode_snapshot(decoded) == blob
    # A changed copy is a new snapshot: its bytes are its own, never the original's.
    from dataclasses import replace

    changed = replace(decoded, assets=decoded.assets[1:], notes=("changed",))
    assert decode_snapshot(encode_snapshot(changed)).notes == ("changed",)
    assert encode_snapshot(changed) != blob


def _blob(data: dict) -> bytes:
    return zlib.compress(json.dumps(data).encode())


BASE = {"source_id": "s", "connector": "fake", "probed_at": "2026-12-01T10:00:00+00:00"}


@pytest.mark.parametrize("data", [
    # Shapes stored by older versions, or values the typed reading refuses: the dict reader's answer.
    {**BASE, "memberships": [["alice", "readers", True]], "grants": [["alice", "SELECT", "t", "asset", "read", [], False, ""]]},
    {**BASE, "assets": [{"path": "t", "kind": "table", "freshness": {"method": "column",
                                                                     "last_changed": "2026-11-30T09:00:00"}}]},
    {**BASE, "assets": [{"path": "t", "kind": "table", "row_count": 1.0}]},
    {**BASE, "assets": [{"path": "t", "kind": "table", "size_bytes": 2**70}]},
    {**BASE, "assets": [{"path": "t", "kind": "table", "properties": {"nan": float("nan")}}]},
    {**BASE, "probed_at": "2026-12-01T10:00:00"},
    {**BASE, "assets": [{"path": "t", "kind": "table", "columns": [["id", "int", True, None]]}], "extra": {"future": 1}},
])
def test_other_shapes_still_decode(data: dict) -> None:
    blob = _blob(data)
    decoded = decode_snapshot(blob)
    expected = _dict_reader(blob)
    assert decoded.source_id == expected.source_id and decoded.probed_at == expected.probed_at
    assert decoded.memberships == expected.memberships and decoded.grants == expected.grants
    assert [(a.path, a.row_count, a.size_bytes, a.freshness, a.columns) for a in decoded.assets] == \
        [(a.path, a.row_count, a.size_bytes, a.freshness, a.columns) for a in expected.assets]
    assert all(a.freshness.last_changed is None or a.freshness.last_changed.tzinfo is not None
               for a in decoded.assets)


def test_decoding_leaves_the_collector_as_it_was() -> None:
    import gc

    blob = encode_snapshot(random_snapshot(random.Random(3)))
    assert gc.isenabled()
    decode_snapshot(blob)
    assert gc.isenabled()
    gc.disable()
    try:
        decode_snapshot(blob)
        assert not gc.isenabled()
    finally:
        gc.enable()


def _changed(previous: SourceSnapshot, rng: random.Random) -> SourceSnapshot:
    """A later snapshot of the same source: some assets as they were (the same objects, as a
    reusing probe keeps them), some with fields changed, some gone, some new, maybe reordered."""
    from dataclasses import replace

    other = random_snapshot(rng)
    assets = []
    for asset in previous.assets:
        roll = rng.random()
        if roll < 0.1:
            continue  # dropped
        if roll < 0.5:
            assets.append(asset)
            continue
        source = rng.choice(other.assets) if other.assets else asset
        fields = rng.sample(["kind", "container", "columns", "row_count", "size_bytes", "freshness", "owner",
                             "properties"], rng.randrange(1, 4))
        assets.append(replace(asset, **{f: getattr(source, f) for f in fields}))
    assets.extend(other.assets[: rng.randrange(4)])
    if rng.random() < 0.3:
        rng.shuffle(assets)
    top = {name: getattr(other, name) for name in rng.sample(
        ["probed_at", "partial", "notes", "reports_grants", "state", "owner", "container_usage",
         "principals", "memberships", "grants"], rng.randrange(0, 5))}
    return replace(previous, assets=tuple(assets), **top)


@pytest.mark.parametrize("seed", range(200))
def test_a_delta_rebuilds_exactly_what_decoding_the_new_snapshot_gives(seed: int) -> None:
    rng = random.Random(seed)
    previous = decode_snapshot(encode_snapshot(random_snapshot(rng)))  # as both sides hold it
    snapshot = _changed(previous, rng)
    delta = snapshot_delta(previous, snapshot)
    rebuilt = apply_snapshot_delta(previous, delta)
    assert rebuilt == decode_snapshot(encode_snapshot(snapshot))
    assert encode_snapshot(replace_blob(rebuilt)) == encode_snapshot(snapshot)


def replace_blob(snapshot: SourceSnapshot) -> SourceSnapshot:
    """A copy that encodes itself afresh (no bytes kept from a decoding)."""
    from dataclasses import replace

    return replace(snapshot)


def test_an_unchanged_rescan_is_all_indexes() -> None:
    previous = decode_snapshot(encode_snapshot(random_snapshot(random.Random(11))))
    delta = json.loads(zlib.decompress(snapshot_delta(previous, previous)))
    assert delta == {"fields": {}, "assets": list(range(len(previous.assets)))}


@pytest.mark.parametrize("delta", [b"not json", b'{"fields": {}, "assets": [99]}', b'{"fields": {}, "assets": [-1]}',
                                   b'{"fields": {"secret": 1}, "assets": []}',
                                   b'{"fields": {}, "assets": [{"i": 99, "kind": "view"}]}',
                                   b'{"fields": {}, "assets": [{"i": 0, "row_count": "many"}]}'])
def test_a_delta_that_does_not_fit_is_refused(delta: bytes) -> None:
    previous = SourceSnapshot("s", "fake", datetime(2026, 12, 1, tzinfo=UTC), assets=(Asset("t", "table"),))
    with pytest.raises(ValueError):
        apply_snapshot_delta(previous, delta if delta == b"not json" else zlib.compress(delta))
    with pytest.raises(ValueError):
        apply_snapshot_delta(previous, zlib.compress(delta)[:-3])  # cut short


@pytest.mark.parametrize("seed", range(20))
def test_kept_bytes_are_checked_against_the_snapshot(seed: int) -> None:
    """A zone rescan stores the worker's bytes beside the snapshot it rebuilt from a delta only
    when they are that snapshot's encoding; anything else is refused, and the caller decodes."""
    rng = random.Random(seed)
    previous = decode_snapshot(encode_snapshot(random_snapshot(rng)))
    snapshot = _changed(previous, rng)
    blob = encode_snapshot(replace_blob(snapshot))
    rebuilt = apply_snapshot_delta(previous, snapshot_delta(previous, snapshot))
    assert encode_snapshot(keep_encoding(rebuilt, blob)) == blob
    other = encode_snapshot(replace_blob(_changed(previous, random.Random(seed + 1000))))
    for bad in (blob[: len(blob) // 2], b"", b"garbage", zlib.compress(b"{}"), other):
        if bad == blob:
            continue
        fresh = apply_snapshot_delta(previous, snapshot_delta(previous, snapshot))
        with pytest.raises(ValueError):
            keep_encoding(fresh, bad)
        assert encode_snapshot(fresh) == blob  # nothing of the refused bytes stuck to it


def test_values_that_merely_compare_equal_are_not_taken_for_the_bytes() -> None:
    """Python's == takes 1 for True and one instant in two zones as equal; JSON keeps them
    apart: a delta that calls such an asset unchanged does not rebuild what the bytes hold."""
    t0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def snap(props: dict, when: datetime) -> SourceSnapshot:
        return SourceSnapshot("s", "fake", t0, assets=(Asset("t", "table", properties=props,
                              freshness=FreshnessObservation("metadata", when)),))

    previous = decode_snapshot(encode_snapshot(snap({"public": True}, t0)))
    new = snap({"public": 1}, t0.astimezone(timezone(timedelta(hours=2))))
    assert new == previous  # what the delta sees
    rebuilt = apply_snapshot_delta(previous, snapshot_delta(previous, new))
    with pytest.raises(ValueError):
        keep_encoding(rebuilt, encode_snapshot(new))


def test_new_grant_is_the_same_grant_as_the_constructor_makes() -> None:
    import dataclasses
    import pickle

    rng = random.Random(19)
    for _ in range(200):
        fields = (_text(rng), _text(rng), _text(rng), rng.choice(["asset", "column", "container", "source"]),
                  rng.choice(["read", "write", "admin", "other"]), tuple(_text(rng) for _ in range(rng.randrange(3))),
                  rng.random() < 0.5, _text(rng))
        fast, made = new_grant(*fields), Grant(*fields)
        assert fast == made and hash(fast) == hash(made) and repr(fast) == repr(made)
        assert dataclasses.astuple(fast) == fields and vars(fast) == vars(made)
        assert pickle.loads(pickle.dumps(fast)) == made
        with pytest.raises(dataclasses.FrozenInstanceError):
            fast.principal = "changed"  # type: ignore[misc]


@pytest.mark.parametrize("batch", [1, 2, 7, 2000])
@pytest.mark.parametrize("seed", range(25))
def test_streamed_encoding_is_the_whole_encoding(seed: int, batch: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # encode_snapshot writes the assets and the grants a batch at a time: its bytes are those of
    # compressing the whole dict's JSON at once, across batch boundaries, empty lists included.
    import msgspec

    from scanner import model

    monkeypatch.setattr(model, "_BATCH", batch)
    snapshot = random_snapshot(random.Random(seed))
    if seed % 5 == 0:
        snapshot = SourceSnapshot(source_id="s", connector="fake", probed_at=snapshot.probed_at)
    if seed % 5 == 1:  # property values JSON has no type for go through str, as before
        first = snapshot.assets[0] if snapshot.assets else Asset(path="p", kind="table")
        odd = Asset(path=first.path, kind=first.kind, properties={"when": {1, 2}, "ratio": 1.5j})
        snapshot = SourceSnapshot(source_id="s", connector="fake", probed_at=snapshot.probed_at,
                                  assets=(odd,) + snapshot.assets[1:], grants=snapshot.grants)
    whole = zlib.compress(msgspec.json.encode(model.snapshot_to_dict(snapshot), enc_hook=str), 1)
    assert encode_snapshot(snapshot) == whole
    assert decode_snapshot(whole) == decode_snapshot(encode_snapshot(snapshot))
