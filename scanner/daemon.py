"""`ctxscan daemon`: each source on its own schedule, notifications, health and metrics.

APScheduler 3 (a `BackgroundScheduler`) decides *when*: one job per source, with the
source's `schedule` (a duration such as `15m`, or a five-field cron line), a small jitter,
`max_instances=1` (never two scans of one source at once) and `coalesce` with no misfire
limit (a late job runs once, however late). An `Executor` decides *where* the scan runs
(scanner/executor.py). After each scan the rules have been evaluated by `run_scan`; the
daemon then reconciles notifications (scanner/notify.py) and updates its metrics.

Jobs live in APScheduler's memory store because they are derived from the inventory; what
must survive a restart is each source's last run, which the state store keeps
(`scheduler_state`). On start, a source whose next run passed while the daemon was down is
scanned once, right away; a daemon that was down for a day does one catch-up scan per
source, not a burst.

Signals: SIGTERM and SIGINT stop within `--stop-timeout` (running scans get that long,
then are abandoned) and exit 0; SIGHUP reloads the inventory, and an invalid one is refused
with a log line while the daemon keeps running on the old one.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from scanner.durations import is_cron, parse_duration
from scanner.errors import ConfigError, CtxscanError
from scanner.inventory import Inventory, load_inventory
from scanner.model import FreshnessObservation, utcnow
from scanner.redact import printable, redact_text

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.base import BaseTrigger

    from scanner.executor import Executor
    from scanner.metrics import DaemonMetrics, HealthServer, MetricsView
    from scanner.notify import Dispatcher, Target
    from scanner.scan import ScanReport
    from scanner.store import Store, StoredFinding

log = logging.getLogger("ctxscan.daemon")
MAX_JITTER = 60.0
JITTER_SHARE = 0.1
START_JITTER = 2.0


class DaemonError(CtxscanError):
    """The daemon cannot start (the metrics port is taken, the scheduler fails)."""


# ---------------------------------------------------------------------------------------
# Schedules

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def crontab_day_of_week(field_text: str) -> str:
    """A crontab day-of-week field in APScheduler's terms.

    APScheduler 3 reads weekday numbers with 0 = Monday; crontab (and users) mean 0 (and 7)
    = Sunday. Numbers, ranges and steps over numbers become explicit day names.
    """
    parts = []
    for part in field_text.split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?(?:/(\d+))?", part)
        if not match:
            parts.append(part)
            continue
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) else (7 if match.group(3) else first)
        step = int(match.group(3) or 1)
        if not (0 <= first <= 7 and 0 <= last <= 7 and first <= last and step >= 1):
            parts.append(part)  # let APScheduler word the error
            continue
        for number in range(first, last + 1, step):
            name = _DAY_NAMES[number]
            if name not in parts:
                parts.append(name)
    return ",".join(parts)


@dataclass(frozen=True)
class Schedule:
    """A source's `schedule`: every N seconds, or a five-field cron line (UTC)."""

    text: str
    interval: float | None = None
    cron: str | None = None

    @classmethod
    def parse(cls, text: str) -> Schedule:
        """Parse a duration (`15m`) or a cron line (`*/15 * * * *`); ValueError when neither."""
        text = str(text).strip()
        if is_cron(text):
            schedule = cls(text, cron=text)
            schedule.trigger(0.0)  # validate now
            return schedule
        return cls(text, interval=parse_duration(text))

    def _cron_trigger(self, jitter: float | None) -> BaseTrigger:
        from apscheduler.triggers.cron import CronTrigger

        minute, hour, day, month, day_of_week = (self.cron or "").split()
        return CronTrigger(minute=minute, hour=hour, day=day, month=month,
                           day_of_week=crontab_day_of_week(day_of_week), timezone=UTC,
                           jitter=jitter or None)

    def trigger(self, jitter: float) -> BaseTrigger:
        """The APScheduler trigger."""
        if self.cron is not None:
            return self._cron_trigger(jitter)
        from apscheduler.triggers.interval import IntervalTrigger

        return IntervalTrigger(seconds=self.interval or 3600.0, timezone=UTC, jitter=jitter or None)

    def period(self, around: datetime) -> float:
        """Seconds between two runs (for a cron line, the gap after `around`)."""
        if self.interval is not None:
            return self.interval
        trigger = self._cron_trigger(None)
        first = trigger.get_next_fire_time(None, around)
        second = trigger.get_next_fire_time(first, first + timedelta(microseconds=1)) if first else None
        return (second - first).total_seconds() if first and second else 3600.0

    def jitter(self, around: datetime) -> float:
        """A small random delay: a tenth of the period, at most a minute."""
        return min(MAX_JITTER, JITTER_SHARE * self.period(around))

    def next_after(self, last_run: datetime) -> datetime:
        """When the run after `last_run` is due (without jitter)."""
        if self.interval is not None:
            return last_run + timedelta(seconds=self.interval)
        trigger = self._cron_trigger(None)
        nxt = trigger.get_next_fire_time(None, last_run + timedelta(microseconds=1))
        return nxt or last_run + timedelta(days=365)

    def first_run(self, last_run: datetime | None, now: datetime) -> datetime:
        """When a (re)started daemon runs a source first: now if it was never run or its next
        run passed while the daemon was down (once, however many runs were missed), else when
        the next run is due."""
        if last_run is None:
            return now
        due = self.next_after(last_run)
        return now if due <= now else due


# ---------------------------------------------------------------------------------------
# Logging

_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class _Redactor:
    """The secrets no log line may contain; updated on every (re)load."""

    def __init__(self) -> None:
        self.secrets: list[str] = []

    def __call__(self, text: str) -> str:
        return redact_text(text, self.secrets)


REDACTOR = _Redactor()


class TextFormatter(logging.Formatter):
    """`2026-01-01T10:00:00Z INFO ctxscan.daemon: message`, secrets redacted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def format(self, record: logging.LogRecord) -> str:
        # The message is escaped on its own: a newline or escape sequence in a name must not
        # start a forged log line or colour the operator's terminal.
        safe = logging.makeLogRecord({**record.__dict__, "msg": printable(record.getMessage()), "args": None})
        return REDACTOR(super().format(safe))


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message and any extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return REDACTOR(json.dumps(data, default=str, ensure_ascii=False))


def configure_logging(log_format: str = "text", level: str = "info") -> None:
    """Send logs to stderr as text or JSON lines; quieten APScheduler's chatter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # The scheduler reports a skipped overlapping run at WARNING; it is expected, not alarming.
    logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)


def inventory_secrets(inventory: Inventory, targets: Sequence[Target]) -> list[str]:
    """Every secret of an inventory: webhook URLs and the connectors' secret settings."""
    from scanner.notify import secrets_of
    from scanner.plugins import connectors

    found = secrets_of(targets)
    registry = connectors()
    for source in inventory.sources.values():
        connector_cls = registry.get(source.connector)
        if connector_cls is not None:
            try:
                found.extend(connector_cls(source).redactions())
            except Exception:  # a plugin's redactions() must not stop the daemon
                pass
    return found


# ---------------------------------------------------------------------------------------
# The daemon

@dataclass(frozen=True)
class DaemonOptions:
    """How the daemon runs."""

    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    stop_timeout: float = 10.0
    retry_initial: float = 1.0
    retry_max: float = 300.0
    workers: int | None = None        # scans at once; default the inventory's concurrency
    lease: float = 15.0               # leader lease: a standby takes over within twice this


@dataclass
class SourceState:
    """What the daemon knows of one source, for /healthz and the next start."""

    schedule: str
    last_started_at: datetime | None = None
    last_finished_at: datetime | None = None
    last_status: str | None = None
    last_success_at: datetime | None = None
    last_duration: float | None = None
    last_error: str | None = None
    next_run_at: datetime | None = None
    scans: int = 0
    interrupted: bool = False         # its last run started and never finished (a crash)

    def to_json(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {"schedule": self.schedule, "last_success": iso(self.last_success_at),
                "last_status": self.last_status, "last_started": iso(self.last_started_at),
                "last_finished": iso(self.last_finished_at), "last_duration": self.last_duration,
                "last_error": self.last_error, "next_run": iso(self.next_run_at), "scans_since_start": self.scans}


class Daemon:
    """Scheduled scans of an inventory into a store, with notifications and an HTTP endpoint."""

    def __init__(self, inventory: Inventory, store: Store, config_paths: Sequence[str],
                 options: DaemonOptions | None = None, executor: Executor | None = None,
                 loader: Callable[[Sequence[str]], Inventory] = load_inventory) -> None:
        from scanner.executor import LocalExecutor
        from scanner.metrics import DaemonMetrics
        from scanner.notify import Dispatcher, targets_for

        self.inventory = inventory
        self.store = store
        self.config_paths = list(config_paths)
        self.options = options or DaemonOptions()
        self.loader = loader
        self.unprobed: list[str] = []  # sources `run_once` could not probe (its exit code)
        self.executor: Executor = executor or LocalExecutor(
            store, workers=self.options.workers or inventory.defaults.concurrency)
        self.metrics: DaemonMetrics = DaemonMetrics(self._metrics_view)
        targets = targets_for(inventory)
        self.dispatcher: Dispatcher = Dispatcher(store, targets, retry_initial=self.options.retry_initial,
                                                 retry_max=self.options.retry_max,
                                                 hook=self._notification_hook)
        self._store_secrets = list(store.secrets)
        REDACTOR.secrets = inventory_secrets(inventory, targets) + self._store_secrets
        for target in targets:  # a series at 0 from the start, so increase() alerts work
            self.metrics.notification_failures.labels(target.name)
        self.scheduler: BackgroundScheduler | None = None
        self.server: HealthServer | None = None
        self.started_at = utcnow()
        self.loaded_at = self.started_at
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._reload_requested = threading.Event()
        self._stopping = False
        self._sources: dict[str, SourceState] = {}
        self._assets: dict[str, list[tuple[str, FreshnessObservation]]] = {}
        self._open_findings: dict[tuple[str, str], int] = {}
        self._last_reload_error: str | None = None
        self._stop_signal: str | None = None
        self.role = "leader"
        self._exit_code = 0
        self._pruned_at: float | None = None
        self._load_state()

    # -- state -----------------------------------------------------------------------------
    def _load_state(self) -> None:
        """Pick up each source's last run, last success and newest assets from the store."""
        stored = self.store.schedule_states()
        latest = self.store.latest_results(list(self.inventory.sources))
        snapshots = self.store.latest_snapshots(list(self.inventory.sources))
        for source_id, source in self.inventory.sources.items():
            state = SourceState(schedule=source.schedule or self.inventory.defaults.schedule)
            remembered = stored.get(source_id)
            if remembered is not None:
                state.last_started_at = remembered.last_started_at
                state.last_finished_at = remembered.last_finished_at
                state.last_status = remembered.last_status
                state.last_success_at = remembered.last_success_at
                state.last_duration = remembered.last_duration
                state.interrupted = remembered.last_status == "running"
                if state.interrupted:
                    state.last_status = "interrupted"
            result = latest.get(source_id)
            if result is not None and (state.last_started_at is None or result.probed_at > state.last_started_at):
                # A CLI scan since the daemon last ran counts as a run.
                state.last_started_at = result.probed_at
                state.last_status = result.status
            snapshot = snapshots.get(source_id)
            if snapshot is not None:
                if state.last_success_at is None or snapshot.probed_at > state.last_success_at:
                    state.last_success_at = snapshot.probed_at
                self._assets[source_id] = [(a.path, a.freshness) for a in snapshot.assets]
            self._sources[source_id] = state
        self._refresh_findings()

    def _refresh_findings(self, found: Sequence[StoredFinding] | None = None) -> list[StoredFinding]:
        from scanner.acceptance import acceptance_for

        everything = list(found) if found is not None else self.store.findings(None)
        today = utcnow().date()
        counts: dict[tuple[str, str], int] = dict.fromkeys(self._open_findings, 0)
        for finding in everything:
            if finding.status == "open" and acceptance_for(finding, self.inventory.accept, today) is None:
                key = (finding.kind, finding.severity)
                counts[key] = counts.get(key, 0) + 1
        with self._lock:
            self._open_findings = counts
        return everything

    def _metrics_view(self) -> MetricsView:
        from scanner.metrics import MetricsView

        zones = self._zone_status()  # may ask the broker: not under the lock
        with self._lock:
            pending = {status.name: status.pending for status in self.dispatcher.statuses()}
            return MetricsView(
                now=utcnow(), inventory=self.inventory, assets=dict(self._assets),
                open_findings=dict(self._open_findings),
                last_success={k: s.last_success_at for k, s in self._sources.items() if s.last_success_at},
                outbox_pending=pending, scheduler_running=self.running(),
                source_up={k: s.last_status == "ok" for k, s in self._sources.items() if s.last_status},
                leader=self.role == "leader", zones=zones)

    def _zone_status(self) -> dict[str, dict[str, Any]]:
        dispatcher = getattr(self.executor, "dispatcher", None)
        if dispatcher is None:
            return {}
        try:
            return dict(dispatcher.zone_status(self.inventory.zones))
        except Exception as exc:  # the broker is down: say so, do not fail the scrape
            log.debug("zone status: %s", type(exc).__name__)
            return {}

    def _notification_hook(self, target: Target, outcome: str, event: str | None) -> None:
        if outcome == "delivered":
            self.metrics.notifications.labels(target.name, event or "-").inc()
        else:
            self.metrics.notification_failures.labels(target.name).inc()

    def running(self) -> bool:
        """Whether the scheduler runs and the daemon is not stopping."""
        return bool(self.scheduler is not None and self.scheduler.running and not self._stopping)

    def health(self) -> tuple[int, dict[str, Any]]:
        """The /healthz status code and body."""
        running = self.running()
        busy = self.executor.running()
        zones = self._zone_status()
        if self.role == "standby" and not self._stopping:
            return 200, {"status": "standby", "role": "standby", "scheduler": "stopped",
                         "started_at": self.started_at.isoformat(), "zones": zones,
                         "inventory": {"files": list(self.inventory.files), "digest": self.inventory.digest}}
        with self._lock:
            sources = {}
            for source_id, state in sorted(self._sources.items()):
                item = state.to_json()
                item["running"] = source_id in busy
                sources[source_id] = item
            body = {
                "status": "ok" if running else ("stopping" if self._stopping else "starting"),
                "role": self.role,
                "zones": zones,
                "scheduler": "running" if running else "stopped",
                "started_at": self.started_at.isoformat(),
                "inventory": {"files": list(self.inventory.files), "digest": self.inventory.digest,
                              "loaded_at": self.loaded_at.isoformat(),
                              "last_reload_error": self._last_reload_error},
                "sources": sources,
                "notify": [s.to_json() for s in self.dispatcher.statuses()],
            }
        return (200 if running else 503), body

    # -- scheduling ------------------------------------------------------------------------
    def _add_job(self, source_id: str, now: datetime) -> None:
        assert self.scheduler is not None
        state = self._sources[source_id]
        schedule = Schedule.parse(state.schedule)
        jitter = schedule.jitter(now)
        # A run a crash interrupted is done again right away.
        first = now if state.interrupted else schedule.first_run(state.last_started_at, now)
        state.interrupted = False
        if first <= now:
            # Spread a start's catch-up scans a little, but do not make anyone wait a minute.
            first = now + timedelta(seconds=random.uniform(0, min(jitter, START_JITTER)))
        self.scheduler.add_job(self._run_job, trigger=schedule.trigger(jitter), args=[source_id],
                               id=source_id, name=f"scan {source_id}", next_run_time=first,
                               max_instances=1, coalesce=True, misfire_grace_time=None,
                               replace_existing=True)
        state.next_run_at = first
        log.info("source %s: schedule %s, next scan %s", source_id, state.schedule,
                 "now" if first <= now + timedelta(seconds=START_JITTER) else first.isoformat(timespec="seconds"),
                 extra={"source": source_id, "schedule": state.schedule, "next_run": first.isoformat()})

    def start(self) -> None:
        """Start the scheduler, the delivery threads and the HTTP endpoint."""
        from apscheduler.executors.pool import ThreadPoolExecutor as JobThreads
        from apscheduler.schedulers.background import BackgroundScheduler

        if self.options.metrics_port is not None:
            self._start_server()
        # A scan whose process died (kill -9) is not left `running` until it times out.
        abandoned = self.store.mark_interrupted(older_than=utcnow() - timedelta(days=3650))
        if abandoned:
            log.warning("%d scan(s) left running by a process that no longer exists: marked interrupted",
                        abandoned)
        self.dispatcher.start()
        # The job threads mostly wait for the executor; allow one per source and then some.
        self.scheduler = BackgroundScheduler(
            timezone=UTC, executors={"default": JobThreads(max(32, 2 * len(self.inventory.sources) + 2))},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        now = utcnow()
        for source_id in self.inventory.sources:
            self._add_job(source_id, now)
        self.scheduler.add_job(self._housekeeping, "interval", seconds=60, id="__housekeeping",
                               coalesce=True, max_instances=1, misfire_grace_time=None)
        if self.inventory.retention_scans is not None:  # at the start, then daily in housekeeping
            self.scheduler.add_job(self._apply_retention, "date", run_date=now, id="__retention",
                                   misfire_grace_time=None)
        self.scheduler.start()
        log.info("daemon started: %d sources, %d notification targets, state %s",
                 len(self.inventory.sources), len(self.dispatcher.targets), self.store.display_url,
                 extra={"sources": len(self.inventory.sources)})

    def _start_server(self) -> None:
        from scanner.lineage.openlineage import LineageEndpoint, is_loopback
        from scanner.metrics import HealthServer

        if self.server is not None:
            return
        host, port = self.options.metrics_host, self.options.metrics_port or 0
        token = os.environ.get("CTXSCAN_LINEAGE_TOKEN") or None
        if token is None and not is_loopback(host):
            raise DaemonError(f"serving on {host} (not loopback) takes OpenLineage events at /api/v1/lineage: "
                              "set CTXSCAN_LINEAGE_TOKEN to the bearer token senders must use")
        lineage = LineageEndpoint(self.store, token)
        try:
            self.server = HealthServer(host, port, self.health, self.metrics, {lineage.path: lineage})
        except OSError as exc:
            raise DaemonError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.server.start()
        log.info("serving /healthz and /metrics on http://%s:%d", host, self.server.port,
                 extra={"metrics_host": host, "metrics_port": self.server.port})

    def _run_job(self, source_id: str) -> None:
        """One scheduled run: scan through the executor, then record, notify and measure."""
        if self._stopping:
            return
        inventory = self.inventory
        if source_id not in inventory.sources:
            return  # removed by a reload while this run was waiting
        started = utcnow()
        with self._lock:
            state = self._sources.get(source_id)
            if state is None:
                return
            state.last_started_at = started
            job = self.scheduler.get_job(source_id) if self.scheduler else None
            state.next_run_at = job.next_run_time if job is not None else None
        try:
            # `running` until it finishes: a daemon that finds it so after a crash runs it again.
            self.store.record_schedule(source_id, schedule=state.schedule, last_started_at=started,
                                       next_run_at=state.next_run_at, last_status="running")
            future = self._submit(source_id, inventory)
            report = self._wait(future)
        except Exception as exc:
            self._scan_error(source_id, exc)
            return
        if report is None:
            return  # stopping: the scan is abandoned
        self._after_scan(source_id, inventory, report)

    def _submit(self, source_id: str, inventory: Inventory) -> Future[ScanReport]:
        from scanner.executor import ScanRequest

        return self.executor.submit(ScanRequest(source_id, inventory, "daemon"))

    def _wait(self, future: Future[ScanReport]) -> ScanReport | None:
        """The scan's report; None when the daemon stops first (so job threads never hang)."""
        while True:
            try:
                return future.result(timeout=0.2)
            except FutureTimeout:
                if self._stop.is_set():
                    return None
            except CancelledError:
                return None

    def _scan_error(self, source_id: str, exc: BaseException) -> None:
        message = REDACTOR(f"{type(exc).__name__}: {exc}".splitlines()[0])
        with self._lock:
            state = self._sources.get(source_id)
            if state is not None:
                state.last_status = "error"
                state.last_error = message
                state.last_finished_at = utcnow()
        self.metrics.scans.labels(source_id, "error").inc()
        if self._stopping:
            return
        log.error("scan of %s failed: %s", source_id, message, extra={"source": source_id})

    def _after_scan(self, source_id: str, inventory: Inventory, report: ScanReport) -> None:
        outcome = next((o for o in report.outcomes if o.source_id == source_id), None)
        finished = report.finished_at
        status = outcome.status if outcome else report.status
        self.metrics.scans.labels(source_id, status).inc()
        if outcome is not None:
            self.metrics.scan_duration.labels(source_id).observe(outcome.duration)
            if outcome.status != "ok":
                self.metrics.probe_failures.labels(source_id, outcome.reason or outcome.status).inc()
        with self._lock:
            state = self._sources.get(source_id)
            if state is None:
                return
            state.scans += 1
            state.last_finished_at = finished
            state.last_status = status
            state.last_duration = outcome.duration if outcome else None
            state.last_error = outcome.error if outcome and outcome.status != "ok" else None
            job = self.scheduler.get_job(source_id) if self.scheduler else None
            if job is not None:
                state.next_run_at = job.next_run_time
            if outcome is not None and outcome.snapshot is not None:
                state.last_success_at = outcome.snapshot.probed_at
                self._assets[source_id] = [(a.path, a.freshness) for a in outcome.snapshot.assets]
            success = state.last_success_at
            next_run = state.next_run_at
        changes = report.changes
        opened = len(changes.opened) + len(changes.reopened)
        level = logging.WARNING if status != "ok" else logging.INFO
        moved = [f"{n} {what}" for n, what in ((opened, "new"), (len(changes.escalated), "escalated"),
                                                  (len(changes.resolved), "resolved")) if n]
        # "0 opened" next to the notifications that follow read as a contradiction: those tell
        # targets about findings already open; this line counts what this scan changed.
        log.log(level, "scanned %s: %s in %.2fs%s; %s",
                source_id, status, outcome.duration if outcome else 0.0,
                f" ({outcome.error})" if outcome and outcome.error else "",
                f"findings changed: {', '.join(moved)}" if moved else "no finding changed",
                extra={"source": source_id, "status": status, "scan_id": report.scan_id,
                       "opened": opened, "escalated": len(changes.escalated),
                       "resolved": len(changes.resolved)})
        try:
            self.store.record_schedule(source_id, last_finished_at=finished, last_status=status,
                                       last_success_at=success, last_scan_id=report.scan_id,
                                       last_duration=outcome.duration if outcome else None,
                                       next_run_at=next_run)
            self._refresh_findings(self.dispatcher.reconcile(inventory).findings)
        except Exception as exc:
            log.error("after scanning %s: %s", source_id, REDACTOR(f"{type(exc).__name__}: {exc}".splitlines()[0]),
                      extra={"source": source_id})

    def _housekeeping(self) -> None:
        self._apply_retention()
        try:
            self.dispatcher.prune()
            # An accept: entry may have expired, a CLI scan may have changed findings.
            self._refresh_findings(self.dispatcher.reconcile(self.inventory).findings)
        except Exception as exc:
            log.warning("housekeeping failed: %s", type(exc).__name__)

    def _apply_retention(self, now: float | None = None) -> None:
        """`retention:` once a day (and at the first housekeeping after the start)."""
        days = self.inventory.retention_scans
        clock = time.monotonic() if now is None else now
        if days is None or (self._pruned_at is not None and clock - self._pruned_at < 86400):
            return
        self._pruned_at = clock
        try:
            scans, results = self.store.prune_history(utcnow() - timedelta(seconds=days))
        except Exception as exc:
            log.warning("applying retention failed: %s", REDACTOR(f"{type(exc).__name__}: {exc}".splitlines()[0]))
            return
        log.info("retention: deleted %d scans and %d results", scans, results,
                 extra={"scans_deleted": scans, "results_deleted": results})

    # -- reload ----------------------------------------------------------------------------
    def request_reload(self) -> None:
        """Ask the main loop to reload the inventory (safe from a signal handler)."""
        self._reload_requested.set()
        self._stop_wakeup()

    def reload(self) -> bool:
        """Reload the inventory; an invalid one is refused and the old one kept."""
        from scanner.notify import targets_for

        try:
            new = self.loader(self.config_paths)
            for source in new.sources.values():
                Schedule.parse(source.schedule or new.defaults.schedule)
        except (ConfigError, ValueError) as exc:
            errors = getattr(exc, "errors", None) or [exc]
            lines = [e.one_line() if isinstance(e, ConfigError) else str(e) for e in errors]
            self._last_reload_error = lines[0]
            self.metrics.reloads.labels("refused").inc()
            log.error("inventory reload refused, still running on the previous one (digest %s): %s",
                      self.inventory.digest, "; ".join(lines), extra={"errors": lines})
            return False
        except Exception as exc:
            self._last_reload_error = f"{type(exc).__name__}: {exc}"
            self.metrics.reloads.labels("refused").inc()
            log.error("inventory reload refused, still running on the previous one: %s",
                      REDACTOR(self._last_reload_error))
            return False
        old = self.inventory
        if new.state != old.state:
            log.warning("the inventory's `state:` changed; the daemon keeps its store until restarted")
        targets = targets_for(new)
        REDACTOR.secrets = inventory_secrets(new, targets) + self._store_secrets
        now = utcnow()
        with self._lock:
            self.inventory = new
            self.loaded_at = now
            self._last_reload_error = None
            added, removed, changed = [], [], []
            for source_id in list(self._sources):
                if source_id not in new.sources:
                    removed.append(source_id)
                    del self._sources[source_id]
                    self._assets.pop(source_id, None)
                    if self.scheduler is not None and self.scheduler.get_job(source_id):
                        self.scheduler.remove_job(source_id)
            remembered = self.store.schedule_states()
            for source_id, source in new.sources.items():
                schedule = source.schedule or new.defaults.schedule
                state = self._sources.get(source_id)
                if state is None:
                    state = SourceState(schedule=schedule)
                    old_state = remembered.get(source_id)
                    if old_state is not None:
                        state.last_started_at = old_state.last_started_at
                        state.last_success_at = old_state.last_success_at
                        state.last_status = old_state.last_status
                    self._sources[source_id] = state
                    added.append(source_id)
                elif state.schedule != schedule:
                    state.schedule = schedule
                    changed.append(source_id)
                else:
                    continue
                if self.scheduler is not None:
                    self._add_job(source_id, now)
        self.dispatcher.set_targets(targets)
        for target in targets:  # a series at 0 from the start, so increase() alerts work
            self.metrics.notification_failures.labels(target.name)
        self.metrics.reloads.labels("ok").inc()
        log.info("inventory reloaded (digest %s): %d sources; added %s, removed %s, rescheduled %s",
                 new.digest, len(new.sources), ", ".join(added) or "none", ", ".join(removed) or "none",
                 ", ".join(changed) or "none",
                 extra={"digest": new.digest, "added": added, "removed": removed, "rescheduled": changed})
        try:
            self._refresh_findings(self.dispatcher.reconcile(new).findings)
        except Exception as exc:
            log.warning("after reload: %s", type(exc).__name__)
        return True

    # -- running and stopping --------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask the main loop to stop (safe from a signal handler)."""
        self._stop.set()

    def _stop_wakeup(self) -> None:
        pass  # the main loop polls; kept as the one place to wake it if that changes

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop, SIGHUP reloads (main thread only)."""
        def stop(signum: int, _frame: Any) -> None:
            # No logging here: the handler may interrupt a thread that holds the log lock.
            self._stop_signal = signal.Signals(signum).name
            self.request_stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda _s, _f: self.request_reload())

    def serve_forever(self) -> int:
        """Stand by until this daemon holds the leader lock, then run until told to stop;
        returns the exit code (1 when the lock was lost: a supervisor restarts it as a standby)."""
        from scanner.zones.leader import leader_lock

        lock = leader_lock(self.store.url, self.options.lease)
        poll = max(0.1, self.options.lease / 3)
        if not lock.acquire():
            self.role = "standby"
            if self.options.metrics_port is not None:
                self._start_server()
            log.info("standby: another daemon leads this store; trying for the lead every %gs", poll)
            while not lock.acquire():
                if self._stop.wait(poll):
                    self._stopping = True
                    if self.server is not None:
                        self.server.stop()
                    log.info("stopped (standby)")
                    return 0
            log.info("this daemon is now the leader")
            with self._lock:
                self.role = "leader"
            self._load_state()  # the previous leader ran scans since this daemon started
        self.start()
        checked = time.monotonic()
        while not self._stop.is_set():
            self._stop.wait(0.2)
            if self._reload_requested.is_set():
                self._reload_requested.clear()
                log.info("reloading the inventory")
                self.reload()
            if time.monotonic() - checked >= poll:
                checked = time.monotonic()
                if not lock.held():
                    log.error("lost the leader lock (the store's session ended); stopping so that a "
                              "supervisor restarts this daemon as a standby")
                    self._exit_code = 1
                    break
        self.shutdown()
        lock.release()
        return self._exit_code

    def run_once(self) -> int:
        """Scan every source once, deliver the notifications, and return; refused (a UsageError)
        while another daemon leads the store, which would scan and notify beside it."""
        from scanner.zones.leader import leader_lock

        lock = leader_lock(self.store.url, self.options.lease)
        if not lock.acquire():
            from scanner.errors import UsageError

            raise UsageError("another ctxscan daemon leads this state store: `daemon --once` would scan and "
                             "notify beside it (stop that daemon, or use `ctxscan scan`, which sends nothing)")
        try:
            return self._run_once()
        finally:
            lock.release()

    def _run_once(self) -> int:
        if self.options.metrics_port is not None:
            self._start_server()
        self.dispatcher.start()
        deadline_extra = self.options.stop_timeout
        futures = {}
        self.unprobed = []
        for source_id in self.inventory.sources:
            started = utcnow()
            self._sources[source_id].last_started_at = started
            self.store.record_schedule(source_id, schedule=self._sources[source_id].schedule,
                                       last_started_at=started)
            futures[source_id] = self._submit(source_id, self.inventory)
        for source_id, future in futures.items():
            try:
                report = self._wait(future)
            except Exception as exc:
                self._scan_error(source_id, exc)
                self.unprobed.append(source_id)
                continue
            if report is not None:
                self._after_scan(source_id, self.inventory, report)
                if any(o.status != "ok" for o in report.outcomes if o.source_id == source_id):
                    self.unprobed.append(source_id)
            else:
                self.unprobed.append(source_id)
        if not self._stop.is_set():
            self._apply_retention()
            self._refresh_findings(self.dispatcher.reconcile(self.inventory).findings)
            if not self.dispatcher.flush(deadline_extra):
                log.warning("%d notification(s) still pending; they are delivered on the next run",
                            self.dispatcher.pending())
        self.shutdown()
        return 0

    def shutdown(self) -> None:
        """Stop scheduling, give running scans until the deadline, then stop everything else."""
        deadline = time.monotonic() + self.options.stop_timeout
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        self._stop.set()
        why = f" ({self._stop_signal})" if self._stop_signal else ""
        log.info("stopping%s: waiting up to %gs for running scans", why, self.options.stop_timeout)
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        finished = self.executor.shutdown(max(0.0, deadline - time.monotonic()))
        if not finished:
            try:
                self.store.interrupt_scans("daemon", self.started_at)
            except Exception:
                pass
        self.dispatcher.stop()
        if self.server is not None:
            self.server.stop()
        log.info("stopped", extra={"clean": finished})
