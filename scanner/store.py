"""The state store: every scan, every source's snapshot, and findings with their lifecycle.

SQLAlchemy Core over SQLite (default, WAL) or PostgreSQL (shared by a team). The schema is
versioned and migrates itself on open. Each source's result is written in its own short
transaction as soon as it arrives, so a crash in the middle of a scan keeps what came before.
No secret is stored: settings are redacted before they get here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from scanner.errors import StoreError
from scanner.locations import default_state_url  # noqa: F401 (re-exported: scanner.store's API)
from scanner.model import Finding, SourceSnapshot, decode_snapshot, encode_snapshot, utcnow
from scanner.redact import printable, redact_text, secrets_in_text

SCHEMA_VERSION = 4
metadata = sa.MetaData()

meta = sa.Table(
    "ctxscan_meta", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
scans = sa.Table(
    "scans", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("started_at", sa.String(40), nullable=False),
    sa.Column("finished_at", sa.String(40)),
    sa.Column("status", sa.String(16), nullable=False),   # running, ok, partial, failed, interrupted
    sa.Column("trigger", sa.String(16), nullable=False),  # cli, daemon, demo
    sa.Column("inventory_digest", sa.String(64)),
    sa.Column("sources", sa.Text, nullable=False),        # JSON list of source ids asked for
)
source_results = sa.Table(
    "source_results", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("scan_id", sa.Integer, sa.ForeignKey("scans.id"), nullable=False, index=True),
    sa.Column("source_id", sa.String(200), nullable=False, index=True),
    sa.Column("connector", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),   # ok, failed, timeout
    sa.Column("reason", sa.String(32)),
    sa.Column("error", sa.Text),
    sa.Column("duration", sa.Float, nullable=False),
    sa.Column("probed_at", sa.String(40), nullable=False),
    sa.Column("asset_count", sa.Integer),
    sa.Column("settings", sa.Text),                        # redacted
    sa.Column("snapshot", sa.LargeBinary),                 # zlib(JSON); null when the probe failed
)
findings = sa.Table(
    "findings", metadata,
    sa.Column("fingerprint", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False, index=True),
    sa.Column("subkind", sa.String(32)),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),  # open, resolved
    sa.Column("source", sa.String(200)),
    sa.Column("asset", sa.Text),
    sa.Column("workflow", sa.String(200)),
    sa.Column("principal", sa.Text),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("remediation", sa.Text),
    sa.Column("evidence", sa.Text),
    sa.Column("first_seen", sa.String(40), nullable=False),
    sa.Column("last_seen", sa.String(40), nullable=False),
    sa.Column("resolved_at", sa.String(40)),
    sa.Column("times_opened", sa.Integer, nullable=False, default=1),
    sa.Column("last_scan_id", sa.Integer),
)
graph_cache = sa.Table(
    "graph_cache", metadata,
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def parse_time(value: str | None) -> datetime | None:
    """A stored ISO timestamp as an aware UTC datetime."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# Each migration takes a connection inside a transaction and brings the schema to its version.
def _migrate_1(conn: Connection) -> None:
    for table in (meta, scans, source_results, findings):
        table.create(conn, checkfirst=True)


def _migrate_2(conn: Connection) -> None:
    graph_cache.create(conn, checkfirst=True)


MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _migrate_1, 2: _migrate_2}


@dataclass(frozen=True)
class SourceResult:
    """One source's outcome in one scan."""

    id: int
    scan_id: int
    source_id: str
    connector: str
    status: str
    reason: str | None
    error: str | None
    duration: float
    probed_at: datetime
    asset_count: int | None


@dataclass(frozen=True)
class ScanRecord:
    """One stored scan."""

    id: int
    started_at: datetime
    finished_at: datetime | None
    status: str
    trigger: str
    sources: tuple[str, ...]


@dataclass(frozen=True)
class StoredFinding:
    """A finding as the store tracks it across scans."""

    fingerprint: str
    kind: str
    subkind: str | None
    severity: str
    status: str
    source: str | None
    asset: str | None
    workflow: str | None
    principal: str | None
    message: str
    remediation: str
    evidence: Mapping[str, Any]
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None
    times_opened: int

    @property
    def subject(self) -> str:
        """What the finding is about: its asset, workflow or source, in one word.

        A finding about a source (probe_failed, orphan_source, an unowned source) also names
        the most critical workflow it affects; its subject is still the source.
        """
        declared = self.evidence.get("subject") if isinstance(self.evidence, Mapping) else None
        if declared == "source" or (self.kind in SOURCE_KINDS and not self.asset):
            return self.source or "-"
        if declared == "workflow" and self.workflow:
            return self.workflow
        return self.asset or self.workflow or self.source or self.principal or "-"

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of `ctxscan findings --json`."""
        return {
            "fingerprint": self.fingerprint,
            "subject": self.subject,
            "kind": self.kind,
            "subkind": self.subkind,
            "severity": self.severity,
            "status": self.status,
            "source": self.source,
            "asset": self.asset,
            "workflow": self.workflow,
            "principal": self.principal,
            "message": self.message,
            "remediation": self.remediation,
            "evidence": dict(self.evidence),
            "first_seen": _iso(self.first_seen),
            "last_seen": _iso(self.last_seen),
            "resolved_at": _iso(self.resolved_at),
            "times_opened": self.times_opened,
        }


@dataclass
class FindingChanges:
    """What one evaluation changed: the daemon notifies on these."""

    opened: list[StoredFinding] = field(default_factory=list)
    reopened: list[StoredFinding] = field(default_factory=list)
    escalated: list[StoredFinding] = field(default_factory=list)
    resolved: list[StoredFinding] = field(default_factory=list)
    still_open: int = 0


SOURCE_KINDS = frozenset({"probe_failed", "orphan_source"})
SEVERITY_RANK = {"critical": 4, "high": 3, "medium": 2, "low": 1, "info": 0}


class Store:
    """The state store; open it with `Store.open(url)`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect, create or migrate the schema, and mark scans a crash left running."""
        try:
            if url.startswith("sqlite"):
                path = url.split("///", 1)[-1] if "///" in url else ""
                if path and path != ":memory:":
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

                @sa.event.listens_for(engine, "connect")
                def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                    cursor = dbapi_conn.cursor()
                    cursor.execute("PRAGMA journal_mode=WAL")
                    cursor.execute("PRAGMA synchronous=NORMAL")
                    cursor.execute("PRAGMA busy_timeout=30000")
                    cursor.execute("PRAGMA foreign_keys=ON")
                    cursor.close()
            else:
                connect_args: dict[str, Any] = {}
                if url.startswith("postgresql"):
                    connect_args = {"connect_timeout": 10, "application_name": "ctxscan-state"}
                engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True)
            store = cls(engine)
            store._migrate()
            return store
        except StoreError:
            raise
        except sa.exc.ArgumentError as exc:
            secrets = secrets_in_text(url)
            raise StoreError(redact_text(f"invalid state store URL {url!r}: {exc}", secrets)) from None
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            secrets = secrets_in_text(url)
            raise StoreError(redact_text(f"cannot open the state store {url}: {detail}", secrets)) from None

    def close(self) -> None:
        """Release connections."""
        self.engine.dispose()

    # -- schema ---------------------------------------------------------------------------
    def _migrate(self) -> None:
        # Two processes may open a new store at once: PostgreSQL serialises migrations with
        # an advisory lock; on SQLite the loser of the race sees "already exists" and retries,
        # finding the schema the winner made.
        for attempt in range(5):
            try:
                self._migrate_once()
                return
            except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError):
                if attempt == 4:
                    raise
                time.sleep(0.1 * (attempt + 1))

    def _migrate_once(self) -> None:
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('ctxscan-migrate'))"))
            meta.create(conn, checkfirst=True)
            row = conn.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).first()
            current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:
                raise StoreError(f"the state store has schema version {current}, newer than this "
                                 f"ctxscan ({SCHEMA_VERSION}); upgrade ctxscan or use another --state")
            for version in range(current + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[version](conn)
            if current != SCHEMA_VERSION:
                if row:
                    conn.execute(meta.update().where(meta.c.key == "schema_version")
                                 .values(value=str(SCHEMA_VERSION)))
                else:
                    conn.execute(meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))

    def schema_version(self) -> int:
        """The schema version the store is at."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).scalar_one())

    # -- scans ----------------------------------------------------------------------------
    def begin_scan(self, source_ids: Sequence[str], trigger: str = "cli",
                   inventory_digest: str | None = None, now: datetime | None = None) -> int:
        """Record a scan as running and return its id."""
        with self.engine.begin() as conn:
            result = conn.execute(scans.insert().values(
                started_at=_iso(now or utcnow()), status="running", trigger=trigger,
                inventory_digest=inventory_digest, sources=json.dumps(list(source_ids))))
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def finish_scan(self, scan_id: int, status: str, now: datetime | None = None) -> None:
        """Mark a scan finished with its overall status."""
        with self.engine.begin() as conn:
            conn.execute(scans.update().where(scans.c.id == scan_id)
                         .values(status=status, finished_at=_iso(now or utcnow())))

    def mark_interrupted(self, older_than: datetime | None = None) -> int:
        """Scans left `running` by a crash become `interrupted`; returns how many."""
        query = scans.update().where(scans.c.status == "running")
        if older_than is not None:
            query = query.where(scans.c.started_at < _iso(older_than))
        with self.engine.begin() as conn:
            return int(conn.execute(query.values(status="interrupted")).rowcount or 0)

    def record_result(self, scan_id: int, source_id: str, connector: str, status: str,
                      duration: float, probed_at: datetime, snapshot: SourceSnapshot | None = None,
                      error: str | None = None, reason: str | None = None,
                      settings: Mapping[str, Any] | None = None) -> int:
        """Store one source's outcome in its own transaction."""
        blob = None
        if snapshot is not None:
            blob = encode_snapshot(snapshot)
        with self.engine.begin() as conn:
            result = conn.execute(source_results.insert().values(
                scan_id=scan_id, source_id=source_id, connector=connector, status=status,
                reason=reason, error=error, duration=duration, probed_at=_iso(probed_at),
                asset_count=len(snapshot.assets) if snapshot else None,
                settings=json.dumps(settings or {}, default=str), snapshot=blob))
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def scans(self, limit: int = 20) -> list[ScanRecord]:
        """The newest scans first."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(scans).order_by(scans.c.id.desc()).limit(limit)).all()
        return [ScanRecord(r.id, parse_time(r.started_at) or utcnow(), parse_time(r.finished_at),
                           r.status, r.trigger, tuple(json.loads(r.sources))) for r in rows]

    def results(self, scan_id: int) -> list[SourceResult]:
        """Each source's outcome in one scan."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(*_result_columns()).where(source_results.c.scan_id == scan_id)
                                .order_by(source_results.c.id)).all()
        return [_result(r) for r in rows]

    def latest_results(self, source_ids: Iterable[str] | None = None) -> dict[str, SourceResult]:
        """The newest outcome of each source, whatever it was."""
        newest = sa.select(sa.func.max(source_results.c.id)).group_by(source_results.c.source_id)
        query = sa.select(*_result_columns()).where(source_results.c.id.in_(newest))
        if source_ids is not None:
            query = query.where(source_results.c.source_id.in_(list(source_ids)))
        with self.engine.connect() as conn:
            return {r.source_id: _result(r) for r in conn.execute(query)}

    def latest_snapshots(self, source_ids: Iterable[str] | None = None) -> dict[str, SourceSnapshot]:
        """The newest successful snapshot of each source."""
        newest = (sa.select(sa.func.max(source_results.c.id))
                  .where(source_results.c.status == "ok").group_by(source_results.c.source_id))
        query = sa.select(source_results.c.source_id, source_results.c.snapshot).where(
            source_results.c.id.in_(newest))
        if source_ids is not None:
            query = query.where(source_results.c.source_id.in_(list(source_ids)))
        with self.engine.connect() as conn:
            return {r.source_id: _decode(r.snapshot) for r in conn.execute(query) if r.snapshot}

    def recent_snapshot_ids(self, source_ids: Iterable[str], limit: int = 2) -> dict[str, list[int]]:
        """The ids of each source's newest successful results, newest first; no blob is read."""
        rank = sa.func.row_number().over(partition_by=source_results.c.source_id,
                                         order_by=source_results.c.id.desc()).label("rank")
        inner = (sa.select(source_results.c.source_id, source_results.c.id, rank)
                 .where(source_results.c.status == "ok",
                        source_results.c.source_id.in_(list(source_ids))).subquery())
        query = sa.select(inner.c.source_id, inner.c.id).where(inner.c.rank <= limit).order_by(
            inner.c.source_id, inner.c.id.desc())
        found: dict[str, list[int]] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                found.setdefault(row.source_id, []).append(int(row.id))
        return found

    def snapshots_by_id(self, result_ids: Iterable[int]) -> dict[int, SourceSnapshot]:
        """Decode the snapshots of these results."""
        ids = list(result_ids)
        if not ids:
            return {}
        query = sa.select(source_results.c.id, source_results.c.snapshot).where(source_results.c.id.in_(ids))
        with self.engine.connect() as conn:
            return {int(r.id): _decode(r.snapshot) for r in conn.execute(query) if r.snapshot}

    def snapshot_history(self, source_id: str, limit: int = 2) -> list[SourceSnapshot]:
        """The newest successful snapshots of one source, newest first."""
        query = (sa.select(source_results.c.snapshot)
                 .where(source_results.c.source_id == source_id, source_results.c.status == "ok")
                 .order_by(source_results.c.id.desc()).limit(limit))
        with self.engine.connect() as conn:
            return [_decode(r.snapshot) for r in conn.execute(query) if r.snapshot]

    def state_key(self) -> str:
        """Changes whenever a source result or a finding is written: keys caches."""
        with self.engine.connect() as conn:
            last_result = conn.execute(sa.select(sa.func.max(source_results.c.id))).scalar() or 0
            last_seen = conn.execute(sa.select(sa.func.max(findings.c.last_seen))).scalar() or ""
            count = conn.execute(sa.select(sa.func.count()).select_from(findings)
                                 .where(findings.c.status == "open")).scalar() or 0
        return f"{last_result}:{last_seen}:{count}"

    # -- findings -------------------------------------------------------------------------
    def sync_findings(self, current: Iterable[Finding] | Callable[[], Iterable[Finding]],
                      now: datetime | None = None, scan_id: int | None = None) -> FindingChanges:
        """Open, refresh, reopen and resolve stored findings to match what fires now.

        Pass a callable that evaluates the rules to have it run under the findings lock: then
        concurrent scans (the daemon's jobs, a CLI scan) sync in the order they looked, and an
        older view never resolves what a newer one opened.
        """
        now_text = _iso(now or utcnow()) or ""
        changes = FindingChanges()
        with self.engine.begin() as conn:
            _lock_findings(conn)  # the daemon's jobs and a CLI scan may sync at the same time
            firing = {f.fingerprint: f for f in (current() if callable(current) else current)}
            stored = {r.fingerprint: r for r in conn.execute(sa.select(findings))}
            for fingerprint, finding in firing.items():
                values = dict(
                    kind=finding.kind, subkind=finding.subkind, severity=finding.severity,
                    source=finding.source, asset=finding.asset, workflow=finding.workflow,
                    principal=finding.principal, message=printable(finding.message),
                    remediation=finding.remediation,
                    evidence=json.dumps(dict(finding.evidence), sort_keys=True, default=str),
                    last_seen=now_text, last_scan_id=scan_id, status="open", resolved_at=None,
                )
                old = stored.get(fingerprint)
                if old is None:
                    conn.execute(findings.insert().values(fingerprint=fingerprint, first_seen=now_text,
                                                          times_opened=1, **values))
                    changes.opened.append(_finding_from_values(fingerprint, now_text, 1, values))
                    continue
                times = old.times_opened
                if old.status == "resolved":
                    times += 1
                conn.execute(findings.update().where(findings.c.fingerprint == fingerprint)
                             .values(times_opened=times, **values))
                record = _finding_from_values(fingerprint, old.first_seen, times, values)
                if old.status == "resolved":
                    changes.reopened.append(record)
                elif SEVERITY_RANK.get(finding.severity, 0) > SEVERITY_RANK.get(old.severity, 0):
                    changes.escalated.append(record)
                else:
                    changes.still_open += 1
            for fingerprint, old in stored.items():
                if old.status == "open" and fingerprint not in firing:
                    conn.execute(findings.update().where(findings.c.fingerprint == fingerprint)
                                 .values(status="resolved", resolved_at=now_text))
                    resolved = _stored_finding(old)
                    changes.resolved.append(StoredFinding(**{
                        **resolved.__dict__, "status": "resolved", "resolved_at": parse_time(now_text)}))
        return changes

    def findings(self, status: str | None = "open") -> list[StoredFinding]:
        """Stored findings, most severe first; `status=None` for all."""
        query = sa.select(findings)
        if status is not None:
            query = query.where(findings.c.status == status)
        with self.engine.connect() as conn:
            rows = [_stored_finding(r) for r in conn.execute(query)]
        rows.sort(key=lambda f: (-SEVERITY_RANK.get(f.severity, 0), f.kind, f.source or "",
                                 f.asset or "", f.workflow or "", f.fingerprint))
        return rows

    # -- caches ---------------------------------------------------------------------------
    def cache_get(self, key: str) -> bytes | None:
        """A cached blob, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(graph_cache.c.data).where(graph_cache.c.key == key)).first()
        return bytes(row[0]) if row else None

    def cache_put(self, key: str, data: bytes, keep: int = 3) -> None:
        """Store a blob under `key`, keeping only the newest few entries."""
        with self.engine.begin() as conn:
            conn.execute(graph_cache.delete().where(graph_cache.c.key == key))
            conn.execute(graph_cache.insert().values(key=key, created_at=_iso(utcnow()), data=data))
            old = conn.execute(sa.select(graph_cache.c.key).order_by(graph_cache.c.created_at.desc())
                               .offset(keep)).scalars().all()
            if old:
                conn.execute(graph_cache.delete().where(graph_cache.c.key.in_(old)))

    # -- daemon: scheduler state, notification ledger and outbox (migration 3) -------------
    # The tables and records are at the end of this module, in the daemon's section.
    def schedule_states(self) -> dict[str, ScheduleState]:
        """What the daemon remembers of each source's schedule: last run, success, next run."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(scheduler_state)).all()
        return {r.source_id: ScheduleState(
            source_id=r.source_id, schedule=r.schedule, last_started_at=parse_time(r.last_started_at),
            last_finished_at=parse_time(r.last_finished_at), last_status=r.last_status,
            last_success_at=parse_time(r.last_success_at), last_scan_id=r.last_scan_id,
            last_duration=r.last_duration, next_run_at=parse_time(r.next_run_at)) for r in rows}

    def record_schedule(self, source_id: str, **values: Any) -> None:
        """Update one source's scheduler state (columns of `scheduler_state`; datetimes allowed)."""
        stored = {key: _iso(value) if isinstance(value, datetime) else value for key, value in values.items()}
        with self.engine.begin() as conn:
            _upsert(conn, scheduler_state, {"source_id": source_id}, stored)

    def notification_ledger(self, target: str) -> dict[str, LedgerEntry]:
        """The last state of each finding that a notification target was told about."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(notify_ledger).where(notify_ledger.c.target == target)).all()
        return {r.fingerprint: LedgerEntry(r.fingerprint, r.status, r.severity, r.times_opened, r.event,
                                           parse_time(r.updated_at) or utcnow()) for r in rows}

    def enqueue_notifications(self, target: str, items: Sequence[PlannedNotification],
                              now: datetime | None = None) -> int:
        """Move the ledger and queue the messages in one transaction; returns how many were queued."""
        now_text = _iso(now or utcnow())
        queued = 0
        with self.engine.begin() as conn:
            for item in items:
                _upsert(conn, notify_ledger, {"target": target, "fingerprint": item.fingerprint},
                        {"status": item.status, "severity": item.severity,
                         "times_opened": item.times_opened, "event": item.event or "-",
                         "updated_at": now_text})
                if item.event is not None and item.payload is not None:
                    conn.execute(notify_outbox.insert().values(
                        target=target, fingerprint=item.fingerprint, event=item.event,
                        payload=json.dumps(item.payload, sort_keys=True, default=str),
                        created_at=now_text, status="pending", attempts=0))
                    queued += 1
        return queued

    def pending_notifications(self, target: str, limit: int = 50) -> list[OutboxEntry]:
        """Undelivered messages of one target, oldest first."""
        query = (sa.select(notify_outbox)
                 .where(notify_outbox.c.target == target, notify_outbox.c.status == "pending")
                 .order_by(notify_outbox.c.id).limit(limit))
        with self.engine.connect() as conn:
            return [_outbox_entry(r) for r in conn.execute(query)]

    def outbox(self, target: str | None = None, limit: int = 1000) -> list[OutboxEntry]:
        """Messages of every status, newest first (for inspection and tests)."""
        query = sa.select(notify_outbox).order_by(notify_outbox.c.id.desc()).limit(limit)
        if target is not None:
            query = query.where(notify_outbox.c.target == target)
        with self.engine.connect() as conn:
            return [_outbox_entry(r) for r in conn.execute(query)]

    def mark_notification(self, outbox_id: int, delivered: bool, error: str | None = None,
                          now: datetime | None = None) -> None:
        """Record one delivery attempt: delivered, or failed with a (redacted) error."""
        now_text = _iso(now or utcnow())
        values: dict[str, Any] = {"attempts": notify_outbox.c.attempts + 1, "last_attempt_at": now_text}
        if delivered:
            values.update(status="delivered", delivered_at=now_text, last_error=None)
        else:
            values.update(last_error=(error or "failed")[:500])
        with self.engine.begin() as conn:
            conn.execute(notify_outbox.update().where(notify_outbox.c.id == outbox_id).values(**values))

    def outbox_counts(self) -> dict[str, dict[str, int]]:
        """Messages per target and status: {target: {"pending": n, "delivered": n, ...}}."""
        query = (sa.select(notify_outbox.c.target, notify_outbox.c.status, sa.func.count())
                 .group_by(notify_outbox.c.target, notify_outbox.c.status))
        counts: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for target, status, count in conn.execute(query):
                counts.setdefault(target, {})[status] = int(count)
        return counts

    def prune_outbox(self, delivered_before: datetime, pending_before: datetime) -> tuple[int, int]:
        """Delete old delivered messages and give up on very old pending ones; returns both counts."""
        with self.engine.begin() as conn:
            deleted = conn.execute(notify_outbox.delete().where(
                notify_outbox.c.status.in_(("delivered", "dropped")),
                notify_outbox.c.created_at < _iso(delivered_before))).rowcount or 0
            dropped = conn.execute(notify_outbox.update().where(
                notify_outbox.c.status == "pending", notify_outbox.c.created_at < _iso(pending_before))
                .values(status="dropped", last_error="gave up: undelivered for too long")).rowcount or 0
        return int(deleted), int(dropped)

    def interrupt_scans(self, trigger: str, started_since: datetime) -> int:
        """Mark `running` scans of one trigger started since a time as interrupted (a stop abandoned them)."""
        query = (scans.update().where(scans.c.status == "running", scans.c.trigger == trigger,
                                      scans.c.started_at >= _iso(started_since))
                 .values(status="interrupted", finished_at=_iso(utcnow())))
        with self.engine.begin() as conn:
            return int(conn.execute(query).rowcount or 0)


def _result_columns() -> list[sa.ColumnElement[Any]]:
    c = source_results.c
    return [c.id, c.scan_id, c.source_id, c.connector, c.status, c.reason, c.error, c.duration,
            c.probed_at, c.asset_count]


def _result(row: Any) -> SourceResult:
    return SourceResult(row.id, row.scan_id, row.source_id, row.connector, row.status, row.reason,
                        row.error, row.duration, parse_time(row.probed_at) or utcnow(), row.asset_count)


def _decode(blob: bytes) -> SourceSnapshot:
    return decode_snapshot(blob)


def _stored_finding(row: Any) -> StoredFinding:
    return StoredFinding(
        fingerprint=row.fingerprint, kind=row.kind, subkind=row.subkind, severity=row.severity,
        status=row.status, source=row.source, asset=row.asset, workflow=row.workflow,
        principal=row.principal, message=row.message, remediation=row.remediation or "",
        evidence=json.loads(row.evidence or "{}"),
        first_seen=parse_time(row.first_seen) or utcnow(), last_seen=parse_time(row.last_seen) or utcnow(),
        resolved_at=parse_time(row.resolved_at), times_opened=row.times_opened or 1,
    )


def _finding_from_values(fingerprint: str, first_seen: str, times: int,
                         values: Mapping[str, Any]) -> StoredFinding:
    return StoredFinding(
        fingerprint=fingerprint, kind=values["kind"], subkind=values["subkind"],
        severity=values["severity"], status="open", source=values["source"], asset=values["asset"],
        workflow=values["workflow"], principal=values["principal"], message=values["message"],
        remediation=values["remediation"] or "", evidence=json.loads(values["evidence"]),
        first_seen=parse_time(first_seen) or utcnow(), last_seen=parse_time(values["last_seen"]) or utcnow(),
        resolved_at=None, times_opened=times,
    )


# ---------------------------------------------------------------------------------------
# Daemon section (migration 3): scheduler state, the notification ledger and the outbox.
#
# `scheduler_state` keeps each source's last run so a restarted daemon knows what is due.
# `notify_ledger` remembers, per notification target, the last state of each finding it was
# told about, so nothing is sent twice for the same state, also across restarts.
# `notify_outbox` holds every message until its target accepts it, so a target that is down
# never slows a scan and gets what it missed when it comes back. Targets are keyed by a hash:
# a webhook URL is a secret and is never stored.

scheduler_state = sa.Table(
    "scheduler_state", metadata,
    sa.Column("source_id", sa.String(200), primary_key=True),
    sa.Column("schedule", sa.String(120)),
    sa.Column("last_started_at", sa.String(40)),
    sa.Column("last_finished_at", sa.String(40)),
    sa.Column("last_status", sa.String(16)),
    sa.Column("last_success_at", sa.String(40)),
    sa.Column("last_scan_id", sa.Integer),
    sa.Column("last_duration", sa.Float),
    sa.Column("next_run_at", sa.String(40)),
)
notify_ledger = sa.Table(
    "notify_ledger", metadata,
    sa.Column("target", sa.String(64), primary_key=True),
    sa.Column("fingerprint", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),     # open, resolved
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("times_opened", sa.Integer, nullable=False),
    sa.Column("event", sa.String(16), nullable=False),      # the last event queued, or '-'
    sa.Column("updated_at", sa.String(40), nullable=False),
)
notify_outbox = sa.Table(
    "notify_outbox", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("target", sa.String(64), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("event", sa.String(16), nullable=False),      # opened, reopened, escalated, resolved
    sa.Column("payload", sa.Text, nullable=False),          # JSON; findings are already redacted
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),     # pending, delivered, dropped
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_attempt_at", sa.String(40)),
    sa.Column("delivered_at", sa.String(40)),
    sa.Column("last_error", sa.Text),
    sa.Index("ix_notify_outbox_target_status", "target", "status", "id"),
)
FINDINGS_LOCK_KEY = "lock:findings"


def _migrate_3(conn: Connection) -> None:
    for table in (scheduler_state, notify_ledger, notify_outbox):
        table.create(conn, checkfirst=True)
    if conn.execute(sa.select(meta.c.key).where(meta.c.key == FINDINGS_LOCK_KEY)).first() is None:
        conn.execute(meta.insert().values(key=FINDINGS_LOCK_KEY, value="0"))


MIGRATIONS[3] = _migrate_3

# The newest results of a source are looked up on every scan and query: index them so that
# a daemon's growing history does not slow each lookup down.
latest_results_index = sa.Index("ix_source_results_latest", source_results.c.source_id,
                                source_results.c.status, source_results.c.id)


def _migrate_4(conn: Connection) -> None:
    latest_results_index.create(conn, checkfirst=True)


MIGRATIONS[4] = _migrate_4


def _lock_findings(conn: Connection) -> None:
    """Serialise findings syncs across threads and processes for the rest of the transaction.

    Writing a row first makes SQLite take its write lock before the findings are read (and
    wait on busy_timeout rather than fail on a stale snapshot), and makes PostgreSQL hold a
    row lock, so two syncs never both open the same finding.
    """
    conn.execute(meta.update().where(meta.c.key == FINDINGS_LOCK_KEY).values(value=meta.c.value))


def _upsert(conn: Connection, table: sa.Table, keys: Mapping[str, Any], values: Mapping[str, Any]) -> None:
    where = [table.c[name] == value for name, value in keys.items()]
    if not conn.execute(table.update().where(*where).values(**values)).rowcount:
        conn.execute(table.insert().values(**keys, **values))


@dataclass(frozen=True)
class ScheduleState:
    """One source's schedule as the daemon last left it."""

    source_id: str
    schedule: str | None
    last_started_at: datetime | None
    last_finished_at: datetime | None
    last_status: str | None
    last_success_at: datetime | None
    last_scan_id: int | None
    last_duration: float | None
    next_run_at: datetime | None


@dataclass(frozen=True)
class LedgerEntry:
    """The last state of a finding that one notification target was told about."""

    fingerprint: str
    status: str
    severity: str
    times_opened: int
    event: str
    updated_at: datetime


@dataclass(frozen=True)
class PlannedNotification:
    """A ledger move for one finding, with the message to queue (none for a silent move)."""

    fingerprint: str
    status: str
    severity: str
    times_opened: int
    event: str | None = None
    payload: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class OutboxEntry:
    """One queued notification."""

    id: int
    target: str
    fingerprint: str
    event: str
    payload: Mapping[str, Any]
    created_at: datetime
    status: str
    attempts: int
    last_error: str | None
    delivered_at: datetime | None


def _outbox_entry(row: Any) -> OutboxEntry:
    return OutboxEntry(row.id, row.target, row.fingerprint, row.event, json.loads(row.payload),
                       parse_time(row.created_at) or utcnow(), row.status, row.attempts or 0,
                       row.last_error, parse_time(row.delivered_at))
