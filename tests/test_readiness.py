"""The readiness card through the CLI: a ready workflow, an unready one, --json and --strict."""

from __future__ import annotations

import json
from pathlib import Path

INVENTORY = """
version: 1
owners: [{{id: support-platform, contact: "#support"}}, {{id: data-eng}}]
sources:
  - id: crm
    connector: fake
    owner: data-eng
    tables: ["public.customers@10m", "public.tickets@5m", "public.refunds@2d", "public.notes@none"]
    grants: ["support_bot:SELECT:public.customers", "support_bot:SELECT:public.tickets",
             "support_bot:INSERT:public.tickets", "drafter:SELECT:public.refunds"]
    superusers: [admin]
    members: ["drafter:admin"]
workflows:
  - id: support-reply-assistant
    owner: support-platform
    stage: production
    runs_as: {{crm: support_bot}}
    reads:
      - {{asset: "crm:public.customers", max_age: 1h}}
      - {{asset: "crm:public.tickets", max_age: 1h, access: write, approval: human-review}}
    evaluation: {{suite: evals/support.yaml}}
    rollout: {{fallback: human-queue, rollback_owner: support-platform}}
  - id: refund-drafter
    stage: pilot
    runs_as: {{crm: drafter}}
    reads:
      - {{asset: "crm:public.refunds", max_age: 1d}}
      - "crm:public.refund_reasons"
      - {{asset: "crm:public.notes", max_age: 1d}}
      - {{asset: "crm:public.customers", access: write}}
    rollout: {{fallback: manual, rollback_owner: someone}}
{accept}"""


def _setup(tmp_path: Path, ctxscan, accept: str = "") -> Path:
    config = tmp_path / "ctxscan.yaml"
    config.write_text(INVENTORY.format(accept=accept), encoding="utf-8")
    scan = ctxscan("-c", str(config), "scan")
    assert scan.code == 0, scan
    return config


def _checks(card: dict) -> dict[str, dict]:
    return {c["check"]: c for c in card["checks"]}


def test_ready_and_unready_workflows(tmp_path: Path, ctxscan) -> None:
    config = _setup(tmp_path, ctxscan)
    result = ctxscan("-c", str(config), "readiness", "--json")
    assert result.code == 0, result
    data = json.loads(result.out)
    assert data["ready"] is False
    cards = {c["workflow"]: c for c in data["workflows"]}
    assert set(cards) == {"support-reply-assistant", "refund-drafter"}

    ready = cards["support-reply-assistant"]
    assert ready["ready"] is True and ready["stage"] == "production"
    assert [c["check"] for c in ready["checks"]] == ["scope", "owner", "context", "permissions",
                                                    "evaluation", "rollout", "environment"]
    assert all(c["ok"] and c["reason"] for c in ready["checks"])
    # It may write the tickets: declared, with an approval point.
    assert "declared writes with approval: crm:public.tickets" in _checks(ready)["permissions"]["reason"]

    unready = cards["refund-drafter"]
    assert unready["ready"] is False
    checks = _checks(unready)
    assert checks["scope"]["ok"] is True
    assert checks["owner"]["ok"] is False and "no owner" in checks["owner"]["reason"]
    context = checks["context"]
    assert context["ok"] is False
    assert "refund_reasons" in context["reason"] and "missing_asset" in context["reason"]
    assert "stale" in context["reason"] and "public.refunds" in context["reason"]
    assert "freshness_unknown" in context["reason"] and "public.notes" in context["reason"]
    assert context["findings"], "the blocking findings' fingerprints are listed"
    permissions = checks["permissions"]
    assert permissions["ok"] is False
    assert "privileged" in permissions["reason"] and "drafter -> admin" in permissions["reason"]
    assert "writes crm:public.customers without an approval point" in permissions["reason"]
    assert checks["evaluation"]["ok"] is False
    assert checks["rollout"]["ok"] is False and "'someone' is not listed" in checks["rollout"]["reason"]

    # The fingerprints on the card are the ones `findings` lists.
    listed = {f["fingerprint"] for f in json.loads(ctxscan("-c", str(config), "findings", "--json").out)}
    assert set(context["findings"]) <= listed and set(permissions["findings"]) <= listed


def test_strict_exit_codes_and_one_workflow(tmp_path: Path, ctxscan) -> None:
    config = _setup(tmp_path, ctxscan)
    assert ctxscan("-c", str(config), "readiness").code == 0
    assert ctxscan("-c", str(config), "readiness", "--strict").code == 1
    one = ctxscan("-c", str(config), "readiness", "support-reply-assistant", "--strict", "--json")
    assert one.code == 0, one
    assert [c["workflow"] for c in json.loads(one.out)["workflows"]] == ["support-reply-assistant"]
    other = ctxscan("-c", str(config), "readiness", "refund-drafter", "--strict")
    assert other.code == 1
    assert "NOT READY" in other.out and "FAIL" in other.out and "privileged" in other.out
    unknown = ctxscan("-c", str(config), "readiness", "refund-drafer")
    assert unknown.code == 2 and "did you mean 'refund-drafter'" in unknown.err


def test_accepted_findings_do_not_block_but_are_named(tmp_path: Path, ctxscan) -> None:
    accept = ("accept:\n"
              "  - {kind: over_permissioned, workflow: refund-drafter, reason: \"SEC-42\", expires: 2999-01-01}\n")
    config = _setup(tmp_path, ctxscan, accept)
    card = json.loads(ctxscan("-c", str(config), "readiness", "refund-drafter", "--json").out)["workflows"][0]
    permissions = _checks(card)["permissions"]
    assert "privileged" not in permissions["reason"]
    # The missing approval is a declaration problem, not a finding: acceptance does not hide it.
    assert permissions["ok"] is False and "approval" in permissions["reason"]


def test_never_scanned(tmp_path: Path, ctxscan) -> None:
    config = tmp_path / "ctxscan.yaml"
    config.write_text(INVENTORY.format(accept=""), encoding="utf-8")
    result = ctxscan("-c", str(config), "readiness", "support-reply-assistant", "--json", "--strict")
    assert result.code == 1
    card = json.loads(result.out)["workflows"][0]
    assert "never been scanned" in _checks(card)["context"]["reason"]


def test_readiness_agrees_with_the_stale_finding(tmp_path: Path, ctxscan) -> None:
    # A stale asset fails the context of every workflow that reads it (it is past its one
    # effective SLA) and of each downstream workflow whose own need it breaks, the one that
    # set the SLA among them: exactly the `blocks` the finding lists.
    config = tmp_path / "ctxscan.yaml"
    config.write_text("""
version: 1
owners: [{id: team}]
sources: [{id: crm, connector: fake, owner: team, tables: ["public.t@2h", "public.z@1m"]}]
workflows:
  - {id: strict, owner: team, reads: [{asset: "crm:public.t", max_age: 1h}]}
  - {id: loose, owner: team, reads: [{asset: "crm:public.t", max_age: 1d}], feeds: [report, alert]}
  - {id: report, owner: team, reads: [{asset: "crm:public.z", max_age: 3h}]}
  - {id: alert, owner: team, reads: [{asset: "crm:public.z", max_age: 90m}]}
""", encoding="utf-8")
    assert ctxscan("-c", str(config), "scan").code == 0
    cards = {c["workflow"]: _checks(c) for c in
             json.loads(ctxscan("-c", str(config), "readiness", "--json").out)["workflows"]}
    stale = [f for f in json.loads(ctxscan("-c", str(config), "findings", "--json").out) if f["kind"] == "stale"]
    assert len(stale) == 1 and stale[0]["evidence"]["blocks"] == ["alert", "loose", "strict"]
    for workflow in ("strict", "loose", "alert"):
        context = cards[workflow]["context"]
        assert context["ok"] is False and "stale" in context["reason"], workflow
        assert context["findings"] == [stale[0]["fingerprint"]], workflow
    # report needs its inputs within 3h: the 2h-old table does not break it.
    assert cards["report"]["context"]["ok"] is True


def test_readiness_of_the_workflow_that_set_the_sla_through_feeds(tmp_path: Path, ctxscan) -> None:
    # The reviewer's estate: a (poc) reads refunds and macros and feeds b (production), which
    # reads customers within 30m and macros with no max_age of its own.
    config = tmp_path / "ctxscan.yaml"
    config.write_text("""
version: 1
owners: [{id: team}]
sources: [{id: hd, connector: fake, owner: team, tables: ["main.refunds@70m", "main.customers@1m", "macros@2h"]}]
workflows:
  - {id: a, owner: team, stage: poc, reads: ["hd:main.refunds", "hd:macros"], feeds: [b]}
  - {id: b, owner: team, stage: production, reads: [{asset: "hd:main.customers", max_age: 30m}, "hd:macros"]}
""", encoding="utf-8")
    assert ctxscan("-c", str(config), "scan").code == 0
    stale = [f for f in json.loads(ctxscan("-c", str(config), "findings", "--json").out) if f["kind"] == "stale"]
    # refunds reaches b only through a, so b's 30m applies; b also reads macros itself but
    # without a max_age, which never relaxes the 30m it needs of what a feeds it (issue 13).
    assert sorted(f["asset"] for f in stale) == ["hd:macros", "hd:main.refunds"]
    assert all("set by workflow b (fed via a -> b)" in f["message"] for f in stale)
    cards = {c["workflow"]: _checks(c) for c in
             json.loads(ctxscan("-c", str(config), "readiness", "--json").out)["workflows"]}
    for workflow in ("a", "b"):
        context = cards[workflow]["context"]
        assert context["ok"] is False and "hd:main.refunds" in context["reason"], workflow
        assert "hd:macros" in context["reason"], workflow


def test_demo_shows_findings_of_several_kinds_and_the_cards(tmp_path: Path, ctxscan) -> None:
    result = ctxscan("demo", "--dir", str(tmp_path / "demo"), "--json")
    assert result.code == 0, result
    data = json.loads(result.out)
    kinds = {(f["kind"], f["subkind"]) for f in data["findings"]}
    assert {("stale", None), ("missing_asset", None), ("over_permissioned", "public_access"),
            ("unowned", "no_owner")} <= kinds
    unowned = next(f for f in data["findings"] if f["kind"] == "unowned")
    assert unowned["workflow"] == "refund-drafter"
    cards = {c["workflow"]: c for c in data["readiness"]}
    assert set(cards) == {"support-reply-assistant", "escalation-router", "refund-drafter"}
    assert not any(c["ready"] for c in cards.values())
    human = ctxscan("demo", "--dir", str(tmp_path / "demo"))
    assert "Readiness" in human.out and "NOT READY" in human.out and "public_access" in human.out


def test_drift_blocks_only_the_workflow_that_depends_on_the_column(tmp_path: Path, ctxscan) -> None:
    config = tmp_path / "ctxscan.yaml"
    text = """
version: 1
owners: [{{id: team}}]
sources: [{{id: crm, connector: fake, owner: team, tables: ["public.t@1m"], asset_columns: ["public.t={columns}"]}}]
workflows:
  - {{id: uses-email, owner: team, reads: [{{asset: "crm:public.t", columns: [email]}}]}}
  - {{id: uses-id, owner: team, reads: [{{asset: "crm:public.t", columns: [id]}}]}}
"""
    config.write_text(text.format(columns="id:integer,email:text"), encoding="utf-8")
    assert ctxscan("-c", str(config), "scan").code == 0
    config.write_text(text.format(columns="id:integer,email:jsonb"), encoding="utf-8")
    assert ctxscan("-c", str(config), "scan").code == 0
    cards = {c["workflow"]: _checks(c) for c in
             json.loads(ctxscan("-c", str(config), "readiness", "--json").out)["workflows"]}
    assert cards["uses-email"]["context"]["ok"] is False
    assert "column email of crm:public.t changed type from text to jsonb" in cards["uses-email"]["context"]["reason"]
    assert cards["uses-id"]["context"]["ok"] is True


def test_a_runs_as_principal_the_source_does_not_know_fails_permissions(tmp_path: Path, ctxscan) -> None:
    config = tmp_path / "ctxscan.yaml"
    config.write_text("""
version: 1
owners: [{id: team}]
sources: [{id: crm, connector: fake, owner: team, tables: ["public.t@1m"], unknown_principals: [suport_bot]}]
workflows:
  - {id: typo, owner: team, runs_as: {crm: suport_bot}, reads: ["crm:public.t"],
     evaluation: {suite: e.yaml}, rollout: {fallback: queue, rollback_owner: team}}
""", encoding="utf-8")
    assert ctxscan("-c", str(config), "scan").code == 0
    card = json.loads(ctxscan("-c", str(config), "readiness", "--json").out)["workflows"][0]
    permissions = _checks(card)["permissions"]
    assert permissions["ok"] is False and len(permissions["findings"]) == 1
    assert "runs as suport_bot, which source crm does not know: its access cannot be checked" in \
        permissions["reason"]
    assert all(c["ok"] for c in card["checks"] if c["check"] != "permissions")
    why = json.loads(ctxscan("-c", str(config), "why", "typo", "crm:public.t", "--json").out)
    assert why["access"] is None and "suport_bot does not exist in source crm" in why["note"]
