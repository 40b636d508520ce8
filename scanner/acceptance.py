"""Accepted findings: an `accept:` entry hides a finding until it expires."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from scanner.inventory import AcceptConfig
from scanner.store import StoredFinding


def acceptance_for(finding: StoredFinding, accepts: Iterable[AcceptConfig],
                   today: date) -> AcceptConfig | None:
    """The unexpired `accept:` entry that covers a finding, or None."""
    for entry in accepts:
        if entry.expires is not None and entry.expires < today:
            continue
        if entry.fingerprint:
            if entry.fingerprint == finding.fingerprint:
                return entry
            continue
        if entry.kind != finding.kind:
            continue
        subject = {"source": entry.source, "asset": entry.asset, "workflow": entry.workflow,
                   "principal": entry.principal}
        if all(value is None or getattr(finding, key) == value for key, value in subject.items()):
            return entry
    return None
