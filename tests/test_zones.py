"""Zones on Celery with real processes: a private redis-server, the machine's RabbitMQ,
`ctxscan worker` subprocesses per zone, kill -9, broker restarts, a standby daemon, retention.

Delivery timings are shortened through CTXSCAN_ZONE_* (tests/zones_support.py).
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.daemon_support import DaemonProcess, wait_for
from tests.zones_support import RedisServer, Worker, base_env, ctxscan, scan_json

CANARY = "c4nary-" + uuid.uuid4().hex


@pytest.fixture()
def redis_broker(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def _results(state_file: Path, source_id: str) -> list[tuple[int, str, str | None]]:
    with sqlite3.connect(state_file) as conn:
        return conn.execute("SELECT scan_id, status, error FROM source_results WHERE source_id = ? ORDER BY id",
                            (source_id,)).fetchall()


def test_two_zones_credentials_stay_in_their_zone(tmp_path: Path, redis_broker: RedisServer) -> None:
    config = tmp_path / "ctxscan.yaml"
    config.write_text(
        "version: 1\n"
        "sources:\n"
        "  - {id: here, connector: fake, tables: [main.t]}\n"
        "  - {id: secret-db, connector: fake, zone: alpha, token: '${CANARY}', tables: ['t_${WHERE}']}\n"
        "  - {id: other-db, connector: fake, zone: beta, tables: ['t_${WHERE}']}\n"
        "  - {id: misconfigured, connector: fake, zone: beta, token: '${CANARY}', tables: [x]}\n"
        "  - {id: nobody-home, connector: fake, zone: gamma, tables: [x]}\n")
    # The daemon side has neither variable: validate still passes and names the zones.
    checked = ctxscan("validate", "-c", str(config), "--json")
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["zones"] == {"alpha": ["secret-db"], "beta": ["misconfigured", "other-db"],
                                                   "gamma": ["nobody-home"]}
    assert "zones: alpha (1 sources" in ctxscan("validate", "-c", str(config)).stdout

    monitor = subprocess.Popen(["redis-cli", "-p", str(redis_broker.port), "MONITOR"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    traffic: list[str] = []
    reader = threading.Thread(target=lambda: traffic.extend(monitor.stdout or ()), daemon=True)
    reader.start()
    alpha = Worker(tmp_path, "alpha", redis_broker.url, env={"CANARY": CANARY, "WHERE": "alpha"})
    beta = Worker(tmp_path, "beta", redis_broker.url, env={"WHERE": "beta"})
    try:
        alpha.wait_ready()
        beta.wait_ready()
        state = tmp_path / "state.db"
        report = scan_json(config, f"sqlite:///{state}", redis_broker.url)
        everything = redis_broker.everything()
    finally:
        alpha.stop()
        beta.stop()
        monitor.terminate()
        monitor.wait()
        reader.join(5)
    outcomes = {s["id"]: s for s in report["sources"]}
    assert outcomes["here"]["status"] == "ok"
    # Each zoned source ran on its own zone's worker: the asset name comes from that worker's $WHERE.
    assert outcomes["secret-db"]["status"] == "ok" and outcomes["other-db"]["status"] == "ok"
    findings = json.loads(ctxscan("findings", "-c", str(config), "--state", f"sqlite:///{state}",
                                  "--status", "all", "--json").stdout)
    from scanner.store import Store

    store = Store.open(f"sqlite:///{state}")
    try:
        snapshots = store.latest_snapshots()
    finally:
        store.close()
    assert [a.path for a in snapshots["secret-db"].assets] == ["t_alpha"]
    assert [a.path for a in snapshots["other-db"].assets] == ["t_beta"]
    # A variable missing on the worker is a probe failure naming it, and the zone's worker said so.
    assert outcomes["misconfigured"]["status"] == "failed"
    assert "CANARY" in outcomes["misconfigured"]["error"] and "zone beta" in outcomes["misconfigured"]["error"]
    # A zone without a worker does not wait forever.
    assert outcomes["nobody-home"]["status"] == "failed"
    assert outcomes["nobody-home"]["error"] == "no worker in zone gamma answered within 3s"
    assert {f["source"] for f in findings if f["kind"] == "probe_failed"} == {"misconfigured", "nobody-home"}
    # The secret never crossed the broker: not in its traffic, not in what it stores; the task
    # carried the reference as written (so the capture did see the task).
    seen = "".join(traffic)
    assert "${CANARY}" in seen and "ctxscan.probe" in seen
    assert CANARY not in seen and CANARY not in everything
    assert CANARY not in state.read_bytes().decode("latin-1")


def test_a_worker_killed_mid_probe_loses_nothing(tmp_path: Path, redis_broker: RedisServer) -> None:
    config = tmp_path / "ctxscan.yaml"
    config.write_text("version: 1\nsources:\n"
                      "  - {id: slow, connector: fake, zone: alpha, latency: 3, timeout: 10s, tables: [t]}\n")
    state = tmp_path / "state.db"
    first = Worker(tmp_path, "alpha", redis_broker.url, concurrency=1).wait_ready()
    second: Worker | None = None
    scan = subprocess.Popen([sys_executable(), "-m", "scanner", "scan", "-c", str(config), "--state",
                             f"sqlite:///{state}", "--broker", redis_broker.url, "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=base_env())
    try:
        wait_for(lambda: "received" in first.log, 30, "the first worker to take the task")
        first.kill()  # kill -9 in the middle of the 3 s probe
        killed_at = time.monotonic()
        second = Worker(tmp_path, "alpha", redis_broker.url).wait_ready()
        out, err = scan.communicate(timeout=60)
        redelivered_after = time.monotonic() - killed_at
    finally:
        first.kill()
        if second is not None:
            second.stop()
        if scan.poll() is None:
            scan.kill()
    report = json.loads(out)
    assert report["sources"][0]["status"] == "ok", err
    assert "probed slow" not in first.log and "probed slow" in (second.log if second else "")
    assert redelivered_after < 120
    assert [status for _, status, _ in _results(state, "slow")] == ["ok"]  # stored once


def sys_executable() -> str:
    import sys

    return sys.executable


def test_daemon_and_worker_survive_a_broker_restart(tmp_path: Path, redis_broker: RedisServer) -> None:
    config = tmp_path / "ctxscan.yaml"
    config.write_text("version: 1\nsources:\n"
                      "  - {id: remote, connector: fake, zone: alpha, schedule: 1s, tables: [t]}\n"
                      "  - {id: here, connector: fake, schedule: 1s, tables: [t]}\n")
    worker = Worker(tmp_path, "alpha", redis_broker.url).wait_ready()
    daemon = DaemonProcess(config, f"sqlite:///{tmp_path / 'state.db'}", "--broker", redis_broker.url,
                           env=base_env())
    try:
        daemon.wait_up(40)
        daemon.wait_scans("remote", 2, 40)
        health = daemon.health()
        assert health["role"] == "leader" and health["sources"]["remote"]["last_status"] == "ok"
        alpha = health["zones"]["alpha"]
        assert len(alpha["workers"]) == 1 and alpha["workers"][0].startswith("ctxscan-alpha-")
        assert alpha["queue_depth"] is not None and alpha["dispatched"] >= 2
        assert alpha["dispatch_latency_p50"] is not None and alpha["dispatch_latency_p99"] is not None
        metrics = daemon.metrics()
        assert 'ctxscan_zone_workers{zone="alpha"} 1.0' in metrics and "ctxscan_leader 1.0" in metrics
        assert 'ctxscan_zone_queue_depth{zone="alpha"}' in metrics
        assert 'ctxscan_zone_dispatch_latency_seconds{quantile="0.5",zone="alpha"}' in metrics

        redis_broker.stop()
        time.sleep(2)
        redis_broker.start()  # same port, empty: a restarted broker that kept nothing
        before = daemon.scans("remote")
        # Both reconnect on their own: scans of the zoned source succeed again.
        wait_for(lambda: daemon.scans("remote") >= before + 2
                 and daemon.health()["sources"]["remote"]["last_status"] == "ok", 60,
                 f"zoned scans after the broker restart\n{daemon.log}\n{worker.log}")
        assert worker.proc.poll() is None
        assert daemon.stop() == 0
    finally:
        daemon.kill()
        worker.stop()


def test_a_daemon_killed_mid_probe_rescans_when_it_returns(tmp_path: Path, redis_broker: RedisServer) -> None:
    config = tmp_path / "ctxscan.yaml"
    config.write_text("version: 1\nsources:\n"
                      "  - {id: slow, connector: fake, zone: alpha, schedule: 1h, latency: 2, tables: [t]}\n")
    state = f"sqlite:///{tmp_path / 'state.db'}"
    worker = Worker(tmp_path, "alpha", redis_broker.url).wait_ready()
    daemon = DaemonProcess(config, state, "--broker", redis_broker.url, env=base_env())
    again: DaemonProcess | None = None
    try:
        daemon.wait_up(40)
        wait_for(lambda: "received" in worker.log, 30, "the probe task to reach the worker")
        daemon.kill()  # kill -9 while the probe runs
        again = DaemonProcess(config, state, "--broker", redis_broker.url, env=base_env())
        again.wait_up(40)
        # The schedule is hourly, but the interrupted run is done again right away and stored.
        again.wait_scans("slow", 1, 30)
        assert again.health()["sources"]["slow"]["last_status"] == "ok"
    finally:
        daemon.kill()
        if again is not None:
            again.kill()
        worker.stop()
    assert [status for _, status, _ in _results(tmp_path / "state.db", "slow")] == ["ok"]


def test_a_worker_of_another_protocol_refuses_the_task(tmp_path: Path, redis_broker: RedisServer,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from scanner import zones
    from scanner.inventory import load_inventory
    from scanner.scan import run_scan
    from scanner.store import Store
    from scanner.zones import dispatch

    for key, value in base_env().items():
        if key.startswith("CTXSCAN_ZONE_"):
            monkeypatch.setenv(key, value)
    config = tmp_path / "ctxscan.yaml"
    config.write_text("version: 1\nsources:\n  - {id: remote, connector: fake, zone: alpha, tables: [t]}\n")
    worker = Worker(tmp_path, "alpha", redis_broker.url).wait_ready()
    try:
        # This process plays a newer daemon: it sends protocol N+1.
        monkeypatch.setattr(dispatch, "TASK_PROTOCOL", zones.TASK_PROTOCOL + 1)
        store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
        report = run_scan(load_inventory([config]), store, prober=dispatch.ZoneDispatcher(redis_broker.url))
        store.close()
    finally:
        worker.stop()
    outcome = report.outcomes[0]
    assert outcome.status == "failed"
    assert (f"speaks task protocol {zones.TASK_PROTOCOL}, the task was sent with protocol "
            f"{zones.TASK_PROTOCOL + 1}") in (outcome.error or "")
    assert "probed remote" not in worker.log


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_standby_daemon_takes_over_without_repeating_a_notification(tmp_path: Path, backend: str,
                                                                      request: pytest.FixtureRequest) -> None:
    """A file lock for SQLite, an advisory lock for PostgreSQL; kill -9 of the leader."""
    config = tmp_path / "ctxscan.yaml"
    config.write_text("version: 1\n"
                      "sources:\n  - {id: kb, connector: fake, schedule: 1s, tables: ['docs@3d']}\n"
                      "workflows:\n  - {id: bot, stage: production, reads: [{asset: 'kb:docs', max_age: 1h}]}\n"
                      "notify:\n  - {type: file, path: events.jsonl}\n")
    state = (f"sqlite:///{tmp_path / 'state.db'}" if backend == "sqlite"
             else request.getfixturevalue("pg_database"))
    lease = 2.0
    first = DaemonProcess(config, state, "--lease", "2s", env=base_env())
    second: DaemonProcess | None = None
    events = tmp_path / "events.jsonl"

    def delivered() -> list[tuple[str, str, str]]:
        lines = events.read_text().splitlines() if events.exists() else []
        return [(e["event"], e["finding"]["fingerprint"], e["finding"]["kind"]) for e in map(json.loads, lines)]

    try:
        first.wait_up(30)
        second = DaemonProcess(config, state, "--lease", "2s", env=base_env())
        second.wait_up(30)
        assert first.health()["role"] == "leader"
        standby = second.health()
        assert standby["role"] == "standby" and standby["status"] == "standby"
        assert "ctxscan_leader 0.0" in second.metrics()
        wait_for(lambda: any(kind == "stale" for _, _, kind in delivered()), 30, "the stale notification")
        first.wait_scans("kb", 2)
        sent = delivered()
        first.send(signal.SIGKILL)
        died = time.monotonic()
        wait_for(lambda: second.health().get("role") == "leader", 2 * lease + 1, "the standby to take over")
        took_over = time.monotonic() - died
        second.wait_scans("kb", 2, 30)
        time.sleep(1.5)  # a few more cycles and deliveries
        assert second.health()["sources"]["kb"]["last_status"] == "ok"
        after = delivered()
    finally:
        first.kill()
        if second is not None:
            second.kill()
    assert took_over <= 2 * lease
    assert len(after) == len(set(after)) and set(after) == set(sent), (sent, after)


RABBIT = "amqp://guest:guest@127.0.0.1:5672//"


def test_rabbitmq_broker_with_a_reply_queue(tmp_path: Path) -> None:
    zone = "rabbit-" + uuid.uuid4().hex[:8]
    config = tmp_path / "ctxscan.yaml"
    config.write_text("version: 1\nsources:\n"
                      f"  - {{id: remote, connector: fake, zone: {zone}, latency: 2, tables: ['t_${{WHERE}}']}}\n")
    first = Worker(tmp_path, zone, RABBIT, env={"WHERE": "rabbit"}, concurrency=1).wait_ready()
    second: Worker | None = None
    state = tmp_path / "state.db"
    scan = subprocess.Popen([sys_executable(), "-m", "scanner", "scan", "-c", str(config), "--state",
                             f"sqlite:///{state}", "--broker", RABBIT, "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=base_env())
    try:
        wait_for(lambda: "received" in first.log, 30, "the first worker to take the task")
        first.kill()  # RabbitMQ requeues an unacknowledged task as soon as its consumer is gone
        second = Worker(tmp_path, zone, RABBIT, env={"WHERE": "rabbit"}).wait_ready()
        out, err = scan.communicate(timeout=60)
    finally:
        first.kill()
        if second is not None:
            second.stop()
        if scan.poll() is None:
            scan.kill()
        from kombu import Connection

        with Connection(RABBIT) as conn:  # leave the machine's broker as it was
            conn.default_channel.queue_delete(f"ctxscan.zone.{zone}")
    report = json.loads(out)
    assert report["sources"][0]["status"] == "ok", err
    assert "probed remote" in (second.log if second else "")
    assert [status for _, status, _ in _results(state, "remote")] == ["ok"]


def test_retention_keeps_each_sources_newest_result_and_the_findings(tmp_path: Path) -> None:
    from scanner.model import SourceSnapshot, utcnow
    from scanner.store import Store

    config = tmp_path / "ctxscan.yaml"
    config.write_text("version: 1\nretention: {scans: 30d}\n"
                      "sources:\n  - {id: a, connector: fake, tables: [t]}\n  - {id: b, connector: fake, tables: [t]}\n")
    state = f"sqlite:///{tmp_path / 'state.db'}"
    store = Store.open(state)
    now = utcnow()
    try:
        # Old history: a scanned 100 and 60 days ago; b 95 days ago (ok) and 90 days ago (failed).
        for days, source, status in ((100, "a", "ok"), (95, "b", "ok"), (90, "b", "failed"), (60, "a", "ok")):
            when = now - timedelta(days=days)
            scan_id = store.begin_scan([source], "daemon", None, when)
            snapshot = SourceSnapshot(source, "fake", when) if status == "ok" else None
            store.record_result(scan_id, source, "fake", status, 0.1, when, snapshot=snapshot)
            store.finish_scan(scan_id, status, when)
    finally:
        store.close()
    # Today's scan of a (it opens findings: unowned, orphan_source).
    assert ctxscan("scan", "-c", str(config), "--state", state, "--source", "a").returncode == 0
    store = Store.open(state)
    try:
        findings_before = {f.fingerprint for f in store.findings(None)}
        assert findings_before
    finally:
        store.close()
    result = ctxscan("prune", "-c", str(config), "--state", state, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["results_deleted"] == 2 and summary["scans_deleted"] == 2, summary
    remaining = {(r["source_id"], r["status"], r["scan_id"]) for r in _rows(tmp_path / "state.db")}
    # a: the recent CLI result; b: its newest (failed) and its newest success survive though old.
    assert {(s, st) for s, st, _ in remaining} == {("a", "ok"), ("b", "failed"), ("b", "ok")}
    store = Store.open(state)
    try:
        assert {f.fingerprint for f in store.findings(None)} == findings_before
        assert set(store.latest_snapshots()) == {"a", "b"}
    finally:
        store.close()
    assert json.loads(ctxscan("prune", "-c", str(config), "--state", state, "--json").stdout)["results_deleted"] == 0
    # The daemon applies the same bound (at its start, then daily; `--once` too).
    store = Store.open(state)
    try:
        old = store.begin_scan(["a"], "daemon", None, now - timedelta(days=40))
        store.record_result(old, "a", "fake", "ok", 0.1, now - timedelta(days=40),
                            snapshot=SourceSnapshot("a", "fake", now - timedelta(days=40)))
        store.finish_scan(old, "ok", now - timedelta(days=40))
    finally:
        store.close()
    daemon = ctxscan("daemon", "--once", "-c", str(config), "--state", state)
    assert daemon.returncode == 0, daemon.stderr
    # The --once run scanned b too, so b's old results are no longer its newest: 3 go.
    assert "retention: deleted 3 scans and 3 results" in daemon.stderr
    assert {(r["source_id"], r["status"]) for r in _rows(tmp_path / "state.db")} == {("a", "ok"), ("b", "ok")}
    assert old not in {r["scan_id"] for r in _rows(tmp_path / "state.db")}


def _rows(path: Path) -> list[dict]:
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT id, scan_id, source_id, status FROM source_results")]


def test_postgres_through_a_zone_worker_with_observed_freshness(tmp_path: Path, redis_broker: RedisServer) -> None:
    from tests.connectors.dbservers import PostgresServer

    server = PostgresServer()
    try:
        db = server.create_database()
        conn = server.connect(db)
        conn.execute("CREATE TABLE busy (x int); CREATE TABLE quiet (x int)")
        # The URL and its password exist only in the worker's environment (trust auth here).
        url = server.url(db, password=CANARY)
        config = tmp_path / "ctxscan.yaml"
        config.write_text("version: 1\nsources:\n  - {id: crm, connector: postgres, zone: eu-db, url: '${CRM_URL}'}\n")
        state = tmp_path / "state.db"
        worker = Worker(tmp_path, "eu-db", redis_broker.url, env={"CRM_URL": url}).wait_ready()
        try:
            first = scan_json(config, f"sqlite:///{state}", redis_broker.url)
            conn.execute("INSERT INTO busy VALUES (1), (2)")
            server.wait_for_changes(conn, "busy", 2)
            second = scan_json(config, f"sqlite:///{state}", redis_broker.url)
            everything = redis_broker.everything()
        finally:
            worker.stop()
        # The daemon stored the worker's bytes as they came: the digest of the stored snapshot
        # named the worker's own copy, which it used instead of decoding the one in the task.
        assert "probed crm in" in worker.log and "(previous snapshot: none)" in worker.log, worker.log
        assert "(previous snapshot: this worker's copy)" in worker.log, worker.log
        # A new worker has no copy: it decodes the previous snapshot the task carries.
        conn.execute("INSERT INTO quiet VALUES (1)")
        server.wait_for_changes(conn, "quiet", 1)
        fresh = Worker(tmp_path, "eu-db", redis_broker.url, env={"CRM_URL": url}).wait_ready()
        try:
            third = scan_json(config, f"sqlite:///{state}", redis_broker.url)
        finally:
            fresh.stop()
        assert "(previous snapshot: from the task)" in fresh.log, fresh.log
    finally:
        server.close()
    assert first["sources"][0]["status"] == "ok" and first["sources"][0]["assets"] == 2, first
    assert second["sources"][0]["status"] == "ok", second
    assert third["sources"][0]["status"] == "ok", third
    from scanner.store import Store

    store = Store.open(f"sqlite:///{state}")
    try:
        ids = sorted(store.recent_snapshot_ids(["crm"], limit=3)["crm"])
        snapshots = store.snapshots_by_id(ids)
        snapshot, latest = snapshots[ids[1]], snapshots[ids[2]]
    finally:
        store.close()
    # The worker compared the counters with the previous scan the dispatcher sent along.
    assert snapshot.asset("public.busy").freshness.method == "observed"  # type: ignore[union-attr]
    # quiet's counters held still: the worker proves only a lower bound (issue 13, item 8)
    quiet = snapshot.asset("public.quiet")
    assert quiet is not None and quiet.freshness.method == "observed" and quiet.freshness.lower_bound
    # The third scan, on a worker that decoded the task's copy, saw quiet change since the second.
    quiet = latest.asset("public.quiet")
    assert quiet is not None and quiet.freshness.changed_after == snapshot.probed_at, quiet.freshness
    assert CANARY not in everything and CANARY not in state.read_bytes().decode("latin-1")


def test_broker_urls_and_zone_names_are_checked(tmp_path: Path) -> None:
    config = tmp_path / "ctxscan.yaml"
    config.write_text("version: 1\nsources:\n  - {id: remote, connector: fake, zone: alpha, tables: [t]}\n")
    state = f"sqlite:///{tmp_path / 'state.db'}"
    missing = ctxscan("scan", "-c", str(config), "--state", state)
    assert missing.returncode == 2 and "pass --broker URL or set CTXSCAN_BROKER" in missing.stderr
    for args in (("scan", "-c", str(config), "--state", state, "--broker", "ftp://user:pw-s3cret@host/"),
                 ("worker", "--zone", "alpha", "--broker", "pw-s3cret"),
                 ("worker", "--zone", "bad zone", "--broker", "redis://127.0.0.1:1/0")):
        result = ctxscan(*args)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result
        assert "pw-s3cret" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    invalid = tmp_path / "bad.yaml"
    invalid.write_text("version: 1\nsources:\n  - {id: remote, connector: fake, zone: 'eu db', tables: [t]}\n")
    result = ctxscan("validate", "-c", str(invalid))
    assert result.returncode == 2 and "sources[0].zone" in result.stderr


def test_a_task_delivered_twice_is_stored_once(tmp_path: Path, redis_broker: RedisServer) -> None:
    """On Redis a probe longer than the visibility timeout is handed to a second worker while the
    first still runs: both probe, one answer is used, one result stored."""
    config = tmp_path / "ctxscan.yaml"
    config.write_text("version: 1\nsources:\n"
                      "  - {id: long, connector: fake, zone: alpha, latency: 4, timeout: 20s, tables: [t]}\n")
    state = tmp_path / "state.db"
    short = {"CTXSCAN_ZONE_VISIBILITY_TIMEOUT": "1s", "CTXSCAN_ZONE_RESTORE_INTERVAL": "1s"}
    workers = [Worker(tmp_path, "alpha", redis_broker.url, env=short, concurrency=1) for _ in range(2)]
    try:
        for worker in workers:
            worker.wait_ready()
        report = scan_json(config, f"sqlite:///{state}", redis_broker.url, env=short)
    finally:
        for worker in workers:
            worker.stop()
    assert report["sources"][0]["status"] == "ok"
    assert all("probed long" in worker.log for worker in workers), [w.log for w in workers]
    assert [status for _, status, _ in _results(state, "long")] == ["ok"]


def test_a_zoned_source_is_never_probed_in_process(tmp_path: Path) -> None:
    """Without a dispatcher (a daemon started before the zone was added), the source fails
    with the reason instead of being probed with its settings unexpanded."""
    from scanner.inventory import load_inventory
    from scanner.scan import run_scan
    from scanner.store import Store

    config = tmp_path / "ctxscan.yaml"
    config.write_text("version: 1\nsources:\n  - {id: here, connector: fake, tables: [t]}\n"
                      "  - {id: remote, connector: fake, zone: alpha, token: '${NOT_HERE}', tables: [t]}\n")
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        report = run_scan(load_inventory([config], env={}), store)
    finally:
        store.close()
    outcomes = {o.source_id: o for o in report.outcomes}
    assert outcomes["here"].status == "ok"
    assert outcomes["remote"].status == "failed" and "ctxscan worker --zone alpha" in (outcomes["remote"].error or "")


@pytest.mark.parametrize("broker", ["redis://:Canary99@[bad", "redis://127.0.0.1:99999999/0",
                                    "amqp://u:Can ary@h:x/", "http://u:Canary99@h/", "Canary99",
                                    "redis+socket://Canary99/relative.sock", "redis+socket://",
                                    "redis+socket:///", "redis+socket://:Canary99@"])
def test_hostile_broker_urls_and_zone_names_are_one_line(broker: str, ctxscan) -> None:
    result = ctxscan("worker", "--zone", "eu", "--broker", broker, timeout=30)
    assert result.code == 2 and result.err.startswith("error: ") and len(result.err.splitlines()) == 1, result
    assert "Traceback" not in result.err and "Canary99" not in result.err + result.out
    zone = ctxscan("worker", "--zone", "bad\x1b[31mzone\n", "--broker", "redis://127.0.0.1:1/0", timeout=30)
    assert zone.code == 2 and "\x1b" not in zone.err and "Traceback" not in zone.err, zone


def test_a_workers_changes_rebuild_what_its_bytes_say(tmp_path: Path) -> None:
    """Differential, on a real server: the snapshot the daemon rebuilds from the worker's delta
    and its own previous snapshot equals the worker's bytes decoded, scan after scan, while
    rows, columns, grants and tables change (the rules run on the rebuilt one, the store keeps
    the bytes)."""
    import base64
    import json
    import random

    import psycopg

    from scanner.inventory import load_inventory
    from scanner.model import apply_snapshot_delta, decode_snapshot, encode_snapshot
    from scanner.plugins import ProbeContext
    from scanner.zones import TASK_PROTOCOL
    from scanner.zones.dispatch import ZoneDispatcher
    from scanner.zones.worker import execute, snapshot_digest
    from tests.connectors.dbservers import PostgresServer

    server = PostgresServer()
    rng = random.Random(19)
    try:
        db = server.create_database()
        conn = server.connect(db)
        for i in range(12):
            conn.execute(f"CREATE TABLE t{i} (id int, note text)")
        raw = {"id": "crm", "connector": "postgres", "zone": "eu", "url": "${CRM_URL}"}
        config = tmp_path / "ctxscan.yaml"
        config.write_text("version: 1\nsources:\n  - {id: crm, connector: postgres, zone: eu, url: '${CRM_URL}'}\n")
        source = load_inventory([config], env={"CRM_URL": "postgresql://x@127.0.0.1/x"}).sources["crm"]
        env = {"CRM_URL": server.url(db)}
        previous_blob: bytes | None = None
        rebuilt_count = 0
        inserted: dict[str, int] = {}
        for round_ in range(8):
            payload = {"protocol": TASK_PROTOCOL, "key": f"crm.{round_}", "source": raw, "timeout": 30}
            if previous_blob is not None:
                payload["previous"] = base64.b64encode(previous_blob).decode()
                payload["previous_digest"] = snapshot_digest(previous_blob)
            answer = json.loads(execute(json.dumps(payload), "eu", "w1", env=env))
            assert answer["status"] == "ok", answer
            blob = base64.b64decode(answer["snapshot"])
            truth = decode_snapshot(blob)
            if previous_blob is not None:
                assert "delta" in answer and answer["base"] == snapshot_digest(previous_blob)
                context = ProbeContext(now=truth.probed_at, previous=decode_snapshot(previous_blob))
                # The rebuild itself (not the whole decoding `_snapshot` falls back to) gives the truth.
                assert apply_snapshot_delta(context.previous, base64.b64decode(answer["delta"])) == truth, round_
                got = ZoneDispatcher._snapshot(source, "eu", answer, context, snapshot_digest(previous_blob))
                assert got == truth, round_
                assert encode_snapshot(got) == blob  # stored as the worker's bytes
                rebuilt_count += 1
            previous_blob = blob
            # Change something for the next round (and sometimes nothing).
            change = rng.choice(["rows", "column", "grant", "drop", "create", "comment", "nothing"])
            table = f"t{rng.randrange(12)}"
            try:
                if change == "rows":
                    conn.execute(f"INSERT INTO {table} VALUES (1, 'x')")
                    inserted[table] = inserted.get(table, 0) + 1
                    server.wait_for_changes(conn, table, inserted[table])
                elif change == "column":
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN c{round_} int")
                elif change == "grant":
                    conn.execute(f"GRANT SELECT ON {table} TO PUBLIC")
                elif change == "drop":
                    conn.execute(f"DROP TABLE IF EXISTS {table}")
                elif change == "create":
                    conn.execute(f"CREATE TABLE IF NOT EXISTS n{round_} (x int)")
                elif change == "comment":
                    conn.execute(f"COMMENT ON TABLE {table} IS 'owner: team-{round_}'")
            except psycopg.errors.UndefinedTable:  # it was dropped: the next round sees nothing new
                pass
        assert rebuilt_count == 7
    finally:
        server.close()


def test_a_workers_bytes_that_its_changes_do_not_rebuild_are_decoded_or_refused(tmp_path: Path) -> None:
    """Fault injection on a real worker's answer: bytes cut short are a one-line probe failure
    (nothing stored, nothing later scans trip over); bytes of another snapshot are decoded and
    win over the delta, so what the rules read is always what the store keeps."""
    import base64

    from scanner.errors import ProbeError
    from scanner.inventory import load_inventory
    from scanner.model import decode_snapshot, encode_snapshot
    from scanner.plugins import ProbeContext
    from scanner.zones import TASK_PROTOCOL
    from scanner.zones.dispatch import ZoneDispatcher
    from scanner.zones.worker import execute, snapshot_digest

    raw = {"id": "crm", "connector": "fake", "zone": "eu", "tables": ["public.a", "public.b"]}
    config = tmp_path / "ctxscan.yaml"
    config.write_text("version: 1\nsources:\n  - {id: crm, connector: fake, zone: eu, tables: [public.a, public.b]}\n")
    source = load_inventory([config], env={}).sources["crm"]

    def answer(previous: bytes | None) -> dict:
        payload = {"protocol": TASK_PROTOCOL, "key": "crm.1", "source": raw, "timeout": 30}
        if previous is not None:
            payload["previous"] = base64.b64encode(previous).decode()
            payload["previous_digest"] = snapshot_digest(previous)
        got = json.loads(execute(json.dumps(payload), "eu", "w1", env={}))
        assert got["status"] == "ok", got
        return got

    first = base64.b64decode(answer(None)["snapshot"])
    second = answer(first)
    assert "delta" in second
    context = ProbeContext(now=decode_snapshot(first).probed_at, previous=decode_snapshot(first))
    cut = dict(second, snapshot=base64.b64encode(base64.b64decode(second["snapshot"])[:40]).decode())
    with pytest.raises(ProbeError) as refused:
        ZoneDispatcher._snapshot(source, "eu", cut, context, snapshot_digest(first))
    assert "cannot read" in refused.value.message and "\n" not in refused.value.message
    other = dict(second, snapshot=base64.b64encode(first).decode())  # the delta says probed_at moved on
    got = ZoneDispatcher._snapshot(source, "eu", other, context, snapshot_digest(first))
    assert got == decode_snapshot(first) and encode_snapshot(got) == first


def test_a_workers_snapshot_copies_are_one_per_source_and_bounded_by_their_size() -> None:
    from datetime import UTC, datetime

    from scanner.model import Asset, Column, SourceSnapshot, encode_snapshot
    from scanner.zones.worker import _Recent

    def snapshot(source_id: str, tables: int, columns: int, at: int) -> SourceSnapshot:
        return SourceSnapshot(source_id, "fake", datetime(2026, 12, 1, 0, at, tzinfo=UTC), assets=tuple(
            Asset(f"t{i}", "table", columns=tuple(Column(f"c{j}", "int") for j in range(columns)))
            for i in range(tables)))

    recent = _Recent(max_items=100)  # 10 tables of 4 columns weigh 50
    a1, a2, b1, c1 = (snapshot("a", 10, 4, 1), snapshot("a", 10, 4, 2), snapshot("b", 10, 4, 1),
                      snapshot("c", 10, 4, 1))
    d_a1 = recent.put(encode_snapshot(a1), a1)
    d_a2 = recent.put(encode_snapshot(a2), a2)
    assert recent.get(d_a1) is None and recent.get(d_a2) is a2  # an older one of a source goes
    d_b1 = recent.put(encode_snapshot(b1), b1)
    assert recent.get(d_a2) is a2  # a use keeps it: b1 is now the oldest used
    d_c1 = recent.put(encode_snapshot(c1), c1)
    assert recent.get(d_b1) is None and recent.get(d_a2) is a2 and recent.get(d_c1) is c1
    assert recent.size == 100
    big = snapshot("d", 30, 4, 1)  # weighs 150: never kept, and evicts nothing
    recent.put(encode_snapshot(big), big)
    assert recent.get(d_a2) is a2 and recent.get(d_c1) is c1 and recent.size == 100


def test_a_worker_collects_the_cycles_its_tasks_leave_between_tasks() -> None:
    """The worker probes with the cyclic collector off; after a task, at most every `every`
    seconds, it collects what cycles are left (a long-lived worker must not grow with them)."""
    import gc
    import weakref

    from scanner.zones.worker import _Collector

    class Node:
        pass

    def cycle() -> weakref.ref:
        a, b = Node(), Node()
        a.other, b.other = b, a  # type: ignore[attr-defined]
        return weakref.ref(a)

    was = gc.isenabled()
    gc.disable()
    try:
        collector = _Collector(every=3600)
        left = cycle()
        collector.after_task()
        assert left() is not None  # not due yet: the task's cost stays the probe's own
        collector.last -= 3600
        collector.after_task()
        assert left() is None
    finally:
        if was:
            gc.enable()
