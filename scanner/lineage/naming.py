"""OpenLineage dataset names to ctxscan assets, by the OpenLineage naming spec.

| system | namespace | name | ctxscan asset path |
|---|---|---|---|
| PostgreSQL | `postgres://host:port` | `database.schema.table` | `schema.table` (the url's database) |
| MySQL / MariaDB | `mysql://host:port` | `database.table` | `database.table` |
| S3 | `s3://bucket` | object key or prefix | the source's prefix that holds it (longest), else the first-level prefix |
| BigQuery | `bigquery` | `project.dataset.table` | `dataset.table` (the source's project) |
| files | `file` or `file://host` | absolute path | the first-level file or folder under the source's `path` |

A source's namespace comes from its url (host compared case-insensitively, default port
filled in) or, when that is not how the senders name it (a proxy, a DNS alias), from
`lineage_namespace:` on the source, which then wins.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from scanner.plugins import SourceConfig

_DEFAULT_PORTS = {"postgres": 5432, "mysql": 3306}
_SCHEMES = {"postgresql": "postgres", "postgres": "postgres", "mysql": "mysql", "mariadb": "mysql"}


@dataclass(frozen=True)
class _Rule:
    source_id: str
    system: str                 # postgres, mysql, s3, bigquery, file, explicit
    namespace: str
    database: str | None = None  # postgres: the url's database; bigquery: the project
    root: str | None = None      # files: the folder
    prefixes: tuple[str, ...] = ()


def _normal_namespace(namespace: str) -> str:
    """`postgresql://Host:5432/` -> `postgres://host:5432`; other namespaces stripped of a final `/`."""
    try:
        parts = urlsplit(namespace)
    except ValueError:
        return namespace.rstrip("/")
    system = _SCHEMES.get(parts.scheme.split("+", 1)[0].lower())
    if system is None or not parts.hostname:
        return namespace.rstrip("/")
    try:
        port = parts.port or _DEFAULT_PORTS[system]
    except ValueError:
        return namespace.rstrip("/")
    return f"{system}://{parts.hostname.lower()}:{port}"


def _rule(source: SourceConfig) -> _Rule | None:
    settings = source.settings
    connector = source.connector
    if connector in ("postgres", "mysql") or (connector == "sql" and isinstance(settings.get("url"), str)):
        url = settings.get("url")
        if not isinstance(url, str):
            return None
        try:
            parts = urlsplit(url)
        except ValueError:
            return None
        system = _SCHEMES.get(parts.scheme.split("+", 1)[0].lower())
        if system is None:
            return None
        namespace = _normal_namespace(url)
        if source.lineage_namespace:
            namespace = _normal_namespace(source.lineage_namespace)
        database = unquote(parts.path.lstrip("/")) or None
        return _Rule(source.id, system, namespace, database)
    if connector == "s3" and settings.get("bucket"):
        namespace = source.lineage_namespace or f"s3://{settings['bucket']}"
        return _Rule(source.id, "s3", namespace.rstrip("/"),
                     prefixes=tuple(sorted((str(p) for p in settings.get("prefixes") or ()), key=len, reverse=True)))
    if connector == "bigquery" and settings.get("project"):
        return _Rule(source.id, "bigquery", (source.lineage_namespace or "bigquery").rstrip("/"),
                     database=str(settings["project"]))
    if connector == "files" and settings.get("path"):
        return _Rule(source.id, "file", (source.lineage_namespace or "file").rstrip("/"),
                     root=posixpath.normpath(str(settings["path"])))
    if source.lineage_namespace:
        return _Rule(source.id, "explicit", source.lineage_namespace.rstrip("/"))
    return None


class DatasetMapper:
    """Maps (namespace, name) of OpenLineage datasets to (source id, asset path), or None."""

    def __init__(self, sources: Mapping[str, SourceConfig], base_dir: str | None = None) -> None:
        self.rules: dict[str, list[_Rule]] = {}
        for source_id in sorted(sources):
            rule = _rule(sources[source_id])
            if rule is not None:
                self.rules.setdefault(rule.namespace, []).append(rule)
        self.base_dir = base_dir
        self._cache: dict[tuple[str, str], tuple[str, str] | None] = {}

    def asset(self, namespace: str, name: str) -> tuple[str, str] | None:
        """The asset a dataset names, or None when no source holds it."""
        key = (namespace, name)
        if key not in self._cache:
            self._cache[key] = self._find(namespace, name)
        return self._cache[key]

    def _find(self, namespace: str, name: str) -> tuple[str, str] | None:
        normal = _normal_namespace(namespace)
        candidates = self.rules.get(normal, [])
        if not candidates and normal.startswith("file"):   # `file://host` names the same files
            candidates = [r for ns, rules in self.rules.items() if ns.startswith("file") for r in rules]
        for rule in candidates:
            path = self._path(rule, name)
            if path is not None:
                return rule.source_id, path
        return None

    def _path(self, rule: _Rule, name: str) -> str | None:
        if rule.system == "postgres":
            parts = name.split(".")
            if len(parts) == 3:
                if rule.database is not None and parts[0] != rule.database:
                    return None
                return f"{parts[1]}.{parts[2]}"
            return name if len(parts) == 2 else None
        if rule.system == "mysql":
            return name if name.count(".") >= 1 else None
        if rule.system == "bigquery":
            project, _, rest = name.partition(".")
            if rest.count(".") != 1 or (rule.database is not None and project != rule.database):
                return None
            return rest
        if rule.system == "s3":
            key = name.lstrip("/")
            for prefix in rule.prefixes:
                if key.startswith(prefix) or key == prefix.rstrip("/"):
                    return prefix
            first = key.split("/", 1)[0]
            return f"{first}/" if "/" in key else first
        if rule.system == "file":
            root = rule.root or ""
            if self.base_dir and not posixpath.isabs(root):
                root = posixpath.normpath(posixpath.join(self.base_dir, root))
            path = posixpath.normpath(name)
            if not path.startswith(root.rstrip("/") + "/"):
                return None
            return path[len(root.rstrip("/")) + 1:].split("/", 1)[0]
        return name
