"""`schema_drift`: a column a workflow depends on was dropped or changed type."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from scanner.inventory import ReadDeclaration, WorkflowConfig
from scanner.model import Asset, Finding
from scanner.rules.base import RuleContext, fingerprint, most_critical, severity_of, workflow_ids


def _normal(type_name: str) -> str:
    """Types compare without case or spacing: `VARCHAR(10)` is `varchar( 10 )`."""
    return "".join(type_name.lower().split())


def schema_drift(ctx: RuleContext) -> Iterator[Finding]:
    """Fires when, between the previous and the newest snapshot of a source, a column of an
    asset a workflow reads was dropped or changed type (sub-kinds `dropped`, `type_changed`).
    Only the columns a workflow declares in `columns` count for it; a read without `columns`
    depends on every column. A declared column that is absent (sub-kind `missing`) keeps the
    finding open on later scans, until the column is back or the declaration changes.
    A drop or type change stays open on the following scans too (the previous snapshot then
    already shows it): until the column or its type is restored, no read depends on it any
    more (its `columns:` leave it out), or an `accept:` entry covers it.

    Fix: restore the column (or its type) at the source, or update the workflow (its prompt,
    retrieval query or `columns`) to the new schema and scan again.
    """
    # (source, path, column) -> the change and the workflows that depend on it
    changes: dict[tuple[str, str, str], dict[str, Any]] = {}
    dependants: dict[tuple[str, str, str], list[WorkflowConfig]] = {}
    previous_assets: dict[str, dict[str, Asset]] = {}
    for (source_id, path), pairs in sorted(ctx.read_index.items()):
        current = ctx.asset(source_id, path)
        if current is None:
            continue  # missing_asset reports a vanished asset
        if source_id not in previous_assets:
            earlier = ctx.previous.get(source_id)
            previous_assets[source_id] = {a.path: a for a in earlier.assets} if earlier else {}
        before = previous_assets[source_id].get(path)
        lasting, reverted = _still_drifted(ctx, source_id, path, current)
        for workflow, read in pairs:
            found = {column: change for column, change in _column_changes(read, before, current).items()
                     if column not in reverted}  # back to what it was: undone, not a new change
            for column, change in lasting.items():
                # seen at an earlier scan and not undone: open until reverted, no longer
                # depended on (`columns:`), or accepted
                if not read.columns or column in read.columns:
                    found[column] = change
            for column, change in found.items():
                key = (source_id, path, column)
                changes.setdefault(key, change)
                dependants.setdefault(key, [])
                if workflow not in dependants[key]:
                    dependants[key].append(workflow)
    for (source_id, path, column), change in sorted(changes.items()):
        workflows = ctx.with_downstream(dependants[(source_id, path, column)])
        top = most_critical(workflows)
        direct = sorted(w.id for w in dependants[(source_id, path, column)])
        asset_id = f"{source_id}:{path}"
        if change["change"] == "type_changed":
            what = f"changed type from {change['old_type']} to {change['new_type']}"
        elif change["change"] == "dropped":
            what = f"was dropped (it was {change['old_type']})"
        else:
            what = "is missing (declared in columns)"
        yield Finding(
            kind="schema_drift", subkind=change["change"],
            severity=severity_of("schema_drift", top.stage if top else None),
            message=f"column {column} of {asset_id} {what}; {', '.join(direct)} "
                    f"{'depends' if len(direct) == 1 else 'depend'} on it",
            fingerprint=fingerprint("schema_drift", source_id, path, column),
            source=source_id, asset=asset_id, workflow=top.id if top else None,
            remediation=(f"Restore {column} (or its type) at the source, or update "
                         f"{', '.join(direct)} and its columns: to the new schema."),
            evidence={"column": column, **change, "dependants": direct, "workflows": workflow_ids(workflows),
                      "previous_probed_at": ctx.previous[source_id].probed_at.isoformat()
                      if source_id in ctx.previous else None,
                      "probed_at": ctx.snapshots[source_id].probed_at.isoformat()},
        )
    yield from _environment_drift(ctx)


def _column_changes(read: ReadDeclaration, before: Asset | None, after: Asset) -> dict[str, dict[str, Any]]:
    old = {c.name: c.type for c in before.columns} if before else {}
    new = {c.name: c.type for c in after.columns}
    watched = list(read.columns) if read.columns else list(old)
    found: dict[str, dict[str, Any]] = {}
    for column in watched:
        if column in new:
            if column in old and _normal(old[column]) != _normal(new[column]):
                found[column] = {"change": "type_changed", "old_type": old[column], "new_type": new[column]}
        elif column in old:
            found[column] = {"change": "dropped", "old_type": old[column], "new_type": None}
        elif read.columns:
            # declared but absent, and absent before too (or no earlier scan): the drop was
            # seen earlier or the declaration is wrong; either way the workflow is broken
            found[column] = {"change": "missing", "old_type": None, "new_type": None}
    return found


def _environment_drift(ctx: RuleContext) -> Iterator[Finding]:
    """Sub-kind `environment`: a column a workflow depends on exists in one of two counterpart
    sources (`same_as`) and not the other, or has another type there."""
    from scanner.rules.parity import counterparts

    for (source_id, path), pairs in sorted(ctx.read_index.items()):
        here = ctx.asset(source_id, path)
        if here is None:
            continue
        for other_id in counterparts(ctx.inventory, source_id):
            there = ctx.asset(other_id, path)
            if there is None:
                continue
            mine = {c.name: c.type for c in here.columns}
            theirs = {c.name: c.type for c in there.columns}
            differences: dict[str, tuple[str | None, str | None]] = {}
            dependants: dict[str, list[WorkflowConfig]] = {}
            for workflow, read in pairs:
                for column in (read.columns or sorted(set(mine) | set(theirs))):
                    a, b = mine.get(column), theirs.get(column)
                    if a is None and b is None:
                        continue
                    if a is None or b is None or _normal(a) != _normal(b):
                        differences[column] = (a, b)
                        dependants.setdefault(column, [])
                        if workflow not in dependants[column]:
                            dependants[column].append(workflow)
            for column, (a, b) in sorted(differences.items()):
                workflows = ctx.with_downstream(dependants[column])
                top = most_critical(workflows)
                direct = sorted(w.id for w in dependants[column])
                if a is None or b is None:
                    what = (f"exists in {source_id if a else other_id} ({a or b}) but not in "
                            f"{other_id if a else source_id}")
                else:
                    what = f"is {a} in {source_id} but {b} in {other_id}"
                pair = sorted((source_id, other_id))
                yield Finding(
                    kind="schema_drift", subkind="environment",
                    severity=severity_of("schema_drift", top.stage if top else None),
                    message=f"column {column} of {path} {what}; {', '.join(direct)} depend on it",
                    fingerprint=fingerprint("schema_drift", "environment", pair[0], pair[1], path, column),
                    source=source_id, asset=f"{source_id}:{path}", workflow=top.id if top else None,
                    remediation=(f"Make {path} the same in {source_id} and {other_id} (migrate the "
                                 "lagging environment) before relying on what was tested in the other."),
                    evidence={"column": column, "reason": "environment", "counterpart": other_id,
                              "types": {source_id: a, other_id: b}, "dependants": direct,
                              "workflows": workflow_ids(workflows)},
                )


def _still_drifted(ctx: RuleContext, source_id: str, path: str,
                   current: Asset) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """(column -> change, reverted columns) for the open drift findings of an asset: those
    the newest snapshot has not undone (the column still absent, or still not of its old
    type), and those it has (the column back with its old type)."""
    now = {c.name: c.type for c in current.columns}
    asset_id = f"{source_id}:{path}"
    lasting: dict[str, dict[str, Any]] = {}
    reverted: set[str] = set()
    for stored in ctx.stored_findings("schema_drift"):
        if stored.asset != asset_id or stored.source != source_id:
            continue
        evidence = stored.evidence
        column, change, old_type = evidence.get("column"), evidence.get("change"), evidence.get("old_type")
        if not isinstance(column, str) or change not in ("dropped", "type_changed") or old_type is None:
            continue
        if stored.status != "open":
            if column in now and _normal(now[column]) == _normal(str(old_type)):
                reverted.add(column)  # back to the type it had before that recorded change
            continue
        if column not in now:
            lasting[column] = {"change": "dropped", "old_type": old_type, "new_type": None}
        elif _normal(now[column]) != _normal(str(old_type)):
            lasting[column] = {"change": "type_changed", "old_type": old_type, "new_type": now[column]}
        else:
            reverted.add(column)
    return lasting, reverted
