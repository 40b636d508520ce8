"""What `validate` checks beyond the schema: URL schemes that fit the connector, and warnings.

Warnings are records (file, line, field, message), printed by `validate` and turned into
errors by `validate --strict`; any check can add its own kind of record to the list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# Connector -> URL schemes it speaks (SQLAlchemy `dialect+driver` accepted by its dialect).
URL_SCHEMES = {
    "postgres": ("postgres", "postgresql"),
    "mysql": ("mysql", "mariadb"),
}
# Schemes whose connector is certain, for the hint in the message.
SCHEME_CONNECTOR = {"postgres": "postgres", "postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql",
                    "sqlite": "sqlite", "s3": "s3", "bigquery": "bigquery"}


def url_mismatch(connector: str, url: str) -> str | None:
    """Why `url` cannot be what a `connector` source talks to (a postgres:// URL on a mysql
    source), or None. URLs still holding an unset ${VAR} are not judged."""
    allowed = URL_SCHEMES.get(connector)
    if allowed is None or "://" not in url or "${" in url:
        return None
    scheme = url.split("://", 1)[0].lower()
    dialect = scheme.split("+", 1)[0]
    if dialect in allowed:
        return None
    fits = SCHEME_CONNECTOR.get(dialect)
    hint = f" (use connector: {fits})" if fits and fits != connector else ""
    return (f"a {connector} source needs a {' or '.join(s + '://' for s in allowed)} URL, "
            f"not {scheme}://{hint}")


@dataclass(frozen=True)
class ValidationWarning:
    """Something `validate` reports without refusing the file: where, and what to fix."""

    message: str
    file: str | None = None
    line: int | None = None
    field: str | None = None
    check: str = "inventory"

    def one_line(self) -> str:
        """`file:line: field: message`, like a ConfigError."""
        where = ":".join(str(p) for p in (self.file, self.line) if p is not None)
        return ": ".join(p for p in (where, self.field, self.message) if p)

    def to_json(self) -> dict[str, Any]:
        """The JSON shape in `validate --json` (`warnings`)."""
        return {"check": self.check, "file": self.file, "line": self.line, "field": self.field,
                "message": self.message}


def _owner_warnings(inventory: Any) -> Iterable[ValidationWarning]:
    import difflib

    known = set(inventory.owners)

    def unknown(owner: str | None, file: str | None, line: int | None, field: str) -> ValidationWarning | None:
        if not owner or owner in known:
            return None
        close = difflib.get_close_matches(owner, sorted(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else (" (declare it under owners:)" if not known else
                                                              f" (known: {', '.join(sorted(known))})")
        return ValidationWarning(f"names owner {owner!r}, which is not in owners{hint}", file, line, field,
                                 "unknown_owner")

    for source in inventory.sources.values():
        found = [unknown(source.owner, source.file, source.line, f"sources[{source.id}].owner")]
        found += [unknown(a.owner, source.file, a.line or source.line, f"sources[{source.id}].assets[{a.path}].owner")
                  for a in source.assets]
        yield from (w for w in found if w is not None)
    for workflow in inventory.workflows.values():
        rollback = (workflow.rollout or {}).get("rollback_owner")
        for owner, field in ((workflow.owner, "owner"),
                             (rollback if isinstance(rollback, str) else None, "rollout.rollback_owner")):
            warning = unknown(owner, workflow.file, workflow.line, f"workflows[{workflow.id}].{field}")
            if warning is not None:
                yield warning


def _runs_as_warnings(inventory: Any) -> Iterable[ValidationWarning]:
    for workflow in inventory.workflows.values():
        read_sources = {read.source for read in workflow.reads}
        for source_id, principal in workflow.runs_as.items():
            if source_id not in read_sources:
                yield ValidationWarning(
                    f"runs as {principal!r} in {source_id}, but reads nothing from {source_id} "
                    f"(add a read of {source_id}, or remove this runs_as entry)",
                    workflow.file, workflow.line, f"workflows[{workflow.id}].runs_as.{source_id}", "unused_runs_as")


# Each check: inventory -> warnings. Other checks (e.g. on `accept:` entries) join this list.
WARNING_CHECKS: list[Callable[[Any], Iterable[ValidationWarning]]] = [_owner_warnings, _runs_as_warnings]


def inventory_warnings(inventory: Any) -> list[ValidationWarning]:
    """Every warning of every check, in file and line order."""
    warnings = [w for check in WARNING_CHECKS for w in check(inventory)]
    order = {file: i for i, file in enumerate(inventory.files)}
    return sorted(warnings, key=lambda w: (order.get(w.file or "", -1), w.line or 0, w.field or ""))
