"""Helpers shared by the vector-store connectors (chroma, lancedb, qdrant).

Vector stores mostly keep no write time. `observed_freshness` turns a cheap fingerprint of a
collection (its record count and a hash of its content) into `observed` freshness, the way
the postgres connector uses change counters: the fingerprints of one scan are kept in the
snapshot's `state` and compared by the next. Nothing here imports a vendor SDK.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scanner.errors import ProbeError
from scanner.model import (
    ACCESS_READ,
    METHOD_NONE,
    METHOD_OBSERVED,
    SCOPE_SOURCE,
    Asset,
    FreshnessObservation,
    Grant,
    Principal,
    SourceSnapshot,
)
from scanner.plugins import Connector, ProbeContext
from scanner.redact import redact_text

OBSERVED_CAVEAT = ("the store keeps no write time: a change is seen when the record count or the "
                   "content fingerprint moved between two scans")
# Records hashed per collection at most; past it the fingerprint covers the first ones only.
DEFAULT_FINGERPRINT_LIMIT = 10_000


class Fingerprint:
    """An incremental hash of records (ids, documents, metadata)."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.records = 0

    def add(self, *values: Any) -> None:
        """Add one record's values."""
        self._hash.update(json.dumps(values, sort_keys=True, default=str, separators=(",", ":")).encode())
        self._hash.update(b"\x1e")
        self.records += 1

    @classmethod
    def of(cls, *values: Any) -> str:
        """The digest of a few values (a collection's metadata and configuration)."""
        digest = cls()
        digest.add(*values)
        return digest.hexdigest()

    def hexdigest(self) -> str:
        """The digest so far (short: it only has to differ when the content does)."""
        return self._hash.hexdigest()[:24]


def fingerprint_limit(value: Any) -> int:
    """The `fingerprint_limit` setting: records hashed per collection (0 turns hashing off)."""
    if value is None or value == "":
        return DEFAULT_FINGERPRINT_LIMIT
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise ProbeError(f"setting fingerprint_limit: expected a number of records, got {value!r}") from None
    if limit < 0:
        raise ProbeError(f"setting fingerprint_limit: expected 0 or more, got {limit}")
    return limit


def public_read(via: str) -> tuple[Principal, Grant]:
    """The PUBLIC principal and its read grant on the whole source (a server that answers anyone)."""
    return (Principal("PUBLIC", "public"),
            Grant("PUBLIC", "read", "*", SCOPE_SOURCE, ACCESS_READ, public=True, via=via))


def answers_without_credentials(kind: str, target: str, context: ProbeContext,
                                not_found: str | None = None) -> bool:
    """Whether `target` (a listing URL) answers 200 with no credentials sent: the server's own answer.

    401/403 mean credentials are needed; a 404 raises `not_found` (reason not_found) when given.
    """
    if urllib.parse.urlsplit(target).scheme not in ("http", "https"):
        raise ProbeError(f"{kind}: `url` must be an http:// or https:// URL")
    try:
        with urllib.request.urlopen(target, timeout=min(context.timeout, 10)) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            return False
        if exc.code == 404 and not_found is not None:
            raise ProbeError(f"{kind}: {not_found}", reason="not_found") from None
        raise ProbeError(f"{kind}: the server answered HTTP {exc.code}", reason="error",
                         retryable=exc.code >= 500) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ProbeError(f"{kind}: cannot reach the server ({reason})", reason="unreachable",
                         retryable=True) from None


def local_folder(connector: Connector, path: str) -> Path:
    """A `path` setting as a folder; a relative one is relative to the inventory file that names it."""
    folder = Path(path).expanduser()
    if not folder.is_absolute() and connector.source.file:
        folder = Path(connector.source.file).resolve().parent / folder
    return folder


def redact_probe_error(connector: Connector, exc: ProbeError) -> None:
    """Redact the connector's secrets from a ProbeError's message, in place."""
    exc.message = redact_text(exc.message, connector.redactions())
    exc.args = (exc.message,)


def collections_snapshot(connector: Connector, context: ProbeContext, assets: list[Asset],
                         prints: dict[str, Any], limit: int, unit: str, notes: list[str],
                         principals: list[Principal], grants: list[Grant],
                         reports_grants: bool) -> SourceSnapshot:
    """The snapshot of a vector store's collections, their fingerprints kept in `state`."""
    if limit and any(p.get("partial") for p in prints.values()):
        notes.append(f"collections over {limit} {unit} are fingerprinted on their first {limit}: "
                     "a change past them shows only through the count")
    return SourceSnapshot(
        source_id=connector.source.id, connector=connector.kind, probed_at=context.now,
        assets=tuple(assets), principals=tuple(principals), grants=tuple(grants),
        notes=tuple(redact_text(n, connector.redactions()) for n in notes),
        reports_grants=reports_grants, partial=context.cancelled.is_set(),
        state={"fingerprints": prints},
    )


def observed_freshness(context: ProbeContext, key: str, current: dict[str, Any],
                       path: str, what: str = "record count or content") -> FreshnessObservation:
    """`observed` freshness of one collection from its fingerprint now and at the previous scan.

    `key` identifies the collection across scans (an id that changes when it is dropped and
    created again); `current` is what this scan saw (`count`, `hash`, ...), also what the
    caller stores under `state["fingerprints"][path]`. It gets `since`: the scan from which
    the fingerprint has not moved. As for PostgreSQL's change counters, a fingerprint
    unchanged since the scan at T0 proves the last write came before T0: an `observed`
    freshness without `changed_after` (a lower bound on the age, `lower_bound`), unless a
    change seen between two scans gives a tighter window.
    """
    previous = context.previous
    prev_state = previous.state if previous is not None else {}
    prints = prev_state.get("fingerprints") if isinstance(prev_state, Mapping) else None
    before = prints.get(path) if isinstance(prints, Mapping) else None
    current["since"] = context.now.isoformat()
    if previous is None or not isinstance(before, Mapping):
        return FreshnessObservation(
            method=METHOD_NONE,
            detail="first scan: count and content fingerprint recorded; changes show from the next scan")
    prev_asset = previous.asset(path)
    carried = prev_asset.freshness if prev_asset is not None else None
    if before.get("key") != key:
        return FreshnessObservation(
            method=METHOD_OBSERVED, last_changed=context.now, changed_after=previous.probed_at,
            caveat=OBSERVED_CAVEAT, detail="the collection was dropped and created again between two scans")
    changed = [name for name in ("count", "hash", "config") if before.get(name) != current.get(name)]
    if changed:
        detail = f"{what} changed between two scans"
        if "count" in changed:
            detail = f"record count {before.get('count')} -> {current.get('count')} between two scans"
        return FreshnessObservation(method=METHOD_OBSERVED, last_changed=context.now,
                                    changed_after=previous.probed_at, caveat=OBSERVED_CAVEAT, detail=detail)
    since = _parse(before.get("since")) or previous.probed_at
    current["since"] = since.isoformat()
    if carried is not None and carried.method == METHOD_OBSERVED and carried.changed_after is not None:
        return carried  # a change seen between two scans: a tighter window than the bound
    return FreshnessObservation(
        method=METHOD_OBSERVED, last_changed=since, caveat=OBSERVED_CAVEAT,
        detail=f"{what} unchanged since {since.isoformat(timespec='seconds')}: the last write was before that")


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

