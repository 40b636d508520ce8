"""Dispatch from the scheduler: a zoned source's probe goes to its zone's queue.

`ZoneDispatcher` is the prober `run_scan` calls for each source: a source without a zone is
probed in this process as before; a zoned one is sent as a task carrying its settings as
written (`${VAR}` unexpanded) and its answer waited for. The scan around it (storing the
result once, evaluating the rules, the overall deadline) is the same `run_scan` either way.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from scanner.errors import ProbeError
from scanner.executor import LocalExecutor
from scanner.inventory import Inventory
from scanner.model import SourceSnapshot
from scanner.plugins import Connector, ProbeContext, SourceConfig
from scanner.scan import ScanReport
from scanner.store import Store
from scanner.zones import TASK_NAME, TASK_PROTOCOL, ZoneSettings, queue_name

log = logging.getLogger("ctxscan.zones")
_LATENCY_WINDOW = 500
_MONITOR_TTL = 5.0


def raw_sources(files: tuple[str, ...] | list[str]) -> dict[str, dict[str, Any]]:
    """Each source's mapping as written in the inventory files, `${VAR}` not expanded."""
    import yaml

    found: dict[str, dict[str, Any]] = {}
    for file in files:
        data = yaml.safe_load(Path(file).read_text(encoding="utf-8")) or {}
        for entry in data.get("sources") or () if isinstance(data, dict) else ():
            if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                found.setdefault(entry["id"], entry)
    return found


class ZoneDispatcher:
    """Probes zoned sources through Celery, the others in this process; keeps zone statistics."""

    def __init__(self, broker: str, settings: ZoneSettings | None = None) -> None:
        from scanner.zones.app import make_app

        self.broker = broker
        self.settings = settings or ZoneSettings.from_environment()
        self.app = make_app(broker, self.settings)
        self._lock = threading.Lock()
        self._parse_lock = threading.Lock()
        self._raw: dict[tuple[str, ...], tuple[tuple[int, ...], dict[str, dict[str, Any]]]] = {}
        self._latency: dict[str, deque[float]] = {}
        self._dispatched: dict[str, int] = {}
        self._monitor: tuple[float, dict[str, list[str]]] | None = None
        self._state_board: _Board | None = None

    # -- the prober run_scan calls ------------------------------------------------------------
    def grace(self, source: SourceConfig) -> float:
        """Seconds a zoned probe may take beyond its own timeout: waiting for a worker, and
        the redelivery of a task whose worker died."""
        if not source.zone:
            return 0.0
        return self.settings.answer_timeout + self.settings.redelivery + 5.0

    def probe(self, source: SourceConfig, context: ProbeContext,
              registry: Mapping[str, type[Connector]] | None = None) -> SourceSnapshot:
        """The source's snapshot, from its zone's worker or from this process."""
        from scanner.scan import probe_source

        if not source.zone:
            return probe_source(source, context, registry)
        try:
            return self._remote(source, source.zone, context)
        except ProbeError:
            raise
        except Exception as exc:  # a broker or backend failure is this source's, not the scan's
            raise ProbeError(f"dispatch to zone {source.zone} failed: {type(exc).__name__}",
                             reason="unreachable", retryable=True) from None

    def raw_source(self, source: SourceConfig, files: tuple[str, ...]) -> dict[str, Any]:
        """The source's mapping as written, from its file (read again when the file changes)."""
        import os

        try:
            stamp = tuple(os.stat(f).st_mtime_ns for f in files)
        except OSError as exc:
            raise ProbeError(f"cannot read the inventory file of source {source.id}: {exc.strerror}",
                             reason="error") from None
        with self._parse_lock:  # one parse however many probes start at once
            cached = self._raw.get(files)
            if cached is not None and cached[0] == stamp:
                raw = cached[1]
            else:
                raw = raw_sources(files)
                self._raw[files] = (stamp, raw)
        entry = raw.get(source.id)
        if entry is None or entry.get("connector") != source.connector:
            raise ProbeError(f"source {source.id} is no longer in the inventory file as loaded", reason="error")
        return entry

    def _remote(self, source: SourceConfig, zone: str, context: ProbeContext) -> SourceSnapshot:
        files = (source.file,) if source.file else ()
        raw = self.raw_source(source, files)
        key = f"{source.id}.{uuid.uuid4().hex}"  # the idempotency key: one answer is used, once
        payload = {"protocol": TASK_PROTOCOL, "key": key, "source": raw, "timeout": context.timeout,
                   "principals": sorted(context.principals),
                   "not_after": time.time() + context.timeout + self.grace(source)}
        # The previous snapshot's stored bytes (waiting for the store, not for their decoding):
        # connectors compare with it (PostgreSQL's change counters), and a snapshot holds no
        # secret. Its digest lets the worker that sent it use its own copy instead of decoding it.
        blob = context.previous_blob
        sent_digest = None
        if blob is not None:
            from scanner.zones.worker import snapshot_digest

            sent_digest = snapshot_digest(blob)
            payload["previous"] = base64.b64encode(blob).decode("ascii")
            payload["previous_digest"] = sent_digest
        text = json.dumps(payload, default=str)
        sent = time.monotonic()
        result = self._send(text, zone, key, context, sent)
        with self._lock:
            self._dispatched[zone] = self._dispatched.get(zone, 0) + 1
        started: float | None = None
        checked_workers = sent
        board = self._board()
        watched = board.watch(key) if board is not None else None
        delay = 0.02
        value: Any = None
        try:
            while True:
                if context.cancelled.is_set():
                    self._revoke(result)
                    raise ProbeError("cancelled", reason="timeout")
                if watched is not None:
                    watched.event.wait(0.2)
                    watched.event.clear()
                    state, value = watched.state, watched.value
                else:
                    try:
                        state = result.state
                        value = result.result if state == "SUCCESS" else None
                    except Exception as exc:  # the broker or the backend is restarting: keep waiting
                        log.debug("zone %s: cannot read the state of %s: %s", zone, key, type(exc).__name__)
                        state = None
                now = time.monotonic()
                if state == "SUCCESS":
                    break
                if state in ("FAILURE", "REVOKED"):
                    raise ProbeError(f"the probe task failed on a worker of zone {zone} ({state.lower()})",
                                     reason="error")
                if state == "STARTED" and started is None:
                    started = now
                    self._observe(zone, now - sent)
                if started is None and now - checked_workers > self.settings.answer_timeout:
                    checked_workers = now
                    if not self.live_workers(zone, fresh=True):
                        self._revoke(result)
                        raise ProbeError(f"no worker in zone {zone} answered within "
                                         f"{self.settings.answer_timeout:g}s", reason="unreachable",
                                         retryable=True)
                    # A live worker is busy with other sources: keep waiting (run_scan's deadline holds).
                if watched is None:
                    time.sleep(delay)
                    delay = min(0.25, delay * 1.5)
        finally:
            if board is not None:
                board.unwatch(key)
        try:
            answer = json.loads(value)
        except (TypeError, ValueError):
            raise ProbeError(f"a worker of zone {zone} sent an answer that is not ctxscan JSON",
                             reason="error") from None
        finally:
            try:
                result.forget()
            except Exception:
                pass
        if started is None:
            self._observe(zone, max(0.0, time.monotonic() - sent - float(answer.get("duration") or 0.0)))
        return self._snapshot(source, zone, answer, context if sent_digest is not None else None, sent_digest)

    def _send(self, text: str, zone: str, key: str, context: ProbeContext, sent: float) -> Any:
        delay = 0.5
        while True:
            try:
                return self.app.send_task(TASK_NAME, args=[text], queue=queue_name(zone), task_id=key)
            except Exception as exc:  # the broker is down: retry until the answer timeout
                if context.cancelled.is_set() or time.monotonic() - sent > self.settings.answer_timeout:
                    raise ProbeError(f"cannot reach the broker to dispatch to zone {zone}: "
                                     f"{type(exc).__name__}", reason="unreachable", retryable=True) from None
                time.sleep(delay)
                delay = min(5.0, delay * 2)

    def _board(self) -> _Board | None:
        """The shared state reader, for a Redis result backend (others are polled per task)."""
        from scanner.zones.app import PolledRedisBackend

        with self._lock:
            if self._state_board is None and isinstance(self.app.backend, PolledRedisBackend):
                self._state_board = _Board(self.app.backend)
            return self._state_board

    def _revoke(self, result: Any) -> None:
        try:
            result.revoke()
        except Exception:
            pass

    @staticmethod
    def _snapshot(source: SourceConfig, zone: str, answer: Mapping[str, Any],
                  context: ProbeContext | None = None, sent_digest: str | None = None) -> SourceSnapshot:
        from scanner.model import apply_snapshot_delta, decode_snapshot, keep_encoding

        status = answer.get("status")
        if status == "ok" and answer.get("protocol") != TASK_PROTOCOL:
            raise ProbeError(f"a worker of zone {zone} answered with task protocol {answer.get('protocol')}, "
                             f"this ctxscan speaks {TASK_PROTOCOL}: run the same version everywhere",
                             reason="error")
        if status == "ok":
            blob = base64.b64decode(answer["snapshot"])
            snapshot = None
            delta = answer.get("delta")
            if context is not None and isinstance(delta, str) and answer.get("base") == sent_digest:
                previous = context.previous  # the same bytes the worker compared with, decoded here
                if previous is not None:
                    try:
                        snapshot = keep_encoding(apply_snapshot_delta(previous, base64.b64decode(delta)), blob)
                    except Exception as exc:  # noqa: BLE001 (the bytes are the truth: decode them)
                        log.warning("zone %s: the changes to %s do not rebuild the snapshot its bytes "
                                    "hold (%s); decoding them whole", zone, source.id, exc)
            if snapshot is None:
                try:
                    snapshot = decode_snapshot(blob)
                except Exception as exc:  # noqa: BLE001 (zlib's, msgspec's, the dict reader's)
                    raise ProbeError(f"a worker of zone {zone} sent a snapshot of {source.id} that this "
                                     f"ctxscan cannot read ({type(exc).__name__}): run the same version "
                                     "everywhere", reason="error") from None
            if (snapshot.source_id, snapshot.connector) == (source.id, source.connector) and (
                    not (source.include or source.exclude) or all(source.wants(a.path) for a in snapshot.assets)):
                return snapshot  # as the worker wrote it (it filtered): stored as those bytes
            kept = tuple(a for a in snapshot.assets if source.wants(a.path))
            return replace(snapshot, source_id=source.id, connector=source.connector, assets=kept)
        message = str(answer.get("error") or f"the worker answered {status}")
        reason = str(answer.get("reason") or ("timeout" if status == "timeout" else "error"))
        raise ProbeError(message, retryable=bool(answer.get("retryable")), reason=reason)

    # -- statistics for /healthz and /metrics ------------------------------------------------
    def _observe(self, zone: str, seconds: float) -> None:
        with self._lock:
            self._latency.setdefault(zone, deque(maxlen=_LATENCY_WINDOW)).append(seconds)

    def _workers_by_zone(self, fresh: bool = False) -> dict[str, list[str]]:
        with self._lock:
            cached = self._monitor
        if cached is not None and not fresh and time.monotonic() - cached[0] < _MONITOR_TTL:
            return cached[1]
        zones: dict[str, list[str]] = {}
        try:
            replies = self.app.control.inspect(timeout=1.0).active_queues() or {}
        except Exception as exc:
            log.debug("cannot ask the workers: %s", type(exc).__name__)
            replies = {}
        prefix = queue_name("")
        for hostname, queues in replies.items():
            for queue in queues or ():
                name = str(queue.get("name", ""))
                if name.startswith(prefix):
                    zones.setdefault(name[len(prefix):], []).append(hostname)
        with self._lock:
            self._monitor = (time.monotonic(), zones)
        return zones

    def live_workers(self, zone: str, fresh: bool = False) -> list[str]:
        """The workers consuming the zone's queue that answered a broadcast just now."""
        return sorted(self._workers_by_zone(fresh).get(zone, []))

    def queue_depth(self, zone: str) -> int | None:
        """Tasks waiting in the zone's queue (None when the broker cannot say)."""
        try:
            with self.app.connection_for_read() as conn:
                declared = conn.default_channel.queue_declare(queue=queue_name(zone), passive=True)
                return int(declared.message_count)
        except Exception as exc:
            from amqp.exceptions import ChannelError

            # The broker keeps no empty queue (Redis) or never saw one: nothing waits in it.
            return 0 if isinstance(exc, ChannelError) else None

    def zone_status(self, zones: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        """Per zone: live workers, queue depth, and dispatch latency (seconds to a worker)."""
        workers = self._workers_by_zone()
        status = {}
        for zone in zones:
            with self._lock:
                samples = sorted(self._latency.get(zone, ()))
                dispatched = self._dispatched.get(zone, 0)
            status[zone] = {
                "workers": sorted(workers.get(zone, [])),
                "queue_depth": self.queue_depth(zone),
                "dispatched": dispatched,
                "dispatch_latency_p50": _quantile(samples, 0.5),
                "dispatch_latency_p99": _quantile(samples, 0.99),
            }
        return status


class _Watched:
    """One pending task as the board last read it."""

    __slots__ = ("event", "state", "value", "raw")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.state: str | None = None
        self.value: Any = None
        self.raw: bytes | None = None


class _Board:
    """One thread reads the state of every pending task with one MGET every few milliseconds:
    hundreds of waiting probes cost one round trip, and an answer is seen within ~10 ms."""

    def __init__(self, backend: Any, interval: float = 0.01) -> None:
        self.backend = backend
        self.interval = interval
        self.pending: dict[str, _Watched] = {}
        self.cond = threading.Condition()
        threading.Thread(target=self._run, daemon=True, name="ctxscan-zone-results").start()

    def watch(self, task_id: str) -> _Watched:
        watched = _Watched()
        with self.cond:
            self.pending[task_id] = watched
            self.cond.notify()
        return watched

    def unwatch(self, task_id: str) -> None:
        with self.cond:
            self.pending.pop(task_id, None)

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.pending:
                    self.cond.wait()
                ids = list(self.pending)
            try:
                values = []
                for start in range(0, len(ids), 500):
                    chunk = ids[start:start + 500]
                    values.extend(self.backend.mget([self.backend.get_key_for_task(i) for i in chunk]))
            except Exception as exc:  # the backend is restarting: the waiters keep waiting
                log.debug("reading task states: %s", type(exc).__name__)
                time.sleep(0.5)
                continue
            for task_id, raw in zip(ids, values, strict=True):
                with self.cond:
                    watched = self.pending.get(task_id)
                if raw is None or watched is None or raw == watched.raw:
                    continue  # nothing new: a running task's STARTED record is read many times
                watched.raw = raw
                try:
                    meta = self.backend.decode_result(raw)
                except Exception:
                    continue
                if watched.state == meta.get("status"):
                    continue
                watched.value = meta.get("result")
                watched.state = meta.get("status")
                watched.event.set()
            time.sleep(self.interval)


def _quantile(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    return round(samples[min(len(samples) - 1, int(q * len(samples)))], 4)


class ZoneExecutor(LocalExecutor):
    """The daemon's executor when a broker is set: the same interface as `LocalExecutor`
    (submit, running, shutdown); each scan's probe runs where its source's zone says."""

    def __init__(self, store: Store, dispatcher: ZoneDispatcher, workers: int) -> None:
        self.dispatcher = dispatcher

        def scan(inventory: Inventory, store: Store, source_ids: list[str], trigger: str) -> ScanReport:
            from scanner.scan import run_scan

            return run_scan(inventory, store, source_ids, trigger=trigger, prober=dispatcher)

        super().__init__(store, workers=workers, scan=scan)
