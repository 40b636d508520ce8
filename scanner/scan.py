"""Scan orchestration: probe sources concurrently, store each result, evaluate the rules.

Probes run on a bounded pool of daemon threads. Each has a deadline from the moment it
starts; a probe that passes it is recorded as a timeout and abandoned (its thread is told
through `ProbeContext.cancelled` and replaced, so one hang never stalls the others or the
process exit). Results are stored one by one as they arrive.
"""

from __future__ import annotations

import difflib
import gc
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from scanner.errors import ProbeError, UsageError
from scanner.inventory import Inventory
from scanner.model import SourceSnapshot, utcnow
from scanner.plugins import Connector, ProbeContext, SourceConfig, connectors
from scanner.redact import redact_settings, redact_text

if TYPE_CHECKING:
    from scanner.store import FindingChanges, Store


@dataclass(frozen=True)
class SourceOutcome:
    """What happened to one source in a scan."""

    source_id: str
    connector: str
    status: str                 # ok, failed, timeout
    duration: float
    snapshot: SourceSnapshot | None = None
    error: str | None = None
    reason: str | None = None


def _finding_changes() -> FindingChanges:
    from scanner.store import FindingChanges

    return FindingChanges()


@dataclass
class ScanReport:
    """A finished scan: its id, each source's outcome and what the findings did."""

    scan_id: int
    started_at: datetime
    finished_at: datetime
    outcomes: list[SourceOutcome] = field(default_factory=list)
    changes: FindingChanges = field(default_factory=_finding_changes)

    @property
    def status(self) -> str:
        """ok when every source succeeded, failed when none did, else partial."""
        ok = sum(1 for o in self.outcomes if o.status == "ok")
        if ok == len(self.outcomes):
            return "ok"
        return "failed" if ok == 0 else "partial"


Progress = Callable[[str, SourceOutcome | None], None]


class Prober(Protocol):
    """Where a source's probe runs (scanner/zones dispatches zoned sources to their workers)."""

    def probe(self, source: SourceConfig, context: ProbeContext,
              registry: Mapping[str, type[Connector]] | None = None) -> SourceSnapshot:
        """The source's snapshot; errors are ProbeErrors."""

    def grace(self, source: SourceConfig) -> float:
        """Seconds the probe may take beyond its own timeout (queueing, redelivery)."""



def select_sources(inventory: Inventory, source_ids: Sequence[str] | None) -> list[SourceConfig]:
    """The sources to scan: all, or the named ones (an unknown id is a usage error)."""
    if not source_ids:
        return list(inventory.sources.values())
    chosen = []
    for source_id in source_ids:
        if source_id not in inventory.sources:
            close = difflib.get_close_matches(source_id, list(inventory.sources), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UsageError(f"unknown source {source_id!r}{hint}")
        chosen.append(inventory.sources[source_id])
    return chosen


def probe_source(source: SourceConfig, context: ProbeContext,
                 registry: Mapping[str, type[Connector]] | None = None) -> SourceSnapshot:
    """Run one connector's probe and check what it returns; errors are ProbeErrors."""
    registry = connectors() if registry is None else registry
    connector_cls = registry.get(source.connector)
    if connector_cls is None:
        raise ProbeError(f"connector {source.connector!r} is not installed", reason="error")
    connector = connector_cls(source)
    secrets = connector.redactions()
    try:
        snapshot = connector.probe(context)
    except ProbeError as exc:
        raise ProbeError(redact_text(exc.message, secrets), exc.retryable, exc.reason) from None
    except Exception as exc:  # a connector bug must not stop the scan
        message = redact_text(f"{type(exc).__name__}: {exc}", secrets).splitlines()[0]
        raise ProbeError(f"connector {source.connector} failed unexpectedly: {message}",
                         reason="error") from None
    if not isinstance(snapshot, SourceSnapshot):
        raise ProbeError(f"connector {source.connector} returned {type(snapshot).__name__}, "
                         "not a SourceSnapshot", reason="error")
    # The core keeps include/exclude even if a connector forgets them.
    kept = tuple(a for a in snapshot.assets if source.wants(a.path))
    return replace(snapshot, source_id=source.id, connector=source.connector, assets=kept)


class _Pool:
    """A bounded pool of daemon threads whose stuck workers can be abandoned and replaced."""

    def __init__(self, size: int) -> None:
        self.tasks: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self.size = size
        for _ in range(size):
            self._spawn()

    def _spawn(self) -> None:
        threading.Thread(target=self._work, daemon=True, name="ctxscan-probe").start()

    def _work(self) -> None:
        while True:
            task = self.tasks.get()
            if task is None:
                return
            task()

    def submit(self, task: Callable[[], None]) -> None:
        self.tasks.put(task)

    def replace_stuck_worker(self) -> None:
        self._spawn()

    def shutdown(self) -> None:
        for _ in range(self.size):
            self.tasks.put(None)


def run_scan(inventory: Inventory, store: Store | Callable[[], Store],
             source_ids: Sequence[str] | None = None,
             progress: Progress | None = None, trigger: str = "cli",
             registry: Mapping[str, type[Connector]] | None = None,
             now: Callable[[], datetime] = utcnow, prober: Prober | None = None) -> ScanReport:
    """Probe the chosen sources, store every result, evaluate the rules and sync findings.

    `store` may be a callable that opens it: the probes start first, and the store is opened
    and the previous snapshots decoded while they run (a connector that reads
    `ProbeContext.previous` waits for it there). The store and the rules are imported only
    then too, so that their import also overlaps the probes' waits on their servers.
    """
    sources = select_sources(inventory, source_ids)
    registry = connectors() if registry is None else registry
    started = now()
    principals: dict[str, set[str]] = {}
    for workflow in inventory.workflows.values():
        for source_id, principal in workflow.runs_as.items():
            principals.setdefault(source_id, set()).add(principal)

    # The previous snapshots, filled in once the store is open; probes wait on `ready`.
    previous: dict[str, SourceSnapshot] = {}
    # Their stored bytes, read before they are decoded: a zone's dispatcher sends them on at once.
    previous_blobs: dict[str, bytes] = {}
    ready, blobs_ready, abandoned = threading.Event(), threading.Event(), threading.Event()
    results: queue.Queue[tuple[str, SourceSnapshot | None, ProbeError | None, float]] = queue.Queue()
    running: dict[str, tuple[float, float, ProbeContext]] = {}  # id -> (started, timeout, ctx)
    lock = threading.Lock()
    pool = _Pool(max(1, min(inventory.defaults.concurrency, len(sources))))

    def task_for(source: SourceConfig) -> Callable[[], None]:
        timeout = float(source.timeout or inventory.defaults.timeout)
        limit = timeout + (prober.grace(source) if prober is not None else 0.0)
        cancelled = threading.Event()

        def load_previous() -> SourceSnapshot | None:
            while not ready.wait(0.05):
                if cancelled.is_set():
                    return None
            return previous.get(source.id)

        def load_previous_blob() -> bytes | None:
            while not blobs_ready.wait(0.05):
                if cancelled.is_set():
                    return None
            return previous_blobs.get(source.id)

        def run() -> None:
            began = time.monotonic()
            context = ProbeContext(now=now(), principals=frozenset(principals.get(source.id, ())),
                                   timeout=timeout, cancelled=cancelled, load_previous=load_previous,
                                   load_previous_blob=load_previous_blob)
            with lock:
                if abandoned.is_set():
                    return
                running[source.id] = (began, limit, context)
            if progress:
                progress(f"probing {source.id} ({source.connector})", None)
            try:
                if prober is not None:
                    snapshot = prober.probe(source, context, registry)
                elif source.zone:
                    # Its settings hold the zone's ${VAR} unexpanded: only a zone worker can probe it.
                    raise ProbeError(f"source {source.id} is in zone {source.zone}: it is probed by "
                                     f"`ctxscan worker --zone {source.zone}` through a broker (--broker or "
                                     "CTXSCAN_BROKER)", reason="error")
                else:
                    snapshot = probe_source(source, context, registry)
                results.put((source.id, snapshot, None, time.monotonic() - began))
            except ProbeError as exc:
                results.put((source.id, None, exc, time.monotonic() - began))
        return run

    for source in sources:
        pool.submit(task_for(source))
    try:
        from scanner.rules import build_context, evaluate

        store = store() if callable(store) else store
        longest = max((s.timeout or inventory.defaults.timeout for s in sources), default=60.0)
        store.mark_interrupted(older_than=started - timedelta(seconds=longest + 600))
        scan_id = store.begin_scan([s.id for s in sources], trigger, inventory.digest, started)
        recent_ids = store.recent_snapshot_ids([s.id for s in sources], limit=1)
        stored_blobs = store.snapshot_blobs_by_id(ids[0] for ids in recent_ids.values())
        previous_blobs.update((sid, stored_blobs[ids[0]]) for sid, ids in recent_ids.items()
                              if ids[0] in stored_blobs)
        blobs_ready.set()
        from scanner.store import decode_blobs

        # A stored snapshot that cannot be read is no previous one: the probe reads everything.
        stored_previous = decode_blobs(stored_blobs, {ids[0]: sid for sid, ids in recent_ids.items()})
        previous.update((sid, stored_previous[ids[0]]) for sid, ids in recent_ids.items()
                        if ids[0] in stored_previous)
    except BaseException:  # no store, no scan: stop the probes that started
        with lock:
            abandoned.set()
            for _, _, context in running.values():
                context.cancelled.set()
        pool.shutdown()
        raise
    finally:
        blobs_ready.set()
        ready.set()
        # A probe's time limit runs from when it started or from now, whichever is later:
        # waiting for the store (a PostgreSQL store, or SQLite behind a daemon's write) is not
        # the probe's time.
        store_ready = time.monotonic()
    # Snapshots held in memory by stored result id, so evaluation does not decode them again.
    known: dict[int, SourceSnapshot] = dict(stored_previous)

    outcomes: dict[str, SourceOutcome] = {}
    by_id = {s.id: s for s in sources}
    while len(outcomes) < len(sources):
        try:
            source_id, snapshot, error, duration = results.get(timeout=0.05)
        except queue.Empty:
            clock = time.monotonic()
            with lock:
                overdue = [(sid, began, limit, ctx) for sid, (began, limit, ctx) in running.items()
                           if sid not in outcomes and clock - max(began, store_ready) > limit]
            for sid, began, limit, ctx in overdue:
                ctx.cancelled.set()
                pool.replace_stuck_worker()
                outcome = SourceOutcome(sid, by_id[sid].connector, "timeout", clock - began,
                                        error=f"probe did not finish within {limit:g}s and was abandoned",
                                        reason="timeout")
                _store_outcome(store, scan_id, by_id[sid], outcome, now(), registry)
                outcomes[sid] = outcome
                if progress:
                    progress(f"{sid}: timeout", outcome)
            continue
        if source_id in outcomes:  # it finished after we gave up on it: keep the timeout
            continue
        source = by_id[source_id]
        if error is None:
            outcome = SourceOutcome(source_id, source.connector, "ok", duration, snapshot=snapshot)
        else:
            outcome = SourceOutcome(source_id, source.connector, "failed", duration,
                                    error=error.message, reason=error.reason)
        result_id = _store_outcome(store, scan_id, source, outcome, now(), registry)
        if outcome.snapshot is not None:
            known[result_id] = outcome.snapshot
        outcomes[source_id] = outcome
        if progress:
            progress(f"{source_id}: {outcome.status}", outcome)
        if not gc.isenabled() and len(outcomes) < len(sources):
            # A one-shot command pauses the cyclic collector (scanner.cli). Between sources,
            # reclaim the cycles a probe left (SDK clients make some) and freeze what survives,
            # so a long scan neither grows unbounded nor traverses any object twice.
            gc.collect()
            gc.freeze()
    pool.shutdown()

    finished = now()
    # Evaluated under the store's findings lock, so concurrent scans sync in the order they looked.
    changes = store.sync_findings(lambda: evaluate(build_context(inventory, store, finished, known)),
                                  finished, scan_id)
    report = ScanReport(scan_id, started, finished, [outcomes[s.id] for s in sources], changes)
    store.finish_scan(scan_id, report.status, finished)
    return report


def _store_outcome(store: Store, scan_id: int, source: SourceConfig, outcome: SourceOutcome,
                   when: datetime, registry: Mapping[str, type[Connector]]) -> int:
    connector_cls = registry.get(source.connector)
    declared: Iterable = connector_cls.settings if connector_cls else ()
    return store.record_result(
        scan_id, source.id, source.connector, outcome.status, outcome.duration,
        outcome.snapshot.probed_at if outcome.snapshot else when, snapshot=outcome.snapshot,
        error=outcome.error, reason=outcome.reason,
        settings=redact_settings(source.settings, declared))
