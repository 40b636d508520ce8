"""The production-readiness card: seven checks per workflow, from the inventory and the latest scan.

1. `scope`: one workflow with a bounded set of sources (it declares its reads, from at most
   MAX_SOURCES sources, none of them a catch-all glob such as `crm:*`);
2. `owner`: a visible owner, listed in `owners`;
3. `context`: every declared read exists, is fresh within its SLA (known, not stale, no
   dropped column it depends on, not behind what it is built from: `index_lag`) and is
   owned; its sources were scanned; and no asset that
   reaches it through `feeds` is past the freshness it needs (the `stale` finding's `blocks`);
4. `permissions`: no `over_permissioned` finding (a `runs_as` principal the source does not
   know is one, `unknown_principal`); every source it reads has a `runs_as` principal;
   write access only where declared, each with an approval point;
5. `evaluation`: an evaluation suite or regression signal is declared;
6. `rollout`: a fallback and a rollback owner (listed in `owners`) are declared;
7. `environment`: it reads sources of its own environment, and where a source has a
   counterpart in another environment (`same_as`), the workflow's access and the columns it
   depends on are the same in both (no `environment_mismatch`, no `environment` drift).

A workflow is `ready` only when all seven hold. Findings an unexpired `accept:` entry covers
do not block a check; the reason names them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from scanner.acceptance import acceptance_for_workflow
from scanner.inventory import AcceptConfig, Inventory, WorkflowConfig
from scanner.model import Finding
from scanner.rules.base import RuleContext
from scanner.store import Store

MAX_SOURCES = 5
CHECKS = (
    ("scope", "one workflow, a bounded set of sources"),
    ("owner", "a visible owner, known in owners"),
    ("context", "every read exists, is fresh within its SLA and is owned"),
    ("permissions", "no over-permission; writes only where declared, with approval"),
    ("evaluation", "an evaluation suite or regression signal"),
    ("rollout", "a fallback and a rollback owner"),
    ("environment", "its own environment's sources, counterparts that agree"),
)
TITLES = dict(CHECKS)
_CATCH_ALL = re.compile(r"^[*?./\[\]]*$")
CONTEXT_KINDS = ("missing_asset", "stale", "freshness_unknown", "unowned", "schema_drift", "probe_failed",
                 "index_lag")


@dataclass(frozen=True)
class Check:
    """One of the seven decisions, held or not, and why."""

    id: str
    ok: bool
    reason: str
    findings: tuple[str, ...] = ()     # fingerprints of the findings that block it

    @property
    def title(self) -> str:
        """The decision in a few words."""
        return TITLES[self.id]


@dataclass(frozen=True)
class ReadinessCard:
    """A workflow's seven checks; `ready` only when all hold."""

    workflow: str
    stage: str
    owner: str | None
    checks: tuple[Check, ...]

    @property
    def ready(self) -> bool:
        """Whether every check holds."""
        return all(check.ok for check in self.checks)

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of one card in `ctxscan readiness --json`."""
        return {
            "workflow": self.workflow, "stage": self.stage, "owner": self.owner, "ready": self.ready,
            "checks": [{"check": c.id, "title": c.title, "ok": c.ok, "reason": c.reason,
                        "findings": list(c.findings)} for c in self.checks],
        }


def readiness_cards(ctx: RuleContext, findings: Sequence[Finding], accepts: Sequence[AcceptConfig] = (),
                    today: date | None = None,
                    workflow_ids: Iterable[str] | None = None) -> list[ReadinessCard]:
    """The card of each workflow (or of the named ones), from a context and its findings."""
    today = today or ctx.now.date()
    ids = list(workflow_ids) if workflow_ids is not None else sorted(ctx.inventory.workflows)
    cards = []
    for workflow_id in ids:
        workflow = ctx.inventory.workflows[workflow_id]
        # An entry for another workflow waives nothing on this card.
        counting: list[Finding] = []
        accepted: list[Finding] = []
        for finding in findings:
            waived = acceptance_for_workflow(finding, workflow_id, accepts, today)
            (accepted if waived else counting).append(finding)
        cards.append(ReadinessCard(workflow.id, workflow.stage, workflow.owner, (
            _scope(workflow),
            _owner(ctx, workflow),
            _context(ctx, workflow, counting, accepted),
            _permissions(ctx, workflow, counting, accepted),
            _evaluation(workflow),
            _rollout(ctx, workflow),
            _environment(ctx, workflow, counting, accepted),
        )))
    return cards


def assess(inventory: Inventory, store: Store, now: datetime, workflow_ids: Iterable[str] | None = None,
           today: date | None = None) -> list[ReadinessCard]:
    """Evaluate the rules on the newest stored snapshots and build the cards."""
    from scanner.rules import build_context, evaluate

    ctx = build_context(inventory, store, now)
    return readiness_cards(ctx, evaluate(ctx), inventory.accept, today or now.date(), workflow_ids)


# ---------------------------------------------------------------------------------------

def _scope(workflow: WorkflowConfig) -> Check:
    if not workflow.reads:
        return Check("scope", False, "declares no reads: its context is unbounded and unknown")
    sources = sorted({r.source for r in workflow.reads})
    catch_all = [r.asset for r in workflow.reads if _CATCH_ALL.match(r.path)]
    if catch_all:
        return Check("scope", False, f"reads a whole source ({', '.join(catch_all)}); name the assets")
    if len(sources) > MAX_SOURCES:
        return Check("scope", False, f"reads from {len(sources)} sources (more than {MAX_SOURCES}): "
                                     "split it into smaller workflows")
    return Check("scope", True, f"{len(workflow.reads)} declared read{_s(workflow.reads)} from "
                                f"{len(sources)} source{_s(sources)} ({', '.join(sources)})")


def _owner(ctx: RuleContext, workflow: WorkflowConfig) -> Check:
    if not workflow.owner:
        return Check("owner", False, "no owner declared")
    if workflow.owner not in ctx.inventory.owners:
        return Check("owner", False, f"owner {workflow.owner!r} is not listed in owners")
    contact = ctx.inventory.owners[workflow.owner].contact
    return Check("owner", True, f"owned by {workflow.owner}" + (f" ({contact})" if contact else ""))


def _touches(ctx: RuleContext, workflow: WorkflowConfig, finding: Finding, assets: set[str],
             sources: set[str]) -> bool:
    """Whether a finding is about this workflow's own context."""
    if finding.kind == "missing_asset":
        return finding.workflow == workflow.id
    if finding.kind in ("probe_failed",) or (finding.kind == "unowned" and finding.asset is None
                                             and finding.source is not None):
        return finding.source in sources
    if finding.kind == "stale":
        return _stale_for(workflow, finding)
    if finding.kind == "freshness_unknown" and "blocks" in finding.evidence:
        # only the workflows that state a need on it: with no SLA anywhere it is information
        return workflow.id in finding.evidence["blocks"]
    if finding.kind == "schema_drift":  # only the columns this workflow depends on
        return workflow.id in finding.evidence.get("dependants", ())
    return finding.asset in assets


def _stale_for(workflow: WorkflowConfig, finding: Finding) -> bool:
    """Whether a stale finding breaks this workflow's context, exactly as the finding says.

    The `stale` rule lists in `blocks` every workflow that reads the asset directly (it is
    past its one effective SLA) and each downstream workflow whose own need the age breaks,
    the one that set the SLA among them (`scanner.rules.sla.blocked_workflows`). A warning
    never blocks.
    """
    if finding.subkind == "warning":
        return False
    return workflow.id in finding.evidence.get("blocks", ())


def _context(ctx: RuleContext, workflow: WorkflowConfig, counting: list[Finding],
             accepted: list[Finding]) -> Check:
    if not workflow.reads:
        return Check("context", False, "no reads declared")
    sources = {r.source for r in workflow.reads}
    never = sorted(s for s in sources if s not in ctx.snapshots)
    assets = {f"{r.source}:{a.path}" for r in workflow.reads for a in ctx.read_matches(r)}
    assets |= {r.asset for r in workflow.reads}
    blocking = [f for f in counting if f.kind in CONTEXT_KINDS and _touches(ctx, workflow, f, assets, sources)]
    waived = [f for f in accepted if f.kind in CONTEXT_KINDS and _touches(ctx, workflow, f, assets, sources)]
    problems = [f"{s} has never been scanned successfully" for s in never]
    problems += [f"{f.kind}: {f.message}" for f in blocking
                 if not (f.kind == "probe_failed" and f.source in never)]
    if problems:
        return Check("context", False, "; ".join(problems), tuple(f.fingerprint for f in blocking))
    found = len(assets - {r.asset for r in workflow.reads if r.is_glob})
    reason = (f"{len(workflow.reads)} read{_s(workflow.reads)} ({found} asset{'s' if found != 1 else ''}) "
              "exist, are fresh within their SLA and owned")
    # Too old for another workflow's need, not for this one's: information, never a failure.
    others = sorted({f.asset for f in counting if f.kind in ("stale", "freshness_unknown") and f.asset in assets
                     and f.subkind != "warning" and not _touches(ctx, workflow, f, assets, sources)})
    if others:
        reason += f"; for information: {', '.join(others)} fall{'s' if len(others) == 1 else ''} short of " \
                  "another workflow's need, not this one's"
    return Check("context", True, reason + _waived(waived))


def _permissions(ctx: RuleContext, workflow: WorkflowConfig, counting: list[Finding],
                 accepted: list[Finding]) -> Check:
    assets = {f"{r.source}:{a.path}" for r in workflow.reads for a in ctx.read_matches(r)}

    def mine(finding: Finding) -> bool:
        if finding.kind != "over_permissioned":
            return False
        if finding.subkind == "public_access":
            return finding.asset in assets
        return finding.workflow == workflow.id

    blocking = [f for f in counting if mine(f)]
    problems = [f.message for f in blocking]
    sources = sorted({r.source for r in workflow.reads})
    problems += [f"no runs_as principal for {s}: its access cannot be checked"
                 for s in sources if s not in workflow.runs_as]
    approval = (workflow.rollout or {}).get("approval")
    problems += [f"writes {r.asset} without an approval point (set approval: on the read)"
                 for r in workflow.reads if r.access == "write" and not (r.approval or approval)]
    if problems:
        return Check("permissions", False, "; ".join(problems), tuple(f.fingerprint for f in blocking))
    unverified = sorted(s for s in sources if s in ctx.snapshots and not ctx.snapshots[s].reports_grants)
    writes = [r.asset for r in workflow.reads if r.access == "write"]
    reason = "no over-permission found"
    if writes:
        reason += f"; declared writes with approval: {', '.join(writes)}"
    if unverified:
        reason += f"; {', '.join(unverified)} report{'s' if len(unverified) == 1 else ''} no grants (unverified)"
    return Check("permissions", True, reason + _waived([f for f in accepted if mine(f)]))


def _evaluation(workflow: WorkflowConfig) -> Check:
    evaluation = workflow.evaluation or {}
    declared = [f"{key} {evaluation[key]}" for key in ("suite", "signal") if evaluation.get(key)]
    if not declared:
        return Check("evaluation", False, "no evaluation suite or regression signal declared "
                                          "(evaluation: {suite: ...} or {signal: ...})")
    return Check("evaluation", True, ", ".join(declared))


def _rollout(ctx: RuleContext, workflow: WorkflowConfig) -> Check:
    rollout = workflow.rollout or {}
    fallback, rollback_owner = rollout.get("fallback"), rollout.get("rollback_owner")
    problems = []
    if not fallback:
        problems.append("no fallback declared")
    if not rollback_owner:
        problems.append("no rollback owner declared")
    elif rollback_owner not in ctx.inventory.owners:
        problems.append(f"rollback owner {rollback_owner!r} is not listed in owners")
    if problems:
        return Check("rollout", False, "; ".join(problems))
    return Check("rollout", True, f"fallback {fallback}, rollback by {rollback_owner}")


def _environment(ctx: RuleContext, workflow: WorkflowConfig, counting: list[Finding],
                 accepted: list[Finding]) -> Check:
    def mine(finding: Finding) -> bool:
        if finding.kind == "environment_mismatch":
            return finding.workflow == workflow.id
        if finding.subkind != "environment" or finding.kind not in ("access_drift", "schema_drift"):
            return False
        if finding.kind == "schema_drift":
            return workflow.id in finding.evidence.get("dependants", ())
        return finding.workflow == workflow.id

    blocking = [f for f in counting if mine(f)]
    if blocking:
        return Check("environment", False, "; ".join(f.message for f in blocking),
                     tuple(f.fingerprint for f in blocking))
    sources = sorted({r.source for r in workflow.reads})
    declared = {s: ctx.inventory.sources[s].environment for s in sources
                if s in ctx.inventory.sources and ctx.inventory.sources[s].environment}
    if not declared:
        return Check("environment", True, "no environments declared for its sources (not checked)"
                     + _waived([f for f in accepted if mine(f)]))
    from scanner.rules.parity import counterparts

    pairs = sorted({other for s in sources for other in counterparts(ctx.inventory, s)})
    reason = "reads " + ", ".join(f"{s} ({env})" for s, env in sorted(declared.items()))
    if pairs:
        reason += f"; counterparts {', '.join(pairs)} agree on its access and columns"
    return Check("environment", True, reason + _waived([f for f in accepted if mine(f)]))


def _s(items: Sequence[Any] | set[Any]) -> str:
    return "" if len(items) == 1 else "s"


def _waived(findings: list[Finding]) -> str:
    if not findings:
        return ""
    return f" (accepted: {', '.join(sorted({f.kind + ('/' + f.subkind if f.subkind else '') for f in findings}))})"


def render_cards(cards: Sequence[ReadinessCard]) -> str:
    """Cards as text: a headline per workflow, then one line per check (click styles them);
    on a terminal, long reasons wrap to its width."""
    import textwrap

    import click

    from scanner.formats.table import terminal_width
    from scanner.redact import printable

    width = terminal_width()  # None off a terminal or with --wide: reasons stay on one line
    blocks = []
    for card in cards:
        verdict = click.style("READY", fg="green") if card.ready else click.style("NOT READY", fg="red")
        held = sum(1 for c in card.checks if c.ok)
        lines = [f"{printable(card.workflow)} ({printable(card.stage)}, owner {printable(card.owner or '-')}): "
                 f"{verdict}, {held}/{len(card.checks)} checks hold"]
        for number, check in enumerate(card.checks, 1):
            mark = click.style("ok  ", fg="green") if check.ok else click.style("FAIL", fg="red")
            reason = printable(check.reason)
            body = (textwrap.wrap(reason, max(24, width - 22)) or [""]) if width else [reason]
            lines.append(f"  {mark} {number}. {check.id:<12}{body[0]}")
            lines += [" " * 22 + rest for rest in body[1:]]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
