"""`ctxscan daemon` as users run it: a subprocess with second-scale schedules, a files source,
a real PostgreSQL (or SQLite) state store and a webhook receiver on 127.0.0.1.

The findings are made to appear and disappear for real: the files source's mtime is moved
into the past (stale) and back (fresh), and the inventory is rewritten and reloaded with
SIGHUP. Other rules may fire on the same estate, so assertions pick the findings they are
about and check "never twice for the same state" over everything delivered.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from scanner.daemon import Schedule, crontab_day_of_week
from scanner.store import Store
from tests.daemon_support import DaemonProcess, WebhookReceiver, assert_no_duplicate_states, wait_for

SECRET_PATH = "/hooks/T0KEN-s3cr3t"
INVENTORY = """
version: 1
owners: [{{id: support}}]
defaults: {{schedule: 1h, timeout: 5s}}
sources:
  - {{id: kb, connector: files, path: kb, owner: support, schedule: {schedule}}}
{extra}
workflows:
  - id: assistant
    owner: support
    stage: {stage}
    reads: [{{asset: "kb:articles", max_age: 1h}}]
    evaluation: {{suite: evals.yaml}}
    rollout: {{fallback: human-queue, rollback_owner: support}}
notify:
  - {{type: webhook, url: "${{HOOK_URL}}", timeout: 1s}}
  - {{type: file, path: out/findings.jsonl}}
"""


def write_inventory(folder: Path, stage: str = "production", schedule: str = "1s", extra: str = "",
                    broken: bool = False) -> Path:
    text = textwrap.dedent(INVENTORY).format(stage=stage, schedule=schedule, extra=extra)
    if broken:
        text += "surprise: [1, 2\n"
    path = folder / "ctxscan.yaml"
    path.write_text(text.lstrip(), encoding="utf-8")
    return path


def make_kb(folder: Path, stale: bool) -> None:
    """A private folder of documents (no public-exposure finding); old or fresh."""
    doc = folder / "kb" / "articles" / "refunds.md"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("Refunds take five days.\n")
    os.chmod(folder / "kb", 0o700)
    os.chmod(doc.parent, 0o700)
    os.chmod(doc, 0o600)
    set_stale(folder, stale)


def set_stale(folder: Path, stale: bool) -> None:
    doc = folder / "kb" / "articles" / "refunds.md"
    when = time.time() - (2 * 86400 if stale else 0)
    os.utime(doc, (when, when))


@pytest.fixture
def receiver():
    hook = WebhookReceiver(SECRET_PATH)
    yield hook
    hook.close()


def file_events(folder: Path) -> list[dict]:
    path = folder / "out" / "findings.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_one_delivery_per_state_resolve_and_restart_without_duplicates(tmp_path: Path, pg_database: str,
                                                                       receiver: WebhookReceiver) -> None:
    make_kb(tmp_path, stale=True)
    config = write_inventory(tmp_path)
    env = {"HOOK_URL": receiver.url}
    daemon = DaemonProcess(config, pg_database, env=env)
    try:
        daemon.wait_up()
        wait_for(lambda: receiver.of("stale", "kb:articles"), what="the stale notification")
        # Many cycles later, still one delivery for that state, on the webhook and in the file.
        first_scans = daemon.scans("kb")
        daemon.wait_scans("kb", first_scans + 4)
        stale = receiver.of("stale", "kb:articles")
        assert [m["event"] for m in stale] == ["opened"]
        message = stale[0]
        assert message["text"].startswith(":rotating_light: ctxscan: opened [critical] stale on kb:articles")
        assert message["finding"]["severity"] == "critical" and message["finding"]["status"] == "open"
        assert message["finding"]["workflow"] == "assistant"
        assert [e["event"] for e in file_events(tmp_path) if e["finding"]["kind"] == "stale"] == ["opened"]

        # /healthz: 200, the scheduler runs, the last successful scan per source.
        code, body = daemon.get("/healthz")
        health = json.loads(body)
        assert code == 200 and health["status"] == "ok" and health["scheduler"] == "running"
        kb = health["sources"]["kb"]
        assert kb["last_status"] == "ok" and kb["schedule"] == "1s"
        assert datetime.fromisoformat(kb["last_success"]) > datetime.now(UTC) - timedelta(minutes=1)
        assert {t["name"] for t in health["notify"]} == {"webhook[0]", "file[1]"}
        # /metrics: Prometheus text with ages, SLAs, open findings, durations and deliveries.
        metrics = daemon.metrics()
        age = _sample(metrics, 'ctxscan_asset_age_seconds{asset="articles",source="kb"}')
        assert 2 * 86400 - 60 < age < 2 * 86400 + 600
        assert _sample(metrics, 'ctxscan_asset_sla_seconds{asset="articles",source="kb"}') == 3600.0
        assert _sample(metrics, 'ctxscan_open_findings{kind="stale",severity="critical"}') == 1.0
        assert _sample(metrics, 'ctxscan_scan_duration_seconds_count{source="kb"}') >= 4
        assert _sample(metrics, 'ctxscan_scans_total{source="kb",status="ok"}') >= 4
        assert _sample(metrics, 'ctxscan_notifications_total{event="opened",target="webhook[0]"}') >= 1
        assert _sample(metrics, "ctxscan_scheduler_running") == 1.0
        assert "# TYPE ctxscan_notification_failures_total counter" in metrics
        assert "# TYPE ctxscan_probe_failures_total counter" in metrics

        # Fix the fault: one resolve message.
        set_stale(tmp_path, stale=False)
        wait_for(lambda: len(receiver.of("stale", "kb:articles")) == 2, what="the resolve notification")
        resolved = receiver.of("stale", "kb:articles")[1]
        assert resolved["event"] == "resolved" and resolved["finding"]["status"] == "resolved"
        assert resolved["text"].startswith(":white_check_mark: ctxscan: resolved")
        assert daemon.stop(signal.SIGTERM) == 0
    finally:
        daemon.kill()
    assert "stopped" in daemon.log

    # A restart remembers what was sent: cycles go by without a repeat...
    before = len(receiver.received)
    again = DaemonProcess(config, pg_database, env=env)
    try:
        again.wait_up()
        again.wait_scans("kb", 3)
        assert len(receiver.received) == before
        # ...and the fault coming back is news again.
        set_stale(tmp_path, stale=True)
        wait_for(lambda: len(receiver.of("stale", "kb:articles")) == 3, what="the reopen notification")
        assert receiver.of("stale", "kb:articles")[2]["event"] == "reopened"
        again.wait_scans("kb", again.scans("kb") + 2)
        assert again.stop(signal.SIGINT) == 0
    finally:
        again.kill()
    assert [m["event"] for m in receiver.of("stale", "kb:articles")] == ["opened", "resolved", "reopened"]
    assert [e["event"] for e in file_events(tmp_path)
            if e["finding"]["kind"] == "stale"] == ["opened", "resolved", "reopened"]
    assert_no_duplicate_states(receiver)
    # The webhook URL is a secret: not in the logs, not in the store.
    for log in (daemon.log, again.log):
        assert "T0KEN" not in log and "Traceback" not in log
    engine = sa.create_engine(pg_database)
    with engine.connect() as conn:
        for table in ("notify_outbox", "notify_ledger", "scheduler_state", "source_results", "scans"):
            rows = conn.execute(sa.text(f"SELECT * FROM {table}")).all()
            assert "T0KEN" not in repr(rows)
    engine.dispose()


def _sample(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics:\n{metrics}")


def test_webhook_failing_or_hanging_never_stops_scans_and_gets_what_it_missed(
        tmp_path: Path, pg_database: str, receiver: WebhookReceiver) -> None:
    make_kb(tmp_path, stale=True)
    config = write_inventory(tmp_path)
    receiver.mode = "hang"
    daemon = DaemonProcess(config, pg_database, "--retry-max", "1s", env={"HOOK_URL": receiver.url})
    try:
        daemon.wait_up()
        wait_for(lambda: "hang" in receiver.attempts, what="a delivery attempt")
        # While the webhook hangs, scans go on.
        during_hang = daemon.scans("kb")
        daemon.wait_scans("kb", during_hang + 2)
        receiver.mode = "fail"
        wait_for(lambda: receiver.attempts.count("fail") >= 2, what="retries against a failing webhook")
        during_failure = daemon.scans("kb")
        daemon.wait_scans("kb", during_failure + 2)
        assert receiver.received == []
        health = daemon.health()
        webhook = next(t for t in health["notify"] if t["name"] == "webhook[0]")
        assert webhook["failures"] >= 3 and webhook["pending"] >= 1
        assert webhook["last_error"] in ("HTTP 500", "timed out after 1s")
        assert _sample(daemon.metrics(), 'ctxscan_notification_failures_total{target="webhook[0]"}') >= 3
        # The file target is not held back by the webhook.
        assert [e["event"] for e in file_events(tmp_path) if e["finding"]["kind"] == "stale"] == ["opened"]

        # It comes back and gets what it missed, once.
        receiver.mode = "ok"
        wait_for(lambda: receiver.of("stale", "kb:articles"), what="the delivery after recovery")
        daemon.wait_scans("kb", daemon.scans("kb") + 2)
        assert [m["event"] for m in receiver.of("stale", "kb:articles")] == ["opened"]
        wait_for(lambda: next(t for t in daemon.health()["notify"] if t["name"] == "webhook[0]")["pending"] == 0,
                 what="an empty outbox")
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    assert_no_duplicate_states(receiver)
    assert "notification to webhook[0] (host 127.0.0.1) failed" in daemon.log
    assert "T0KEN" not in daemon.log


def test_sighup_reloads_a_good_inventory_and_refuses_a_bad_one(tmp_path: Path, pg_database: str,
                                                               receiver: WebhookReceiver) -> None:
    make_kb(tmp_path, stale=True)
    config = write_inventory(tmp_path, stage="poc")
    daemon = DaemonProcess(config, pg_database, env={"HOOK_URL": receiver.url})
    try:
        daemon.wait_up()
        wait_for(lambda: receiver.of("stale", "kb:articles"), what="the stale notification")
        opened = receiver.of("stale", "kb:articles")[0]
        assert opened["event"] == "opened" and opened["finding"]["severity"] != "critical"
        digest = daemon.health()["inventory"]["digest"]

        # A good inventory: the workflow goes to production (the finding rises) and a source is added.
        write_inventory(tmp_path, stage="production",
                        extra="  - {id: extra, connector: fake, tables: [public.a], owner: support, schedule: 1s}")
        daemon.send(signal.SIGHUP)
        wait_for(lambda: daemon.scans("extra") >= 1, what="the added source's first scan")
        wait_for(lambda: len(receiver.of("stale", "kb:articles")) == 2, what="the escalation")
        escalated = receiver.of("stale", "kb:articles")[1]
        assert escalated["event"] == "escalated" and escalated["finding"]["severity"] == "critical"
        reloaded = daemon.health()["inventory"]
        assert reloaded["digest"] != digest and reloaded["last_reload_error"] is None
        digest = reloaded["digest"]

        # A bad inventory is refused with a log line; the daemon keeps running on the old one.
        write_inventory(tmp_path, stage="production", broken=True)
        daemon.send(signal.SIGHUP)
        wait_for(lambda: "inventory reload refused" in daemon.log, what="the refusal")
        health = daemon.health()
        assert health["status"] == "ok" and health["inventory"]["digest"] == digest
        assert "ctxscan.yaml" in health["inventory"]["last_reload_error"]
        scans = daemon.scans("extra")
        daemon.wait_scans("extra", scans + 2)
        daemon.wait_scans("kb", daemon.scans("kb") + 1)
        assert daemon.proc.poll() is None
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    refusal = next(line for line in daemon.log.splitlines() if "inventory reload refused" in line)
    assert "ctxscan.yaml:" in refusal and "Traceback" not in daemon.log
    assert [m["event"] for m in receiver.of("stale", "kb:articles")] == ["opened", "escalated"]
    assert_no_duplicate_states(receiver)


def test_sigterm_abandons_a_hanging_probe_within_the_deadline(tmp_path: Path, pg_database: str) -> None:
    config = tmp_path / "ctxscan.yaml"
    config.write_text(textwrap.dedent("""
        version: 1
        sources:
          - {id: stuck, connector: fake, hang: true, timeout: 60s, schedule: 1s}
        """), encoding="utf-8")
    daemon = DaemonProcess(config, pg_database, "--stop-timeout", "1s", "--log-format", "json")
    try:
        daemon.wait_up()
        wait_for(lambda: daemon.health().get("sources", {}).get("stuck", {}).get("running"),
                 what="the hanging probe")
        # The liveness bound is generous; the deadline itself is --stop-timeout 1s.
        assert daemon.stop(signal.SIGTERM, timeout=10) == 0
    finally:
        daemon.kill()
    lines = [json.loads(line) for line in daemon.log.splitlines() if line.startswith("{")]
    assert any("abandoned" in line["message"] for line in lines)
    assert lines[-1]["message"] == "stopped" and lines[-1]["clean"] is False
    store = Store.open(pg_database)
    assert store.scans(5)[0].status == "interrupted"
    store.close()


def test_restart_after_downtime_does_one_catch_up_scan_per_source(tmp_path: Path, pg_database: str) -> None:
    config = tmp_path / "ctxscan.yaml"
    config.write_text(textwrap.dedent("""
        version: 1
        sources:
          - {id: overdue, connector: fake, tables: [public.a], schedule: 15m}
          - {id: hourly, connector: fake, tables: [public.b], schedule: "0 * * * *"}
          - {id: recent, connector: fake, tables: [public.c], schedule: 1h}
          - {id: tick, connector: fake, tables: [public.d], schedule: 1s}
          - {id: broken, connector: fake, fail: "connection refused", schedule: 1s}
        """), encoding="utf-8")
    now = datetime.now(UTC)
    store = Store.open(pg_database)
    # As a daemon down for a day would have left them.
    store.record_schedule("overdue", schedule="15m", last_started_at=now - timedelta(days=1))
    store.record_schedule("hourly", schedule="0 * * * *", last_started_at=now - timedelta(days=1))
    store.record_schedule("recent", schedule="1h", last_started_at=now - timedelta(minutes=5))
    daemon = DaemonProcess(config, pg_database)
    try:
        daemon.wait_up()
        daemon.wait_scans("overdue", 1)
        daemon.wait_scans("hourly", 1)
        daemon.wait_scans("tick", 5)   # time passes: many ticks
        daemon.wait_scans("broken", 2)
        health = daemon.health()["sources"]
        metrics = daemon.metrics()
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    assert health["overdue"]["scans_since_start"] == 1 and health["hourly"]["scans_since_start"] == 1
    assert health["recent"]["scans_since_start"] == 0
    assert health["broken"]["last_status"] == "failed" and health["broken"]["last_success"] is None
    assert "connection refused" in health["broken"]["last_error"]
    assert _sample(metrics, 'ctxscan_probe_failures_total{reason="unreachable",source="broken"}') >= 2
    assert _sample(metrics, 'ctxscan_source_up{source="broken"}') == 0.0
    assert _sample(metrics, 'ctxscan_source_up{source="tick"}') == 1.0
    next_recent = datetime.fromisoformat(health["recent"]["next_run"])
    assert now + timedelta(minutes=50) < next_recent < now + timedelta(minutes=62)
    next_overdue = datetime.fromisoformat(health["overdue"]["next_run"])
    assert now + timedelta(minutes=14) < next_overdue < now + timedelta(minutes=17)
    per_source: dict[str, int] = {}
    for scan in store.scans(100):
        for source_id in scan.sources:
            per_source[source_id] = per_source.get(source_id, 0) + 1
    assert per_source["overdue"] == 1 and per_source["hourly"] == 1 and "recent" not in per_source
    remembered = store.schedule_states()
    assert remembered["overdue"].last_status == "ok" and remembered["overdue"].last_success_at is not None
    store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_scan_and_queries_work_while_the_daemon_writes(tmp_path: Path, backend: str, request, ctxscan) -> None:
    state = (f"sqlite:///{tmp_path / 'state.db'}" if backend == "sqlite"
             else request.getfixturevalue("pg_database"))
    sources = "\n".join(f"  - {{id: s{i}, connector: fake, tables: [public.t@2h, public.u], schedule: 0.2s}}"
                        for i in range(4))
    config = tmp_path / "ctxscan.yaml"
    config.write_text(f"version: 1\nsources:\n{sources}\nworkflows:\n"
                      "  - {id: w, reads: [{asset: 's0:public.t', max_age: 1h}, 's1:public.u']}\n",
                      encoding="utf-8")
    daemon = DaemonProcess(config, state)
    try:
        daemon.wait_up()
        daemon.wait_scans("s0", 3)
        for _ in range(2):
            scan = ctxscan("scan", "-c", str(config), "--state", state, "--json")
            assert scan.code == 0, scan
            assert json.loads(scan.out)["status"] == "ok"
            listed = ctxscan("findings", "-c", str(config), "--state", state, "--json")
            assert listed.code == 0, listed
            assert any(f["kind"] == "stale" and f["asset"] == "s0:public.t" for f in json.loads(listed.out))
        before = daemon.scans("s3")
        daemon.wait_scans("s3", before + 2)
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    assert "locked" not in daemon.log and "ERROR" not in daemon.log, daemon.log
    store = Store.open(state)
    stale = [f for f in store.findings("open") if f.kind == "stale"]
    assert len(stale) == 1 and stale[0].times_opened == 1, (stale, daemon.log)
    store.close()


def test_once_scans_delivers_and_exits(tmp_path: Path, receiver: WebhookReceiver, ctxscan) -> None:
    make_kb(tmp_path, stale=True)
    config = write_inventory(tmp_path, schedule="1h")
    state = f"sqlite:///{tmp_path / 'state.db'}"
    result = ctxscan("daemon", "-c", str(config), "--state", state, "--once", env={"HOOK_URL": receiver.url})
    assert result.code == 0, result
    assert [m["event"] for m in receiver.of("stale", "kb:articles")] == ["opened"]
    again = ctxscan("daemon", "-c", str(config), "--state", state, "--once", env={"HOOK_URL": receiver.url})
    assert again.code == 0, again
    assert len(receiver.of("stale", "kb:articles")) == 1
    assert "T0KEN" not in result.err + again.err


def test_a_taken_port_is_one_line_and_exit_2(tmp_path: Path, ctxscan) -> None:
    import socket

    (tmp_path / "ctxscan.yaml").write_text("version: 1\nsources:\n  - {id: a, connector: fake}\n")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = ctxscan("daemon", "-c", str(tmp_path / "ctxscan.yaml"), "--metrics-port", str(port),
                         timeout=30)
    assert result.code == 2, result
    assert f"cannot listen on 127.0.0.1:{port}" in result.err and "Traceback" not in result.err


# ---------------------------------------------------------------------------------------
# Schedules, in-process: when a (re)started daemon runs a source first

NOW = datetime(2026, 3, 4, 10, 7, 30, tzinfo=UTC)   # a Wednesday


@pytest.mark.parametrize(("schedule", "last_run", "expected"), [
    ("15m", None, NOW),                                             # never run: now
    ("15m", NOW - timedelta(days=1), NOW),                          # down a day: once, now
    ("15m", NOW - timedelta(minutes=5), NOW + timedelta(minutes=10)),
    ("2s", NOW - timedelta(seconds=1), NOW + timedelta(seconds=1)),
    ("0 * * * *", NOW - timedelta(days=1), NOW),                    # many hours missed: once
    ("0 * * * *", NOW - timedelta(minutes=5), datetime(2026, 3, 4, 11, 0, tzinfo=UTC)),
    ("*/15 * * * *", NOW - timedelta(minutes=1), datetime(2026, 3, 4, 10, 15, tzinfo=UTC)),
    ("30 6 * * 0", NOW - timedelta(days=1), datetime(2026, 3, 8, 6, 30, tzinfo=UTC)),   # 0 = Sunday
    ("30 6 * * 1-5", NOW - timedelta(hours=1), datetime(2026, 3, 5, 6, 30, tzinfo=UTC)),
])
def test_first_run_after_a_restart(schedule: str, last_run: datetime | None, expected: datetime) -> None:
    assert Schedule.parse(schedule).first_run(last_run, NOW) == expected


@pytest.mark.parametrize(("field", "expected"), [
    ("0", "sun"), ("7", "sun"), ("1-5", "mon,tue,wed,thu,fri"), ("0,6", "sun,sat"),
    ("*/2", "*/2"), ("mon-fri", "mon-fri"), ("1-7/3", "mon,thu,sun"), ("*", "*"),
])
def test_crontab_weekdays_mean_what_crontab_means(field: str, expected: str) -> None:
    assert crontab_day_of_week(field) == expected


def test_jitter_is_small() -> None:
    assert Schedule.parse("2s").jitter(NOW) == pytest.approx(0.2)
    assert Schedule.parse("1h").jitter(NOW) == 60.0
    assert Schedule.parse("*/5 * * * *").jitter(NOW) == 30.0
    with pytest.raises(ValueError):
        Schedule.parse("61 * * * *")


# ---------------------------------------------------------------------------------------
# /metrics, in-process: the SLA gauge is the `stale` rule's effective SLA

def test_asset_sla_metric_is_the_rules_effective_sla(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from scanner.inventory import load_inventory
    from scanner.metrics import DaemonMetrics, MetricsView
    from scanner.model import FreshnessObservation

    config = tmp_path / "ctxscan.yaml"
    config.write_text(textwrap.dedent("""
        version: 1
        sources:
          - id: crm
            connector: fake
            freshness: {max_age: 1d}
            assets: [{path: "hr.*", max_age: 2h}]
            tables: [public.x, public.y, hr.people, misc.notes]
        workflows:
          - {id: up, reads: ["crm:public.x"], feeds: [down]}
          - {id: down, reads: [{asset: "crm:public.y", max_age: 30m}]}
        """), encoding="utf-8")
    inventory = load_inventory([config], env={})
    observed = FreshnessObservation(method="metadata", last_changed=NOW - timedelta(minutes=5))
    view = MetricsView(now=NOW, inventory=inventory,
                       assets={"crm": [(p, observed) for p in ("public.x", "public.y", "hr.people", "misc.notes")]},
                       open_findings={}, last_success={}, outbox_pending={}, scheduler_running=True)
    text = DaemonMetrics(lambda: view).render().decode()
    family = next(f for f in text_string_to_metric_families(text) if f.name == "ctxscan_asset_sla_seconds")
    slas = {s.labels["asset"]: s.value for s in family.samples}
    assert slas == {
        "public.x": 1800.0,      # through up -> down: down needs its inputs within 30m
        "public.y": 1800.0,      # down's own read
        "hr.people": 7200.0,     # the glob `assets:` override
        "misc.notes": 86400.0,   # the source's freshness.max_age
    }


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_daemon_once_is_refused_while_another_daemon_leads_the_store(tmp_path: Path, backend: str,
                                                                    request: pytest.FixtureRequest) -> None:
    import subprocess
    import sys

    config = tmp_path / "ctxscan.yaml"
    config.write_text("version: 1\nsources:\n  - {id: kb, connector: fake, schedule: 1h, tables: [docs]}\n"
                      "notify:\n  - {type: file, path: events.jsonl}\n")
    state = (f"sqlite:///{tmp_path / 'state.db'}" if backend == "sqlite"
             else request.getfixturevalue("pg_database"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTXSCAN_")}

    def once() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "scanner", "daemon", "--once", "-c", str(config),
                               "--state", state], capture_output=True, text=True, timeout=120, env=env,
                              cwd=tmp_path)

    daemon = DaemonProcess(config, state)
    try:
        daemon.wait_up(30)
        daemon.wait_scans("kb", 1)
        refused = once()
    finally:
        daemon.stop()
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "another ctxscan daemon leads this state store" in lines[0], refused.stderr
    assert "Traceback" not in refused.stderr
    # With the daemon gone, the one-shot run takes the lead itself.
    ran = once()
    assert ran.returncode == 0, ran.stderr
