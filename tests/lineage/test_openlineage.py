"""OpenLineage: run events sent by the real openlineage-python client's HTTP transport to a
running `ctxscan daemon`, and the same events read from a file by `ctxscan import openlineage`;
then declared against observed on the real PostgreSQL."""

from __future__ import annotations

import json
import socket
import sqlite3
import textwrap
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import run_ctxscan
from tests.daemon_support import DaemonProcess, wait_for

if TYPE_CHECKING:
    from tests.connectors.dbservers import PostgresServer

pytest_plugins = ("tests.connectors.dbservers",)

TOKEN = "ol-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def crm(postgres_server: PostgresServer) -> Iterator[dict[str, Any]]:
    db = postgres_server.create_database("ctxscan_ol")
    conn = postgres_server.connect(db)
    for table in ("customers", "tickets", "secrets"):
        conn.execute(f"CREATE TABLE public.{table} (id int, updated_at timestamptz DEFAULT now())")
        conn.execute(f"INSERT INTO public.{table} (id) VALUES (1)")
    yield {"db": db, "url": postgres_server.url(db), "namespace": f"postgres://{postgres_server.host}:"
           f"{postgres_server.port}"}


def _inventory(directory: Path, url: str) -> Path:
    path = directory / "ctxscan.yaml"
    path.write_text(textwrap.dedent(f"""
        version: 1
        owners: [{{id: support}}]
        sources:
          - id: crm
            connector: postgres
            url: "{url}"
            owner: support
            schedule: 1h
            freshness: {{column: updated_at, max_age: 7d}}
        workflows:
          - id: assistant
            owner: support
            stage: production
            reads: ["crm:public.customers", "crm:public.tickets"]
    """).lstrip(), encoding="utf-8")
    return path


def _client(port: int, token: str) -> Any:
    from openlineage.client import OpenLineageClient
    from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport

    config = HttpConfig(url=f"http://127.0.0.1:{port}", auth=ApiKeyTokenProvider({"apiKey": token}),
                        retry={"total": 0})
    return OpenLineageClient(transport=HttpTransport(config))


def _event(state: str, when: datetime, run_id: str, namespace: str, db: str,
           inputs: tuple[str, ...] = (), outputs: tuple[str, ...] = ()) -> Any:
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState

    return RunEvent(eventType=getattr(RunState, state), eventTime=when.isoformat(), run=Run(runId=run_id),
                    job=Job(namespace="airflow", name="assistant"),
                    inputs=[InputDataset(namespace=namespace, name=f"{db}.public.{t}") for t in inputs],
                    outputs=[OutputDataset(namespace=namespace, name=f"{db}.public.{t}") for t in outputs])


def _rows(state_db: Path, table: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(state_db)) as connection:
        return connection.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3, 4, 5").fetchall()


def _post(port: int, body: bytes, token: str | None = TOKEN) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/lineage", data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_daemon_takes_events_from_the_openlineage_client(crm: dict[str, Any], tmp_path: Path) -> None:
    import requests

    config = _inventory(tmp_path, crm["url"])
    state = tmp_path / "state.db"
    daemon = DaemonProcess(config, f"sqlite:///{state}", env={"CTXSCAN_LINEAGE_TOKEN": TOKEN})
    try:
        daemon.wait_up()
        daemon.wait_scans("crm", 1)
        client = _client(daemon.port, TOKEN)
        run_id = str(uuid.uuid4())
        start = datetime.now(UTC) - timedelta(minutes=10)
        ns, db = crm["namespace"], crm["db"]
        client.emit(_event("START", start, run_id, ns, db, inputs=("customers",)))
        # an undeclared read, then a one-sided event: outputs only, to a table it only reads
        client.emit(_event("COMPLETE", start + timedelta(minutes=5), run_id, ns, db,
                           inputs=("customers", "secrets")))
        client.emit(_event("RUNNING", start + timedelta(minutes=6), str(uuid.uuid4()), ns, db,
                           outputs=("tickets",)))
        edges = _rows(state, "lineage_edges")
        assert len(edges) == 3, edges
        before = (edges, _rows(state, "lineage_jobs"))
        # A wrong token is refused by the real client's transport (HTTP 401), and so is none.
        with pytest.raises(requests.HTTPError) as refused:
            _client(daemon.port, "wrong").emit(_event("START", start, run_id, ns, db, inputs=("x",)))
        assert refused.value.response.status_code == 401
        assert _post(daemon.port, b"{}", token=None)[0] == 401
        # Malformed bodies: 400 with the reason, and nothing stored.
        code, body = _post(daemon.port, b"{not json")
        assert code == 400 and body["error"] == "the body is not JSON"
        code, body = _post(daemon.port, json.dumps([{"eventType": "START", "job": {"namespace": "a", "name": "b"},
                                                     "run": {"runId": "r"}, "eventTime": start.isoformat()},
                                                    {"eventType": "START", "run": {"runId": "r"}}]).encode())
        assert code == 400 and body["error"].startswith("event 2: job must be")
        assert (_rows(state, "lineage_edges"), _rows(state, "lineage_jobs")) == before
        assert _post(daemon.port, b"x" * 100, token=TOKEN)[0] == 400
        assert daemon.get("/api/v1/lineage")[0] == 404   # POST only
    finally:
        assert daemon.stop() == 0, daemon.log
    assert TOKEN not in daemon.log
    # first and last seen: START and COMPLETE of the same read
    customers = next(e for e in edges if e[4].endswith(".public.customers"))
    assert customers[:5] == ("airflow", "assistant", "input", ns, f"{db}.public.customers")
    assert customers[5] == start.isoformat() and customers[6] == (start + timedelta(minutes=5)).isoformat()
    assert customers[7] == "COMPLETE" and customers[9] == 2

    # Declared against observed, after the next scan.
    args = ("-c", str(config), "--state", f"sqlite:///{state}")
    assert run_ctxscan("scan", *args).code in (0, 1)
    findings = json.loads(run_ctxscan("findings", *args, "--json").out)
    undeclared = [f for f in findings if f["kind"] == "undeclared_dependency"]
    assert [(f["asset"], f["workflow"], f["severity"]) for f in undeclared] == [
        ("crm:public.secrets", "assistant", "high")]
    assert "OpenLineage job airflow/assistant" in undeclared[0]["message"]
    writes = [f for f in findings if f["kind"] == "over_permissioned" and f["evidence"].get("observed")]
    assert [(f["asset"], f["subkind"]) for f in writes] == [("crm:public.tickets", "write_access")]
    depends = json.loads(run_ctxscan("depends", *args, "assistant", "--json").out)
    seen = {a["id"]: a["lineage"] for a in depends["assets"]}
    assert seen == {"crm:public.customers": "both", "crm:public.secrets": "observed",
                    "crm:public.tickets": "declared"}
    graph = json.loads(run_ctxscan("graph", "export", *args, "--format", "json", "-o", "-").out)
    marks = {e["source"]: e.get("lineage") for e in graph["edges"]
             if e["target"] == "workflow:assistant" and e["type"] == "feeds"}
    assert marks == {"asset:crm:public.customers": "both", "asset:crm:public.secrets": "observed",
                     "asset:crm:public.tickets": "declared"}


def test_a_daemon_off_loopback_needs_a_token(crm: dict[str, Any], tmp_path: Path) -> None:
    config = _inventory(tmp_path, crm["url"])
    result = run_ctxscan("daemon", "-c", str(config), "--state", f"sqlite:///{tmp_path / 's.db'}",
                         "--metrics-port", "0", "--metrics-host", "0.0.0.0", "--once",
                         env={"CTXSCAN_LINEAGE_TOKEN": ""})
    assert result.code == 2 and "set CTXSCAN_LINEAGE_TOKEN" in result.err, result


def test_loopback_without_a_token_takes_events(crm: dict[str, Any], tmp_path: Path) -> None:
    config = _inventory(tmp_path, crm["url"])
    state = tmp_path / "state.db"
    daemon = DaemonProcess(config, f"sqlite:///{state}", env={"CTXSCAN_LINEAGE_TOKEN": ""})
    try:
        daemon.wait_up()
        client = _client(daemon.port, "anything")
        client.emit(_event("OTHER", datetime.now(UTC), str(uuid.uuid4()), crm["namespace"], crm["db"],
                           inputs=("customers",)))
        wait_for(lambda: _rows(state, "lineage_edges"), what="a stored edge")
        # A body announced too large is refused before it is read; no length at all is 411.
        for head, status in ((b"Content-Length: 999999999\r\n", b" 413 "), (b"", b" 411 ")):
            with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
                sock.sendall(b"POST /api/v1/lineage HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n")
                assert status in sock.recv(200).split(b"\r\n", 1)[0]
        assert len(_rows(state, "lineage_edges")) == 1
    finally:
        daemon.stop()


def test_import_openlineage_reads_the_same_events_from_a_file(crm: dict[str, Any], tmp_path: Path) -> None:
    from openlineage.client.serde import Serde

    config = _inventory(tmp_path, crm["url"])
    args = ("-c", str(config), "--state", f"sqlite:///{tmp_path / 'state.db'}")
    assert run_ctxscan("scan", *args).code in (0, 1)
    now = datetime.now(UTC)
    ns, db = crm["namespace"], crm["db"]
    events = [_event("START", now - timedelta(days=40), str(uuid.uuid4()), ns, db, inputs=("customers", "tickets")),
              _event("COMPLETE", now - timedelta(hours=1), str(uuid.uuid4()), ns, db, inputs=("customers", "secrets")),
              _event("FAIL", now - timedelta(minutes=5), str(uuid.uuid4()), ns, db)]
    lines = tmp_path / "events.jsonl"
    lines.write_text("\n".join(Serde.to_json(e) for e in events) + "\n\n", encoding="utf-8")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(Serde.to_json(events[0]) + "\n{\"job\": {}}\n", encoding="utf-8")
    result = run_ctxscan("import", "openlineage", *args, str(bad))
    assert result.code == 2 and f"{bad}:2: job.namespace" in result.err and "nothing was stored" in result.err
    result = run_ctxscan("import", "openlineage", *args, str(lines), "--json")
    assert result.code == 0, result
    summary = json.loads(result.out)
    assert summary["events"] == 3 and summary["workflows_seen"] == ["assistant"] and summary["mapped_edges"] == 3
    findings = json.loads(run_ctxscan("findings", *args, "--json").out)
    kinds = {(f["kind"], f["asset"]) for f in findings}
    assert ("undeclared_dependency", "crm:public.secrets") in kinds
    # tickets was read 40 days ago, the job ran since: its declared read is unobserved (info)
    unobserved = [f for f in findings if f["kind"] == "unobserved_read"]
    assert [(f["asset"], f["severity"]) for f in unobserved] == [("crm:public.tickets", "info")]
    assert run_ctxscan("import", "openlineage", *args, str(tmp_path / "nope.jsonl")).code == 2


def test_the_lineage_tables_work_on_a_postgresql_store(pg_database: str) -> None:
    from scanner.lineage.openlineage import ingest, parse_event
    from scanner.store import Store

    store = Store.open(pg_database)
    try:
        now = datetime.now(UTC)
        raw = {"eventType": "START", "job": {"namespace": "n", "name": "j"}, "run": {"runId": "r"},
               "inputs": [{"namespace": "postgres://h:5432", "name": "d.s.t"}]}
        ingest(store, [parse_event({**raw, "eventTime": (now - timedelta(hours=2)).isoformat()}, now)])
        ingest(store, [parse_event({**raw, "eventType": "COMPLETE", "eventTime": now.isoformat()}, now),
                       parse_event({**raw, "eventTime": (now - timedelta(hours=3)).isoformat()}, now)])
        [edge] = store.lineage_edges()
        assert edge["events"] == 3 and edge["last_event_type"] == "COMPLETE"
        assert edge["first_seen"] == (now - timedelta(hours=3)).isoformat() and edge["last_seen"] == now.isoformat()
        assert store.lineage_jobs()[0]["events"] == 3
    finally:
        store.close()
