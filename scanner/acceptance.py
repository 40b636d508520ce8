"""Accepted findings: an `accept:` entry hides a finding until it expires.

An entry names a finding by its `fingerprint`, or by its `kind` plus at least one of
`source`, `asset`, `workflow`, `principal` (each given field must match; a kind alone is
refused by `validate`: it would hide every finding of that kind). It needs a `reason`, and an
`expires` date (required): from the day after it, the finding counts again (in `findings`,
`scan --fail-on` and `readiness`). An accepted finding is still tracked: it stays open in the
store and `findings --status accepted` lists it with the reason.

An entry with a `workflow` waives the finding for that workflow only: the finding is hidden
from `findings` and `--fail-on` only when entries cover every workflow it concerns (for
`stale`, the workflows whose need it breaches: `evidence.blocks`; else every workflow it
affects: `evidence.workflows`), and the readiness card of each other workflow still counts it.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any, Protocol, TypeVar

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
    @property
    def evidence(self) -> Mapping[str, Any]: ...


F = TypeVar("F", bound=FindingSubject)


def utc_today() -> date:
    """Today in UTC: expiry dates mean the same day for the CLI, the daemon and readiness."""
    from datetime import UTC, datetime

    return datetime.now(UTC).date()


def is_expired(entry: AcceptConfig, today: date) -> bool:
    """Whether an entry has expired (it is valid through its `expires` day)."""
    return entry.expires is not None and entry.expires < today


def _matches_subject(entry: AcceptConfig, finding: FindingSubject) -> bool:
    """Whether an entry names a finding by fingerprint or by kind, source, asset, principal
    (the workflow is judged by the callers: it scopes the waiver)."""
    if entry.fingerprint:
        return entry.fingerprint == finding.fingerprint
    if entry.kind != finding.kind:
        return False
    asset = entry.asset
    if asset is not None and ":" not in asset and entry.source:
        asset = f"{entry.source}:{asset}"  # `asset: public.x` with `source: crm`
    subject = {"source": entry.source, "asset": asset, "principal": entry.principal}
    return all(value is None or getattr(finding, key) == value for key, value in subject.items())


def concerned(finding: FindingSubject) -> list[str]:
    """The workflows a finding counts against: for a breached `stale`, those whose need it
    breaches (`blocks`); else every workflow it affects; else the one it names."""
    evidence = finding.evidence if isinstance(finding.evidence, Mapping) else {}
    if finding.kind == "stale" and evidence.get("blocks"):
        return list(evidence["blocks"])
    listed = list(evidence.get("workflows") or ())
    if listed:
        return listed
    return [finding.workflow] if finding.workflow else []


def _affects(finding: FindingSubject, workflow_id: str) -> bool:
    evidence = finding.evidence if isinstance(finding.evidence, Mapping) else {}
    return finding.workflow == workflow_id or workflow_id in (evidence.get("workflows") or ())


def matches(entry: AcceptConfig, finding: FindingSubject) -> bool:
    """Whether an entry names a finding (for a workflow entry: for that workflow), ignoring
    its expiry."""
    if not _matches_subject(entry, finding):
        return False
    return entry.workflow is None or entry.fingerprint is not None or _affects(finding, entry.workflow)


def acceptance_for_workflow(finding: FindingSubject, workflow_id: str, accepts: Iterable[AcceptConfig],
                            today: date) -> AcceptConfig | None:
    """The unexpired entry that waives a finding on one workflow's readiness card, or None."""
    for entry in accepts:
        if is_expired(entry, today) or not _matches_subject(entry, finding):
            continue
        if entry.workflow is None or entry.fingerprint is not None or \
                (entry.workflow == workflow_id and _affects(finding, workflow_id)):
            return entry
    return None


def acceptance_for(finding: FindingSubject, accepts: Iterable[AcceptConfig],
                   today: date) -> AcceptConfig | None:
    """The unexpired `accept:` entry that hides a finding everywhere, or None.

    An entry without a workflow hides it; workflow entries hide it only together, when they
    cover every workflow it concerns (a waiver for a pilot never hides what production sees).
    """
    scoped: dict[str, AcceptConfig] = {}
    for entry in accepts:
        if is_expired(entry, today) or not _matches_subject(entry, finding):
            continue
        if entry.workflow is None or entry.fingerprint is not None:
            return entry
        scoped.setdefault(entry.workflow, entry)
    if not scoped:
        return None
    needed = concerned(finding)
    if needed and all(w in scoped for w in needed):
        return scoped[needed[0]]
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


# -- validation -------------------------------------------------------------------------------

SUBJECT_FIELDS = ("source", "asset", "workflow", "principal")
# Kinds whose asset may be one no workflow declares (an undeclared read, an unowned asset).
_ANY_ASSET_KINDS = ("over_permissioned",)


def _hint(value: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(value, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def entry_errors(entry: AcceptConfig, kinds: Iterable[str], sources: Iterable[str],
                 workflows: Iterable[str], reads: Iterable[str]) -> list[tuple[str, str]]:
    """(field, message) for each reason an `accept:` entry is refused: no fingerprint and no
    kind with a subject, or a kind, source, workflow or asset the inventory does not know.

    `reads` are the asset ids and globs workflows declare: an accepted asset must be one of
    them (or match a glob), since only assets a workflow reads raise findings on assets.
    """
    errors: list[tuple[str, str]] = []
    kinds, sources, workflows, reads = set(kinds), set(sources), set(workflows), list(reads)
    if not entry.fingerprint:
        if not entry.kind:
            errors.append(("kind", "needs a fingerprint, or a kind with a subject (source, asset, "
                                   "workflow or principal)"))
        elif not any(getattr(entry, f) for f in SUBJECT_FIELDS):
            errors.append(("kind", f"kind {entry.kind!r} alone would accept every {entry.kind} finding: "
                                   "add a source, asset, workflow or principal, or use a fingerprint"))
    if entry.kind and entry.kind not in kinds:
        errors.append(("kind", f"unknown finding kind {entry.kind!r}{_hint(entry.kind, kinds)}"))
    if entry.workflow and entry.workflow not in workflows:
        errors.append(("workflow", f"unknown workflow {entry.workflow!r}{_hint(entry.workflow, workflows)}"))
    if entry.source and entry.source not in sources:
        errors.append(("source", f"unknown source {entry.source!r}{_hint(entry.source, sources)}"))
    if entry.asset:
        asset = entry.asset if ":" in entry.asset or not entry.source else f"{entry.source}:{entry.asset}"
        source_id = asset.partition(":")[0] if ":" in asset else None
        if source_id is None:
            errors.append(("asset", f"{entry.asset!r} needs its source: write SOURCE:PATH or add source:"))
        elif source_id not in sources:
            errors.append(("asset", f"unknown source {source_id!r} in {entry.asset!r}{_hint(source_id, sources)}"))
        elif entry.kind not in _ANY_ASSET_KINDS and not any(
                asset == read or fnmatch.fnmatchcase(asset, read) for read in reads):
            errors.append(("asset", f"no workflow reads {asset!r}{_hint(asset, reads)}"))
    return errors


def accept_warnings(accepts: Sequence[AcceptConfig], findings: Sequence[FindingSubject], today: date,
                    workflows: Iterable[str] = ()) -> list[tuple[AcceptConfig, str]]:
    """(entry, what is wrong) for each entry worth a look: expired (its findings count
    again), or matching no open finding the store holds (fixed, renamed, or a fingerprint
    from a renamed workflow). `validate` and `scan` print them, `validate --strict` refuses them.

    `findings` are the stored ones of any status; `workflows` the ids the inventory declares,
    to say when a fingerprint's finding named a workflow that no longer exists.
    """
    known = set(workflows)
    out: list[tuple[AcceptConfig, str]] = []
    open_ones = [f for f in findings if getattr(f, "status", "open") == "open"]
    for entry in accepts:
        what = (f"fingerprint {entry.fingerprint}" if entry.fingerprint
                else ", ".join(f"{k} {getattr(entry, k)}" for k in ("kind", *SUBJECT_FIELDS) if getattr(entry, k)))
        if is_expired(entry, today):
            out.append((entry, f"accept ({what}) expired on {entry.expires}; its findings count again"))
            continue
        if not findings:
            continue  # nothing scanned yet: nothing to match against
        if any(matches(entry, f) for f in open_ones):
            continue
        note = "matches no open finding"
        if entry.fingerprint:
            gone = sorted({f.workflow for f in findings if f.fingerprint == entry.fingerprint
                           and f.workflow and f.workflow not in known})
            if gone:
                note += (f" (its finding named workflow {', '.join(gone)}, which the inventory no longer "
                         "declares: a renamed workflow changes fingerprints; accept the new one)")
        out.append((entry, f"accept ({what}) {note}"))
    return out
