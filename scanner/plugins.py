"""The connector contract and its discovery through the `ctxscan.connectors` entry points.

Ours are registered in pyproject.toml exactly like a third party's, and the core also knows
them (`BUILTIN_CONNECTORS`), so that a scan of built-in kinds needs no entry-point discovery:
importing importlib.metadata and reading every installed distribution costs more than the
rest of parsing an inventory. Each connector is loaded on its own, the first time it is
asked for; one that fails to load or does not honour the contract is reported once on
stderr and skipped.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from scanner.model import SourceSnapshot

ENTRY_POINT_GROUP = "ctxscan.connectors"
# The same as our entry points in pyproject.toml (tests/connectors/test_contract.py checks).
BUILTIN_CONNECTORS = {
    "bigquery": "connectors.bigquery:BigQueryConnector",
    "chroma": "connectors.chroma:ChromaConnector",
    "fake": "connectors.fake:FakeConnector",
    "files": "connectors.files:FilesConnector",
    "lancedb": "connectors.lancedb:LanceDbConnector",
    "mysql": "connectors.mysql:MysqlConnector",
    "postgres": "connectors.postgres:PostgresConnector",
    "qdrant": "connectors.qdrant:QdrantConnector",
    "s3": "connectors.s3:S3Connector",
    "sql": "connectors.sql:SqlConnector",
    "sqlite": "connectors.sqlite:SqliteConnector",
}
log = logging.getLogger("ctxscan.plugins")


@dataclass(frozen=True)
class Setting:
    """One connector-specific key of a source in the inventory."""

    name: str
    type: type = str
    required: bool = False
    # A secret never reaches the store, a log, an export or an error message.
    secret: bool = False
    help: str = ""


@dataclass(frozen=True)
class FreshnessConfig:
    """A source's `freshness:` block."""

    max_age: float | None = None      # seconds
    warn_after: float | None = None   # seconds
    column: str | None = None


@dataclass(frozen=True)
class AssetOverride:
    """An entry of a source's `assets:` block: per-asset owner, tags and SLA."""

    path: str
    owner: str | None = None
    tags: tuple[str, ...] = ()
    max_age: float | None = None
    warn_after: float | None = None
    line: int | None = None
    derived_from: tuple[str, ...] = ()   # asset ids this asset is built from (scanner.lineage)
    max_lag: float | None = None         # seconds an index may trail its upstream (index_lag)
    expect_count_ratio: float | None = None  # least records per upstream document/row/object
    column: str | None = None            # this asset's freshness column (else the source's)


@dataclass(frozen=True)
class SourceConfig:
    """One declared source, as validated from the inventory file."""

    id: str
    connector: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    owner: str | None = None
    owner_tag: str | None = None
    schedule: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    freshness: FreshnessConfig = field(default_factory=FreshnessConfig)
    timeout: float | None = None       # seconds for one probe
    environment: str | None = None
    assets: tuple[AssetOverride, ...] = ()
    description: str | None = None
    file: str | None = None
    line: int | None = None
    # The same system in another environment (`same_as: crm`): compared for parity.
    same_as: str | None = None
    zone: str | None = None            # scanned by `ctxscan worker --zone ZONE`; None: in-process
    lineage_namespace: str | None = None   # OpenLineage dataset namespace, when the url does not say

    def reads_freshness_columns(self) -> bool:
        """Whether any asset's freshness comes from a timestamp column (`freshness.column`, or
        an `assets:` entry's `column`)."""
        return bool(self.freshness.column) or any(entry.column for entry in self.assets)

    def freshness_columns(self) -> Callable[[str], str | None]:
        """path -> the timestamp column its freshness comes from: its `assets:` entry's
        `column` (an exact path first, else the first glob), else `freshness.column`."""
        exact = {o.path: o.column for o in self.assets if o.column and not any(c in o.path for c in "*?[")}
        globs = [(o.path, o.column) for o in self.assets if o.column and any(c in o.path for c in "*?[")]
        default = self.freshness.column

        def column(path: str) -> str | None:
            found = exact.get(path)
            if found is not None:
                return found
            for pattern, name in globs:
                if fnmatch.fnmatchcase(path, pattern):
                    return name
            return default

        return column

    def wants(self, path: str) -> bool:
        """Whether an asset path passes the source's include/exclude globs."""
        if self.include and not any(fnmatch.fnmatchcase(path, g) for g in self.include):
            return False
        return not any(fnmatch.fnmatchcase(path, g) for g in self.exclude)


class ProbeContext:
    """What the core hands a connector for one probe.

    `previous` may be handed over as a loader that the core completes while the probe runs:
    the scan starts probing before the state store is open and the previous snapshots are
    decoded, and a connector that reads `previous` waits for it only when it gets there.
    """

    __slots__ = ("now", "principals", "timeout", "cancelled", "_previous", "_load_previous", "_lock",
                 "_load_previous_blob")

    def __init__(self, now: datetime, previous: SourceSnapshot | None = None,
                 principals: frozenset[str] = frozenset(), timeout: float = 60.0,
                 cancelled: threading.Event | None = None,
                 load_previous: Callable[[], SourceSnapshot | None] | None = None,
                 load_previous_blob: Callable[[], bytes | None] | None = None) -> None:
        self.now = now
        # The principals that workflows run as in this source (from `runs_as`).
        self.principals = principals
        # Seconds the core will wait; connectors set their own connect/statement timeouts under it.
        self.timeout = timeout
        # Set when the core has given up on this probe; long loops should check it.
        self.cancelled = cancelled if cancelled is not None else threading.Event()
        self._previous = previous
        self._load_previous = load_previous
        self._load_previous_blob = load_previous_blob
        self._lock = threading.Lock()

    @property
    def previous(self) -> SourceSnapshot | None:
        """The previous successful snapshot of this source, for `observed` freshness and drift."""
        with self._lock:
            if self._load_previous is not None:
                self._previous, self._load_previous = self._load_previous(), None
            return self._previous

    @property
    def previous_blob(self) -> bytes | None:
        """`previous` as the store keeps it (`encode_snapshot`'s bytes), for a prober that
        sends it elsewhere (a zone worker): the scan hands the bytes over before it has
        decoded them."""
        load = self._load_previous_blob
        if load is not None:
            return load()
        from scanner.model import encode_snapshot

        previous = self.previous
        return encode_snapshot(previous) if previous is not None else None


class Connector:
    """Base class of a connector: one system kind, its settings, and `probe`.

    Subclasses set `kind`, `settings` and `description`, and implement `probe`. They import
    their SDK inside `probe` (or a helper it calls), never at module level, so that the CLI
    stays fast.
    """

    kind: ClassVar[str] = ""
    description: ClassVar[str] = ""
    settings: ClassVar[tuple[Setting, ...]] = ()
    # Whether the system has tags, labels or comments where `owner_tag` can find an owner.
    owner_tags: ClassVar[bool] = True

    def __init__(self, source: SourceConfig) -> None:
        self.source = source

    def probe(self, context: ProbeContext) -> SourceSnapshot:
        """Probe the source read-only and return what it holds."""
        raise NotImplementedError

    def setting(self, name: str, default: Any = None) -> Any:
        """A connector setting from the inventory, or `default` when unset or empty."""
        value = self.source.settings.get(name)
        return default if value is None or value == "" else value

    def redactions(self) -> list[str]:
        """Strings that must never appear in output: secret settings and URL passwords."""
        from scanner.redact import secrets_in_settings

        return secrets_in_settings(self.source.settings, self.settings)


_lock = threading.RLock()
_registry: ConnectorRegistry | None = None
_load_errors: dict[str, str] = {}


def _check(name: str, candidate: object) -> str | None:
    """Why `candidate` is not a valid connector class, or None when it is."""
    if not isinstance(candidate, type) or not issubclass(candidate, Connector):
        return "is not a subclass of scanner.plugins.Connector"
    if not candidate.kind:
        return "has no `kind`"
    if candidate.kind != name:
        return f"declares kind {candidate.kind!r} but is registered as {name!r}"
    if candidate.probe is Connector.probe:
        return "does not implement probe()"
    for setting in candidate.settings:
        if not isinstance(setting, Setting):
            return "has a `settings` entry that is not a scanner.plugins.Setting"
    return None


@dataclass(frozen=True)
class _Builtin:
    """One of `BUILTIN_CONNECTORS`, loadable like an entry point."""

    name: str
    value: str

    def load(self) -> Any:
        import importlib

        module, _, attribute = self.value.partition(":")
        return getattr(importlib.import_module(module), attribute)


class ConnectorRegistry(Mapping[str, type[Connector]]):
    """The installed connectors by kind, each loaded the first time it is asked for.

    A scan of PostgreSQL sources loads the postgres connector alone. Entry points are
    discovered when a kind is not built in, or when the registry is listed (iterated); a
    plugin registered under a built-in kind is then reported and skipped.
    """

    def __init__(self) -> None:
        self._entries: dict[str, list[Any]] = {
            name: [_Builtin(name, value)] for name, value in BUILTIN_CONNECTORS.items()}
        self._discovered = False
        self._loaded: dict[str, type[Connector] | None] = {}

    def _discover(self) -> None:
        if self._discovered:
            return
        from importlib.metadata import entry_points

        for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if BUILTIN_CONNECTORS.get(entry.name) != entry.value:  # ours are already here
                self._entries.setdefault(entry.name, []).append(entry)
                self._loaded.pop(entry.name, None)
        self._discovered = True

    def _load(self, name: str) -> type[Connector] | None:
        with _lock:
            if name in self._loaded:
                return self._loaded[name]
            if name not in BUILTIN_CONNECTORS:
                self._discover()
            found: type[Connector] | None = None
            for entry in self._entries.get(name, ()):
                if found is not None:
                    log.warning("connector plugin %r (%s) is registered under a kind already taken; "
                                "skipped", name, entry.value)
                    continue
                try:
                    loaded = entry.load()
                except Exception as exc:  # a broken plugin must not break ctxscan
                    _load_errors[name] = f"failed to load ({type(exc).__name__}: {exc})"
                    log.warning("connector plugin %r %s; skipped", name, _load_errors[name])
                    continue
                problem = _check(name, loaded)
                if problem:
                    _load_errors[name] = problem
                    log.warning("connector plugin %r (%s) %s; skipped", name, entry.value, problem)
                    continue
                found = loaded
            self._loaded[name] = found
            return found

    def __getitem__(self, name: str) -> type[Connector]:
        found = self._load(name)
        if found is None:
            raise KeyError(name)
        return found

    def __iter__(self) -> Iterator[str]:
        with _lock:
            self._discover()
        return iter([name for name in sorted(self._entries) if self._load(name) is not None])

    def __len__(self) -> int:
        return sum(1 for _ in self)


def connectors() -> ConnectorRegistry:
    """The installed connectors by kind (loaded lazily; see `ConnectorRegistry`)."""
    global _registry
    with _lock:
        if _registry is None:
            _registry = ConnectorRegistry()
        return _registry


def load_errors() -> Mapping[str, str]:
    """Plugins that were skipped, with the reason."""
    list(connectors())
    return dict(_load_errors)


def reset_registry() -> None:
    """Forget discovered connectors (tests that install plugins at run time)."""
    global _registry
    with _lock:
        _registry = None
        _load_errors.clear()
