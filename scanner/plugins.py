"""The connector contract and its discovery through the `ctxscan.connectors` entry points.

The core never imports a connector by name: ours are registered in pyproject.toml exactly
like a third party's. Each entry point is loaded on its own; one that fails to load or does
not honour the contract is reported once on stderr and skipped.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from scanner.model import SourceSnapshot

ENTRY_POINT_GROUP = "ctxscan.connectors"
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

    def wants(self, path: str) -> bool:
        """Whether an asset path passes the source's include/exclude globs."""
        if self.include and not any(fnmatch.fnmatchcase(path, g) for g in self.include):
            return False
        return not any(fnmatch.fnmatchcase(path, g) for g in self.exclude)


@dataclass(frozen=True)
class ProbeContext:
    """What the core hands a connector for one probe."""

    now: datetime
    # The previous successful snapshot of this source, for `observed` freshness and drift.
    previous: SourceSnapshot | None = None
    # The principals that workflows run as in this source (from `runs_as`).
    principals: frozenset[str] = frozenset()
    # Seconds the core will wait; connectors set their own connect/statement timeouts under it.
    timeout: float = 60.0
    # Set when the core has given up on this probe; long loops should check it.
    cancelled: threading.Event = field(default_factory=threading.Event)


class Connector:
    """Base class of a connector: one system kind, its settings, and `probe`.

    Subclasses set `kind`, `settings` and `description`, and implement `probe`. They import
    their SDK inside `probe` (or a helper it calls), never at module level, so that the CLI
    stays fast.
    """

    kind: ClassVar[str] = ""
    description: ClassVar[str] = ""
    settings: ClassVar[tuple[Setting, ...]] = ()

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


_lock = threading.Lock()
_registry: dict[str, type[Connector]] | None = None
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


def connectors() -> dict[str, type[Connector]]:
    """Every connector that loaded, by kind. Broken plugins are reported once and skipped."""
    global _registry
    with _lock:
        if _registry is not None:
            return _registry
        from importlib.metadata import entry_points

        found: dict[str, type[Connector]] = {}
        for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            try:
                loaded = entry.load()
            except Exception as exc:  # a broken plugin must not break ctxscan
                _load_errors[entry.name] = f"failed to load ({type(exc).__name__}: {exc})"
                log.warning("connector plugin %r %s; skipped", entry.name, _load_errors[entry.name])
                continue
            problem = _check(entry.name, loaded)
            if problem:
                _load_errors[entry.name] = problem
                log.warning("connector plugin %r (%s) %s; skipped", entry.name, entry.value, problem)
                continue
            if entry.name in found:
                log.warning("connector plugin %r registered twice; keeping the first", entry.name)
                continue
            found[entry.name] = loaded
        _registry = found
        return found


def load_errors() -> Mapping[str, str]:
    """Plugins that were skipped, with the reason."""
    connectors()
    return dict(_load_errors)


def reset_registry() -> None:
    """Forget discovered connectors (tests that install plugins at run time)."""
    global _registry
    with _lock:
        _registry = None
        _load_errors.clear()
