"""Helpers shared by the SQL connectors (postgres, mysql, sql).

Nothing here imports a database driver: the drivers are imported inside each connector's
probe so that the CLI starts fast.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from scanner.errors import ProbeError
from scanner.model import (
    METHOD_COLUMN,
    METHOD_NONE,
    PUBLIC_PRINCIPALS,
    SCOPE_ASSET,
    SCOPE_COLUMN,
    FreshnessObservation,
    Grant,
    Membership,
)
from scanner.plugins import ProbeContext, SourceConfig
from scanner.redact import redact_text

REASON_NO_CREDENTIALS = "no_credentials"
REASON_ACCESS_DENIED = "access_denied"
REASON_NOT_FOUND = "not_found"
REASON_UNREACHABLE = "unreachable"
REASON_TIMEOUT = "timeout"
REASON_THROTTLED = "throttled"
REASON_ERROR = "error"
RETRYABLE_REASONS = frozenset({REASON_UNREACHABLE, REASON_TIMEOUT, REASON_THROTTLED})

# ---------------------------------------------------------------------------------------
# Timeouts


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_seconds(value: Any, name: str) -> float | None:
    """A duration setting in seconds: a number, or a string such as `500ms`, `30s`, `2m`."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ProbeError(f"setting {name}: expected seconds, got {value!r}", reason=REASON_ERROR)
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ProbeError(f"setting {name}: expected seconds such as 30 or '30s', got {value!r}",
                             reason=REASON_ERROR)
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ProbeError(f"setting {name}: must be more than 0 seconds", reason=REASON_ERROR)
    return seconds


@dataclass(frozen=True)
class Limits:
    """How long each part of a probe may take, derived from the probe's time budget."""

    budget: float       # seconds for the whole probe
    connect: float      # seconds to establish the connection
    statement: float    # seconds one statement may run
    lock: float         # seconds to wait for a lock before giving up on it
    # time.monotonic() after which the probe stops starting new work: a little before the
    # budget ends, so that what was measured can still be assembled and returned.
    deadline: float

    def remaining(self) -> float:
        """Seconds left in the budget (may be negative)."""
        return self.deadline - time.monotonic()


def source_url(source: SourceConfig) -> str:
    """The source's `url` setting; a ProbeError when it is missing."""
    url = source.settings.get("url")
    if not url or not isinstance(url, str):
        raise ProbeError(f"source {source.id}: setting url is missing", reason=REASON_ERROR)
    return url


def probe_limits(source: SourceConfig, context: ProbeContext) -> Limits:
    """Connect, statement and lock timeouts from the settings, bounded by the probe timeout."""
    budget = context.timeout if context.timeout and context.timeout > 0 else 60.0
    if source.timeout:
        budget = min(budget, source.timeout)
    settings = source.settings
    connect = parse_seconds(settings.get("connect_timeout"), "connect_timeout")
    statement = parse_seconds(settings.get("statement_timeout"), "statement_timeout")
    lock = parse_seconds(settings.get("lock_timeout"), "lock_timeout")
    if connect is None:
        connect = min(10.0, max(2.0, budget / 4))
    if statement is None:
        statement = max(1.0, budget / 2)
    if lock is None:
        lock = 1.0
    statement = min(statement, budget)
    return Limits(budget=budget, connect=min(connect, budget), statement=statement,
                  lock=min(lock, statement), deadline=time.monotonic() + budget * 0.9)


# ---------------------------------------------------------------------------------------
# Error taxonomy. Each connector has one function that turns its driver's exceptions into a
# ProbeError; the tables and text patterns it consults live here so the three agree.

POSTGRES_SQLSTATE_REASONS: Mapping[str, str] = {
    "28P01": REASON_ACCESS_DENIED,     # invalid_password
    "28000": REASON_ACCESS_DENIED,     # invalid_authorization_specification
    "42501": REASON_ACCESS_DENIED,     # insufficient_privilege
    "3D000": REASON_NOT_FOUND,         # invalid_catalog_name (no such database)
    "42P01": REASON_NOT_FOUND,         # undefined_table
    "57014": REASON_TIMEOUT,           # query_canceled (statement_timeout)
    "55P03": REASON_TIMEOUT,           # lock_not_available (lock_timeout)
    "25P03": REASON_TIMEOUT,           # idle_in_transaction_session_timeout
    "53300": REASON_THROTTLED,         # too_many_connections
    "53400": REASON_THROTTLED,         # configuration_limit_exceeded
    "57P01": REASON_UNREACHABLE,       # admin_shutdown
    "57P02": REASON_UNREACHABLE,       # crash_shutdown
    "57P03": REASON_UNREACHABLE,       # cannot_connect_now (starting up, recovery)
    "08000": REASON_UNREACHABLE,
    "08001": REASON_UNREACHABLE,
    "08003": REASON_UNREACHABLE,
    "08004": REASON_UNREACHABLE,
    "08006": REASON_UNREACHABLE,
}

MYSQL_ERRNO_REASONS: Mapping[int, str] = {
    1044: REASON_ACCESS_DENIED,   # access denied to database
    1045: REASON_ACCESS_DENIED,   # access denied (user/password)
    1142: REASON_ACCESS_DENIED,   # command denied on table
    1143: REASON_ACCESS_DENIED,   # command denied on column
    1227: REASON_ACCESS_DENIED,   # needs a privilege
    1698: REASON_ACCESS_DENIED,   # access denied (auth plugin)
    1049: REASON_NOT_FOUND,       # unknown database
    1146: REASON_NOT_FOUND,       # table does not exist
    1040: REASON_THROTTLED,       # too many connections
    1203: REASON_THROTTLED,       # max_user_connections
    1226: REASON_THROTTLED,       # resource limit
    1205: REASON_TIMEOUT,         # lock wait timeout
    1969: REASON_TIMEOUT,         # MariaDB max_statement_time exceeded
    3024: REASON_TIMEOUT,         # MySQL max_execution_time exceeded
    2002: REASON_UNREACHABLE,     # can't connect through socket
    2003: REASON_UNREACHABLE,     # can't connect to server
    2005: REASON_UNREACHABLE,     # unknown host
    2006: REASON_UNREACHABLE,     # server has gone away
    2013: REASON_UNREACHABLE,     # lost connection (timed out -> timeout, below)
}

# Text patterns for drivers that give no code (libpq at connect time, sqlite3, ...).
# First match wins, so specific phrases come before general ones.
_TEXT_REASONS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), reason) for pattern, reason in (
        (r"no password supplied|password is required|no credentials", REASON_NO_CREDENTIALS),
        (r"timeout expired|timed out|statement timeout|lock timeout|canceling statement"
         r"|max_statement_time|maximum statement execution time|lock wait timeout", REASON_TIMEOUT),
        (r"password authentication failed|authentication failed|access denied|permission denied"
         r"|not permitted to log in|role \".*\" does not exist|pg_hba\.conf rejects", REASON_ACCESS_DENIED),
        (r"too many connections|remaining connection slots|too many clients", REASON_THROTTLED),
        (r"connection refused|could not connect|can't connect|could not translate host name"
         r"|name or service not known|no route to host|network is unreachable"
         r"|server closed the connection|lost connection|connection reset|broken pipe"
         r"|server has gone away|the database system is (starting|shutting) up", REASON_UNREACHABLE),
        (r"database \".*\" does not exist|unknown database|does not exist|no such file"
         r"|unable to open database", REASON_NOT_FOUND),
    )
)


def classify(text: str, sqlstate: str | None = None, errno: int | None = None) -> str:
    """The ProbeError reason for a driver error, from its SQLSTATE, MySQL errno or text."""
    if sqlstate and sqlstate in POSTGRES_SQLSTATE_REASONS:
        return POSTGRES_SQLSTATE_REASONS[sqlstate]
    if errno is not None and errno in MYSQL_ERRNO_REASONS:
        reason = MYSQL_ERRNO_REASONS[errno]
        if errno == 2013 and "timed out" in text.lower():
            return REASON_TIMEOUT
        return reason
    for pattern, reason in _TEXT_REASONS:
        if pattern.search(text):
            return reason
    return REASON_ERROR


def probe_error(what: str, text: str, reason: str, secrets: Iterable[str]) -> ProbeError:
    """A ProbeError whose message is `what: text`, with every secret removed."""
    detail = " ".join(str(text).split())  # one line: driver messages carry tabs and newlines
    if len(detail) > 600:
        detail = detail[:600] + "..."
    message = redact_text(f"{what}: {detail}" if detail else what, list(secrets))
    return ProbeError(message, retryable=reason in RETRYABLE_REASONS, reason=reason)


# ---------------------------------------------------------------------------------------
# Names


def _path_part(name: str) -> str:
    # A dot or a double quote inside a name would make `schema.table` ambiguous, so such a
    # part is double-quoted (with quotes doubled, as SQL does); every other name stays as is.
    if name == "" or "." in name or '"' in name:
        return '"' + name.replace('"', '""') + '"'
    return name


def qualified_path(container: str, name: str) -> str:
    """The asset path `container.name`, unambiguous even when a name holds a dot or quote."""
    return f"{_path_part(container)}.{_path_part(name)}"


_OWNER_TAG_CACHE: dict[str, re.Pattern[str]] = {}


def owner_from_comment(comment: str | None, key: str | None) -> str | None:
    """The owner a comment declares as `KEY=value` or `KEY: value`, when `owner_tag` is set."""
    if not comment or not key:
        return None
    pattern = _OWNER_TAG_CACHE.get(key)
    if pattern is None:
        pattern = re.compile(r"(?:^|[\s;,(\[{])" + re.escape(key) + r"\s*[=:]\s*[\"']?([^\s;,\"'()\[\]{}]+)",
                             re.IGNORECASE)
        _OWNER_TAG_CACHE[key] = pattern
    match = pattern.search(comment)
    return match.group(1) if match else None


def unknown_principals(context: ProbeContext, known: Iterable[str]) -> list[str]:
    """The `runs_as` principals that the source does not know, sorted.

    Connectors record them as `state["unknown_principals"]`, a structured fact the
    over_permissioned rule reads: a workflow that runs as a role which does not exist has
    access nobody can check, which is not the same as no access.
    """
    names = set(known)
    return sorted(p for p in context.principals if p not in names and p not in PUBLIC_PRINCIPALS)


def runs_as_notes(context: ProbeContext, known: Iterable[str], hint: str = "") -> list[str]:
    """A note for each `runs_as` principal that the source does not know."""
    return [f"runs_as principal {principal!r} does not exist in this source{hint}"
            for principal in unknown_principals(context, known)]


DEFAULT_MAX_GRANTS = 200_000


def bound_grants(grants: list[Grant], memberships: Iterable[Membership], context: ProbeContext,
                 limit: int) -> tuple[list[Grant], str | None]:
    """At most `limit` grants: past it, table and column grants are kept only for the
    `runs_as` principals, the roles they belong to, and PUBLIC (what workflows need)."""
    if len(grants) <= limit:
        return grants, None
    edges: dict[str, set[str]] = {}
    for membership in memberships:
        edges.setdefault(membership.member, set()).add(membership.role)
    relevant = set(context.principals) | set(PUBLIC_PRINCIPALS)
    todo = list(context.principals)
    while todo:
        for role in edges.get(todo.pop(), ()):
            if role not in relevant:
                relevant.add(role)
                todo.append(role)
    kept = [g for g in grants if g.scope not in (SCOPE_ASSET, SCOPE_COLUMN) or g.principal in relevant]
    note = (f"{len(grants) - len(kept)} of {len(grants)} table and column grants, to principals that no "
            f"workflow runs as, were left out to stay under {limit} grants (setting max_grants)")
    return kept, note


# ---------------------------------------------------------------------------------------
# Freshness from max(column)


def as_utc(value: Any) -> tuple[datetime | None, bool]:
    """A max() result as an aware UTC datetime, and whether it had no time zone of its own."""
    if value is None:
        return None, False
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC), True
        return value.astimezone(UTC), False
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC), True
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None, False
        return as_utc(parsed)
    if isinstance(value, int | float) and not isinstance(value, bool):
        # Epoch seconds, or milliseconds when the number is too large to be seconds.
        seconds = float(value) / 1000.0 if abs(value) > 1e11 else float(value)
        try:
            return datetime.fromtimestamp(seconds, UTC), False
        except (OverflowError, OSError, ValueError):
            return None, False
    return None, False


def column_observation(column: str, value: Any, has_rows: bool | None = None) -> FreshnessObservation:
    """The `column` freshness for one asset from its max(column); `has_rows` (when known)
    tells an empty table from a column that is NULL in every row."""
    moment, naive = as_utc(value)
    if moment is None:
        if value is None:
            why = {True: "no non-null value", False: "no rows", None: "no rows or no non-null value"}[has_rows]
            return FreshnessObservation(method=METHOD_NONE, detail=f"max({column}) is empty: {why}")
        return FreshnessObservation(method=METHOD_NONE,
                                    detail=f"max({column}) is not a timestamp: {str(value)[:60]!r}")
    caveat = f"{column} has no time zone; read as UTC" if naive else None
    return FreshnessObservation(method=METHOD_COLUMN, last_changed=moment, caveat=caveat,
                                detail=f"max({column})")


T = TypeVar("T")


def batches(items: Sequence[T], max_items: int, max_weight: int,
            weight: Callable[[T], int]) -> list[list[T]]:
    """Split items into consecutive batches of at most max_items and (roughly) max_weight."""
    out: list[list[T]] = []
    current: list[T] = []
    load = 0
    for item in items:
        w = max(1, weight(item))
        if current and (len(current) >= max_items or load + w > max_weight):
            out.append(current)
            current, load = [], 0
        current.append(item)
        load += w
    if current:
        out.append(current)
    return out


class BatchAborted(Exception):
    """Raised by a batch runner when the whole probe must stop (connection lost, budget gone)."""


def run_bisecting(batch: list[T], run: Callable[[list[T]], dict[int, Any]],
                  per_item_error: Callable[[Exception], str | None],
                  results: dict[int, Any], failures: dict[int, str],
                  key: Callable[[T], int], out_of_time: Callable[[], bool]) -> None:
    """Run one max() batch; when it fails for a reason that one table can cause (a lock
    timeout, no privilege), split it in halves until the failing tables are isolated.

    `run` returns {key: value}; `per_item_error` returns a short reason for errors that
    belong to a table, or None for errors that end the probe (they propagate).
    """
    if out_of_time():
        raise BatchAborted("time budget exhausted")
    try:
        results.update(run(batch))
        return
    except BatchAborted:
        raise
    except Exception as exc:
        reason = per_item_error(exc)
        if reason is None:
            raise
        if len(batch) == 1:
            failures[key(batch[0])] = reason
            return
    middle = len(batch) // 2
    run_bisecting(batch[:middle], run, per_item_error, results, failures, key, out_of_time)
    run_bisecting(batch[middle:], run, per_item_error, results, failures, key, out_of_time)


def measure_column(items: Sequence[T], run: Callable[[list[T]], dict[int, Any]],
                   per_item_error: Callable[[Exception], str | None], key: Callable[[T], int],
                   batch_size: int, out_of_time: Callable[[], bool]
                   ) -> tuple[dict[int, Any], dict[int, str], int | None]:
    """Batched max() over `items` (one per table), bisecting failures down to the table.

    Returns the values and the per-table failures by key, and, when the time budget ran out
    first, how many items were measured (None when all were).
    """
    results: dict[int, Any] = {}
    failures: dict[int, str] = {}
    size = max(1, batch_size)
    done = 0
    try:
        for group in batches(items, size, size, lambda item: 1):
            run_bisecting(group, run, per_item_error, results, failures, key=key, out_of_time=out_of_time)
            done += len(group)
    except BatchAborted:
        return results, failures, done
    return results, failures, None


def measured_observation(column: str, index: int, results: Mapping[int, Any],
                         failures: Mapping[int, str]) -> FreshnessObservation | None:
    """The freshness a batched max() gave one table, or None when it was not measured."""
    if index in results:
        return column_observation(column, results[index])
    if index in failures:
        return FreshnessObservation(method=METHOD_NONE, detail=f"max({column}) failed: {failures[index]}")
    return None
