"""`ctxscan import dbt`: a dbt manifest.json as an imported inventory file.

dbt sources, models, seeds and snapshots become asset overrides on one ctxscan source (the
one that holds the warehouse): owner from `meta.owner`, else the owner of the model's group,
else the owner of an exposure that depends on it directly (the first by id);
freshness `column` from `loaded_at_field`, `max_age`/`warn_after` from `error_after`/
`warn_after`; each model is `derived_from` the nodes it depends on (through ephemeral models,
which have no table of their own). Exposures of a known type become workflows that read what
they depend on, owned by the exposure's owner, their stage from `maturity`.

The manifest is read as plain JSON, not with dbt's own classes: fields a newer dbt adds are
ignored rather than fatal, and importing needs no dbt installed. Output is sorted and carries
no timestamp, so re-importing an unchanged project writes the same bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from scanner.errors import UsageError

MIN_SCHEMA_VERSION = 12
ASSET_TYPES = ("source", "model", "seed", "snapshot")
EXPOSURE_TYPES = ("ml", "application", "analysis", "notebook", "dashboard")
MATURITY_STAGES = {"high": "production", "medium": "pilot", "low": "poc"}
_PERIODS = {"minute": "m", "hour": "h", "day": "d"}
_SCHEMA_VERSION = re.compile(r"/manifest/v(\d+)\.json$")
_ID_CHARS = re.compile(r"[^A-Za-z0-9_.\-]+")


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest's JSON, or a UsageError in one line when the file is not a dbt manifest."""
    try:
        with open(path, "rb") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file (dbt writes it to target/manifest.json: run dbt parse)") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not valid JSON"
        raise UsageError(f"{path}: not a dbt manifest ({reason})") from None
    metadata = data.get("metadata") if isinstance(data, dict) else None
    version = metadata.get("dbt_schema_version") if isinstance(metadata, dict) else None
    match = _SCHEMA_VERSION.search(version) if isinstance(version, str) else None
    if match is None or not isinstance(data.get("nodes"), dict):
        raise UsageError(f"{path}: not a dbt manifest (no metadata.dbt_schema_version of a manifest, "
                         "or no nodes; dbt writes it to target/manifest.json)")
    if int(match.group(1)) < MIN_SCHEMA_VERSION:
        raise UsageError(f"{path}: dbt manifest schema v{match.group(1)} is older than v{MIN_SCHEMA_VERSION} "
                         "(dbt 1.8); parse the project with a newer dbt")
    return data


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _duration(spec: Any) -> str | None:
    """`{count: 12, period: hour}` -> `12h`; None when absent or incomplete."""
    spec = _dict(spec)
    count, period = spec.get("count"), _PERIODS.get(str(spec.get("period")))
    if isinstance(count, bool) or not isinstance(count, int) or count <= 0 or period is None:
        return None
    return f"{count}{period}"


def owner_id(owner: Any) -> tuple[str, str | None] | None:
    """(id, contact) of a dbt owner (`{name, email}`, or a plain string), or None."""
    if isinstance(owner, str):
        owner = {"name": owner}
    owner = _dict(owner)
    name, email = _text(owner.get("name")), _text(owner.get("email"))
    text = name or email
    if text is None:
        return None
    slug = _ID_CHARS.sub("-", text.lower()).strip("-._") if name else text
    if not slug or not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", slug):
        slug = _ID_CHARS.sub("-", text.lower()).strip("-._") or "owner"
    return slug, email


class _Importer:
    def __init__(self, manifest: Mapping[str, Any], source_id: str) -> None:
        self.manifest = manifest
        self.source_id = source_id
        self.nodes: dict[str, dict[str, Any]] = {}
        for section in ("nodes", "sources"):
            for unique_id, node in _dict(manifest.get(section)).items():
                if isinstance(node, dict):
                    self.nodes[str(unique_id)] = node
        self.groups = {str(g.get("name")): g for g in _dict(manifest.get("groups")).values() if isinstance(g, dict)}
        self.owners: dict[str, str | None] = {}
        self._resolved: dict[str, list[str]] = {}

    def config(self, node: Mapping[str, Any]) -> dict[str, Any]:
        return _dict(node.get("config"))

    def enabled(self, node: Mapping[str, Any]) -> bool:
        return self.config(node).get("enabled", True) is not False

    def path(self, node: Mapping[str, Any]) -> str | None:
        """The ctxscan asset path of a node with a table: `schema.table`."""
        kind = node.get("resource_type")
        if kind not in ASSET_TYPES or not self.enabled(node):
            return None
        if kind == "model" and self.config(node).get("materialized") == "ephemeral":
            return None
        schema = _text(node.get("schema"))
        name = _text(node.get("identifier")) if kind == "source" else None
        name = name or _text(node.get("alias")) or _text(node.get("name"))
        if schema is None or name is None:
            return None
        return f"{schema}.{name}"

    def upstream(self, unique_id: str, node: Mapping[str, Any] | None = None) -> list[str]:
        """The asset paths a node (or an exposure) depends on, looking through ephemeral models
        (iteratively: a long chain of them in a generated project must not overflow the stack)."""
        if unique_id in self._resolved:
            return self._resolved[unique_id]
        node = node if node is not None else self.nodes.get(unique_id, {})
        result: set[str] = set()
        seen = {unique_id}
        todo = list(self.parents(node))
        while todo:
            parent = todo.pop()
            if parent in seen:
                continue
            seen.add(parent)
            parent_node = self.nodes.get(parent)
            if parent_node is None:
                continue
            parent_path = self.path(parent_node)
            if parent_path is not None:
                result.add(parent_path)
            elif parent_node.get("resource_type") in ("model", "metric", "semantic_model", "snapshot"):
                todo.extend(self.parents(parent_node))
        self._resolved[unique_id] = sorted(result)
        return self._resolved[unique_id]

    @staticmethod
    def parents(node: Mapping[str, Any]) -> list[str]:
        found = _dict(node.get("depends_on")).get("nodes")
        return [p for p in found if isinstance(p, str)] if isinstance(found, list) else []

    def owner(self, *candidates: Any) -> str | None:
        for candidate in candidates:
            found = owner_id(candidate)
            if found is not None:
                self.owners.setdefault(found[0], found[1])
                return found[0]
        return None

    def node_owner(self, node: Mapping[str, Any]) -> str | None:
        config = self.config(node)
        meta_owner = _dict(node.get("meta")).get("owner") or _dict(config.get("meta")).get("owner")
        group = _text(node.get("group")) or _text(config.get("group"))
        group_owner = _dict(self.groups.get(group or "")).get("owner")
        return self.owner(meta_owner, group_owner)

    @cached_property
    def exposure_owners(self) -> dict[str, str]:
        """node -> the owner of the first exposure (by id) that depends on it directly: the last
        resort for a node whose own meta and group name nobody."""
        owners: dict[str, str] = {}
        for _, exposure in sorted(_dict(self.manifest.get("exposures")).items()):
            if not isinstance(exposure, dict) or exposure.get("type") not in EXPOSURE_TYPES:
                continue
            owner = self.owner(_dict(exposure.get("meta")).get("owner"), exposure.get("owner"))
            if owner:
                for parent in self.parents(exposure):
                    owners.setdefault(parent, owner)
        return owners

    def assets(self) -> list[dict[str, Any]]:
        by_path: dict[str, dict[str, Any]] = {}
        for unique_id in sorted(self.nodes):
            node = self.nodes[unique_id]
            path = self.path(node)
            if path is None:
                continue
            entry: dict[str, Any] = {"path": path}
            owner = self.node_owner(node) or self.exposure_owners.get(unique_id)
            if owner:
                entry["owner"] = owner
            if node.get("resource_type") == "source":
                freshness = _dict(node.get("freshness")) or _dict(self.config(node).get("freshness"))
                max_age, warn_after = _duration(freshness.get("error_after")), _duration(freshness.get("warn_after"))
                column = _text(node.get("loaded_at_field")) or _text(self.config(node).get("loaded_at_field"))
                if max_age:
                    entry["max_age"] = max_age
                if warn_after:
                    entry["warn_after"] = warn_after
                if column:
                    entry["column"] = column
            else:
                derived = [f"{self.source_id}:{p}" for p in self.upstream(unique_id) if p != path]
                if derived:
                    entry["derived_from"] = derived
            raw_tags = node.get("tags")
            tags = sorted({t for t in raw_tags if isinstance(t, str) and t}) if isinstance(raw_tags, list) else []
            if tags:
                entry["tags"] = tags
            if path in by_path:   # two nodes on one table (a source and a model): merge
                for key, value in entry.items():
                    if key == "derived_from":
                        merged = sorted(set(by_path[path].get(key, [])) | set(value))
                        by_path[path][key] = merged
                    else:
                        by_path[path].setdefault(key, value)
            else:
                by_path[path] = entry
        return [by_path[p] for p in sorted(by_path)]

    def workflows(self) -> list[dict[str, Any]]:
        result = []
        used: set[str] = set()
        for unique_id, exposure in sorted(_dict(self.manifest.get("exposures")).items()):
            if not isinstance(exposure, dict) or exposure.get("type") not in EXPOSURE_TYPES:
                continue
            if not self.enabled(exposure):
                continue
            name = _text(exposure.get("name"))
            if name is None:
                continue
            workflow_id = _ID_CHARS.sub("-", name).strip("-._") or "exposure"
            base, n = workflow_id, 2
            while workflow_id in used:   # two names that slug alike stay two workflows
                workflow_id, n = f"{base}-{n}", n + 1
            used.add(workflow_id)
            entry: dict[str, Any] = {"id": workflow_id}
            owner = self.owner(_dict(exposure.get("meta")).get("owner"), exposure.get("owner"))
            if owner:
                entry["owner"] = owner
            stage = MATURITY_STAGES.get(str(exposure.get("maturity")))
            if stage:
                entry["stage"] = stage
            reads = [f"{self.source_id}:{p}" for p in self.upstream(f"exposure:{unique_id}", node=exposure)]
            if reads:
                entry["reads"] = reads
            description = _text(exposure.get("label")) or _text(exposure.get("description"))
            if description:
                entry["description"] = f"dbt {exposure.get('type')} exposure: {description.splitlines()[0][:200]}"
            result.append(entry)
        return sorted(result, key=lambda w: w["id"])


def import_manifest(manifest: Mapping[str, Any], source_id: str, manifest_name: str = "manifest.json") -> dict[str, Any]:
    """The imported inventory (a plain mapping, sorted) for one ctxscan source."""
    importer = _Importer(manifest, source_id)
    assets = importer.assets()
    workflows = importer.workflows()
    metadata = _dict(manifest.get("metadata"))
    meta: dict[str, Any] = {"tool": "dbt", "manifest": manifest_name, "source": source_id}
    if _text(metadata.get("project_name")):
        meta["project"] = metadata["project_name"]
    if _text(metadata.get("dbt_version")):
        meta["dbt_version"] = metadata["dbt_version"]
    result: dict[str, Any] = {"version": 1, "imported": meta}
    owners = [{"id": o, **({"contact": c} if c else {})} for o, c in sorted(importer.owners.items())]
    if owners:
        result["owners"] = owners
    result["sources"] = [{"id": source_id, "assets": assets}]
    if workflows:
        result["workflows"] = workflows
    return result


HEADER = """\
# Written by `ctxscan import dbt` from {manifest}; re-run it to refresh, do not edit.
# Merged with the other inventory files like any other (pass both with -c, or a folder).
# An entry of a hand-written file (same asset path, same workflow id) overrides these field
# by field.
"""


def render(imported: Mapping[str, Any]) -> str:
    """The imported inventory as YAML: one line per asset and read, keys in a fixed order."""
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    lines = [HEADER.format(manifest=imported["imported"]["manifest"]).rstrip("\n")]

    def flow(value: Any) -> str:
        text = str(yaml.dump(value, Dumper=dumper, default_flow_style=True, sort_keys=False,
                             width=1 << 30, allow_unicode=True))
        return text.removesuffix("\n...\n").strip()  # a bare scalar ends its document

    lines.append("version: 1")
    lines.append(f"imported: {flow(imported['imported'])}")
    if imported.get("owners"):
        lines.append("owners:")
        lines.extend(f"  - {flow(o)}" for o in imported["owners"])
    lines.append("sources:")
    for source in imported["sources"]:
        lines.append(f"  - id: {flow(source['id'])}")
        lines.append("    assets:")
        lines.extend(f"      - {flow(a)}" for a in source["assets"])
        if not source["assets"]:
            lines[-1] = "    assets: []"
    if imported.get("workflows"):
        lines.append("workflows:")
        for workflow in imported["workflows"]:
            first = True
            for key, value in workflow.items():
                prefix = "  - " if first else "    "
                first = False
                if key == "reads":
                    lines.append(f"{prefix}reads:")
                    lines.extend(f"      - {flow(r)}" for r in value)
                else:
                    lines.append(f"{prefix}{key}: {flow(value)}")
    return "\n".join(lines) + "\n"
