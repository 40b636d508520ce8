"""`ctxscan worker`: a Celery worker that probes the sources of one zone.

A task carries one source as written in the inventory, its `${VAR}` references unexpanded;
the worker expands them from its own environment, so credentials live only where the
source is reachable and never cross the broker. It answers with the snapshot (or the
failure); it has no access to the state store.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import json
import logging
import os
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from scanner.errors import ProbeError
from scanner.model import utcnow
from scanner.plugins import ProbeContext, SourceConfig
from scanner.zones import TASK_NAME, TASK_PROTOCOL, queue_name

log = logging.getLogger("ctxscan.worker")


def expand_source(raw: Mapping[str, Any], env: Mapping[str, str], timeout: float) -> SourceConfig:
    """The source of a task, its `${VAR}` expanded from `env`; a ProbeError names what is wrong."""
    from scanner.inventory import Defaults, _Checker, _convert_plain, _Doc, _source
    from scanner.plugins import connectors

    errors: list = []
    doc = _Doc("<task>")
    data = _convert_plain(raw, doc, ("source",), errors, env)
    check = _Checker(doc, errors)
    source = _source(check, data, ("source",), Defaults(timeout=timeout), connectors())
    if errors or source is None:
        first = errors[0] if errors else None
        where = f"{first.field}: " if first is not None and first.field else ""
        message = first.message if first is not None else "invalid source"
        raise ProbeError(f"on the worker: {where}{message}".replace("source.", "", 1), reason="error")
    return source


def _answer(**values: Any) -> str:
    return json.dumps({"protocol": TASK_PROTOCOL, **values})


def execute(payload_text: str, zone: str, hostname: str, env: Mapping[str, str] | None = None) -> str:
    """Run one task's probe and return the JSON answer (never raises for a probe's failure)."""
    from scanner.model import encode_snapshot
    from scanner.scan import probe_source

    began = time.monotonic()
    try:
        payload = json.loads(payload_text)
    except (TypeError, ValueError):
        return _answer(status="refused", error="the task is not ctxscan JSON", worker=hostname)
    protocol = payload.get("protocol") if isinstance(payload, dict) else None
    if protocol != TASK_PROTOCOL:
        return _answer(status="refused", worker=hostname,
                       error=f"worker {hostname} in zone {zone} speaks task protocol {TASK_PROTOCOL}, "
                             f"the task was sent with protocol {protocol}: run the same ctxscan version "
                             "on the daemon and the zone's workers")
    raw = payload.get("source") or {}
    source_id = str(raw.get("id", "?"))
    timeout = float(payload.get("timeout") or 60.0)
    not_after = payload.get("not_after")
    if isinstance(not_after, int | float) and time.time() > not_after:
        # The dispatcher gave up on this probe long ago: do not spend the zone's time on it.
        return _answer(status="refused", error="the task expired before a worker took it", worker=hostname)
    try:
        source = expand_source(raw, os.environ if env is None else env, timeout)
    except ProbeError as exc:
        return _answer(status="failed", error=f"{exc.message} (worker {hostname}, zone {zone})",
                       reason=exc.reason, worker=hostname, duration=time.monotonic() - began)
    previous, base, baseline = _previous(payload, source_id)
    cancelled = threading.Event()
    context = ProbeContext(now=utcnow(), principals=frozenset(payload.get("principals") or ()),
                           timeout=timeout, cancelled=cancelled, previous=previous)
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["snapshot"] = probe_source(source, context)
        except ProbeError as exc:
            box["error"] = exc
        except BaseException as exc:  # noqa: BLE001 (the answer says what happened)
            box["error"] = ProbeError(f"{type(exc).__name__} on the worker", reason="error")

    thread = threading.Thread(target=run, daemon=True, name=f"probe-{source_id}")
    thread.start()
    thread.join(timeout)
    duration = time.monotonic() - began
    if thread.is_alive():
        cancelled.set()
        return _answer(status="timeout", error=f"probe did not finish within {timeout:g}s on worker "
                       f"{hostname} and was abandoned", reason="timeout", worker=hostname, duration=duration)
    if "error" in box:
        error: ProbeError = box["error"]
        return _answer(status="failed", error=error.message, reason=error.reason,
                       retryable=error.retryable, worker=hostname, duration=duration)
    snapshot = box["snapshot"]  # filtered by the source's include/exclude, as a local probe's
    blob = encode_snapshot(snapshot)
    digest = _RECENT.put(blob, snapshot)
    extra = {}
    if previous is not None and base is not None:
        # The daemon holds the previous snapshot too: the changes rebuild the new one there
        # from its objects, far cheaper than decoding the bytes (which it stores as they are).
        from scanner.model import snapshot_delta

        extra = {"base": base, "delta": base64.b64encode(snapshot_delta(previous, snapshot)).decode("ascii")}
    log.info("probed %s in %.2fs (previous snapshot: %s)", source_id, duration, baseline)
    return _answer(status="ok", snapshot=base64.b64encode(blob).decode("ascii"), digest=digest,
                   worker=hostname, duration=duration, **extra)


def snapshot_digest(blob: bytes) -> str:
    """The name of a stored snapshot in a task: the SHA-256 of its bytes."""
    return hashlib.sha256(blob).hexdigest()


class _Recent:
    """The last snapshot this worker answered with for each source, by digest: the daemon
    stores a worker's bytes as they came, so the next task's `previous` names it, and a rescan
    skips decoding what it sent itself (a 5,000-table snapshot is ~100 ms of decoding).

    One per source (an older one is never asked for again), and bounded by what takes the
    memory, assets and columns (a 5,000-table snapshot of 60,000 columns is ~30 MB), not by
    the compressed bytes, whose ratio to memory varies 5x with how repetitive the schema is.
    """

    def __init__(self, max_items: int = 300_000) -> None:
        self.max_items = max_items
        self.lock = threading.Lock()
        self.items: OrderedDict[str, tuple[int, str, Any]] = OrderedDict()
        self.by_source: dict[str, str] = {}
        self.size = 0

    @staticmethod
    def weight(snapshot: Any) -> int:
        return len(snapshot.assets) + sum(len(asset.columns) for asset in snapshot.assets)

    def put(self, blob: bytes, snapshot: Any) -> str:
        digest = snapshot_digest(blob)
        weight = self.weight(snapshot)
        if weight > self.max_items:
            return digest
        with self.lock:
            older = self.by_source.get(snapshot.source_id)
            if older is not None and older != digest:
                self._drop(older)
            if digest not in self.items:
                self.items[digest] = (weight, snapshot.source_id, snapshot)
                self.by_source[snapshot.source_id] = digest
                self.size += weight
            self.items.move_to_end(digest)
            while self.size > self.max_items:
                self._drop(next(iter(self.items)))
        return digest

    def _drop(self, digest: str) -> None:
        weight, source_id, _ = self.items.pop(digest)
        self.size -= weight
        if self.by_source.get(source_id) == digest:
            del self.by_source[source_id]

    def get(self, digest: str) -> Any:
        with self.lock:
            entry = self.items.get(digest)
            if entry is None:
                return None
            self.items.move_to_end(digest)  # a use keeps it
            return entry[2]


_RECENT = _Recent()


def _previous(payload: Mapping[str, Any], source_id: str) -> tuple[Any, str | None, str]:
    """The previous snapshot the task carries, its digest, and where it came from: this
    worker's own copy when it has the one the digest names, else the bytes in the task."""
    from scanner.model import decode_snapshot

    text = payload.get("previous")
    if not text:
        return None, None, "none"
    digest = payload.get("previous_digest")
    if isinstance(digest, str):
        cached = _RECENT.get(digest)
        if cached is not None:
            return cached, digest, "this worker's copy"
    try:
        blob = base64.b64decode(text)
        return decode_snapshot(blob), snapshot_digest(blob), "from the task"
    except Exception:  # a baseline that cannot be read is a first scan, not a failure
        log.warning("the previous snapshot of %s in the task cannot be read; probing without it", source_id)
        return None, None, "unreadable, probed without it"


def worker_name(zone: str) -> str:
    """The worker's Celery node name: the zone, the pid and the host."""
    return f"ctxscan-{zone}-{os.getpid()}@{socket.gethostname()}"


def register(app: Any, zone: str) -> Any:
    """Register the probe task on `app` for a worker of `zone`."""
    @app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)
    def probe(self: Any, payload: str) -> str:
        return execute(payload, zone, str(self.request.hostname or worker_name(zone)))
    return probe


class _Collector:
    """A worker probes with the cyclic collector off, as a one-shot scan does (a 5,000-table
    probe builds ~150,000 objects that are never cyclic: with the collector on, a zone's first
    scan took ~1.5 s instead of ~1.0 s), but it runs for months, so what cycles its tasks leave
    are collected at most every `every` seconds, after a task's answer is stored."""

    def __init__(self, every: float = 30.0) -> None:
        self.every = every
        self.last = time.monotonic()
        self.lock = threading.Lock()

    def after_task(self, **_: Any) -> None:
        now = time.monotonic()
        with self.lock:
            if now - self.last < self.every:
                return
            self.last = now
        gc.collect()


def run_worker(zone: str, broker: str, concurrency: int = 4, log_level: str = "info") -> int:
    """Consume the zone's queue until stopped (SIGTERM: a warm shutdown)."""
    from celery.signals import task_postrun

    from scanner.zones.app import make_app

    gc.disable()  # as `ctxscan worker` already has it (scanner/cli.py); collected between tasks
    task_postrun.connect(_Collector().after_task, weak=False)
    app = make_app(broker)
    register(app, zone)
    argv = ["worker", "--queues", queue_name(zone), "--hostname", worker_name(zone),
            "--concurrency", str(max(1, concurrency)), "--pool", "threads",
            "--loglevel", log_level.upper(), "--without-mingle", "--without-gossip"]
    app.worker_main(argv)
    return 0
