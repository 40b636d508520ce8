"""OpenLineage run events: parse, aggregate and store what each job read and wrote.

The daemon takes them at `POST /api/v1/lineage` (the HTTP transport's default path) and
`ctxscan import openlineage FILE.jsonl` reads the same events from a file, one JSON object a
line. START, RUNNING, COMPLETE, FAIL, ABORT and OTHER events are all kept, and so are events
that name only inputs or only outputs (many integrations send those): each says a job
touched a dataset. Datasets and jobs are stored as the events name them (namespace, name);
`scanner.lineage.observed` maps them to assets and workflows when the rules run, so a
changed inventory maps the history again.

A request or file is checked whole before anything is stored: one malformed event refuses
it (400, or exit 2) with one line saying which event and what is wrong, and stores nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

EVENT_TYPES = ("START", "RUNNING", "COMPLETE", "FAIL", "ABORT", "OTHER")
MAX_TEXT = 1000              # characters of a namespace, a name or a run id
MAX_DATASETS = 10_000        # inputs plus outputs of one event
MAX_BODY = 16 * 1024 * 1024  # bytes of one HTTP request
# An event time further ahead than this (a wrong clock) is taken as the time it arrived.
MAX_CLOCK_SKEW = timedelta(hours=1)


class LineageEventError(ValueError):
    """An event that is not an OpenLineage run event; the message is one line."""


@dataclass(frozen=True)
class RunEvent:
    """What one event says: a job (and run) touched these datasets at this time."""

    event_type: str
    event_time: datetime
    job_namespace: str
    job_name: str
    run_id: str | None
    inputs: tuple[tuple[str, str], ...]
    outputs: tuple[tuple[str, str], ...]


def _text(value: Any, where: str, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise LineageEventError(f"{where} must be a non-empty string")
    if len(value) > MAX_TEXT:
        raise LineageEventError(f"{where} is longer than {MAX_TEXT} characters")
    if any(ord(ch) < 32 for ch in value):
        raise LineageEventError(f"{where} holds a control character")
    return value


def _time(value: Any, received: datetime) -> datetime:
    if not isinstance(value, str):
        raise LineageEventError("eventTime must be an ISO 8601 time")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise LineageEventError(f"eventTime {value[:40]!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return received if moment > received + MAX_CLOCK_SKEW else moment


def _datasets(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise LineageEventError(f"{where} must be a list of datasets")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise LineageEventError(f"{where}[{i}] must be an object with namespace and name")
        namespace = _text(item.get("namespace"), f"{where}[{i}].namespace")
        name = _text(item.get("name"), f"{where}[{i}].name")
        assert namespace is not None and name is not None
        out.append((namespace, name))
    return tuple(out)


def parse_event(data: Any, received: datetime) -> RunEvent:
    """One run event (or a job event, which has no run) from its decoded JSON."""
    if not isinstance(data, dict):
        raise LineageEventError("an event must be a JSON object")
    job = data.get("job")
    if not isinstance(job, dict):
        raise LineageEventError("job must be an object with namespace and name")
    event_type = data.get("eventType", "OTHER")
    if event_type is None:
        event_type = "OTHER"
    if not isinstance(event_type, str) or event_type.upper() not in EVENT_TYPES:
        raise LineageEventError(f"eventType must be one of {', '.join(EVENT_TYPES)}")
    run = data.get("run")
    if run is not None and not isinstance(run, dict):
        raise LineageEventError("run must be an object with runId")
    run_id = _text(run.get("runId"), "run.runId") if isinstance(run, dict) else None
    inputs = _datasets(data.get("inputs"), "inputs")
    outputs = _datasets(data.get("outputs"), "outputs")
    if len(inputs) + len(outputs) > MAX_DATASETS:
        raise LineageEventError(f"more than {MAX_DATASETS} datasets in one event")
    namespace = _text(job.get("namespace"), "job.namespace")
    name = _text(job.get("name"), "job.name")
    assert namespace is not None and name is not None
    event_time = _time(data.get("eventTime"), received) if "eventTime" in data else received
    return RunEvent(event_type.upper(), event_time, namespace, name, run_id, inputs, outputs)


def parse_body(body: bytes, received: datetime) -> list[RunEvent]:
    """The events of one HTTP request: one event object, or a list of them."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise LineageEventError("the body is not JSON") from None
    items = data if isinstance(data, list) else [data]
    events = []
    for i, item in enumerate(items):
        try:
            events.append(parse_event(item, received))
        except LineageEventError as exc:
            raise LineageEventError(f"event {i + 1}: {exc}" if len(items) > 1 else str(exc)) from None
    return events


def parse_lines(lines: Iterable[str | bytes], received: datetime, name: str = "-") -> list[RunEvent]:
    """The events of a JSON-lines file (blank lines skipped); an error names file and line."""
    events = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            events.append(parse_event(json.loads(line), received))
        except (ValueError, UnicodeDecodeError) as exc:
            reason = str(exc) if isinstance(exc, LineageEventError) else "not a JSON object"
            raise LineageEventError(f"{name}:{number}: {reason}") from None
    return events


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def aggregate(events: Iterable[RunEvent]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows for Store.record_lineage: one per (job, direction, dataset) and one per job."""
    edges: dict[tuple[str, str, str, str, str], dict[str, Any]] = {}
    jobs: dict[tuple[str, str], dict[str, Any]] = {}

    def merge(table: dict[Any, dict[str, Any]], key: Any, values: Mapping[str, Any], event: RunEvent) -> None:
        moment = _iso(event.event_time)
        row = table.get(key)
        if row is None:
            table[key] = {**values, "first_seen": moment, "last_seen": moment, "events": 1,
                          "last_event_type": event.event_type, "last_run_id": event.run_id}
            return
        row["events"] += 1
        row["first_seen"] = min(row["first_seen"], moment)
        if moment >= row["last_seen"]:
            row.update(last_seen=moment, last_event_type=event.event_type, last_run_id=event.run_id)

    for event in events:
        job = {"job_namespace": event.job_namespace, "job_name": event.job_name}
        merge(jobs, (event.job_namespace, event.job_name), job, event)
        for direction, datasets in (("input", event.inputs), ("output", event.outputs)):
            for namespace, name in set(datasets):
                key = (event.job_namespace, event.job_name, direction, namespace, name)
                merge(edges, key, {**job, "direction": direction, "dataset_namespace": namespace,
                                   "dataset_name": name}, event)
    return [edges[k] for k in sorted(edges)], [jobs[k] for k in sorted(jobs)]


def ingest(store: Any, events: list[RunEvent]) -> tuple[int, int]:
    """Store the events' observations in one transaction: (edges, jobs) rows merged."""
    edges, jobs = aggregate(events)
    if events:
        store.record_lineage(edges, jobs)
    return len(edges), len(jobs)


def is_loopback(host: str) -> bool:
    """Whether a bind address only takes connections from this machine."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class LineageEndpoint:
    """`POST /api/v1/lineage` for the daemon's HTTP server: (status, JSON body) per request.

    With a token, every request must carry `Authorization: Bearer TOKEN` (401 otherwise);
    the daemon refuses to serve it without a token on anything but loopback.
    """

    path = "/api/v1/lineage"

    def __init__(self, store: Any, token: str | None) -> None:
        self.store = store
        self.token = token

    def __call__(self, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        import hmac

        if self.token:
            given = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), self.token.encode()):
                return 401, {"error": "a bearer token is required (Authorization: Bearer $CTXSCAN_LINEAGE_TOKEN)"}
        try:
            events = parse_body(body, datetime.now(UTC))
        except LineageEventError as exc:
            return 400, {"error": str(exc)}
        edges, jobs = ingest(self.store, events)
        return 201, {"accepted": len(events), "edges": edges, "jobs": jobs}
