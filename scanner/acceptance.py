"""Accepted findings: an `accept:` entry hides a finding until it expires.

An entry names a finding by its `fingerprint`, or by its `kind` plus any of `source`,
`asset`, `workflow`, `principal` (each given field must match; a kind alone accepts every
finding of that kind). It needs a `reason`, and an `expires` date (required): from the day
after it, the finding counts again (in `findings`, `scan --fail-on` and `readiness`).
An accepted finding is still tracked: it stays open in the store and `findings --status
accepted` lists it with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Protocol, TypeVar

from scanner.inventory import AcceptConfig


class FindingSubject(Protocol):
    """What acceptance looks at: a stored or a freshly evaluated finding."""

    @property
    def fingerprint(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def source(self) -> str | None: ...
    @property
    def asset(self) -> str | None: ...
    @property
    def workflow(self) -> str | None: ...
    @property
    def principal(self) -> str | None: ...


F = TypeVar("F", bound=FindingSubject)


def utc_today() -> date:
    """Today in UTC: expiry dates mean the same day for the CLI, the daemon and readiness."""
    from datetime import UTC, datetime

    return datetime.now(UTC).date()


def is_expired(entry: AcceptConfig, today: date) -> bool:
    """Whether an entry has expired (it is valid through its `expires` day)."""
    return entry.expires is not None and entry.expires < today


def matches(entry: AcceptConfig, finding: FindingSubject) -> bool:
    """Whether an entry names a finding, ignoring its expiry."""
    if entry.fingerprint:
        return entry.fingerprint == finding.fingerprint
    if entry.kind != finding.kind:
        return False
    asset = entry.asset
    if asset is not None and ":" not in asset and entry.source:
        asset = f"{entry.source}:{asset}"  # `asset: public.x` with `source: crm`
    subject = {"source": entry.source, "asset": asset, "workflow": entry.workflow,
               "principal": entry.principal}
    return all(value is None or getattr(finding, key) == value for key, value in subject.items())


def acceptance_for(finding: FindingSubject, accepts: Iterable[AcceptConfig],
                   today: date) -> AcceptConfig | None:
    """The unexpired `accept:` entry that covers a finding, or None."""
    for entry in accepts:
        if not is_expired(entry, today) and matches(entry, finding):
            return entry
    return None


def split_accepted(findings: Sequence[F], accepts: Sequence[AcceptConfig],
                   today: date) -> tuple[list[F], list[tuple[F, AcceptConfig]]]:
    """(findings that count, (finding, entry) pairs that an unexpired entry hides)."""
    counting: list[F] = []
    hidden: list[tuple[F, AcceptConfig]] = []
    for finding in findings:
        entry = acceptance_for(finding, accepts, today)
        if entry is None:
            counting.append(finding)
        else:
            hidden.append((finding, entry))
    return counting, hidden


def expired_entries(accepts: Iterable[AcceptConfig], today: date) -> list[AcceptConfig]:
    """Entries whose expiry has passed (worth a reminder: the findings count again)."""
    return [entry for entry in accepts if is_expired(entry, today)]
