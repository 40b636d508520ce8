"""Notifications in-process: what is sent when, the outbox, and the webhook's failure modes.

Findings are driven through a real SQLite store with `sync_findings`, as a scan would; the
webhook is a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from scanner.daemon import REDACTOR, JsonFormatter
from scanner.inventory import load_inventory
from scanner.model import Finding
from scanner.notify import (
    DeliveryError,
    Dispatcher,
    LogNotifier,
    WebhookNotifier,
    _Worker,
    build_payload,
    plan,
    targets_for,
)
from scanner.store import LedgerEntry, Store, StoredFinding
from tests.daemon_support import WebhookReceiver, wait_for

SECRET_PATH = "/hooks/T0KEN-s3cr3t"
T0 = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)


def inventory(tmp_path: Path, url: str = "http://127.0.0.1:9/hooks/T0KEN-s3cr3t", extra: str = ""):
    path = tmp_path / "ctxscan.yaml"
    path.write_text(f"""
version: 1
owners: [{{id: support}}, {{id: data}}]
sources:
  - {{id: crm, connector: fake, owner: data}}
workflows:
  - {{id: bot, owner: support, stage: production, reads: ["crm:public.a"]}}
notify:
  - {{type: webhook, url: "{url}", timeout: 0.5s}}
  - {{type: file, path: out/findings.jsonl}}
{extra}
""", encoding="utf-8")
    return load_inventory([path], env={})


def finding(severity: str = "high", asset: str = "crm:public.a", kind: str = "stale") -> Finding:
    return Finding(kind=kind, severity=severity, message=f"{asset} is old", fingerprint=f"fp-{kind}-{asset}",
                   source="crm", asset=asset, workflow="bot")


def stored(status: str = "open", severity: str = "high", times: int = 1) -> StoredFinding:
    return StoredFinding(fingerprint="fp", kind="stale", subkind=None, severity=severity, status=status,
                         source="crm", asset="crm:public.a", workflow="bot", principal=None, message="old",
                         remediation="", evidence={}, first_seen=T0, last_seen=T0, resolved_at=None,
                         times_opened=times)


def entry(status: str = "open", severity: str = "high", times: int = 1) -> LedgerEntry:
    return LedgerEntry("fp", status, severity, times, "opened", T0)


# ---------------------------------------------------------------------------------------
# What is sent when: a table of cases

PLAN_CASES = [
    # finding                       ledger                        min_severity  expected event
    (stored("open"),                 None,                         "info",   "opened"),
    (stored("open"),                 entry("open"),                "info",   None),        # same state
    (stored("open", "critical"),     entry("open", "high"),        "info",   "escalated"),
    (stored("open", "low"),          entry("open", "high"),        "info",   "silent"),    # lower: no message
    (stored("resolved"),             entry("open"),                "info",   "resolved"),
    (stored("resolved"),             entry("resolved"),            "info",   None),
    (stored("resolved"),             None,                         "info",   None),        # never told it opened
    (stored("open", times=2),        entry("resolved"),            "info",   "reopened"),
    (stored("open", times=2),        entry("open", times=1),       "info",   "reopened"),  # resolved unseen
    (stored("open", "medium"),       None,                         "high",   None),        # below the target
    (stored("open", "critical"),     entry("open", "medium"),      "high",   "escalated"),
    (stored("open", "high"),         entry("open", "low"),         "critical", None),
    (stored("resolved", "low"),      entry("open", "low"),         "critical", "resolved"),  # was told: tell again
]


@pytest.mark.parametrize(("current", "ledger", "min_severity", "expected"), PLAN_CASES)
def test_plan(tmp_path: Path, current: StoredFinding, ledger: LedgerEntry | None, min_severity: str,
              expected: str | None) -> None:
    inv = inventory(tmp_path, extra=f"  - {{type: log, min_severity: {min_severity}}}")
    target = targets_for(inv)[2]
    decision = plan(current, ledger, target, inv, date(2026, 3, 4))
    if expected is None:
        assert decision is None
    elif expected == "silent":
        assert decision is not None and decision[0] is None and decision[2] == current.severity
    else:
        assert decision is not None and decision[0] == expected


def test_accepted_and_other_owners_findings_are_not_sent(tmp_path: Path) -> None:
    inv = inventory(tmp_path, extra="  - {type: log, owners: [nobody]}\n"
                                    "  - {type: log, owners: [data]}\n"
                                    "accept:\n  - {fingerprint: fp, reason: known, expires: 2099-01-01}\n")
    everyone, nobody, data = targets_for(inv)[0], targets_for(inv)[2], targets_for(inv)[3]
    today = date(2026, 3, 4)
    assert plan(stored("open"), None, everyone, inv, today) is None          # accepted
    inv_open = inventory(tmp_path, extra="  - {type: log, owners: [nobody]}\n  - {type: log, owners: [data]}")
    nobody, data = targets_for(inv_open)[2], targets_for(inv_open)[3]
    assert plan(stored("open"), None, nobody, inv_open, today) is None       # not their finding
    assert plan(stored("open"), None, data, inv_open, today)[0] == "opened"  # the source's owner


# ---------------------------------------------------------------------------------------
# The whole path through a real store

def test_each_state_is_queued_once_and_delivered_in_order(tmp_path: Path) -> None:
    receiver = WebhookReceiver(SECRET_PATH)
    try:
        inv = inventory(tmp_path, receiver.url)
        store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
        dispatcher = Dispatcher(store, targets_for(inv), retry_initial=0.05, retry_max=0.2, poll_interval=0.05)
        dispatcher.start()
        steps = [
            ([finding("high")], ["opened"]),
            ([finding("high")], []),                     # seen again: nothing
            ([finding("critical")], ["escalated"]),
            ([finding("medium")], []),                   # lower: nothing
            ([finding("critical")], ["escalated"]),      # a rise again is news
            ([], ["resolved"]),
            ([], []),
            ([finding("high")], ["reopened"]),
        ]
        expected: list[str] = []
        for i, (firing, events) in enumerate(steps):
            store.sync_findings(firing, now=T0 + timedelta(minutes=i))
            queued = dispatcher.reconcile(inv, now=T0 + timedelta(minutes=i))
            assert queued.queued.get("webhook[0]", 0) == len(events), (i, queued)
            expected += events
        wait_for(lambda: len(receiver.received) == len(expected), 10, "deliveries")
        assert [m["event"] for m in receiver.received] == expected
        assert [m["finding"]["severity"] for m in receiver.received] == [
            "high", "critical", "critical", "critical", "high"]
        lines = (tmp_path / "out" / "findings.jsonl").read_text().splitlines()
        wait_for(lambda: len((tmp_path / "out" / "findings.jsonl").read_text().splitlines()) == len(expected),
                 10, "file lines")
        lines = (tmp_path / "out" / "findings.jsonl").read_text().splitlines()
        assert [json.loads(line)["event"] for line in lines] == expected
        first = receiver.received[0]
        assert first["text"] == ":rotating_light: ctxscan: opened [high] stale on crm:public.a: crm:public.a is old"
        assert first["finding"]["fingerprint"] == "fp-stale-crm:public.a" and first["source"] == "ctxscan"
        dispatcher.stop()
        store.close()
    finally:
        receiver.close()


def test_a_failing_webhook_keeps_its_queue_and_a_restart_delivers_it_once(tmp_path: Path,
                                                                         caplog: Any) -> None:
    receiver = WebhookReceiver(SECRET_PATH)
    receiver.mode = "fail"
    try:
        inv = inventory(tmp_path, receiver.url)
        store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
        dispatcher = Dispatcher(store, targets_for(inv), retry_initial=0.05, retry_max=0.1, poll_interval=0.05)
        dispatcher.start()
        store.sync_findings([finding("high", "crm:public.a"), finding("high", "crm:public.b")], now=T0)
        dispatcher.reconcile(inv, now=T0)
        with caplog.at_level(logging.WARNING, logger="ctxscan.notify"):
            wait_for(lambda: receiver.attempts.count("fail") >= 3, 10, "retries")
        status = next(s for s in dispatcher.statuses() if s.name == "webhook[0]")
        assert status.failures >= 3 and status.last_error == "HTTP 500" and status.pending == 2
        assert "T0KEN" not in caplog.text and "webhook[0] (host 127.0.0.1)" in caplog.text
        dispatcher.stop()
        webhook_key = targets_for(inv)[0].key
        pending = store.pending_notifications(webhook_key)
        assert [p.attempts >= 1 for p in pending] == [True, False] and pending[0].last_error == "HTTP 500"
        # The daemon restarts; the webhook is back.
        receiver.mode = "ok"
        restarted = Dispatcher(store, targets_for(inv), retry_initial=0.05, retry_max=0.1, poll_interval=0.05)
        assert restarted.reconcile(inv, now=T0 + timedelta(minutes=1)).queued == {}
        restarted.start()
        wait_for(lambda: len(receiver.received) == 2, 10, "the missed deliveries")
        assert sorted(m["finding"]["asset"] for m in receiver.received) == ["crm:public.a", "crm:public.b"]
        assert restarted.flush(5)
        restarted.stop()
        assert store.pending_notifications(webhook_key) == []
        assert all("T0KEN" not in json.dumps(e.payload) for e in store.outbox())
        assert webhook_key.startswith("webhook-") and "T0KEN" not in webhook_key
        store.close()
    finally:
        receiver.close()


def test_backoff_doubles_and_is_capped(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    dispatcher = Dispatcher(store, [], retry_initial=1.0, retry_max=30.0)
    worker = _Worker(dispatcher, targets_for(inventory(tmp_path))[0])
    for failures, nominal in [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (20, 30.0)]:
        worker.status.consecutive_failures = failures
        assert 0.8 * nominal <= worker._backoff() <= nominal
    store.close()


# ---------------------------------------------------------------------------------------
# The webhook's failure modes; the URL never shows

class _Redirect(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        self.send_response(302)
        self.send_header("Location", "http://127.0.0.1:9/elsewhere")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_webhook_errors_are_short_and_never_contain_the_url(tmp_path: Path) -> None:
    receiver = WebhookReceiver(SECRET_PATH)
    try:
        notifier = WebhookNotifier(targets_for(inventory(tmp_path, receiver.url))[0])
        payload = build_payload("opened", stored(), T0)
        notifier.deliver(payload)
        assert receiver.received == [json.loads(json.dumps(payload, default=str))]
        receiver.mode = "fail"
        with pytest.raises(DeliveryError, match=r"^HTTP 500$"):
            notifier.deliver(payload)
        receiver.mode, receiver.hang_for = "hang", 2.0
        with pytest.raises(DeliveryError, match=r"^timed out after 0.5s$"):
            notifier.deliver(payload)
    finally:
        receiver.close()
    with socket.socket() as sock:     # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    refused = WebhookNotifier(targets_for(inventory(tmp_path, f"http://user:pw-T0KEN@127.0.0.1:{closed}"
                                                              f"{SECRET_PATH}?key=T0KEN2"))[0])
    with pytest.raises(DeliveryError) as raised:
        refused.deliver(payload)
    assert "T0KEN" not in str(raised.value) and "unreachable" in str(raised.value)
    assert "T0KEN" not in refused.target.describe() and "T0KEN" not in refused.target.name
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        redirecting = WebhookNotifier(targets_for(inventory(
            tmp_path, f"http://127.0.0.1:{server.server_address[1]}{SECRET_PATH}"))[0])
        with pytest.raises(DeliveryError, match=r"^HTTP 302$"):
            redirecting.deliver(payload)
    finally:
        server.shutdown()
        server.server_close()


def test_log_target_writes_structured_lines_with_secrets_redacted(tmp_path: Path) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("ctxscan.findings")
    logger.addHandler(handler)
    old_level, old_secrets = logger.level, REDACTOR.secrets
    logger.setLevel(logging.INFO)
    REDACTOR.secrets = ["sup3r-secret-value"]
    try:
        inv = inventory(tmp_path, extra="  - {type: log}")
        LogNotifier(targets_for(inv)[2]).deliver(build_payload("opened", stored(), T0))
        logging.getLogger("ctxscan.findings").warning("leak? %s", "sup3r-secret-value")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        REDACTOR.secrets = old_secrets
    first, second = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert first["message"] == "opened [high] stale on crm:public.a: old"  # the logger already names ctxscan
    assert first["level"] == "warning" and first["event"] == "opened" and first["kind"] == "stale"
    assert first["fingerprint"] == "fp" and first["subject"] == "crm:public.a"
    assert second["message"] == "leak? ***"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_syncs_open_a_finding_once(tmp_path: Path, backend: str, request: Any) -> None:
    """The daemon's jobs and a CLI scan may sync findings at the same time."""
    url = (f"sqlite:///{tmp_path / 'state.db'}" if backend == "sqlite"
           else request.getfixturevalue("pg_database"))
    Store.open(url).close()
    stores = [Store.open(url) for _ in range(6)]
    opened: list[int] = []
    barrier = threading.Barrier(len(stores))

    def sync(store: Store) -> None:
        barrier.wait()
        changes = store.sync_findings([finding("high")], now=T0)
        opened.append(len(changes.opened))

    threads = [threading.Thread(target=sync, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(opened) == [0, 0, 0, 0, 0, 1]
    for store in stores:
        store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_sync_evaluates_under_the_lock_so_an_older_view_never_wins(tmp_path: Path, backend: str,
                                                                      request: Any) -> None:
    """Two scans finishing together: the second evaluates only after the first has synced."""
    url = (f"sqlite:///{tmp_path / 'state.db'}" if backend == "sqlite"
           else request.getfixturevalue("pg_database"))
    first_store, second_store = Store.open(url), Store.open(url)
    inside, release, second_inside = threading.Event(), threading.Event(), threading.Event()
    order: list[str] = []

    def first_view() -> list[Finding]:
        order.append("first")
        inside.set()
        release.wait(10)
        return [finding("high")]

    def second_view() -> list[Finding]:
        order.append("second")
        second_inside.set()
        return []

    first = threading.Thread(target=lambda: first_store.sync_findings(first_view, now=T0))
    first.start()
    assert inside.wait(10)
    second = threading.Thread(target=lambda: second_store.sync_findings(second_view, now=T0))
    second.start()
    assert not second_inside.wait(0.5)     # it waits for the lock instead of looking now
    release.set()
    first.join(10)
    second.join(10)
    assert order == ["first", "second"]
    assert [f.status for f in first_store.findings(None)] == ["resolved"]
    first_store.close()
    second_store.close()
