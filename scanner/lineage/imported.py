"""Files written by `ctxscan import`: merged under the hand-written inventory, field by field.

An imported file carries a top-level `imported:` block (what wrote it, from what). Its
sources only add asset overrides to sources the hand-written files declare; its owners and
workflows add to theirs. Where both say something about the same asset path or workflow id,
each field the hand-written entry sets wins, and the imported entry fills the rest: a team
re-imports its dbt manifest without losing the owner or the stage it wrote by hand.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, MutableMapping
from typing import Any

from scanner.plugins import AssetOverride, SourceConfig

IMPORTED_KEYS = ("version", "imported", "owners", "sources", "workflows")
IMPORTED_META_KEYS = ("tool", "manifest", "source", "project", "dbt_version", "description")
IMPORTED_SOURCE_KEYS = ("id", "assets")
_OVERRIDE_FIELDS = ("owner", "tags", "max_age", "warn_after", "derived_from", "column", "max_lag",
                    "expect_count_ratio")


def merge_imported(check: Any, data: Mapping[str, Any], sources: MutableMapping[str, SourceConfig],
                   workflows: MutableMapping[str, Any], owners: MutableMapping[str, Any],
                   workflow_keys: Mapping[str, set[str]]) -> list[tuple[Any, tuple[Any, ...]]]:
    """Merge one imported file into what the hand-written files declared (in place).

    Returns (workflow, path) for each workflow whose reads and feeds came from this file, for
    the caller's cross-reference checks. `check` is the inventory's per-file checker.
    """
    from scanner.inventory import Owner, _asset_overrides, _workflow

    check.keys(data, IMPORTED_KEYS, ())
    meta = check.mapping(data.get("imported"), ("imported",))
    if meta is not None:
        check.keys(meta, IMPORTED_META_KEYS, ("imported",))
    for i, raw in enumerate(check.sequence(data.get("owners"), ("owners",))):
        entry = check.mapping({"id": raw} if isinstance(raw, str) else raw, ("owners", i))
        if entry is None:
            continue
        owner_id = check.identifier(entry.get("id"), ("owners", i, "id"))
        if owner_id is not None and owner_id not in owners:   # a hand-written owner wins whole
            owners[owner_id] = Owner(owner_id, check.string(entry.get("name"), ("owners", i, "name")),
                                     check.string(entry.get("contact"), ("owners", i, "contact")),
                                     check.doc.file, check.doc.line(("owners", i)))
    for i, raw in enumerate(check.sequence(data.get("sources"), ("sources",))):
        path = ("sources", i)
        entry = check.mapping(raw, path)
        if entry is None:
            continue
        check.keys(entry, IMPORTED_SOURCE_KEYS, path)
        source_id = check.identifier(entry.get("id"), path + ("id",))
        if source_id is None:
            continue
        source = sources.get(source_id)
        if source is None:
            close = difflib.get_close_matches(source_id, list(sources), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            check.error(path + ("id",), f"imported assets belong to source {source_id!r}, which no inventory "
                        f"file declares ({hint}declare it with its connector and url, or re-import with "
                        "--source ID)")
            continue
        sources[source_id] = merge_overrides(source, _asset_overrides(check, entry, path))
    merged: list[tuple[Any, tuple[Any, ...]]] = []
    for i, raw in enumerate(check.sequence(data.get("workflows"), ("workflows",))):
        path = ("workflows", i)
        workflow = _workflow(check, raw, path)
        if workflow is None:
            continue
        hand = workflows.get(workflow.id)
        if hand is None:
            workflows[workflow.id] = workflow
            merged.append((workflow, path))
            continue
        written = workflow_keys.get(workflow.id, set())
        fields = {f.name for f in dataclasses.fields(hand)} & written
        workflows[workflow.id] = dataclasses.replace(
            workflow, file=hand.file, line=hand.line, **{name: getattr(hand, name) for name in fields})
        if "reads" not in written or "feeds" not in written:
            kept = workflows[workflow.id]
            merged.append((dataclasses.replace(kept, reads=() if "reads" in written else kept.reads,
                                               feeds=() if "feeds" in written else kept.feeds), path))
    return merged


def merge_overrides(source: SourceConfig, imported: list[AssetOverride]) -> SourceConfig:
    """The source with imported asset overrides added: for a path it already overrides, each
    field it sets wins and the imported entry fills the others."""
    own = {o.path: i for i, o in enumerate(source.assets)}
    assets = list(source.assets)
    for entry in imported:
        index = own.get(entry.path)
        if index is None:
            own[entry.path] = len(assets)
            assets.append(entry)
            continue
        hand = assets[index]
        given = {name: getattr(hand, name) for name in _OVERRIDE_FIELDS if getattr(hand, name) not in (None, ())}
        assets[index] = dataclasses.replace(entry, line=hand.line, **given)
    return dataclasses.replace(source, assets=tuple(assets))
