"""Notifications: tell people when a finding opens, rises in severity or resolves — and only then.

Each `notify:` entry of the inventory is a target (`log`, `file` or `webhook`). After every
scan the daemon *reconciles*: it compares each finding in the store with the target's ledger
(the last state of that finding the target was told about) and queues one message per
change in the store's outbox, in the same transaction that moves the ledger. A delivery
thread per target drains its outbox with timeouts and exponential backoff, so a webhook that
is down or hangs never blocks or slows a scan, and gets what it missed when it comes back.
Because both the ledger and the outbox live in the store, a restarted daemon neither repeats
nor loses a message (delivery is at least once: a crash between a target accepting a message
and the store recording it can repeat that one message).

A webhook URL is a secret: it is never logged, stored or shown; targets are named
`webhook[0]` and keyed in the store by a hash.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from scanner.acceptance import acceptance_for
from scanner.inventory import Inventory, NotifyConfig
from scanner.model import utcnow
from scanner.redact import redact_text
from scanner.store import SEVERITY_RANK, LedgerEntry, PlannedNotification, Store, StoredFinding

log = logging.getLogger("ctxscan.notify")
findings_log = logging.getLogger("ctxscan.findings")

EVENTS = ("opened", "reopened", "escalated", "overdue", "resolved")
_EMOJI = {"opened": ":rotating_light:", "reopened": ":rotating_light:", "escalated": ":arrow_up:",
          "overdue": ":alarm_clock:", "resolved": ":white_check_mark:"}
USER_AGENT = "ctxscan-notify/1"


class DeliveryError(Exception):
    """A target did not accept a message; the text is safe to log (no URL, no secret)."""


# ---------------------------------------------------------------------------------------
# Targets

# How a target of a `type: owners` entry is reached (ROUTE_ALL: a plain `notify:` target).
ROUTE_ALL = "all"
ROUTE_OWNER = "owner"          # one contact of one owner: hears that owner's findings
ROUTE_FALLBACK = "fallback"    # hears findings with no reachable owner
ROUTE_ESCALATE = "escalate"    # hears critical/high findings open and unaccepted for too long
ESCALATED_SEVERITIES = frozenset({"critical", "high"})


@dataclass(frozen=True)
class Target:
    """One place messages go: a `notify:` entry, or one contact, fallback or escalation
    target of a `type: owners` entry; its position, config and where relative paths start."""

    index: int
    config: NotifyConfig
    base_dir: Path
    route: str = ROUTE_ALL
    owner: str | None = None            # ROUTE_OWNER: whose contact this is
    position: int = 0                   # the contact's (or fallback's, escalation's) position
    escalate_after: float | None = None  # ROUTE_ESCALATE: seconds open before it hears
    min_severity: str | None = None     # the owners entry's, when the contact sets none

    @property
    def type(self) -> str:
        return self.config.type

    @property
    def name(self) -> str:
        """A name safe for logs and metrics: `webhook[0]`, `owners[1].crm-team.webhook[0]`."""
        if self.route == ROUTE_ALL:
            return f"{self.config.type}[{self.index}]"
        who = self.owner if self.route == ROUTE_OWNER else self.route
        return f"owners[{self.index}].{who}.{self.config.type}[{self.position}]"

    @property
    def key(self) -> str:
        """The store's key for this target: a hash, because a webhook URL is a secret."""
        where = self.config.url if self.config.type == "webhook" else (
            str(self.file_path()) if self.config.type == "file" else "")
        route = "" if self.route == ROUTE_ALL else f"\x1f{self.route}\x1f{self.owner or ''}"
        digest = hashlib.sha256(f"{self.config.type}\x1f{where}{route}".encode()).hexdigest()[:16]
        return f"{self.config.type}-{digest}"

    def file_path(self) -> Path:
        path = Path(self.config.path or "findings.jsonl").expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def describe(self) -> str:
        """For humans: the type and, for a webhook, only its host."""
        if self.config.type == "webhook" and self.config.url:
            return f"{self.name} (host {urlsplit(self.config.url).hostname or '?'})"
        if self.config.type == "file":
            return f"{self.name} ({self.file_path()})"
        return self.name

    def secrets(self) -> list[str]:
        """Strings that must never be shown: the URL and its path and query."""
        if not self.config.url:
            return []
        parts = urlsplit(self.config.url)
        found = [self.config.url, parts.path, parts.query, parts.netloc.rpartition("@")[0]]
        return [s for s in found if s and s != "/" and len(s) >= 3]


def targets_for(inventory: Inventory) -> list[Target]:
    """The inventory's notification targets; a `type: owners` entry becomes one target per
    contact of each owner, per fallback and per escalation target."""
    targets: list[Target] = []
    base = inventory.base_dir
    for i, config in enumerate(inventory.notify):
        if config.type != "owners":
            targets.append(Target(i, config, base))
            continue
        floor = config.min_severity
        for owner_id, owner in sorted(inventory.owners.items()):
            for j, contact in enumerate(owner.contacts):
                targets.append(Target(i, _inherit(contact, config), base, ROUTE_OWNER, owner_id, j,
                                      min_severity=floor))
        for j, contact in enumerate(config.fallback):
            targets.append(Target(i, _inherit(contact, config), base, ROUTE_FALLBACK, None, j,
                                  min_severity=floor))
        for j, contact in enumerate(config.escalate_to):
            targets.append(Target(i, _inherit(contact, config), base, ROUTE_ESCALATE, None, j,
                                  escalate_after=config.escalate_after, min_severity=floor))
    return targets


def _inherit(contact: NotifyConfig, entry: NotifyConfig) -> NotifyConfig:
    """A contact takes the owners entry's digest unless it sets its own."""
    if contact.digest is None and entry.digest is not None:
        return replace(contact, digest=entry.digest)
    return contact


def route_owner(finding: StoredFinding, inventory: Inventory) -> str | None:
    """The owner a finding is routed to: the first of the asset's, the source's and the
    workflow's owners that is listed in `owners` with at least one contact, else None."""
    candidates: list[str | None] = []
    if finding.source and finding.source in inventory.sources:
        source = inventory.sources[finding.source]
        path = (finding.asset or "").partition(":")[2]
        candidates += [o.owner for o in source.assets if o.path == path and o.owner]
        candidates.append(source.owner)
    if finding.workflow and finding.workflow in inventory.workflows:
        candidates.append(inventory.workflows[finding.workflow].owner)
    for owner in candidates:
        if owner and owner in inventory.owners and inventory.owners[owner].contacts:
            return owner
    return None


def secrets_of(targets: Iterable[Target]) -> list[str]:
    """Every secret of these targets (for log redaction)."""
    return [s for t in targets for s in t.secrets()]


# ---------------------------------------------------------------------------------------
# Deciding what to send

def owners_of(finding: StoredFinding, inventory: Inventory) -> set[str]:
    """Who owns what a finding is about: its workflow, its source and the asset's override."""
    owners: set[str] = set()
    if finding.workflow and finding.workflow in inventory.workflows:
        owner = inventory.workflows[finding.workflow].owner
        if owner:
            owners.add(owner)
    if finding.source and finding.source in inventory.sources:
        source = inventory.sources[finding.source]
        if source.owner:
            owners.add(source.owner)
        path = (finding.asset or "").partition(":")[2]
        for override in source.assets:
            if override.owner and override.path == path:
                owners.add(override.owner)
    return owners


def _wanted(finding: StoredFinding, target: Target, inventory: Inventory,
            now: datetime | None = None) -> bool:
    config = target.config
    floor = max(SEVERITY_RANK.get(config.min_severity, 0), SEVERITY_RANK.get(target.min_severity or "info", 0))
    if SEVERITY_RANK.get(finding.severity, 0) < floor:
        return False
    if target.route == ROUTE_OWNER:
        if route_owner(finding, inventory) != target.owner:
            return False
    elif target.route == ROUTE_FALLBACK:
        if route_owner(finding, inventory) is not None:
            return False
    elif target.route == ROUTE_ESCALATE:
        if finding.severity not in ESCALATED_SEVERITIES:
            return False
        opened = finding.first_seen
        if now is None or target.escalate_after is None or (now - opened).total_seconds() < target.escalate_after:
            return False
    return not config.owners or bool(owners_of(finding, inventory) & set(config.owners))


def plan(finding: StoredFinding, entry: LedgerEntry | None, target: Target, inventory: Inventory,
         today: date, now: datetime | None = None) -> tuple[str | None, str, str, int] | None:
    """What one target should hear about one finding: (event or None for a silent ledger move,
    status, severity, times_opened), or None when nothing changes.

    An escalation target hears `overdue` once a critical or high finding has been open and
    unaccepted for `escalate_after`, then what a target hears of it (a rise, the resolution).
    """
    if finding.status == "resolved":
        if entry is not None and entry.status == "open":
            return "resolved", "resolved", entry.severity, entry.times_opened
        return None
    if finding.status != "open" or acceptance_for(finding, inventory.accept, today) is not None:
        return None
    rank = SEVERITY_RANK.get(finding.severity, 0)
    if entry is not None and entry.status == "open" and entry.times_opened == finding.times_opened:
        told = SEVERITY_RANK.get(entry.severity, 0)
        if rank > told and _wanted(finding, target, inventory, now):
            return "escalated", "open", finding.severity, finding.times_opened
        if rank < told:  # quietly remember the lower level, so a rise later is news again
            return None, "open", finding.severity, finding.times_opened
        return None
    if not _wanted(finding, target, inventory, now):
        return None
    if target.route == ROUTE_ESCALATE:
        return "overdue", "open", finding.severity, finding.times_opened
    # Never told, told it resolved, or it resolved and reopened between two looks.
    event = "opened" if entry is None else "reopened"
    return event, "open", finding.severity, finding.times_opened


def subject_of(finding: StoredFinding) -> str:
    """What a finding is about, in one word."""
    return finding.subject


def message_text(event: str, finding: StoredFinding) -> str:
    """The Slack-compatible one-line `text`."""
    kind = finding.kind + (f"/{finding.subkind}" if finding.subkind else "")
    text = f"{_EMOJI.get(event, '')} ctxscan: {event} [{finding.severity}] {kind} on {subject_of(finding)}"
    if event == "resolved":
        return f"{text} (was: {finding.message})"
    if event == "overdue":
        return f"{text}: open since {finding.first_seen.isoformat(timespec='minutes')}, not accepted: {finding.message}"
    return f"{text}: {finding.message}"


DIGEST_LINES = 50


def build_digest(items: Sequence[Any], now: datetime) -> dict[str, Any]:
    """One message for many queued ones (a target with `digest:`): counts per event, a line
    per message (the first DIGEST_LINES), and every finding as data under `digest`."""
    grouped: dict[str, list[Mapping[str, Any]]] = {event: [] for event in EVENTS}
    lines: list[str] = []
    for item in items:
        payload = item.payload
        event = str(payload.get("event", item.event))
        grouped.setdefault(event, []).append(payload.get("finding") or {})
        if len(lines) < DIGEST_LINES:
            lines.append("• " + re.sub(r"^:[a-z_]+:\s*ctxscan:\s*", "", str(payload.get("text", ""))))
    counts = ", ".join(f"{len(found)} {event}" for event, found in grouped.items() if found)
    more = len(items) - len(lines)
    text = f":bookmark_tabs: ctxscan digest: {counts}\n" + "\n".join(lines)
    if more > 0:
        text += f"\n… and {more} more"
    return {"text": text, "event": "digest", "created_at": now.isoformat(), "source": "ctxscan",
            "count": len(items), "digest": {event: found for event, found in grouped.items() if found}}


def build_payload(event: str, finding: StoredFinding, now: datetime) -> dict[str, Any]:
    """The message every target gets: Slack-compatible `text` plus the finding as data."""
    return {
        "text": message_text(event, finding),
        "event": event,
        "created_at": now.isoformat(),
        "finding": finding.to_json(),
        "source": "ctxscan",
    }


# ---------------------------------------------------------------------------------------
# Delivering

class Notifier:
    """Delivers one message to one target, or raises DeliveryError."""

    def __init__(self, target: Target) -> None:
        self.target = target

    def deliver(self, payload: Mapping[str, Any]) -> None:
        raise NotImplementedError


class LogNotifier(Notifier):
    """Writes each message as a log line of `ctxscan.findings` (warning; resolved: info)."""

    def deliver(self, payload: Mapping[str, Any]) -> None:
        finding = payload.get("finding") or {}
        level = logging.INFO if payload.get("event") == "resolved" else logging.WARNING
        findings_log.log(level, "%s", re.sub(r"^(:[a-z_]+:\s*)?ctxscan:\s*|^:[a-z_]+:\s*", "",
                                                    str(payload.get("text", ""))),
                         extra={"event": payload.get("event"), "kind": finding.get("kind"),
                                "severity": finding.get("severity"), "fingerprint": finding.get("fingerprint"),
                                "subject": finding.get("asset") or finding.get("workflow") or finding.get("source")})


class FileNotifier(Notifier):
    """Appends each message to a file, one JSON object a line."""

    _lock = threading.Lock()

    def deliver(self, payload: Mapping[str, Any]) -> None:
        path = self.target.file_path()
        line = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False) + "\n"
        try:
            with self._lock:
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("a", encoding="utf-8") as handle:
                    handle.write(line)
        except OSError as exc:
            raise DeliveryError(f"cannot append to {path}: {exc.strerror or exc}") from None


class WebhookNotifier(Notifier):
    """POSTs each message as JSON; any 2xx is accepted, anything else is retried later.

    `timeout` bounds the whole delivery, not each socket read: a target that answers one byte
    every few seconds would otherwise hold the message (and every one after it) for as long
    as it likes. A redirect is not followed: the message is never re-sent somewhere else.
    """

    def deliver(self, payload: Mapping[str, Any]) -> None:
        import socket

        url = self.target.config.url or ""
        body = json.dumps(payload, sort_keys=True, default=str).encode()
        timeout = self.target.config.timeout
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DeliveryError("the webhook URL must be http:// or https://")
        try:
            port = parts.port
        except ValueError:
            raise DeliveryError("the webhook URL has an invalid port") from None
        connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = connection_class(parts.hostname, port, timeout=timeout)
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked read in the delivering thread
                except OSError:
                    pass

        deadline = threading.Timer(timeout, expire)
        deadline.daemon = True
        deadline.start()
        try:
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn.request("POST", path, body=body, headers={
                "Content-Type": "application/json", "User-Agent": USER_AGENT, "Host": parts.netloc.rsplit("@", 1)[-1]})
            response = conn.getresponse()
            response.read(65536)
            status = response.status
        except (OSError, ValueError, http.client.HTTPException) as exc:
            if expired.is_set() or isinstance(exc, TimeoutError):
                raise DeliveryError(f"timed out after {timeout:g}s") from None
            raise DeliveryError(self._safe(f"unreachable: {exc}")) from None
        finally:
            deadline.cancel()
            conn.close()
        if expired.is_set():
            raise DeliveryError(f"timed out after {timeout:g}s")
        if not 200 <= status < 300:
            raise DeliveryError(f"HTTP {status}")

    def _safe(self, text: str) -> str:
        return redact_text(text, self.target.secrets()).splitlines()[0][:300] if text else "failed"


def notifier_for(target: Target) -> Notifier:
    """The notifier of a target's type."""
    kinds: dict[str, Callable[[Target], Notifier]] = {
        "log": LogNotifier, "file": FileNotifier, "webhook": WebhookNotifier}
    return kinds[target.type](target)


# ---------------------------------------------------------------------------------------
# The dispatcher: reconcile into the outbox, and one delivery thread per target

@dataclass
class TargetStatus:
    """What /healthz and /metrics show about a target."""

    name: str
    type: str
    pending: int = 0
    delivered: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_error: str | None = None
    last_delivered_at: datetime | None = None
    delivering_since: datetime | None = None  # a delivery under way: a slow target shows here
    slow_deliveries: int = 0                  # deliveries that took more than half the timeout

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "pending": self.pending, "delivered": self.delivered,
                "failures": self.failures, "consecutive_failures": self.consecutive_failures,
                "last_error": self.last_error,
                "last_delivered_at": self.last_delivered_at.isoformat() if self.last_delivered_at else None,
                "delivering_since": self.delivering_since.isoformat() if self.delivering_since else None,
                "slow_deliveries": self.slow_deliveries}


@dataclass(frozen=True)
class Reconciled:
    """What one reconcile queued (per target name), and the findings it looked at."""

    queued: Mapping[str, int]
    findings: Sequence[StoredFinding]


Hook = Callable[[Target, str, str | None], None]  # (target, "delivered"|"failed", event)


class _Worker:
    """Drains one target's outbox in order; backs off exponentially while the target fails."""

    def __init__(self, dispatcher: Dispatcher, target: Target) -> None:
        self.dispatcher = dispatcher
        self.target = target
        self.notifier = notifier_for(target)
        self.status = TargetStatus(target.name, target.type)
        self.wake = threading.Event()
        self.stopped = threading.Event()
        self.blocked_until = 0.0
        self.thread = threading.Thread(target=self._run, name=f"ctxscan-notify-{target.name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.wake.set()

    def _backoff(self) -> float:
        base = self.dispatcher.retry_initial * 2 ** max(0, self.status.consecutive_failures - 1)
        return min(self.dispatcher.retry_max, base) * random.uniform(0.8, 1.0)

    def _run(self) -> None:
        store = self.dispatcher.store
        while not self.stopped.is_set():
            wait = self.blocked_until - time.monotonic()
            if wait > 0:
                self.wake.wait(min(wait, 1.0))
                self.wake.clear()
                continue
            digest = self.target.config.digest
            try:
                items = store.pending_notifications(self.target.key, limit=1000 if digest else 50)
            except Exception as exc:  # the store is down: try again later
                log.warning("notifications for %s: cannot read the outbox: %s", self.target.name,
                            type(exc).__name__)
                self.stopped.wait(self.dispatcher.retry_initial * 5)
                continue
            self.status.pending = len(items)
            if not items:
                self.wake.wait(self.dispatcher.poll_interval)
                self.wake.clear()
                continue
            if digest:
                due = items[0].created_at + timedelta(seconds=digest)
                remaining = (due - utcnow()).total_seconds()
                if remaining > 0:  # the period since the oldest queued message is not over
                    self.wake.wait(min(remaining, self.dispatcher.poll_interval))
                    self.wake.clear()
                    continue
                self._deliver_digest(items)
                continue
            for item in items:
                if self.stopped.is_set():
                    return
                began = time.monotonic()
                self.status.delivering_since = utcnow()
                try:
                    self.notifier.deliver(item.payload)
                except DeliveryError as exc:
                    self._failed(item.id, item.event, str(exc))
                    break
                except Exception as exc:  # a notifier bug must not kill the thread
                    self._failed(item.id, item.event, f"{type(exc).__name__}")
                    break
                finally:
                    self.status.delivering_since = None
                    if time.monotonic() - began > self.target.config.timeout / 2:
                        self.status.slow_deliveries += 1
                try:
                    store.mark_notification(item.id, delivered=True)
                except Exception as exc:
                    log.warning("notifications for %s: delivered but cannot record it: %s",
                                self.target.name, type(exc).__name__)
                self.status.delivered += 1
                self.status.pending = max(0, self.status.pending - 1)
                self.status.last_delivered_at = utcnow()
                if self.status.consecutive_failures:
                    log.info("notifications for %s delivered again after %d failure(s)",
                             self.target.describe(), self.status.consecutive_failures,
                             extra={"target": self.target.name})
                self.status.consecutive_failures = 0
                self.status.last_error = None
                self.dispatcher._hook(self.target, "delivered", item.event)

    def _deliver_digest(self, items: Sequence[Any]) -> None:
        """Send every queued message as one; each is marked delivered only once it went out."""
        try:
            self.notifier.deliver(build_digest(items, utcnow()))
        except DeliveryError as exc:
            self._failed(items[0].id, "digest", str(exc))
            return
        except Exception as exc:  # a notifier bug must not kill the thread
            self._failed(items[0].id, "digest", f"{type(exc).__name__}")
            return
        for item in items:
            try:
                self.dispatcher.store.mark_notification(item.id, delivered=True)
            except Exception as exc:
                log.warning("notifications for %s: delivered but cannot record it: %s",
                            self.target.name, type(exc).__name__)
        self.status.delivered += len(items)
        self.status.pending = 0
        self.status.last_delivered_at = utcnow()
        self.status.consecutive_failures = 0
        self.status.last_error = None
        self.dispatcher._hook(self.target, "delivered", "digest")

    def _failed(self, outbox_id: int, event: str, error: str) -> None:
        error = redact_text(error, self.target.secrets())
        self.status.failures += 1
        self.status.consecutive_failures += 1
        self.status.last_error = error
        delay = self._backoff()
        self.blocked_until = time.monotonic() + delay
        try:
            self.dispatcher.store.mark_notification(outbox_id, delivered=False, error=error)
        except Exception:  # the attempt is retried anyway
            pass
        log.warning("notification to %s failed (%s); %d pending, retrying in %.1fs",
                    self.target.describe(), error, self.status.pending, delay,
                    extra={"target": self.target.name, "attempt": self.status.consecutive_failures})
        self.dispatcher._hook(self.target, "failed", event)


class Dispatcher:
    """Turns finding states into queued messages and delivers them per target."""

    def __init__(self, store: Store, targets: Sequence[Target], retry_initial: float = 1.0,
                 retry_max: float = 300.0, poll_interval: float = 1.0, hook: Hook | None = None) -> None:
        self.store = store
        self.retry_initial = retry_initial
        self.retry_max = max(retry_initial, retry_max)
        self.poll_interval = poll_interval
        self.hook = hook
        self._lock = threading.Lock()
        self._workers: dict[str, _Worker] = {}
        self._targets: list[Target] = list(targets)
        self._started = False

    @property
    def targets(self) -> list[Target]:
        return list(self._targets)

    def _hook(self, target: Target, outcome: str, event: str | None) -> None:
        if self.hook is not None:
            self.hook(target, outcome, event)

    def reconcile(self, inventory: Inventory, now: datetime | None = None) -> Reconciled:
        """Queue what each target has not heard yet, from the store's findings as they are now."""
        now = now or utcnow()
        today = now.date()
        queued: dict[str, int] = {}
        with self._lock:
            # Read under the lock: two scans finishing together must not reconcile out of order.
            current = self.store.findings(None)
            for target in self._targets:
                ledger = self.store.notification_ledger(target.key)
                planned = []
                for finding in current:
                    decision = plan(finding, ledger.get(finding.fingerprint), target, inventory, today, now)
                    if decision is None:
                        continue
                    event, status, severity, times = decision
                    payload = build_payload(event, finding, now) if event else None
                    planned.append(PlannedNotification(finding.fingerprint, status, severity, times,
                                                       event, payload))
                if not planned:
                    continue
                count = self.store.enqueue_notifications(target.key, planned, now)
                queued[target.name] = count
                worker = self._workers.get(target.key)
                if count and worker is not None:
                    worker.status.pending += count
                    worker.wake.set()
        return Reconciled(queued, current)

    def start(self) -> None:
        """Start a delivery thread per target."""
        with self._lock:
            self._started = True
            for target in self._targets:
                self._start_worker(target)

    def _start_worker(self, target: Target) -> None:
        if target.key in self._workers:  # same place; its name or timeout may have changed
            worker = self._workers[target.key]
            worker.target, worker.notifier = target, notifier_for(target)
            worker.status.name = target.name
            return
        worker = _Worker(self, target)
        self._workers[target.key] = worker
        worker.start()

    def set_targets(self, targets: Sequence[Target]) -> None:
        """Follow a reloaded inventory: new targets start, removed ones stop (their queue stays)."""
        with self._lock:
            self._targets = list(targets)
            keys = {t.key for t in targets}
            for key in [k for k in self._workers if k not in keys]:
                self._workers.pop(key).stop()
            if self._started:
                for target in targets:
                    self._start_worker(target)

    def statuses(self) -> list[TargetStatus]:
        """Each current target's delivery status (no lock: /healthz must not wait on a reconcile)."""
        workers = dict(self._workers)
        return [workers[t.key].status if t.key in workers else TargetStatus(t.name, t.type)
                for t in list(self._targets)]

    def pending(self) -> int:
        """Messages still queued for the current targets and due now (read from the store): a
        digest target's messages wait in the outbox until its period is over."""
        counts = self.store.outbox_counts()
        total = 0
        now = utcnow()
        for target in self._targets:
            waiting = counts.get(target.key, {}).get("pending", 0)
            if waiting and target.config.digest:
                oldest = self.store.pending_notifications(target.key, limit=1)
                if oldest and oldest[0].created_at + timedelta(seconds=target.config.digest) > now:
                    continue
            total += waiting
        return total

    def flush(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds until every current target's queue is empty."""
        deadline = time.monotonic() + timeout
        while True:
            for worker in list(self._workers.values()):
                worker.wake.set()
            if self.pending() == 0:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def prune(self, now: datetime | None = None, keep_days: float = 7.0) -> None:
        """Forget delivered messages after a week; give up on ones pending that long."""
        now = now or utcnow()
        deleted, dropped = self.store.prune_outbox(now - timedelta(days=keep_days), now - timedelta(days=keep_days))
        if dropped:
            log.warning("gave up on %d notification(s) undelivered for %g days", dropped, keep_days)
        if deleted:
            log.debug("pruned %d delivered notification(s)", deleted)

    def stop(self) -> None:
        """Stop the delivery threads; what is queued stays in the outbox for the next start."""
        with self._lock:
            for worker in self._workers.values():
                worker.stop()
            self._workers.clear()
            self._started = False
