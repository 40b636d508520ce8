"""Where a finding's subject is declared in the inventory: file, line and column of its entry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class EntryLocation:
    """An inventory entry: its file, 1-based line and 1-based column (where its first key starts)."""

    file: str
    line: int | None
    column: int | None = None
    entry: str = ""            # what is declared there: `source crm`, `workflow bot`, `asset crm:x`


@lru_cache(maxsize=16)
def _lines(file: str) -> tuple[str, ...]:
    try:
        return tuple(Path(file).read_text(encoding="utf-8").splitlines())
    except (OSError, UnicodeDecodeError):
        return ()


def _column(file: str, line: int | None) -> int | None:
    """The column of the entry's first key: past the indentation and a `- ` or `{`."""
    lines = _lines(file)
    if line is None or not 0 < line <= len(lines):
        return None
    text = lines[line - 1]
    index = 0
    while index < len(text) and text[index] in " \t-{":
        index += 1
    return index + 1 if index < len(text) else 1


def _at(file: str | None, line: int | None, entry: str) -> EntryLocation | None:
    if not file:
        return None
    return EntryLocation(file, line, _column(file, line), entry)


def entry_locations(inventory: Any) -> dict[str, EntryLocation]:
    """Keys `source:ID`, `asset:SOURCE:PATH`, `workflow:ID`, `read:WORKFLOW:ASSET` -> their entry."""
    found: dict[str, EntryLocation] = {}
    for source in inventory.sources.values():
        at = _at(source.file, source.line, f"source {source.id}")
        if at is not None:
            found[f"source:{source.id}"] = at
        for override in source.assets:
            at = _at(source.file, override.line, f"asset {source.id}:{override.path}")
            if at is not None:
                found[f"asset:{source.id}:{override.path}"] = at
    for workflow in inventory.workflows.values():
        at = _at(workflow.file, workflow.line, f"workflow {workflow.id}")
        if at is not None:
            found[f"workflow:{workflow.id}"] = at
        for read in workflow.reads:
            at = _at(workflow.file, read.line, f"workflow {workflow.id} reads {read.asset}")
            if at is not None:
                found[f"read:{workflow.id}:{read.asset}"] = at
    return found


# Kinds about what a workflow declares: the workflow's entry (its read, when there is one) is
# where a reviewer fixes them.
_WORKFLOW_FIRST = frozenset({"missing_asset", "schema_drift", "undeclared_dependency", "unobserved_read",
                             "environment_mismatch"})


def locate(finding: Mapping[str, Any], locations: Mapping[str, EntryLocation]) -> EntryLocation | None:
    """The inventory entry a finding points at, most specific first; None when none is declared."""
    workflow, asset, source = finding.get("workflow"), finding.get("asset"), finding.get("source")
    subject = (finding.get("evidence") or {}).get("subject")
    keys: list[str] = []
    if workflow and (finding["kind"] in _WORKFLOW_FIRST or subject == "workflow" or not (asset or source)):
        keys += [f"read:{workflow}:{asset}", f"workflow:{workflow}"]
    if asset:
        keys.append(f"asset:{asset}")
    if source:
        keys.append(f"source:{source}")
    if workflow:
        keys.append(f"workflow:{workflow}")
    for key in keys:
        if key in locations:
            return locations[key]
    return None
