"""The connector contract, as checks every connector's real probe must pass.

Each connector's test module calls `check_snapshot_contract` on a snapshot probed from a
real system; `test_contract.py` checks the static side of every registered connector.
"""

from __future__ import annotations

import json

from scanner.model import (
    ACCESS_LEVELS,
    FRESHNESS_METHODS,
    GRANT_SCOPES,
    SourceSnapshot,
    snapshot_from_dict,
    snapshot_to_dict,
)
from scanner.plugins import SourceConfig


def check_snapshot_contract(snapshot: SourceSnapshot, source: SourceConfig,
                            secrets: tuple[str, ...] = ()) -> None:
    """Assert the invariants every snapshot keeps, whatever the connector."""
    assert isinstance(snapshot, SourceSnapshot)
    assert snapshot.source_id == source.id
    assert snapshot.connector == source.connector
    assert snapshot.probed_at.tzinfo is not None, "probed_at must be timezone-aware"
    paths = [a.path for a in snapshot.assets]
    assert len(paths) == len(set(paths)), "asset paths must be unique within a source"
    for asset in snapshot.assets:
        assert asset.path and isinstance(asset.path, str)
        assert asset.kind
        assert source.wants(asset.path), f"{asset.path} escapes include/exclude"
        assert asset.freshness.method in FRESHNESS_METHODS
        if asset.freshness.method != "none":
            assert asset.freshness.last_changed is not None, asset.path
            assert asset.freshness.last_changed.tzinfo is not None
        names = [c.name for c in asset.columns]
        assert len(names) == len(set(names)), f"duplicate column in {asset.path}"
        assert asset.row_count is None or asset.row_count >= 0
        assert asset.size_bytes is None or asset.size_bytes >= 0
    for grant in snapshot.grants:
        assert grant.scope in GRANT_SCOPES, grant
        assert grant.access in ACCESS_LEVELS, grant
        assert grant.principal
    # Lossless JSON round trip: what the store keeps is what the probe saw.
    encoded = json.dumps(snapshot_to_dict(snapshot), sort_keys=True)
    assert snapshot_from_dict(json.loads(encoded)) == snapshot
    for secret in secrets:
        assert secret not in encoded, "a secret reached the snapshot"
