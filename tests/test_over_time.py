"""Findings that stay true over time (issue 13), through the CLI: accept entries validated
and scoped to a workflow, warnings about stale entries, and ages judged at query time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path


def _write(tmp_path: Path, text: str) -> Path:
    config = tmp_path / "ctxscan.yaml"
    config.write_text(text, encoding="utf-8")
    return config


def _cards(ctxscan, config: Path, *extra: str) -> dict[str, dict[str, dict]]:
    result = ctxscan("-c", str(config), "readiness", "--json", *extra)
    return {c["workflow"]: {k["check"]: k for k in c["checks"]} for c in json.loads(result.out)["workflows"]}


def test_accept_entries_name_a_subject_and_known_things(tmp_path: Path, ctxscan) -> None:
    config = _write(tmp_path, """
version: 1
sources: [{id: crm, connector: fake, tables: ["public.x@2h"]}]
workflows: [{id: alpha, reads: [{asset: "crm:public.x", max_age: 1h}]}]
accept:
  - {kind: stale, reason: everything, expires: 2099-01-01}
  - {kind: stael, asset: "crm:public.x", reason: typo, expires: 2099-01-01}
  - {kind: stale, workflow: alpah, reason: typo, expires: 2099-01-01}
  - {kind: stale, source: crn, reason: typo, expires: 2099-01-01}
  - {kind: stale, asset: "crm:public.y", reason: nobody reads it, expires: 2099-01-01}
  - {reason: nothing named, expires: 2099-01-01}
""")
    result = ctxscan("-c", str(config), "validate")
    assert result.code == 2, result
    lines = result.err.splitlines()
    expected = [
        "ctxscan.yaml:6: accept[0].kind: kind 'stale' alone would accept every stale finding",
        "ctxscan.yaml:7: accept[1].kind: unknown finding kind 'stael' (did you mean 'stale'?)",
        "ctxscan.yaml:8: accept[2].workflow: unknown workflow 'alpah' (did you mean 'alpha'?)",
        "ctxscan.yaml:9: accept[3].source: unknown source 'crn' (did you mean 'crm'?)",
        "ctxscan.yaml:10: accept[4].asset: no workflow reads 'crm:public.y' (did you mean 'crm:public.x'?)",
        "ctxscan.yaml:11: accept[5]: needs a fingerprint, or a kind with a subject",
    ]
    for text in expected:
        assert any(text in line for line in lines), (text, result.err)
    assert "Traceback" not in result.err


def test_expired_unmatched_and_renamed_workflow_accepts_warn(tmp_path: Path, ctxscan) -> None:
    inventory = """
version: 1
owners: [{{id: team}}]
sources: [{{id: crm, connector: fake, owner: team, tables: ["public.x@1m"]}}]
workflows: [{{id: {name}, reads: [{{asset: "crm:public.x", max_age: 1h}}]}}]
accept:
{accept}
"""
    config = _write(tmp_path, inventory.format(name="alpha", accept="  []"))
    assert ctxscan("-c", str(config), "scan").code == 0
    stored = json.loads(ctxscan("-c", str(config), "findings", "--json").out)
    no_owner = next(f for f in stored if f["kind"] == "unowned" and f["workflow"] == "alpha")
    accepts = (f"  - {{fingerprint: {no_owner['fingerprint']}, reason: owner coming, expires: 2099-01-01}}\n"
               "  - {kind: stale, asset: \"crm:public.x\", reason: fixed since, expires: 2099-01-01}\n"
               "  - {kind: unowned, workflow: alpha, reason: old waiver, expires: 2020-01-01}")
    config = _write(tmp_path, inventory.format(name="alpha", accept=accepts))
    result = ctxscan("-c", str(config), "validate")
    assert result.code == 0, result
    assert "ctxscan.yaml:8: accept (kind stale, asset crm:public.x) matches no open finding" in result.err
    assert "ctxscan.yaml:9: accept (kind unowned, workflow alpha) expired on 2020-01-01" in result.err
    assert f"fingerprint {no_owner['fingerprint']}" not in result.err  # it still matches
    # Renaming the workflow changes the fingerprint: the accept stops matching, and says why.
    config = _write(tmp_path, inventory.format(name="beta", accept=accepts.replace("workflow: alpha", "workflow: beta")))
    result = ctxscan("-c", str(config), "scan")
    assert result.code == 0, result
    assert (f"accept (fingerprint {no_owner['fingerprint']}) matches no open finding (its finding named "
            "workflow alpha, which the inventory no longer declares") in result.err, result.err
    listed = json.loads(ctxscan("-c", str(config), "validate", "--json").out)
    accept_warnings = [w for w in listed["warnings"] if w["check"] == "accept"]
    assert len(accept_warnings) == 3 and all(w["line"] for w in accept_warnings), listed["warnings"]
    strict = ctxscan("-c", str(config), "validate", "--strict")
    assert strict.code == 2 and "error: " in strict.err and "expired on 2020-01-01" in strict.err, strict


ESTATE = """
version: 1
owners: [{{id: team}}]
sources: [{{id: crm, connector: fake, owner: team, tables: ["public.x@{age}", "public.y@1m"]}}]
workflows:
  - {{id: a, owner: team, stage: pilot, reads: [{{asset: "crm:public.x", max_age: 1h}}], feeds: [b]}}
  - {{id: b, owner: team, stage: production, reads: [{{asset: "crm:public.y", max_age: 30m}}]}}
  - {{id: c, owner: team, stage: poc, reads: [{{asset: "crm:public.x", max_age: 10m}}]}}
accept:
  - {{kind: stale, workflow: c, reason: "the poc can live with it", expires: 2099-01-01}}
"""


def test_a_workflow_accept_waives_that_workflow_only(tmp_path: Path, ctxscan) -> None:
    # x is 40m old: c's 10m is breached; a (1h of its own) feeds b (30m), so a carries b's
    # 30m and both are breached too. Waiving it for the poc c must not waive production b.
    config = _write(tmp_path, ESTATE.format(age="40m"))
    assert ctxscan("-c", str(config), "scan", "--fail-on", "high").code == 1
    stale = [f for f in json.loads(ctxscan("-c", str(config), "findings", "--json").out) if f["kind"] == "stale"]
    assert len(stale) == 1 and stale[0]["severity"] == "critical", stale
    assert stale[0]["evidence"]["blocks"] == ["a", "b", "c"]
    cards = _cards(ctxscan, config)
    assert cards["c"]["context"]["ok"] is True and "(accepted: stale)" in cards["c"]["context"]["reason"]
    for workflow in ("a", "b"):
        assert cards[workflow]["context"]["ok"] is False, cards[workflow]
        assert "crm:public.x" in cards[workflow]["context"]["reason"]


def test_a_finding_only_the_waived_workflow_sees_is_hidden(tmp_path: Path, ctxscan) -> None:
    # x is 20m old: only c's 10m is breached (a carries b's 30m, which holds).
    config = _write(tmp_path, ESTATE.format(age="20m"))
    assert ctxscan("-c", str(config), "scan", "--fail-on", "low").code == 0
    assert not [f for f in json.loads(ctxscan("-c", str(config), "findings", "--json").out) if f["kind"] == "stale"]
    accepted = json.loads(ctxscan("-c", str(config), "findings", "--status", "accepted", "--json").out)
    assert [f["evidence"]["blocks"] for f in accepted] == [["c"]]
    assert all(card["context"]["ok"] for card in _cards(ctxscan, config).values())


def test_each_workflow_is_judged_by_its_own_need(tmp_path: Path, ctxscan) -> None:
    config = _write(tmp_path, """
version: 1
owners: [{id: team}]
sources: [{id: crm, connector: fake, owner: team, tables: ["public.x@30m"]}]
workflows:
  - {id: p, owner: team, stage: poc, reads: [{asset: "crm:public.x", max_age: 10m}]}
  - {id: q, owner: team, stage: production, reads: [{asset: "crm:public.x", max_age: 1h}]}
""")
    assert ctxscan("-c", str(config), "scan", "--fail-on", "high").code == 0
    stale = [f for f in json.loads(ctxscan("-c", str(config), "findings", "--json").out) if f["kind"] == "stale"]
    assert [(f["severity"], f["evidence"]["blocks"]) for f in stale] == [("medium", ["p"])]
    cards = _cards(ctxscan, config)
    assert cards["q"]["context"]["ok"] is True and cards["p"]["context"]["ok"] is False
    assert "for information: crm:public.x falls short of another workflow's need" in cards["q"]["context"]["reason"]


def test_ages_are_judged_when_asked(tmp_path: Path, ctxscan) -> None:
    config = _write(tmp_path, """
version: 1
owners: [{id: team}]
sources: [{id: crm, connector: fake, owner: team, tables: ["public.x@1m"]}]
workflows: [{id: w, owner: team, stage: production, reads: [{asset: "crm:public.x", max_age: 20m}]}]
""")
    assert ctxscan("-c", str(config), "scan", "--fail-on", "low").code == 0
    later = (datetime.now(UTC) + timedelta(minutes=30)).isoformat()
    stale = [f for f in json.loads(ctxscan("-c", str(config), "findings", "--json", "--as-of", later).out)
             if f["kind"] == "stale"]
    assert len(stale) == 1 and stale[0]["severity"] == "critical" and stale[0]["status"] == "open"
    assert 30 * 60 <= stale[0]["evidence"]["age_seconds"] <= 32 * 60
    assert ctxscan("-c", str(config), "readiness", "--strict", "--as-of", later).code == 1
    assert _cards(ctxscan, config, "--as-of", later)["w"]["context"]["ok"] is False
    # Now (a minute after the scan) it is fresh, and the store is unchanged by the questions.
    assert not [f for f in json.loads(ctxscan("-c", str(config), "findings", "--json").out) if f["kind"] == "stale"]
    assert _cards(ctxscan, config)["w"]["context"]["ok"] is True
    assert ctxscan("-c", str(config), "findings", "--as-of", "yesterday").code == 2


def test_a_finding_and_feeds_name_the_same_path(tmp_path: Path, ctxscan) -> None:
    # Two shortest paths reach t: a -> q -> t and b -> c -> t. Breadth first with each level
    # in id order (c before q) is the one rule: the finding says what `feeds` says.
    config = _write(tmp_path, """
version: 1
sources: [{id: crm, connector: fake, tables: ["public.x@1h", "public.y@1m"]}]
workflows:
  - {id: a, reads: ["crm:public.x"], feeds: [q]}
  - {id: b, reads: ["crm:public.x"], feeds: [c]}
  - {id: q, feeds: [t]}
  - {id: c, feeds: [t]}
  - {id: t, reads: [{asset: "crm:public.y", max_age: 30m}]}
""")
    assert ctxscan("-c", str(config), "scan").code == 0
    stale = next(f for f in json.loads(ctxscan("-c", str(config), "findings", "--json").out) if f["kind"] == "stale")
    assert stale["evidence"]["sla_path"] == ["b", "c", "t"], stale["evidence"]
    assert "fed via b -> c -> t" in stale["message"]
    fed = json.loads(ctxscan("-c", str(config), "feeds", "crm:public.x", "--json").out)
    path_to_t = next(w["path"] for w in fed["workflows"] if w["id"] == "t")
    assert [n.split(":", 1)[1] for n in path_to_t if n.startswith("workflow:")] == ["b", "c", "t"], path_to_t


def test_reads_inside_a_folder_asset_are_that_asset(tmp_path: Path, ctxscan) -> None:
    import os

    kb = tmp_path / "kb"
    (kb / "articles" / "deep").mkdir(parents=True)
    (kb / "articles" / "faq.md").write_text("q")
    (kb / "articles" / "deep" / "b.md").write_text("a")
    os.chmod(kb / "articles", 0o755)
    os.chmod(kb / "articles" / "deep" / "b.md", 0o666)  # anyone can rewrite the context
    config = _write(tmp_path, f"""
version: 1
sources: [{{id: kb, connector: files, path: "{kb}"}}]
workflows:
  - {{id: w, stage: production, reads: ["kb:articles/*", {{asset: "kb:articles/faq.md", max_age: 1h}}]}}
""")
    assert ctxscan("-c", str(config), "scan").code == 0
    found = json.loads(ctxscan("-c", str(config), "findings", "--json").out)
    assert not [f for f in found if f["kind"] in ("missing_asset", "stale")], found
    public = [f for f in found if f["subkind"] == "public_access"]
    assert len(public) == 1 and public[0]["asset"] == "kb:articles" and public[0]["severity"] == "critical"
    assert [g["via"] for g in public[0]["evidence"]["grants"] if g["access"] == "write"] == \
        ["articles/deep/b.md mode 0o666"]
    fed = json.loads(ctxscan("-c", str(config), "feeds", "kb:articles", "--json").out)
    assert [w["id"] for w in fed["workflows"]] == ["w"]
    behind = json.loads(ctxscan("-c", str(config), "depends", "w", "--json").out)
    assert [a["id"] for a in behind["assets"]] == ["kb:articles"]
    assert behind["assets"][0]["freshness_state"] == "fresh"


def test_cached_graph_queries_see_an_asset_go_stale(tmp_path: Path, ctxscan) -> None:
    # depends/feeds/exports answer from a cached graph: it must not outlive the moment an
    # asset crosses its SLA (50s old at the scan, 60s allowed: stale ten seconds later).
    import time

    config = _write(tmp_path, """
version: 1
sources: [{id: crm, connector: fake, tables: ["public.x@50s"]}]
workflows: [{id: w, stage: production, reads: [{asset: "crm:public.x", max_age: 1m}]}]
""")
    started = time.monotonic()
    assert ctxscan("-c", str(config), "scan").code == 0

    def states() -> list[str]:
        answer = json.loads(ctxscan("-c", str(config), "depends", "w", "--json").out)
        return [f["kind"] for f in answer["findings"] if f["kind"] == "stale"]

    assert states() == []  # fresh: this builds and caches the graph
    assert time.monotonic() - started < 10, "the machine is too slow for this test's margin"
    time.sleep(max(0.0, 11 - (time.monotonic() - started)))
    assert states() == ["stale"]


def test_scan_summary_counts_escalations(tmp_path: Path, ctxscan) -> None:
    inventory = """
version: 1
owners: [{{id: team}}]
sources: [{{id: crm, connector: fake, owner: team, tables: ["public.x@2h"]}}]
workflows: [{{id: w, owner: team, stage: {stage}, reads: [{{asset: "crm:public.x", max_age: 1h}}]}}]
"""
    config = _write(tmp_path, inventory.format(stage="poc"))
    first = ctxscan("-c", str(config), "scan")
    assert first.code == 0 and "escalated" not in first.out, first
    config = _write(tmp_path, inventory.format(stage="production"))
    second = ctxscan("-c", str(config), "scan")
    assert "0 new, 0 resolved, 1 escalated." in second.out, second


def test_an_unchanged_bound_turns_stale_when_asked_later(tmp_path: Path, ctxscan) -> None:
    config = _write(tmp_path, """
version: 1
sources: [{id: db, connector: fake, tables: ["public.t@unchanged:5d"]}]
workflows: [{id: w, stage: pilot, reads: [{asset: "db:public.t", max_age: 7d}]}]
""")
    assert ctxscan("-c", str(config), "scan").code == 0
    fresh_kinds = ("stale", "freshness_unknown")
    now = [(f["kind"], f["status"]) for f in json.loads(ctxscan("-c", str(config), "findings", "--json").out)
           if f["kind"] in fresh_kinds]
    assert now == [("freshness_unknown", "open")], now
    later = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    found = [f for f in json.loads(ctxscan("-c", str(config), "findings", "--json", "--status", "all",
                                           "--as-of", later).out) if f["kind"] in fresh_kinds]
    assert sorted((f["kind"], f["status"]) for f in found) == [("freshness_unknown", "resolved"), ("stale", "open")]
    stale = next(f for f in found if f["kind"] == "stale")
    assert "unchanged for at least 8d, past its SLA of 7d" in stale["message"], stale["message"]


def test_open_findings_judged_now_equal_judging_every_stored_finding(tmp_path: Path, ctxscan) -> None:
    """`open_findings` reads only what can be open at its time (the open findings and the
    resolved time-dependent ones); what it answers must equal judging every stored finding,
    resolved ones of every kind included, as `judge_now` does without a list."""
    from scanner.acceptance import acceptance_for
    from scanner.cli import App, open_findings
    from scanner.rules import judge_now

    text = """
version: 1
owners: [{{id: team}}]
sources: [{{id: crm, connector: fake, {owner}tables: ["public.a@1m", "public.b@{age}", "public.c@unchanged:5d"]}}]
workflows: [{{id: w, owner: team, stage: production, reads: [{{asset: "crm:public.*", max_age: 30m}}]}}]
"""
    config = _write(tmp_path, text.format(owner="", age="2h"))
    assert ctxscan("-c", str(config), "scan").code == 0
    # Now the source has an owner (its unowned finding resolves) and b is fresh (its stale
    # finding resolves): both kinds resolved in the store, one of them judged by the clock.
    _write(tmp_path, text.format(owner="owner: team, ", age="1m"))
    assert ctxscan("-c", str(config), "scan").code == 0
    app = App(config=[str(config)])
    store = app.store()
    resolved = {f.kind for f in store.findings("resolved")}
    assert {"unowned", "stale"} <= resolved, resolved
    base = datetime.now(UTC)
    for later in (timedelta(0), timedelta(hours=1), timedelta(hours=3), timedelta(days=10)):
        now = base + later
        expected = [f for f in judge_now(app.inventory(), store, now)
                    if f.status == "open" and acceptance_for(f, app.inventory().accept, now.date()) is None]
        got = open_findings(app, now)
        assert [f.__dict__ for f in got] == [f.__dict__ for f in expected], later
    # Three hours on, every table is stale: b's resolved finding opens again (a second time),
    # as judging all of them says; a's and c's open for the first time.
    again = [f for f in open_findings(app, base + timedelta(hours=3)) if f.kind == "stale"]
    assert sorted((f.asset, f.times_opened) for f in again) == [
        ("crm:public.a", 1), ("crm:public.b", 2), ("crm:public.c", 1)], again
