"""Alerts routed to owners: each owner's contacts hear its findings, fallback targets hear the
ones nobody reachable owns, overdue critical/high findings escalate, digests group messages.

Scans run through `run_scan` on `fake` sources with a pinned clock; the dispatcher is the
daemon's own, delivering to real webhook receivers on 127.0.0.1 and to files, over several
cycles (and one real `ctxscan daemon --once`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from scanner.inventory import Inventory, load_inventory
from scanner.notify import Dispatcher, targets_for
from scanner.scan import run_scan
from scanner.store import Store
from tests.daemon_support import WebhookReceiver, wait_for

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


@pytest.fixture
def hooks() -> Iterator[dict[str, WebhookReceiver]]:
    receivers = {name: WebhookReceiver(f"/hooks/{name}-S3CRET") for name in ("crm", "kb", "triage", "oncall")}
    try:
        yield receivers
    finally:
        for receiver in receivers.values():
            receiver.close()


def _inventory(tmp_path: Path, hooks: dict[str, WebhookReceiver], crm_age: str = "3h",
               routing: str = "", kb_digest: str = "") -> Inventory:
    path = tmp_path / "ctxscan.yaml"
    path.write_text(f"""
version: 1
owners:
  - id: crm-team
    contacts: [{{type: webhook, url: "{hooks['crm'].url}"}}, {{type: file, path: crm.jsonl}}]
  - id: kb-team
    contacts: [{{type: webhook, url: "{hooks['kb'].url}"{kb_digest}}}]
  - id: support
sources:
  - {{id: crm, connector: fake, owner: crm-team, tables: ["public.a@{crm_age}", "public.b@1m"],
     freshness: {{max_age: 1h}}}}
  - {{id: kb, connector: fake, owner: kb-team, tables: ["articles@2d"], freshness: {{max_age: 1d}}}}
  - {{id: legacy, connector: fake, tables: ["x@1m"]}}
workflows:
  - id: bot
    owner: support
    stage: pilot
    reads: ["crm:public.a", "crm:public.b", "kb:articles", "legacy:x"]
notify:
  - {{type: owners, fallback: [{{type: webhook, url: "{hooks['triage'].url}"}}],
     escalate_after: 4h, escalate_to: [{{type: webhook, url: "{hooks['oncall'].url}"}}]{routing}}}
""", encoding="utf-8")
    return load_inventory([path], env={})


def _cycle(store: Store, dispatcher: Dispatcher, inventory: Inventory, at: datetime, scan: bool = True) -> None:
    """What one daemon cycle does: scan (clock pinned), reconcile, deliver."""
    if scan:
        run_scan(inventory, store, now=lambda: at)
    dispatcher.reconcile(inventory, now=at)
    assert dispatcher.flush(20), "deliveries did not drain"


def _subjects(receiver: WebhookReceiver, event: str | None = None) -> set[tuple[str, str]]:
    return {(m["finding"]["kind"], m["finding"]["subject"]) for m in receiver.received
            if event is None or m["event"] == event}


def test_routing_fallback_escalation_and_restart(tmp_path: Path, hooks: dict[str, WebhookReceiver]) -> None:
    inventory = _inventory(tmp_path, hooks)
    names = sorted(t.name for t in targets_for(inventory))
    assert names == ["owners[0].crm-team.file[1]", "owners[0].crm-team.webhook[0]",
                     "owners[0].escalate.webhook[0]", "owners[0].fallback.webhook[0]",
                     "owners[0].kb-team.webhook[0]"]
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    dispatcher = Dispatcher(store, targets_for(inventory), retry_initial=0.05, poll_interval=0.05)
    dispatcher.start()
    try:
        _cycle(store, dispatcher, inventory, T0)
        # Each owner hears exactly its own: the asset's owner, else the source's.
        assert _subjects(hooks["crm"]) == {("stale", "crm:public.a")}
        assert _subjects(hooks["kb"]) == {("stale", "kb:articles")}
        # legacy has no owner: its findings (unowned, and nothing else) go to the fallback.
        assert _subjects(hooks["triage"]) == {("unowned", "legacy")}
        assert hooks["oncall"].received == []
        crm_file = [json.loads(line) for line in (tmp_path / "crm.jsonl").read_text().splitlines()]
        assert [(m["event"], m["finding"]["asset"]) for m in crm_file] == [("opened", "crm:public.a")]

        # Three hours later, still open: nothing new anywhere (never twice per state).
        _cycle(store, dispatcher, inventory, T0 + timedelta(hours=3))
        assert len(hooks["crm"].received) == 1 and len(hooks["kb"].received) == 1
        assert hooks["oncall"].received == []

        # A restarted daemon (a new dispatcher on the same store) repeats nothing.
        dispatcher.stop()
        dispatcher = Dispatcher(store, targets_for(inventory), retry_initial=0.05, poll_interval=0.05)
        dispatcher.start()
        # Past escalate_after (4h): the high stale findings escalate to on-call, once; the
        # medium unowned one does not.
        _cycle(store, dispatcher, inventory, T0 + timedelta(hours=5))
        overdue = [m for m in hooks["oncall"].received if m["event"] == "overdue"]
        assert {(m["finding"]["kind"], m["finding"]["subject"]) for m in overdue} == {
            ("stale", "crm:public.a"), ("stale", "kb:articles")}
        assert all(m["finding"]["severity"] == "high" for m in overdue)
        assert "open since 2026-05-04T09:00" in overdue[0]["text"]
        _cycle(store, dispatcher, inventory, T0 + timedelta(hours=6))
        assert len(hooks["oncall"].received) == 2
        assert len(hooks["crm"].received) == 1  # the owner is not told twice

        # crm:public.a is reloaded: its owner and on-call hear it resolved.
        fresh = _inventory(tmp_path, hooks, crm_age="1m")
        dispatcher.set_targets(targets_for(fresh))
        _cycle(store, dispatcher, fresh, T0 + timedelta(hours=7))
        assert _subjects(hooks["crm"], "resolved") == {("stale", "crm:public.a")}
        assert _subjects(hooks["oncall"], "resolved") == {("stale", "crm:public.a")}
        assert _subjects(hooks["kb"], "resolved") == set()
    finally:
        dispatcher.stop()
        store.close()
    # Contacts' webhook URLs are secrets: the store never keeps them.
    assert b"S3CRET" not in (tmp_path / "state.db").read_bytes()


def test_accepted_findings_do_not_escalate(tmp_path: Path, hooks: dict[str, WebhookReceiver]) -> None:
    inventory = _inventory(tmp_path, hooks)
    path = tmp_path / "ctxscan.yaml"
    path.write_text(path.read_text() + """
accept:
  - {kind: stale, asset: "kb:articles", reason: "rebuilt weekly", expires: 2099-01-01}
""")
    inventory = load_inventory([path], env={})
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    dispatcher = Dispatcher(store, targets_for(inventory), retry_initial=0.05, poll_interval=0.05)
    dispatcher.start()
    try:
        _cycle(store, dispatcher, inventory, T0)
        _cycle(store, dispatcher, inventory, T0 + timedelta(hours=5))
        assert _subjects(hooks["oncall"]) == {("stale", "crm:public.a")}
        assert hooks["kb"].received == []
    finally:
        dispatcher.stop()
        store.close()


def test_digest_groups_what_a_contact_hears(tmp_path: Path, hooks: dict[str, WebhookReceiver]) -> None:
    inventory = _inventory(tmp_path, hooks, routing=", digest: 2s")
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    dispatcher = Dispatcher(store, targets_for(inventory), retry_initial=0.05, poll_interval=0.05)
    dispatcher.start()
    try:
        run_scan(inventory, store, now=lambda: T0)
        queued_at = datetime.now(UTC)
        dispatcher.reconcile(inventory)  # queued now: the period runs on the wall clock
        # The digest period is not over: nothing is sent yet, and --once would not wait for it.
        assert dispatcher.pending() == 0
        assert hooks["crm"].received == []
        wait_for(lambda: hooks["crm"].received, timeout=10, what="the crm digest")
        assert (datetime.now(UTC) - queued_at).total_seconds() >= 1.5
        assert len(hooks["crm"].received) == 1
        digest = hooks["crm"].received[0]
        assert digest["event"] == "digest" and digest["count"] == 1
        assert [f["asset"] for f in digest["digest"]["opened"]] == ["crm:public.a"]
        assert "1 opened" in digest["text"] and "stale on crm:public.a" in digest["text"]
        # The fallback also digests: legacy's unowned finding and nothing else.
        triage = wait_for(lambda: hooks["triage"].received, timeout=10, what="the triage digest")
        assert triage[0]["event"] == "digest" and [f["source"] for f in triage[0]["digest"]["opened"]] == ["legacy"]
        # Two findings resolve and one opens in the next cycle: one more message, listing all three.
        _inventory(tmp_path, hooks, crm_age="1m", routing=", digest: 2s")
        path = tmp_path / "ctxscan.yaml"
        path.write_text(path.read_text().replace('"public.b@1m"', '"public.b@5h"'))
        fresh = load_inventory([path], env={})
        run_scan(fresh, store, now=lambda: T0 + timedelta(minutes=30))
        dispatcher.reconcile(fresh)
        wait_for(lambda: len(hooks["crm"].received) == 2, timeout=10, what="the second crm digest")
        second = hooks["crm"].received[1]["digest"]
        assert [f["asset"] for f in second["resolved"]] == ["crm:public.a"]
        assert [f["asset"] for f in second["opened"]] == ["crm:public.b"]
    finally:
        dispatcher.stop()
        store.close()


def test_daemon_once_routes_to_owners(tmp_path: Path, hooks: dict[str, WebhookReceiver],
                                      ctxscan: Callable[..., Any]) -> None:
    _inventory(tmp_path, hooks)
    result = ctxscan("daemon", "--once", "-c", str(tmp_path / "ctxscan.yaml"),
                     env={**os.environ, "CTXSCAN_STATE": str(tmp_path / "state.db")})
    assert result.code in (0, 1), result.err
    assert ("stale", "crm:public.a") in _subjects(hooks["crm"])
    assert all(subject.startswith("crm:") for _, subject in _subjects(hooks["crm"]))
    assert _subjects(hooks["triage"]) == {("unowned", "legacy")}
    assert "S3CRET" not in result.err + result.out
