"""The inventory file: load, interpolate, merge and validate.

An invalid inventory is refused as a whole. Every problem is one line that names the file,
the line and the field (`ctxscan.yaml:12: sources[0].schedule: ...`), never a traceback.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from scanner.durations import parse_duration, validate_schedule
from scanner.errors import ConfigError
from scanner.plugins import AssetOverride, FreshnessConfig, SourceConfig, connectors
from scanner.redact import remember_secrets_in, secrets_in_text

STAGES = ("poc", "pilot", "production")
SEVERITIES = ("critical", "high", "medium", "low", "info")
NOTIFY_TYPES = ("log", "file", "webhook", "owners")
# Where an owner can be reached: the delivering types of `notify:`.
CONTACT_TYPES = ("log", "file", "webhook")
DEFAULT_CONFIG = "ctxscan.yaml"

TOP_KEYS = ("version", "state", "defaults", "owners", "sources", "workflows", "notify", "accept", "retention",
            "imported")
RETENTION_KEYS = ("scans",)
DEFAULTS_KEYS = ("schedule", "timeout", "max_age", "warn_after", "concurrency")
OWNER_KEYS = ("id", "name", "contact", "contacts", "description")
CONTACT_KEYS = ("type", "url", "path", "timeout")
SOURCE_KEYS = ("id", "connector", "owner", "owner_tag", "schedule", "include", "exclude",
               "freshness", "timeout", "environment", "assets", "description", "same_as", "zone",
               "lineage_namespace")
FRESHNESS_KEYS = ("max_age", "warn_after", "column")
ASSET_OVERRIDE_KEYS = ("path", "owner", "tags", "max_age", "warn_after", "derived_from", "max_lag",
                       "expect_count_ratio", "column")
WORKFLOW_KEYS = ("id", "owner", "stage", "runs_as", "reads", "feeds", "evaluation", "rollout",
                 "environment", "description", "lineage_job", "unobserved_after")
READ_KEYS = ("asset", "max_age", "warn_after", "access", "columns", "approval")
EVALUATION_KEYS = ("suite", "signal", "description")
ROLLOUT_KEYS = ("fallback", "rollback_owner", "approval", "description")
NOTIFY_KEYS = ("type", "url", "path", "min_severity", "timeout", "owners", "fallback", "escalate_after",
               "escalate_to", "digest")
ACCEPT_KEYS = ("fingerprint", "kind", "source", "asset", "workflow", "principal", "reason", "expires")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
# ${NAME} or ${NAME:-default}; $${NAME} is the literal text ${NAME}.
_ENV = re.compile(r"\$(?P<escape>\$)?\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


@dataclass(frozen=True)
class Owner:
    """A team or person that owns sources, assets or workflows."""

    id: str
    name: str | None = None
    contact: str | None = None
    file: str | None = None
    line: int | None = None
    # Where `notify: [{type: owners}]` reaches this owner.
    contacts: tuple[NotifyConfig, ...] = ()


@dataclass(frozen=True)
class ReadDeclaration:
    """One entry of a workflow's `reads`: an asset id or glob, with its SLA."""

    asset: str                 # as written: `crm:public.customers`, `kb:articles/*`
    source: str
    path: str                  # the part after `source:`, may be a glob
    max_age: float | None = None
    warn_after: float | None = None
    access: str = "read"       # `write` declares a legitimate writer
    columns: tuple[str, ...] = ()
    approval: str | None = None
    line: int | None = None

    @property
    def is_glob(self) -> bool:
        """Whether the path is a pattern rather than one asset."""
        return any(ch in self.path for ch in "*?[")


@dataclass(frozen=True)
class WorkflowConfig:
    """An AI workflow: what it reads, what it feeds, who owns it and how it rolls out."""

    id: str
    owner: str | None = None
    stage: str = "poc"
    runs_as: Mapping[str, str] = field(default_factory=dict)
    reads: tuple[ReadDeclaration, ...] = ()
    feeds: tuple[str, ...] = ()
    evaluation: Mapping[str, Any] | None = None
    rollout: Mapping[str, Any] | None = None
    environment: str | None = None
    description: str | None = None
    file: str | None = None
    line: int | None = None
    lineage_job: str | None = None            # OpenLineage job (namespace/name, or name); default: the id
    unobserved_after: float | None = None     # seconds; None: 30 days (scanner.lineage.observed)


@dataclass(frozen=True)
class NotifyConfig:
    """A notification target; a webhook URL is a secret and is never printed."""

    type: str
    url: str | None = None
    path: str | None = None
    min_severity: str = "info"
    timeout: float = 5.0
    owners: tuple[str, ...] = ()
    # `type: owners` routes each finding to its owner's `contacts`; these hear the rest.
    fallback: tuple[NotifyConfig, ...] = ()
    # Re-send a critical or high finding still open and unaccepted after this many seconds.
    escalate_after: float | None = None
    escalate_to: tuple[NotifyConfig, ...] = ()
    # Group what this target hears into one message per period (seconds).
    digest: float | None = None


@dataclass(frozen=True)
class AcceptConfig:
    """An accepted finding: hidden until `expires`."""

    reason: str
    expires: date | None = None
    fingerprint: str | None = None
    kind: str | None = None
    source: str | None = None
    asset: str | None = None
    workflow: str | None = None
    principal: str | None = None
    line: int | None = None
    file: str | None = None


@dataclass(frozen=True)
class Defaults:
    """Inventory-wide defaults for sources that do not say."""

    schedule: str = "1h"
    timeout: float = 60.0
    max_age: float | None = None
    warn_after: float | None = None
    concurrency: int = 8


@dataclass(frozen=True)
class Inventory:
    """A validated inventory, merged from one or more files."""

    files: tuple[str, ...]
    sources: Mapping[str, SourceConfig]
    workflows: Mapping[str, WorkflowConfig]
    owners: Mapping[str, Owner]
    notify: tuple[NotifyConfig, ...] = ()
    accept: tuple[AcceptConfig, ...] = ()
    defaults: Defaults = field(default_factory=Defaults)
    state: str | None = None
    digest: str = ""
    # Variables left unset (only when loaded for a command that never probes).
    unresolved_env: tuple[str, ...] = ()
    # `retention: {scans: 90d}`: seconds of scan history kept (None: all of it).
    retention_scans: float | None = None

    @property
    def zones(self) -> tuple[str, ...]:
        """The zones whose workers scan some source, sorted."""
        return tuple(sorted({s.zone for s in self.sources.values() if s.zone}))

    @property
    def base_dir(self) -> Path:
        """The folder of the first file; relative paths in it are relative to this."""
        return Path(self.files[0]).resolve().parent if self.files else Path.cwd()


class InventoryInvalid(ConfigError):
    """Several problems at once; `errors` holds each one."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        first = errors[0]
        super().__init__(first.message, first.file, first.line, first.field)


# ---------------------------------------------------------------------------------------
# YAML with line numbers

class _Doc:
    """One parsed file: plain values plus the line of every path inside it."""

    # True when the file has no anchors, so no node is shared: each sequence item's nodes are
    # dropped once converted (a 300,000-owner file would otherwise hold both forms at once).
    release = False

    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[tuple[Any, ...], int] = {}
        # Values that came from ${VAR}s: an error shows what was written, never the value
        # (a ${CRM_URL} in the wrong field would print its password).
        self.interpolated: dict[str, str] = {}

    def as_written(self, message: str) -> str:
        """`message` with every interpolated value replaced by the text that was written."""
        for value, written in sorted(self.interpolated.items(), key=lambda item: -len(item[0])):
            if value and value in message:
                message = message.replace(value, written)
        return message

    def line(self, path: tuple[Any, ...]) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())


# Caps on what one inventory may ask of the parser: a 547-byte alias bomb expands to billions
# of nodes, a `[` nested thousands deep exhausts the stack, /dev/zero never ends.
MAX_FILE_BYTES = 64 * 1024 * 1024  # a 300,000-owner inventory is 23 MB (bench/README.md)
MAX_NODES = 1_000_000
MAX_DEPTH = 64


class _TooBig(Exception):
    """The document passes a cap; the message says which."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


def _expanded_size(node: yaml.Node) -> int:
    """Nodes the document holds once every alias is expanded, without expanding it; _TooBig
    for a recursive alias, a nesting deeper than MAX_DEPTH or more than MAX_NODES nodes."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(current: yaml.Node, depth: int) -> int:
        key = id(current)
        if key in sizes:
            return sizes[key]
        line = current.start_mark.line + 1
        if key in open_nodes:
            raise _TooBig("an alias refers to a node that contains it (a recursive alias)", line)
        if depth > MAX_DEPTH:
            raise _TooBig(f"nesting deeper than {MAX_DEPTH} levels", line)
        total = 1
        if isinstance(current, yaml.MappingNode | yaml.SequenceNode):
            open_nodes.add(key)
            children = ([v for pair in current.value for v in pair] if isinstance(current, yaml.MappingNode)
                        else current.value)
            for child in children:
                total += size(child, depth + 1)
                if total > MAX_NODES:
                    raise _TooBig(f"the document expands to more than {MAX_NODES:,} nodes "
                                  "(aliases repeat what they refer to)", line)
            open_nodes.discard(key)
        sizes[key] = total
        return total

    return size(node, 0)


def _convert(node: yaml.Node, doc: _Doc, path: tuple[Any, ...], errors: list[ConfigError],
             env: Mapping[str, str]) -> Any:
    doc.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        if (len(path) == 2 and path[0] == "sources" and not isinstance(env, _LenientEnvironment)
                and any(isinstance(k, yaml.ScalarNode) and k.value == "zone" for k, _ in node.value)):
            # A zoned source's ${VAR} are its zone workers' to expand, from their environment.
            env = _LenientEnvironment(env)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            if key in result:
                errors.append(ConfigError(f"duplicate key {key!r}", doc.file,
                                          key_node.start_mark.line + 1, _field(path + (key,))))
            result[key] = _convert(value_node, doc, path + (key,), errors, env)
            doc.lines[path + (key,)] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        if not doc.release:
            return [_convert(item, doc, path + (i,), errors, env) for i, item in enumerate(node.value)]
        items: list[Any] = node.value
        converted = []
        for i, item in enumerate(items):
            items[i] = None
            converted.append(_convert(item, doc, path + (i,), errors, env))
        return converted
    if node.tag == "tag:yaml.org,2002:str":
        value = node.value
    else:
        try:
            value = _scalar(node)
        except Exception as exc:  # every constructor failure (2027-02-30, !!int x, -25:00) is the file's fault
            errors.append(ConfigError(f"{_scalar_problem(node, exc)}", doc.file,
                                      node.start_mark.line + 1, _field(path)))
            return None
    if isinstance(value, str) and "${" in value:
        value = _interpolate(value, env, doc, path, errors)
    return value


class _Fallback(Exception):
    """What the event converter does not handle alone (a non-scalar key, an alias, deep
    nesting, an empty document): the file goes through `yaml.compose` and `_convert`."""


_EVENT_MAX_DEPTH = 64


def _convert_events(text: str, doc: _Doc, errors: list[ConfigError], env: Mapping[str, str]) -> Any:
    """`_convert(yaml.compose(text))` without building the node tree: the values and the line of
    every path straight from the parser's events. A 300,000-owner inventory (23 MB) composes
    into 2.1 million nodes and 4.2 million marks (~850 MB); this keeps only the values."""
    loader = _LOADER(text)
    try:
        if not loader.check_event(yaml.StreamStartEvent):
            raise _Fallback
        loader.get_event()
        if loader.check_event(yaml.StreamEndEvent):
            raise _Fallback  # empty: the compose path says so
        document = loader.get_event()
        # Each frame: [container, path, pending key, pending key's line, is a mapping]
        stack: list[list[Any]] = []
        root: Any = None
        lines = doc.lines
        get_event, resolve = loader.get_event, loader.resolve
        scalar_event, alias_event, document_end = yaml.ScalarEvent, yaml.AliasEvent, yaml.DocumentEndEvent
        mapping_start, sequence_start = yaml.MappingStartEvent, yaml.SequenceStartEvent
        ends = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
        str_tag, scalar_node = "tag:yaml.org,2002:str", yaml.ScalarNode
        frame: list[Any] | None = None
        while True:
            event = get_event()
            kind = type(event)
            if frame is not None and frame[4] and frame[2] is None and kind is not ends[0]:
                if kind is not scalar_event:
                    raise _Fallback  # a non-scalar key
                key, line = event.value, event.start_mark.line + 1
                if key in frame[0]:
                    errors.append(ConfigError(f"duplicate key {key!r}", doc.file, line, _field(frame[1] + (key,))))
                frame[2], frame[3] = key, line
                continue
            if kind in ends:
                assert frame is not None
                value = stack.pop()[0]
                frame = stack[-1] if stack else None
            elif kind is document_end:
                break
            elif kind is alias_event:
                raise _Fallback
            else:
                if frame is None:
                    path: tuple[Any, ...] = ()
                else:
                    path = frame[1] + ((frame[2],) if frame[4] else (len(frame[0]),))
                lines[path] = event.start_mark.line + 1
                if kind is mapping_start or kind is sequence_start:
                    if len(stack) >= _EVENT_MAX_DEPTH:
                        # Refused here: composing it instead would recurse as deep as it goes.
                        raise _TooBig(f"nesting deeper than {MAX_DEPTH} levels", event.start_mark.line + 1)
                    frame = [{} if kind is mapping_start else [], path, None, None, kind is mapping_start]
                    stack.append(frame)
                    continue
                tag = event.tag
                if tag is None or tag == "!":
                    tag = resolve(scalar_node, event.value, event.implicit)
                if tag == str_tag:
                    value = event.value
                else:
                    node = scalar_node(tag, event.value, event.start_mark, event.end_mark, event.style)
                    try:
                        value = _scalar(node)
                    except Exception as exc:  # 2027-02-30, !!int x, an offset of -25:00: the file's fault
                        errors.append(ConfigError(_scalar_problem(node, exc), doc.file, lines[path], _field(path)))
                        value = None
                if isinstance(value, str) and "${" in value:
                    value = _interpolate(value, env, doc, path, errors)
            if frame is None:
                root = value
            elif frame[4]:
                frame[0][frame[2]] = value
                lines[frame[1] + (frame[2],)] = frame[3]
                frame[2] = frame[3] = None
            else:
                frame[0].append(value)
        if not loader.check_event(yaml.StreamEndEvent):
            event = loader.get_event()
            raise yaml.composer.ComposerError("expected a single document in the stream", document.start_mark,
                                              "but found another document", event.start_mark)
        return root
    finally:
        loader.dispose()


def _scalar_problem(node: yaml.Node, exc: Exception) -> str:
    tag = node.tag.rsplit(":", 1)[-1] if node.tag.startswith("tag:yaml.org,2002:") else node.tag
    if isinstance(exc, ValueError | OverflowError) and str(exc):
        return f"cannot read {node.value!r} as {tag}: {str(exc).splitlines()[0]}"
    return f"{node.value!r} is not a valid {tag}"


_CONSTRUCTOR = yaml.constructor.SafeConstructor()
# libyaml's parser composes the same nodes, with the same marks, ten times faster than the
# pure-Python one (a 50,000-asset inventory: 5 s -> 0.4 s); wheels without it fall back.
_BASE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BASE_LOADER):  # type: ignore[misc]
    """The safe loader's tag resolution, without the per-node path-resolver bookkeeping that
    the safe loader never uses (about a third of the parse on a 300,000-owner inventory)."""

    _by_first: dict[str | None, list[tuple[str, Any]]] = {}

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        return None

    def ascend_resolver(self) -> None:
        return None

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is yaml.ScalarNode:
            if implicit[0]:
                first = value[0] if value else ""
                resolvers = self._by_first.get(first)
                if resolvers is None:
                    resolvers = self._by_first[first] = (self.yaml_implicit_resolvers.get(first, [])
                                                         + self.yaml_implicit_resolvers.get(None, []))
                for tag, regexp in resolvers:
                    if regexp.match(value):
                        return str(tag)
            return str(self.DEFAULT_SCALAR_TAG)
        return str(self.DEFAULT_SEQUENCE_TAG if kind is yaml.SequenceNode else self.DEFAULT_MAPPING_TAG)


_LOADER: Any = _Loader if not _Loader.yaml_path_resolvers else _BASE_LOADER


def _scalar(node: yaml.Node) -> Any:
    """A scalar typed the way safe_load types it (numbers, booleans, dates, null)."""
    try:
        return _CONSTRUCTOR.construct_object(node, deep=True)
    finally:
        _CONSTRUCTOR.constructed_objects.clear()
        _CONSTRUCTOR.recursive_objects.clear()


def _interpolate(value: str, env: Mapping[str, str], doc: _Doc, path: tuple[Any, ...],
                 errors: list[ConfigError]) -> str:
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match.group("escape"):
            return match.group(0)[1:]
        name, default = match.group("name"), match.group("default")
        if name in env:
            return env[name]
        if default is not None:
            return default
        missing.append(name)
        return ""

    result = _ENV.sub(replace, value)
    if result != value and len(result) >= 3:
        doc.interpolated[result] = value  # errors show what was written, never the value
    if missing:
        names = ", ".join(sorted(set(missing)))
        errors.append(ConfigError(
            f"environment variable {names} is not set (export it, or write ${{{missing[0]}:-default}})",
            doc.file, doc.line(path), _field(path)))
    return result


def _convert_plain(value: Any, doc: _Doc, path: tuple[Any, ...], errors: list[ConfigError],
                   env: Mapping[str, str]) -> Any:
    """An already parsed value with its `${VAR}` interpolated as `_convert` does (zone workers)."""
    if isinstance(value, dict):
        return {k: _convert_plain(v, doc, path + (k,), errors, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_convert_plain(v, doc, path + (i,), errors, env) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        return _interpolate(value, env, doc, path, errors)
    return value


def _field(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _read_inventory(path: Path) -> str:
    """The file's text; OSError/ValueError for a path that is not a regular file or too big."""
    import stat

    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise ValueError("not a regular file (a device, a FIFO or a socket cannot be an inventory)")
    if info.st_size > MAX_FILE_BYTES:
        raise ValueError(f"the file is {info.st_size:,} bytes; an inventory may have at most {MAX_FILE_BYTES:,}")
    # O_NONBLOCK: if the path became a FIFO since the stat, opening it must not hang.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ValueError("not a regular file")
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"the file is larger than {MAX_FILE_BYTES:,} bytes")
    return data.decode("utf-8")


def _parse_file(path: Path, env: Mapping[str, str], errors: list[ConfigError]) -> tuple[_Doc, Any]:
    doc = _Doc(str(path))
    try:
        text = _read_inventory(path)
    except FileNotFoundError:
        errors.append(ConfigError("inventory file not found (create one, or pass -c PATH; "
                                  "`ctxscan demo` writes an example)", str(path)))
        return doc, None
    except UnicodeDecodeError as exc:
        errors.append(ConfigError(f"cannot read the inventory file: not UTF-8 ({exc.reason} at byte {exc.start})",
                                  str(path)))
        return doc, None
    except (OSError, ValueError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        errors.append(ConfigError(f"cannot read the inventory file: {detail}", str(path)))
        return doc, None
    # No anchors, so no aliases, and no `zone:` (whose ${VAR}s depend on a key that may come
    # later in the mapping): convert straight from the parser's events.
    if "&" not in text and "zone" not in text:
        try:
            return doc, _convert_events(text, doc, errors, env)
        except _Fallback:
            doc.lines.clear()
        except _TooBig as exc:
            errors.append(ConfigError(str(exc), str(path), exc.line))
            return doc, None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = exc.problem or exc.context or "invalid YAML"
            errors.append(ConfigError(f"YAML syntax error: {problem}", str(path), mark.line + 1 if mark else None))
            return doc, None
        except yaml.YAMLError as exc:
            errors.append(ConfigError(f"YAML syntax error: {exc}", str(path)))
            return doc, None
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        errors.append(ConfigError(f"YAML syntax error: {problem}", str(path), line))
        return doc, None
    except RecursionError:
        errors.append(ConfigError(f"YAML nesting is too deep (at most {MAX_DEPTH} levels)", str(path),
                                  _deepest_line(text)))
        return doc, None
    except yaml.YAMLError as exc:
        errors.append(ConfigError(f"YAML syntax error: {exc}", str(path)))
        return doc, None
    if node is None:
        errors.append(ConfigError("the file is empty (or only comments): write at least `version: 1`",
                                  str(path)))
        return doc, None
    try:
        _expanded_size(node)
    except _TooBig as exc:
        errors.append(ConfigError(str(exc), str(path), exc.line))
        return doc, None
    try:
        doc.release = "&" not in text
        return doc, _convert(node, doc, (), errors, env)
    except yaml.YAMLError as exc:
        errors.append(ConfigError(f"YAML error: {exc}", str(path)))
        return doc, None


def _deepest_line(text: str) -> int | None:
    """The line where flow nesting passes MAX_DEPTH (the parser gave up without a mark)."""
    depth = 0
    for number, line in enumerate(text.splitlines(), 1):
        for char in line:
            depth += char in "[{"
            depth -= char in "]}"
            if depth > MAX_DEPTH:
                return number
    return None


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files named directly, and every *.yaml / *.yml of a named folder, in name order."""
    result: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
            if not found:
                raise InventoryInvalid([ConfigError("the folder holds no *.yaml or *.yml inventory file",
                                                    str(path))])
            result.extend(found)
        else:
            result.append(path)
    return result


class _LenientEnvironment(Mapping[str, str]):
    """The environment for commands that only read the store: an unset variable stays as
    written (`${CRM_URL}`) instead of refusing the inventory, and is remembered."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.unresolved: set[str] = set()

    def __contains__(self, name: object) -> bool:
        return True

    def __getitem__(self, name: str) -> str:
        if name in self.env:
            return self.env[name]
        self.unresolved.add(name)
        return "${" + name + "}"

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.env)

    def __len__(self) -> int:
        return len(self.env)


# ---------------------------------------------------------------------------------------
# Validation

class _Checker:
    """Collects errors for one file, each with its line and field."""

    def __init__(self, doc: _Doc, errors: list[ConfigError]) -> None:
        self.doc = doc
        self.errors = errors

    def error(self, path: tuple[Any, ...], message: str) -> None:
        self.errors.append(ConfigError(self.doc.as_written(message), self.doc.file, self.doc.line(path),
                                       _field(path)))

    def keys(self, value: Mapping[str, Any], allowed: Iterable[str], path: tuple[Any, ...]) -> None:
        allowed = list(allowed)
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(allowed)})"
                self.error(path + (key,), f"unknown key {key!r}{hint}")

    def mapping(self, value: Any, path: tuple[Any, ...]) -> dict[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            self.error(path, f"expected a mapping, got {_kind(value)}")
            return None
        return value

    def sequence(self, value: Any, path: tuple[Any, ...]) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(path, f"expected a list, got {_kind(value)}")
            return []
        return value

    def string(self, value: Any, path: tuple[Any, ...], required: bool = False) -> str | None:
        if value is None:
            if required:
                self.error(path, "is required")
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.error(path, f"expected a string, got {_kind(value)}")
            return None
        return str(value)

    def name(self, value: Any, path: tuple[Any, ...]) -> str | None:
        """A string that names something (an owner): a ${VAR} whose value holds a secret (a
        URL put in the wrong field) keeps the name but never the secret, which would otherwise
        reach the graph, the store and every export."""
        text = self.string(value, path)
        if text is not None and text in self.doc.interpolated:
            from scanner.redact import redact_text

            return redact_text(text, secrets_in_text(text))
        return text

    def strings(self, value: Any, path: tuple[Any, ...]) -> tuple[str, ...]:
        if isinstance(value, str):
            return (value,)
        items = self.sequence(value, path)
        out = []
        for i, item in enumerate(items):
            text = self.string(item, path + (i,))
            if text is not None:
                out.append(text)
        return tuple(out)

    def identifier(self, value: Any, path: tuple[Any, ...]) -> str | None:
        text = self.string(value, path, required=True)
        if text is not None and not _ID.match(text):
            self.error(path, f"{text!r} is not a valid id (letters, digits, '_', '-', '.')")
            return None
        return text

    def duration(self, value: Any, path: tuple[Any, ...]) -> float | None:
        if value is None:
            return None
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.error(path, str(exc))
            return None

    def ratio(self, value: Any, path: tuple[Any, ...]) -> float | None:
        """A positive number such as 0.95 (`expect_count_ratio`)."""
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1000:
            self.error(path, f"expected a positive number such as 0.95, got {value!r}")
            return None
        return float(value)

    def schedule(self, value: Any, path: tuple[Any, ...]) -> str | None:
        text = self.string(value, path)
        if text is None:
            return None
        try:
            validate_schedule(text)
        except ValueError as exc:
            self.error(path, str(exc))
            return None
        return text

    def choice(self, value: Any, choices: Iterable[str], path: tuple[Any, ...], default: str) -> str:
        if value is None:
            return default
        choices = list(choices)
        text = self.string(value, path)
        if text is None:
            return default
        if text not in choices:
            close = difflib.get_close_matches(text, choices, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.error(path, f"{text!r} is not one of {', '.join(choices)}{hint}")
            return default
        return text


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)


def _coerce_setting(check: _Checker, value: Any, expected: type, path: tuple[Any, ...]) -> Any:
    if expected is list:
        return list(check.strings(value, path))
    if expected is bool:
        if isinstance(value, bool):
            return value
        check.error(path, f"expected true or false, got {value!r}")
        return None
    if expected in (int, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            if isinstance(value, str):
                try:
                    return expected(value)
                except ValueError:
                    pass
                if expected is float:  # a float setting may be a duration: `30s` means 30.0
                    try:
                        return parse_duration(value)
                    except ValueError:
                        pass
            check.error(path, f"expected a number{' or a duration' if expected is float else ''}, "
                        f"got {value!r}")
            return None
        if isinstance(value, float) and not math.isfinite(value):
            check.error(path, f"expected a finite number, got {value!r}")
            return None
        return expected(value)
    if expected is dict:
        return check.mapping(value, path) or {}
    return check.string(value, path)


def _asset_overrides(check: _Checker, data: Mapping[str, Any], path: tuple[Any, ...]) -> list[AssetOverride]:
    """A source's `assets:` entries."""
    overrides = []
    for i, item in enumerate(check.sequence(data.get("assets"), path + ("assets",))):
        item_path = path + ("assets", i)
        entry = check.mapping(item, item_path)
        if entry is None:
            continue
        check.keys(entry, ASSET_OVERRIDE_KEYS, item_path)
        asset_path = check.string(entry.get("path"), item_path + ("path",), required=True)
        if asset_path is None:
            continue
        overrides.append(AssetOverride(
            path=asset_path,
            owner=check.name(entry.get("owner"), item_path + ("owner",)),
            tags=check.strings(entry.get("tags"), item_path + ("tags",)),
            max_age=check.duration(entry.get("max_age"), item_path + ("max_age",)),
            warn_after=check.duration(entry.get("warn_after"), item_path + ("warn_after",)),
            line=check.doc.line(item_path),
            derived_from=check.strings(entry.get("derived_from"), item_path + ("derived_from",)),
            max_lag=check.duration(entry.get("max_lag"), item_path + ("max_lag",)),
            expect_count_ratio=check.ratio(entry.get("expect_count_ratio"), item_path + ("expect_count_ratio",)),
            column=check.string(entry.get("column"), item_path + ("column",)),
        ))
    return overrides


def _source(check: _Checker, raw: Any, path: tuple[Any, ...], defaults: Defaults,
            known: Mapping[str, Any]) -> SourceConfig | None:
    data = check.mapping(raw, path)
    if data is None:
        if raw is None:
            check.error(path, "expected a source mapping")
        return None
    source_id = check.identifier(data.get("id"), path + ("id",))
    connector_name = check.string(data.get("connector"), path + ("connector",), required=True)
    connector_cls = None
    if connector_name is not None:
        connector_cls = known.get(connector_name)
        if connector_cls is None:
            close = difflib.get_close_matches(connector_name, list(known), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            check.error(path + ("connector",),
                        f"unknown connector {connector_name!r} ({hint}known: {', '.join(sorted(known))})")
    setting_specs = {s.name: s for s in (connector_cls.settings if connector_cls else ())}
    if connector_cls is not None:
        check.keys(data, list(SOURCE_KEYS) + list(setting_specs), path)
    settings: dict[str, Any] = {}
    for name, spec in setting_specs.items():
        if name in data and data[name] is not None:
            settings[name] = _coerce_setting(check, data[name], spec.type, path + (name,))
        elif spec.required:
            check.error(path + (name,), f"is required by the {connector_name} connector"
                        + (f" ({spec.help})" if spec.help else ""))
    if connector_name is not None and isinstance(settings.get("url"), str):
        from scanner.validation import url_mismatch

        mismatch = url_mismatch(connector_name, settings["url"])
        if mismatch:
            check.error(path + ("url",), mismatch)
    freshness_raw = check.mapping(data.get("freshness"), path + ("freshness",)) or {}
    check.keys(freshness_raw, FRESHNESS_KEYS, path + ("freshness",))
    freshness = FreshnessConfig(
        max_age=check.duration(freshness_raw.get("max_age"), path + ("freshness", "max_age"))
        or defaults.max_age,
        warn_after=check.duration(freshness_raw.get("warn_after"), path + ("freshness", "warn_after"))
        or defaults.warn_after,
        column=check.string(freshness_raw.get("column"), path + ("freshness", "column")),
    )
    overrides = _asset_overrides(check, data, path)
    timeout = check.duration(data.get("timeout"), path + ("timeout",))
    schedule = check.schedule(data.get("schedule"), path + ("schedule",))
    if data.get("owner_tag") is not None and connector_cls is not None and not connector_cls.owner_tags:
        check.error(path + ("owner_tag",), f"the {connector_name} connector has no tags or labels to find "
                    "an owner in: declare owner: (or an assets: entry's owner) instead")
    _check_warning_level(check, freshness_raw, path + ("freshness",))
    for i, item in enumerate(data.get("assets") or ()):
        if isinstance(item, dict):
            _check_warning_level(check, item, path + ("assets", i))
    if source_id is None or connector_name is None:
        return None
    return SourceConfig(
        id=source_id,
        connector=connector_name,
        settings=settings,
        owner=check.name(data.get("owner"), path + ("owner",)),
        owner_tag=check.string(data.get("owner_tag"), path + ("owner_tag",)),
        schedule=schedule or defaults.schedule,
        include=check.strings(data.get("include"), path + ("include",)),
        exclude=check.strings(data.get("exclude"), path + ("exclude",)),
        freshness=freshness,
        timeout=timeout or defaults.timeout,
        environment=check.string(data.get("environment"), path + ("environment",)),
        assets=tuple(overrides),
        lineage_namespace=check.string(data.get("lineage_namespace"), path + ("lineage_namespace",)),
        description=check.string(data.get("description"), path + ("description",)),
        file=check.doc.file,
        line=check.doc.line(path),
        same_as=check.identifier(data.get("same_as"), path + ("same_as",)) if data.get("same_as") is not None
        else None,
        zone=check.identifier(data.get("zone"), path + ("zone",)) if data.get("zone") is not None else None,
    )


def _workflow(check: _Checker, raw: Any, path: tuple[Any, ...]) -> WorkflowConfig | None:
    data = check.mapping(raw, path)
    if data is None:
        if raw is None:
            check.error(path, "expected a workflow mapping")
        return None
    check.keys(data, WORKFLOW_KEYS, path)
    workflow_id = check.identifier(data.get("id"), path + ("id",))
    runs_as_raw = check.mapping(data.get("runs_as"), path + ("runs_as",)) or {}
    runs_as = {}
    for source_id, principal in runs_as_raw.items():
        text = check.string(principal, path + ("runs_as", source_id), required=True)
        if text is not None:
            runs_as[str(source_id)] = text
    reads = []
    for i, item in enumerate(check.sequence(data.get("reads"), path + ("reads",))):
        item_path = path + ("reads", i)
        if isinstance(item, str):
            item = {"asset": item}
        entry = check.mapping(item, item_path)
        if entry is None:
            continue
        check.keys(entry, READ_KEYS, item_path)
        asset = check.string(entry.get("asset"), item_path + ("asset",), required=True)
        if asset is None:
            continue
        if ":" not in asset:
            check.error(item_path + ("asset",),
                        f"{asset!r} is not an asset id (write SOURCE:PATH, e.g. crm:public.customers)")
            continue
        source_id, _, asset_path = asset.partition(":")
        _check_warning_level(check, entry, item_path)
        reads.append(ReadDeclaration(
            asset=asset, source=source_id, path=asset_path,
            max_age=check.duration(entry.get("max_age"), item_path + ("max_age",)),
            warn_after=check.duration(entry.get("warn_after"), item_path + ("warn_after",)),
            access=check.choice(entry.get("access"), ("read", "write"), item_path + ("access",), "read"),
            columns=check.strings(entry.get("columns"), item_path + ("columns",)),
            approval=check.string(entry.get("approval"), item_path + ("approval",)),
            line=check.doc.line(item_path),
        ))
    evaluation = check.mapping(data.get("evaluation"), path + ("evaluation",))
    if evaluation is not None:
        check.keys(evaluation, EVALUATION_KEYS, path + ("evaluation",))
    rollout = check.mapping(data.get("rollout"), path + ("rollout",))
    if rollout is not None:
        check.keys(rollout, ROLLOUT_KEYS, path + ("rollout",))
    if workflow_id is None:
        return None
    return WorkflowConfig(
        id=workflow_id,
        owner=check.name(data.get("owner"), path + ("owner",)),
        stage=check.choice(data.get("stage"), STAGES, path + ("stage",), "poc"),
        runs_as=runs_as,
        reads=tuple(reads),
        feeds=check.strings(data.get("feeds"), path + ("feeds",)),
        evaluation=evaluation,
        rollout=rollout,
        environment=check.string(data.get("environment"), path + ("environment",)),
        description=check.string(data.get("description"), path + ("description",)),
        file=check.doc.file,
        line=check.doc.line(path),
        lineage_job=check.string(data.get("lineage_job"), path + ("lineage_job",)),
        unobserved_after=check.duration(data.get("unobserved_after"), path + ("unobserved_after",)),
    )


def _notify_target(check: _Checker, raw: Any, path: tuple[Any, ...],
                   types: tuple[str, ...]) -> NotifyConfig | None:
    """One notification target: a `notify:` entry, a fallback or escalation target, or an
    owner's contact (`types` says which types the place allows)."""
    entry = check.mapping(raw, path)
    if entry is None:
        if raw is None:
            check.error(path, f"expected a target mapping with a type ({', '.join(types)})")
        return None
    routing = types == NOTIFY_TYPES
    check.keys(entry, NOTIFY_KEYS if routing else
               [k for k in NOTIFY_KEYS if k not in ("fallback", "escalate_after", "escalate_to")], path)
    kind = check.choice(entry.get("type"), types, path + ("type",), "log")
    if entry.get("type") is None:
        check.error(path + ("type",), f"is required ({', '.join(types)})")
    url = check.string(entry.get("url"), path + ("url",), required=kind == "webhook")
    if kind == "webhook" and url is not None and not re.match(r"^https?://[^/\s?#]+", url):
        # The URL itself is a secret (it often carries a token): never echo it.
        check.error(path + ("url",), "a webhook URL must be http:// or https:// with a host "
                    "(is its environment variable empty?)")
    file_path = check.string(entry.get("path"), path + ("path",), required=kind == "file")
    nested: dict[str, tuple[NotifyConfig, ...]] = {}
    for key in ("fallback", "escalate_to"):
        items = check.sequence(entry.get(key), path + (key,)) if routing else []
        nested[key] = tuple(target for j, item in enumerate(items)
                            if (target := _notify_target(check, item, path + (key, j), CONTACT_TYPES)))
    escalate_after = check.duration(entry.get("escalate_after"), path + ("escalate_after",)) if routing else None
    if escalate_after is not None and not nested["escalate_to"]:
        check.error(path + ("escalate_after",), "needs escalate_to: the targets that hear escalations")
    if nested["escalate_to"] and escalate_after is None:
        check.error(path + ("escalate_to",), "needs escalate_after: how long a finding stays open first")
    for key in ("fallback", "escalate_after", "escalate_to"):
        if routing and kind != "owners" and entry.get(key) is not None:
            check.error(path + (key,), "only a target of type owners routes findings (type: owners)")
    return NotifyConfig(
        type=kind, url=url, path=file_path,
        min_severity=check.choice(entry.get("min_severity"), SEVERITIES, path + ("min_severity",), "info"),
        timeout=check.duration(entry.get("timeout"), path + ("timeout",)) or 5.0,
        owners=check.strings(entry.get("owners"), path + ("owners",)),
        fallback=nested["fallback"], escalate_after=escalate_after, escalate_to=nested["escalate_to"],
        digest=check.duration(entry.get("digest"), path + ("digest",)),
    )


def _check_warning_level(check: _Checker, entry: Mapping[str, Any], path: tuple[Any, ...]) -> None:
    """A `warn_after` not shorter than the `max_age` beside it could never warn first."""
    if entry.get("warn_after") is None or entry.get("max_age") is None:
        return
    try:
        warn, limit = parse_duration(entry["warn_after"]), parse_duration(entry["max_age"])
    except ValueError:
        return  # the duration itself is reported
    if warn >= limit:
        check.error(path + ("warn_after",), f"warn_after {entry['warn_after']} is not shorter than max_age "
                    f"{entry['max_age']}: the warning could never come first (shorten it, or drop it)")


def _date(check: _Checker, value: Any, path: tuple[Any, ...]) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        check.error(path, f"{value!r} is not a date (write YYYY-MM-DD)")
        return None


def load_inventory(paths: Iterable[str | Path], env: Mapping[str, str] | None = None,
                   strict_env: bool = True) -> Inventory:
    """Load, merge and validate inventory files; raise InventoryInvalid listing every problem.

    With `strict_env=False` (commands that read the store and never probe), an unset
    `${VAR}` is left as written rather than refused: listing findings needs no password.
    """
    env = os.environ if env is None else env
    lenient = None if strict_env else _LenientEnvironment(env)
    if lenient is not None:
        env = lenient
    files = expand_paths(paths)
    errors: list[ConfigError] = []
    if not files:
        raise InventoryInvalid([ConfigError("no inventory file given (pass -c PATH)")])
    known = connectors()
    sources: dict[str, SourceConfig] = {}
    workflows: dict[str, WorkflowConfig] = {}
    owners: dict[str, Owner] = {}
    notify: list[NotifyConfig] = []
    accept: list[AcceptConfig] = []
    defaults = Defaults()
    state: str | None = None
    retention_scans: float | None = None
    version: Any = None
    read_checks: list[tuple[_Checker, tuple[Any, ...], ReadDeclaration]] = []
    feed_checks: list[tuple[_Checker, tuple[Any, ...], str, str]] = []
    runs_as_checks: list[tuple[_Checker, tuple[Any, ...], str]] = []
    canonical: list[Any] = []
    workflow_paths: dict[str, tuple[_Checker, tuple[Any, ...]]] = {}
    source_paths: dict[str, tuple[_Checker, tuple[Any, ...]]] = {}
    accept_checks: list[tuple[_Checker, tuple[Any, ...], AcceptConfig]] = []
    imported: list[tuple[_Checker, dict[str, Any]]] = []
    workflow_keys: dict[str, set[str]] = {}     # the keys each hand-written workflow sets

    for file in files:
        doc, data = _parse_file(file, env, errors)
        check = _Checker(doc, errors)
        if data is None:
            continue
        if not isinstance(data, dict):
            check.error((), f"the inventory must be a mapping with keys {', '.join(TOP_KEYS)}")
            continue
        canonical.append(data)
        # Settings, notify targets and contacts can carry secrets; ids, globs and asset paths
        # are names (a source called `secret` is not a password). Every ${VAR}'s value counts.
        remember_secrets_in([data.get(key) for key in ("sources", "notify", "owners", "state")],
                            skip=("id", "include", "exclude", "assets", "same_as", "owner", "connector"))
        remember_secrets_in(list(doc.interpolated))
        check.keys(data, TOP_KEYS, ())
        file_version = data.get("version", 1)
        if file_version != 1:
            check.error(("version",), f"unsupported version {file_version!r} (this ctxscan reads version 1)")
        if version is not None and file_version != version:
            check.error(("version",), "all merged files must have the same version")
        version = file_version
        if data.get("imported") is not None:  # written by `ctxscan import`: merged under the rest
            imported.append((check, data))
            continue
        if data.get("state") is not None:
            state = check.string(data.get("state"), ("state",))
        retention_raw = check.mapping(data.get("retention"), ("retention",))
        if retention_raw is not None:
            check.keys(retention_raw, RETENTION_KEYS, ("retention",))
            retention_scans = check.duration(retention_raw.get("scans"), ("retention", "scans")) or retention_scans
        defaults_raw = check.mapping(data.get("defaults"), ("defaults",))
        if defaults_raw is not None:
            check.keys(defaults_raw, DEFAULTS_KEYS, ("defaults",))
            schedule = check.schedule(defaults_raw.get("schedule"), ("defaults", "schedule"))
            concurrency = defaults_raw.get("concurrency", defaults.concurrency)
            if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
                check.error(("defaults", "concurrency"), "expected a whole number of at least 1")
                concurrency = defaults.concurrency
            defaults = Defaults(
                schedule=schedule or defaults.schedule,
                timeout=check.duration(defaults_raw.get("timeout"), ("defaults", "timeout"))
                or defaults.timeout,
                max_age=check.duration(defaults_raw.get("max_age"), ("defaults", "max_age")),
                warn_after=check.duration(defaults_raw.get("warn_after"), ("defaults", "warn_after")),
                concurrency=concurrency,
            )
            _check_warning_level(check, defaults_raw, ("defaults",))
        for i, raw in enumerate(check.sequence(data.get("owners"), ("owners",))):
            path = ("owners", i)
            if isinstance(raw, str):
                raw = {"id": raw}
            entry = check.mapping(raw, path)
            if entry is None:
                continue
            check.keys(entry, OWNER_KEYS, path)
            owner_id = check.identifier(entry.get("id"), path + ("id",))
            if owner_id is None:
                continue
            if owner_id in owners:
                check.error(path + ("id",), f"duplicate owner id {owner_id!r} (first at "
                            f"{owners[owner_id].file}:{owners[owner_id].line})")
                continue
            contacts = tuple(
                contact for j, item in enumerate(check.sequence(entry.get("contacts"), path + ("contacts",)))
                if (contact := _notify_target(check, item, path + ("contacts", j), CONTACT_TYPES)) is not None)
            owners[owner_id] = Owner(owner_id, check.string(entry.get("name"), path + ("name",)),
                                     check.string(entry.get("contact"), path + ("contact",)),
                                     doc.file, doc.line(path), contacts=contacts)
        for i, raw in enumerate(check.sequence(data.get("sources"), ("sources",))):
            path = ("sources", i)
            source = _source(check, raw, path, defaults, known)
            if source is None:
                continue
            if source.id in sources:
                first = sources[source.id]
                check.error(path + ("id",), f"duplicate source id {source.id!r} (first at {first.file}:{first.line})")
                continue
            sources[source.id] = source
            source_paths[source.id] = (check, path)
        for i, raw in enumerate(check.sequence(data.get("workflows"), ("workflows",))):
            path = ("workflows", i)
            workflow = _workflow(check, raw, path)
            if workflow is None:
                continue
            if workflow.id in workflows:
                first_wf = workflows[workflow.id]
                check.error(path + ("id",), f"duplicate workflow id {workflow.id!r} "
                            f"(first at {first_wf.file}:{first_wf.line})")
                continue
            workflows[workflow.id] = workflow
            workflow_paths[workflow.id] = (check, path)
            workflow_keys[workflow.id] = set(raw) if isinstance(raw, dict) else set()
            for j, read in enumerate(workflow.reads):
                read_checks.append((check, path + ("reads", j, "asset"), read))
            for j, target in enumerate(workflow.feeds):
                feed_checks.append((check, path + ("feeds", j), workflow.id, target))
            for source_id in workflow.runs_as:
                runs_as_checks.append((check, path + ("runs_as", source_id), source_id))
        for i, raw in enumerate(check.sequence(data.get("notify"), ("notify",))):
            notify_target = _notify_target(check, raw, ("notify", i), NOTIFY_TYPES)
            if notify_target is not None:
                notify.append(notify_target)
        for i, raw in enumerate(check.sequence(data.get("accept"), ("accept",))):
            path = ("accept", i)
            entry = check.mapping(raw, path)
            if entry is None:
                continue
            check.keys(entry, ACCEPT_KEYS, path)
            reason = check.string(entry.get("reason"), path + ("reason",), required=True)
            if entry.get("expires") is None:
                check.error(path + ("expires",), "is required: an acceptance expires (write YYYY-MM-DD)")
            accept.append(AcceptConfig(
                reason=reason or "",
                expires=_date(check, entry.get("expires"), path + ("expires",)),
                fingerprint=check.string(entry.get("fingerprint"), path + ("fingerprint",)),
                kind=check.string(entry.get("kind"), path + ("kind",)),
                source=check.string(entry.get("source"), path + ("source",)),
                asset=check.string(entry.get("asset"), path + ("asset",)),
                workflow=check.string(entry.get("workflow"), path + ("workflow",)),
                principal=check.string(entry.get("principal"), path + ("principal",)),
                line=doc.line(path), file=doc.file,
            ))
            accept_checks.append((check, path, accept[-1]))

    if imported:
        from scanner.lineage.imported import merge_imported

        for check, data in imported:
            for workflow, path in merge_imported(check, data, sources, workflows, owners, workflow_keys):
                workflow_paths.setdefault(workflow.id, (check, path))
                for j, read in enumerate(workflow.reads):
                    read_checks.append((check, path + ("reads", j, "asset"), read))
                for j, target in enumerate(workflow.feeds):
                    feed_checks.append((check, path + ("feeds", j), workflow.id, target))
    # Cross-references, once every file is merged.
    for check, path, read in read_checks:
        if read.source not in sources:
            close = difflib.get_close_matches(read.source, list(sources), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            check.error(path, f"reads {read.asset!r} from undeclared source {read.source!r}{hint}")
    for source in sources.values():
        if source.same_as is None:
            continue
        if source.same_as == source.id or source.same_as not in sources:
            close = difflib.get_close_matches(source.same_as, [s for s in sources if s != source.id], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            what = "itself" if source.same_as == source.id else f"undeclared source {source.same_as!r}"
            errors.append(ConfigError(f"same_as names {what}{hint}", source.file, source.line,
                                      f"sources.{source.id}.same_as"))
    for check, path, source_id in runs_as_checks:
        if source_id not in sources:
            check.error(path, f"runs_as names undeclared source {source_id!r}")
    for check, path, workflow_id, target in feed_checks:
        if target not in workflows:
            close = difflib.get_close_matches(target, list(workflows), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            check.error(path, f"workflow {workflow_id!r} feeds unknown workflow {target!r}{hint}")
    for cycle in _feeds_cycles(workflows):
        check, path = workflow_paths[cycle[0]]
        check.error(path + ("feeds",), f"cycle in feeds: {' -> '.join(cycle)}")
    if any(o.derived_from for s in sources.values() for o in s.assets):
        from scanner.lineage.assets import check_derived_from

        read_paths: dict[str, set[str]] = {}
        for workflow in workflows.values():
            for read in workflow.reads:
                read_paths.setdefault(read.source, set()).add(read.path)
        for source_id, index, position, message in check_derived_from(sources, read_paths):
            check, path = source_paths[source_id]
            check.error(path + ("assets", index, "derived_from", position), message)
    if accept_checks:
        from scanner.acceptance import entry_errors
        from scanner.rules import RULES

        declared_reads = {r.asset for w in workflows.values() for r in w.reads}
        for check, path, accepted in accept_checks:
            for name, message in entry_errors(accepted, RULES, sources, workflows, declared_reads):
                check.error(path + (name,) if getattr(accepted, name, None) else path, message)
    # Owners not listed in `owners` are findings (`unowned`), not an invalid file.
    if errors:
        order = {str(f): i for i, f in enumerate(files)}
        errors.sort(key=lambda e: (order.get(e.file or "", -1), e.line or 0))
        raise InventoryInvalid(errors)
    digest = hashlib.sha256(json.dumps(canonical, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Inventory(
        files=tuple(str(f) for f in files),
        sources=sources,
        workflows=workflows,
        owners=owners,
        notify=tuple(notify),
        accept=tuple(accept),
        defaults=defaults,
        state=state,
        digest=digest,
        unresolved_env=tuple(sorted(lenient.unresolved)) if lenient is not None else (),
        retention_scans=retention_scans,
    )


def _feeds_cycles(workflows: Mapping[str, WorkflowConfig]) -> list[list[str]]:
    """Every cycle in workflow-to-workflow feeds (each as the ids around it, one per back
    edge the search meets): fixing the first must not hide the next."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(workflows, WHITE)
    stack: list[str] = []
    cycles: list[list[str]] = []
    seen: set[frozenset[str]] = set()

    def visit(node: str) -> None:
        colour[node] = GREY
        stack.append(node)
        for nxt in workflows[node].feeds:
            if nxt not in workflows:
                continue
            if colour[nxt] == GREY:
                cycle = stack[stack.index(nxt):] + [nxt]
                if frozenset(cycle) not in seen:
                    seen.add(frozenset(cycle))
                    cycles.append(cycle)
            elif colour[nxt] == WHITE:
                visit(nxt)
        stack.pop()
        colour[node] = BLACK

    for start in sorted(workflows):
        if colour[start] == WHITE:
            visit(start)
    return cycles
