"""msgspec's typed readings of a stored snapshot and of a snapshot delta (scanner.model).

Kept apart from the model so that importing the model never imports msgspec: the CLI's
start-up pays for it only when a snapshot is read.
"""

from __future__ import annotations

from typing import Any

import msgspec

from scanner.model import Asset, Column, DiscoveredOwner, FreshnessObservation


class Wire(msgspec.Struct):
    """`snapshot_to_dict`'s shape, assets straight into `Asset` (the bulk of a snapshot)."""

    source_id: str
    connector: str
    probed_at: str
    assets: tuple[Asset, ...] = ()
    principals: list[dict[str, Any]] = []
    memberships: list[list[Any]] = []
    grants: list[tuple[str, str, str, str, str, tuple[str, ...], bool, str]] = []
    owner: DiscoveredOwner | None = None
    partial: bool = False
    notes: tuple[str, ...] = ()
    reports_grants: bool = True
    container_usage: bool = False
    state: dict[str, Any] = {}


class Patch(msgspec.Struct):
    """One changed asset of a delta: its index in the previous snapshot, the fields that differ."""

    i: int
    kind: str | msgspec.UnsetType = msgspec.UNSET
    container: str | None | msgspec.UnsetType = msgspec.UNSET
    columns: tuple[Column, ...] | msgspec.UnsetType = msgspec.UNSET
    row_count: int | None | msgspec.UnsetType = msgspec.UNSET
    size_bytes: int | None | msgspec.UnsetType = msgspec.UNSET
    freshness: FreshnessObservation | msgspec.UnsetType = msgspec.UNSET
    owner: DiscoveredOwner | None | msgspec.UnsetType = msgspec.UNSET
    properties: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class Delta(msgspec.Struct):
    """`snapshot_delta`'s shape: changed top-level fields, and per asset an index, a patch or
    (a new path) the whole asset in a one-element array."""

    fields: dict[str, Any]
    assets: list[int | Patch | tuple[Asset]]


def snapshot_decoder() -> msgspec.json.Decoder[Wire]:
    return msgspec.json.Decoder(Wire)


def delta_decoder() -> msgspec.json.Decoder[Delta]:
    return msgspec.json.Decoder(Delta)
