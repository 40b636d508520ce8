"""Findings across scans: opened, resolved, reopened; escalation by stage; acceptance; CI gates."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from scanner.inventory import load_inventory
from scanner.scan import run_scan
from scanner.store import Store

T0 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)

INVENTORY = """
version: 1
owners: [{{id: team}}]
sources:
  - {{id: crm, connector: fake, owner: team, tables: ["public.customers@{age}", "public.tickets@1m"]}}
workflows:
  - id: assistant
    owner: team
    stage: {stage}
    reads:
      - {{asset: "crm:public.customers", max_age: 1h}}
      - "crm:public.tickets"
{extra}"""


def _write(path: Path, age: str = "2h", stage: str = "production", extra: str = "") -> Path:
    path.write_text(INVENTORY.format(age=age, stage=stage, extra=extra), encoding="utf-8")
    return path


def _scan(config: Path, store: Store, moment: datetime):
    return run_scan(load_inventory([config], env={}), store, now=lambda: moment)


def test_open_resolved_reopened_across_three_scans(tmp_path: Path) -> None:
    config = tmp_path / "ctxscan.yaml"
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    t1, t2, t3 = T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)

    first = _scan(_write(config, age="2h"), store, t1)
    opened = [f for f in first.changes.opened if f.kind == "stale"]
    assert [f.asset for f in opened] == ["crm:public.customers"]
    fingerprint = opened[0].fingerprint
    (stored,) = [f for f in store.findings("open") if f.fingerprint == fingerprint]
    assert stored.first_seen == t1 and stored.last_seen == t1 and stored.times_opened == 1

    second = _scan(_write(config, age="5m"), store, t2)
    assert [f.fingerprint for f in second.changes.resolved] == [fingerprint]
    assert not [f for f in store.findings("open") if f.kind == "stale"]
    (resolved,) = store.findings("resolved")
    assert resolved.fingerprint == fingerprint and resolved.resolved_at == t2

    third = _scan(_write(config, age="3h"), store, t3)
    assert [f.fingerprint for f in third.changes.reopened] == [fingerprint]
    assert not third.changes.opened
    (again,) = [f for f in store.findings("open") if f.fingerprint == fingerprint]
    assert again.times_opened == 2
    assert again.first_seen == t1 and again.last_seen == t3 and again.resolved_at is None
    assert again.evidence["age_seconds"] == 3 * 3600
    store.close()


def test_a_dropped_assets_stale_gives_way_to_missing_asset(tmp_path: Path) -> None:
    config = tmp_path / "ctxscan.yaml"
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    first = _scan(_write(config, age="2h"), store, T0)
    (stale,) = [f for f in first.changes.opened if f.kind == "stale"]
    # The table is dropped: its staleness is not fixed, it gives way to missing_asset.
    config.write_text(INVENTORY.format(age="2h", stage="production", extra="").replace(
        '"public.customers@2h", ', ""), encoding="utf-8")
    second = _scan(config, store, T0 + timedelta(hours=1))
    (missing,) = [f for f in second.changes.opened if f.kind == "missing_asset"]
    assert stale.fingerprint in missing.evidence["supersedes"]
    (resolved,) = [f for f in second.changes.resolved if f.fingerprint == stale.fingerprint]
    assert "(gave way to missing_asset: workflow assistant reads crm:public.customers, which was not found" \
        in resolved.message
    (stored,) = [f for f in store.findings("resolved") if f.fingerprint == stale.fingerprint]
    assert stored.message == resolved.message
    store.close()


def test_a_warning_escalates_into_a_breach(tmp_path: Path) -> None:
    config = tmp_path / "ctxscan.yaml"
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    text = INVENTORY.replace("max_age: 1h}", "max_age: 1h, warn_after: 30m}")
    config.write_text(text.format(age="45m", stage="production", extra=""), encoding="utf-8")
    first = run_scan(load_inventory([config], env={}), store, now=lambda: T0)
    (warning,) = [f for f in first.changes.opened if f.kind == "stale"]
    assert warning.subkind == "warning" and warning.severity == "medium"
    config.write_text(text.format(age="90m", stage="production", extra=""), encoding="utf-8")
    second = run_scan(load_inventory([config], env={}), store, now=lambda: T0 + timedelta(hours=1))
    (breach,) = second.changes.escalated
    assert breach.fingerprint == warning.fingerprint
    assert breach.subkind is None and breach.severity == "critical"


def test_severity_escalates_when_the_workflow_moves_to_production(tmp_path: Path) -> None:
    config = tmp_path / "ctxscan.yaml"
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    poc = _scan(_write(config, stage="poc"), store, T0)
    (finding,) = [f for f in poc.changes.opened if f.kind == "stale"]
    assert finding.severity == "medium"
    pilot = _scan(_write(config, stage="pilot"), store, T0 + timedelta(hours=1))
    assert [(f.fingerprint, f.severity) for f in pilot.changes.escalated] == [(finding.fingerprint, "high")]
    production = _scan(_write(config, stage="production"), store, T0 + timedelta(hours=2))
    assert [(f.fingerprint, f.severity) for f in production.changes.escalated] == \
        [(finding.fingerprint, "critical")]
    (stored,) = [f for f in store.findings("open") if f.kind == "stale"]
    assert stored.first_seen == T0 and stored.times_opened == 1
    # Going back down is no escalation (and no new finding): it is just seen again.
    back = _scan(_write(config, stage="poc"), store, T0 + timedelta(hours=3))
    assert not back.changes.escalated and not back.changes.opened
    assert [f.severity for f in store.findings("open") if f.kind == "stale"] == ["medium"]


def _accept(kind_or_fingerprint: str, expires: date) -> str:
    return (f"accept:\n  - {{{kind_or_fingerprint}, reason: \"loader fixed next sprint\", "
            f"expires: {expires.isoformat()}}}\n")


def test_acceptance_hides_until_expiry(tmp_path: Path, ctxscan) -> None:
    config = _write(tmp_path / "ctxscan.yaml")
    scan = ctxscan("-c", str(config), "scan", "--fail-on", "high")
    assert scan.code == 1, scan
    listed = json.loads(ctxscan("-c", str(config), "findings", "--json").out)
    stale = next(f for f in listed if f["kind"] == "stale")

    tomorrow = date.today() + timedelta(days=1)
    _write(config, extra=_accept('kind: stale, asset: "crm:public.customers"', tomorrow))
    assert ctxscan("-c", str(config), "scan", "--fail-on", "high").code == 0
    open_now = json.loads(ctxscan("-c", str(config), "findings", "--json").out)
    assert stale["fingerprint"] not in {f["fingerprint"] for f in open_now}
    accepted = json.loads(ctxscan("-c", str(config), "findings", "--status", "accepted", "--json").out)
    assert [f["fingerprint"] for f in accepted] == [stale["fingerprint"]]
    assert accepted[0]["status"] == "accepted"
    assert accepted[0]["accepted"] == {"reason": "loader fixed next sprint", "expires": tomorrow.isoformat()}
    human = ctxscan("-c", str(config), "findings", "--status", "all")
    assert "accepted" in human.out and "crm:public.customers" in human.out

    # By fingerprint, valid through its expiry day.
    _write(config, extra=_accept(f"fingerprint: {stale['fingerprint']}", date.today()))
    assert ctxscan("-c", str(config), "scan", "--fail-on", "high").code == 0

    # Expired: the finding counts again, everywhere.
    _write(config, extra=_accept(f"fingerprint: {stale['fingerprint']}", date.today() - timedelta(days=1)))
    assert ctxscan("-c", str(config), "scan", "--fail-on", "high").code == 1
    open_again = json.loads(ctxscan("-c", str(config), "findings", "--json").out)
    assert stale["fingerprint"] in {f["fingerprint"] for f in open_again}
    assert json.loads(ctxscan("-c", str(config), "findings", "--status", "accepted", "--json").out) == []


def test_fail_on_exit_codes_and_findings_json(tmp_path: Path, ctxscan) -> None:
    # A pilot workflow: the stale customers table is `high`, nothing is `critical`.
    config = _write(tmp_path / "ctxscan.yaml", stage="pilot")
    assert ctxscan("-c", str(config), "scan").code == 0
    assert ctxscan("-c", str(config), "scan", "--fail-on", "critical").code == 0
    assert ctxscan("-c", str(config), "scan", "--fail-on", "high").code == 1
    assert ctxscan("-c", str(config), "scan", "--fail-on", "info", "--json").code == 1
    bad = ctxscan("-c", str(config), "scan", "--fail-on", "severe")
    assert bad.code == 2 and "severe" in bad.err

    items = json.loads(ctxscan("-c", str(config), "findings", "--json").out)
    assert items, "the stale table must be listed"
    for item in items:
        assert {"kind", "severity", "status", "source", "asset", "workflow", "principal", "message",
                "first_seen", "last_seen", "fingerprint", "remediation", "evidence"} <= set(item)
    (stale,) = [i for i in items if i["kind"] == "stale"]
    assert stale["severity"] == "high" and stale["status"] == "open" and stale["workflow"] == "assistant"
    assert stale["evidence"]["sla_set_by"] == "assistant"

    fixed = _write(config, age="1m", stage="pilot")
    assert ctxscan("-c", str(fixed), "scan", "--fail-on", "high").code == 0
    resolved = json.loads(ctxscan("-c", str(config), "findings", "--status", "resolved", "--json").out)
    assert [(i["kind"], i["status"]) for i in resolved] == [("stale", "resolved")]
    assert resolved[0]["resolved_at"]


def test_findings_filters(tmp_path: Path, ctxscan) -> None:
    extra = ("  - {id: nobody, stage: poc, reads: [\"crm:public.tickets\"]}\n"
             "  - {id: orphan-reader, owner: team, reads: []}\n")
    config = tmp_path / "ctxscan.yaml"
    config.write_text(INVENTORY.format(age="2h", stage="production", extra="") + extra, encoding="utf-8")
    assert ctxscan("-c", str(config), "scan").code == 0

    def kinds(*args: str) -> list[str]:
        result = ctxscan("-c", str(config), "findings", "--json", *args)
        assert result.code == 0, result
        return sorted(f["kind"] for f in json.loads(result.out))

    assert kinds() == ["stale", "unowned"]
    assert kinds("--kind", "unowned") == ["unowned"]
    assert kinds("--severity", "critical") == ["stale"]
    assert kinds("--workflow", "nobody") == ["unowned"]
    assert kinds("--source", "crm") == ["stale"]
    unknown = ctxscan("-c", str(config), "findings", "--kind", "stail")
    assert unknown.code == 2 and "did you mean 'stale'" in unknown.err
    assert ctxscan("-c", str(config), "findings", "--workflow", "ghost").code == 2


def test_findings_workflow_filter_lists_every_workflow_affected(tmp_path: Path, ctxscan) -> None:
    # `feeder` (poc) reads the stale table and feeds `assistant` (production), which set its
    # SLA; `reader` reads it too. The finding names one workflow and affects all three.
    config = tmp_path / "ctxscan.yaml"
    config.write_text("""
version: 1
owners: [{id: team}]
sources: [{id: crm, connector: fake, owner: team, tables: ["public.refunds@2h", "public.customers@1m"]}]
workflows:
  - {id: feeder, owner: team, stage: poc, reads: ["crm:public.refunds"], feeds: [assistant]}
  - {id: assistant, owner: team, stage: production, reads: [{asset: "crm:public.customers", max_age: 1h}]}
  - {id: reader, owner: team, stage: pilot, reads: [{asset: "crm:public.refunds", max_age: 1d}]}
  - {id: bystander, owner: team, stage: pilot, reads: ["crm:public.customers"]}
""", encoding="utf-8")
    assert ctxscan("-c", str(config), "scan").code == 0

    def stale_for(workflow: str) -> list[str]:
        result = ctxscan("-c", str(config), "findings", "--json", "--workflow", workflow)
        assert result.code == 0, result
        return [f["asset"] for f in json.loads(result.out) if f["kind"] == "stale"]

    (finding,) = [f for f in json.loads(ctxscan("-c", str(config), "findings", "--json").out)
                  if f["kind"] == "stale"]
    assert finding["workflow"] == "assistant"
    assert finding["evidence"]["workflows"] == ["assistant", "feeder", "reader"]
    for workflow in ("assistant", "feeder", "reader"):
        assert stale_for(workflow) == ["crm:public.refunds"], workflow
    assert stale_for("bystander") == []
    human = ctxscan("-c", str(config), "findings", "--workflow", "feeder")
    assert human.code == 0 and "crm:public.refunds" in human.out
