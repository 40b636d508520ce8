"""PostgreSQL 12+: schema, estimates, freshness and access paths from the system catalogs.

The schema comes from a handful of bulk catalog queries on one connection (never one
query per table), so a 5,000-table database scans in about the time the catalog takes to
answer. The session is read-only, in autocommit, with statement, lock and idle timeouts,
and reads catalogs only; the optional `max(freshness.column)` runs in batches of a few
hundred tables per statement so no transaction holds more locks than the server has.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from connectors._sqlcommon import (
    DEFAULT_MAX_GRANTS,
    REASON_TIMEOUT,
    BatchAborted,
    Limits,
    batches,
    bound_grants,
    classify,
    column_observation,
    owner_from_comment,
    probe_error,
    probe_limits,
    qualified_path,
    run_bisecting,
    runs_as_notes,
    source_url,
    unknown_principals,
)
from scanner.errors import ProbeError
from scanner.model import (
    ACCESS_ADMIN,
    ACCESS_ALTER,
    ACCESS_OTHER,
    ACCESS_READ,
    ACCESS_WRITE,
    METHOD_COLUMN,
    METHOD_NONE,
    METHOD_OBSERVED,
    PRIVILEGE_OWNER,
    PRIVILEGE_USAGE,
    SCOPE_ASSET,
    SCOPE_COLUMN,
    SCOPE_CONTAINER,
    SCOPE_SOURCE,
    Asset,
    Column,
    DiscoveredOwner,
    FreshnessObservation,
    Grant,
    Membership,
    Principal,
    SourceSnapshot,
    new_grant,
)
from scanner.plugins import Connector, ProbeContext, Setting, SourceConfig

if TYPE_CHECKING:
    import psycopg

# ---------------------------------------------------------------------------------------
# The catalog queries. bench/bench_postgres.py runs exactly these, bare, for its floor.

SERVER_SQL = """
SELECT current_database(), pg_get_userbyid(d.datdba), current_setting('server_version_num')::int,
       s.stats_reset, pg_postmaster_start_time(), current_setting('track_counts'),
       current_setting('max_locks_per_transaction')::int, current_user,
       shobj_description(d.oid, 'pg_database')
FROM pg_database d LEFT JOIN pg_stat_database s ON s.datid = d.oid
WHERE d.datname = current_database()
"""

ROLES_SQL = """
SELECT oid, rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin,
       rolreplication, rolbypassrls
FROM pg_roles
"""

# PostgreSQL 16 records INHERIT per membership; before, it is the member role's attribute.
# SET ROLE through a membership needs its SET option (16+; before, every membership has it).
MEMBERS_SQL = "SELECT roleid, member, admin_option, inherit_option, set_option FROM pg_auth_members"
MEMBERS_SQL_BEFORE_16 = """
SELECT m.roleid, m.member, m.admin_option, r.rolinherit, true
FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member
"""

# Every table-like relation outside the system schemas, partitions included (their counters
# and sizes roll up into the partitioned parent, which is the asset). Sizes come from
# relpages, not pg_total_relation_size(), which would take a lock on every table.
RELATIONS_SQL = r"""
WITH ix AS (SELECT x.indrelid, count(*) AS n, sum(i.relpages)::int8 AS pages, array_agg(i.oid) AS oids
            FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid GROUP BY x.indrelid),
     pol AS (SELECT polrelid, count(*) AS n FROM pg_policy GROUP BY polrelid)
SELECT c.oid, n.nspname, c.relname, c.relkind, c.relispartition,
       CASE WHEN c.relispartition
            THEN (SELECT i.inhparent FROM pg_inherits i WHERE i.inhrelid = c.oid LIMIT 1) END,
       c.relowner, c.reltuples::float8,
       (c.relpages::int8 + COALESCE(t.relpages, 0) + COALESCE(ix.pages, 0))
         * (SELECT current_setting('block_size')::int8),
       COALESCE(ix.n, 0)::int, c.relrowsecurity, c.relforcerowsecurity, COALESCE(pol.n, 0)::int,
       d.description, c.relacl IS NULL, c.reltoastrelid, ix.oids
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
LEFT JOIN ix ON ix.indrelid = c.oid
LEFT JOIN pol ON pol.polrelid = c.oid
LEFT JOIN pg_description d
       ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%'
"""

COLUMNS_SQL = """
SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, d.description
FROM unnest(%s::oid[]) AS w(oid)
JOIN pg_attribute a ON a.attrelid = w.oid
LEFT JOIN pg_description d
       ON d.objoid = a.attrelid AND d.classoid = 'pg_class'::regclass AND d.objsubid = a.attnum
WHERE a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""

# pgvector: the ivfflat and hnsw indexes on the columns of some relations, one row per
# (index, column), with the operator class that names the distance.
VECTOR_INDEXES_SQL = """
SELECT i.indrelid, a.attname, c.relname, am.amname, opc.opcname
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_am am ON am.oid = c.relam
CROSS JOIN LATERAL unnest(i.indkey::int2[], i.indclass::oid[]) AS k(attnum, opclass)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
JOIN pg_opclass opc ON opc.oid = k.opclass
WHERE i.indrelid = ANY(%s::oid[]) AND am.amname IN ('ivfflat', 'hnsw')
ORDER BY i.indrelid, c.relname, a.attname
"""
# A pgvector column's type as format_type() writes it, schema-qualified when not on the path.
_VECTOR_TYPE = re.compile(r'(?:^|\.)"?(vector|halfvec|sparsevec)"?\((\d+)\)$')

# One row per relation and grantee with its privileges, `*` marking a grant option. A NULL
# relacl means the default ACL, in which the owner holds every privilege (acldefault()).
RELATION_ACL_SQL = """
SELECT c.oid, x.grantee, string_agg(x.privilege_type || CASE WHEN x.is_grantable THEN '*' ELSE '' END, ',')
FROM pg_class c
CROSS JOIN LATERAL aclexplode(COALESCE(c.relacl, acldefault('r', c.relowner))) x
WHERE c.oid = ANY(%s::oid[])
GROUP BY c.oid, x.grantee
"""

# Column privileges of the assets (most columns have none: `attacl IS NOT NULL` skips them).
COLUMN_ACL_SQL = """
SELECT a.attrelid, a.attname, x.grantee, x.privilege_type, x.is_grantable
FROM unnest(%s::oid[]) AS w(oid)
JOIN pg_attribute a ON a.attrelid = w.oid
CROSS JOIN LATERAL aclexplode(a.attacl) x
WHERE a.attacl IS NOT NULL AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""

SCHEMAS_SQL = """
SELECT n.nspname, n.nspowner, n.nspacl IS NULL, x.grantee, x.privilege_type, x.is_grantable,
       d.description
FROM pg_namespace n
LEFT JOIN LATERAL aclexplode(COALESCE(n.nspacl, acldefault('n', n.nspowner))) x ON true
LEFT JOIN pg_description d
       ON d.objoid = n.oid AND d.classoid = 'pg_namespace'::regclass AND d.objsubid = 0
WHERE n.nspname = ANY(%s::text[])
"""

# The pg_stat_user_tables counters (n_tup_ins + n_tup_upd + n_tup_del, n_live_tup), read
# through the functions behind that view for just the relations we want.
COUNTERS_SQL = """
SELECT c.oid,
       pg_stat_get_tuples_inserted(c.oid) + pg_stat_get_tuples_updated(c.oid)
         + pg_stat_get_tuples_deleted(c.oid),
       pg_stat_get_live_tuples(c.oid)
FROM pg_class c
WHERE c.oid = ANY(%s::oid[]) AND c.relkind IN ('r', 'm', 'p')
"""

# What an unchanged rescan reads instead of the catalog. Every change to what a snapshot holds
# (a relation created, dropped, renamed or re-owned; a column added, dropped, retyped or
# granted; a comment; a table, column or schema GRANT/REVOKE; a partition or an RLS policy)
# writes a new row version into one of these catalogs, so the sum of their rows' xmin moves.
# ANALYZE and VACUUM update statistics in place (no new xmin), so they do not force a read.
# Roles and memberships are global to the cluster and read whole every time (a few rows): the
# key hashes only those this database's catalog refers to (owners, grantees, the database
# owner, runs_as principals, predefined roles) and whatever shares a membership with them, at
# any depth, so another database's role churn does not force a read (principals and
# memberships themselves are rebuilt from the rows on every scan).
FINGERPRINT_VERSION = 3
# Each catalog's rows are summed as age(xmin): the server computes it without the text round
# trip of xmin::text::int8 (pg_attribute's scan, the bulk of the cost, takes ~40% less). For a
# normal xid, age(x) = ref - x (mod 2^32), ref fixed within the statement, so
# sum(age) - normal * age('3') = 3 * normal - sum(x) (mod 2^32) does not depend on ref; rows
# with a special xmin (bootstrap, frozen) have age INT_MAX and are counted apart.
# (max(xmin) with count(*) would not do: a long transaction that commits after a scan leaves
# rows whose xmin is older than the newest one, and an UPDATE keeps the count.)
_FINGERPRINT_PART = ("(SELECT ARRAY[count(*), COALESCE(sum(age(xmin)), 0), "
                     "count(*) FILTER (WHERE age(xmin) = 2147483647)] FROM {})")
FINGERPRINT_SQL = "SELECT age('3'::xid)::int8, " + ", ".join(
    _FINGERPRINT_PART.format(catalog) for catalog in
    ("pg_class", "pg_attribute", "pg_description", "pg_namespace", "pg_inherits", "pg_policy")) + \
    ", (SELECT datacl::text FROM pg_database WHERE datname = current_database())"


def fingerprint_key(row: Iterable[Any]) -> list[Any]:
    """FINGERPRINT_SQL's row without its reference xid: per catalog, the count and the sum of
    the rows' xmin (mod 2^32), then the database ACL."""
    reference, *parts = row
    out: list[Any] = []
    for part in parts:
        if isinstance(part, list) and len(part) == 3:
            count, ages, special = part
            normal = count - special
            out.append([count, special, (ages - special * 2147483647 - normal * reference) % (1 << 32)])
        else:
            out.append(part)
    return out


# What an unchanged rescan reads instead of the relation list: for the relations the previous
# snapshot recorded (assets, partitions, their TOAST tables and indexes), what changes without a
# new catalog row version: row estimates and pages (VACUUM and ANALYZE update pg_class in
# place) and counters. The client adds the pages up as RELATIONS_SQL does (a join on pg_index
# here cost ~10 ms more at 5,000 tables). Without include/exclude globs the recorded relations
# are nearly every relation users created (oid >= 16384, FirstNormalObjectId: TOAST tables and
# indexes too), and one pass over pg_class without the oid list costs ~5 ms less at 5,000
# tables than parsing and hashing a 20,000-oid array; with globs, the listed oids only. The
# block size is a sub-select, worked out once: current_setting() on each of 20,000 rows cost
# ~8-10 ms (the same in RELATIONS_SQL).
_SIZES_SQL = """
SELECT c.oid, c.reltuples::float8, c.relpages::int8 * (SELECT current_setting('block_size')::int8),
       CASE WHEN c.relkind IN ('r', 'm', 'p') THEN
         pg_stat_get_tuples_inserted(c.oid) + pg_stat_get_tuples_updated(c.oid)
           + pg_stat_get_tuples_deleted(c.oid) END,
       CASE WHEN c.relkind IN ('r', 'm', 'p') THEN pg_stat_get_live_tuples(c.oid) END
FROM pg_class c
WHERE {}
"""
SIZES_SQL = _SIZES_SQL.format("c.oid = ANY(%(oids)s::oid[])")
# (pg_toast's indexes, namespace 99, count in no asset's size.)
SIZES_ALL_SQL = _SIZES_SQL.format("c.oid >= 16384 AND (c.relnamespace <> 99 OR c.relkind = 't')")

UNREADABLE_COLUMN_SQL = """
SELECT o FROM unnest(%s::oid[]) AS o WHERE NOT has_column_privilege(o, %s, 'SELECT')
"""

RELKIND_ASSET_KIND = {"r": "table", "p": "partitioned_table", "v": "view",
                      "m": "materialized_view", "f": "foreign_table"}
PRIVILEGE_ACCESS = {"SELECT": ACCESS_READ, "INSERT": ACCESS_WRITE, "UPDATE": ACCESS_WRITE,
                    "DELETE": ACCESS_WRITE, "TRUNCATE": ACCESS_WRITE}
# Predefined roles (PostgreSQL 14+) that stand for privileges on every table.
PREDEFINED_DATA_ROLES: Mapping[str, tuple[tuple[str, str], ...]] = {
    "pg_read_all_data": (("SELECT", ACCESS_READ), ("USAGE", ACCESS_OTHER)),
    "pg_write_all_data": (("INSERT", ACCESS_WRITE), ("UPDATE", ACCESS_WRITE),
                          ("DELETE", ACCESS_WRITE), ("USAGE", ACCESS_OTHER)),
}
# Predefined roles that reach the server's files or shell: as good as superuser.
PREDEFINED_PRIVILEGED_ROLES = frozenset({"pg_execute_server_program", "pg_write_server_files",
                                         "pg_read_server_files"})
# max() errors that one table can cause; the batch is split until that table is found.
PER_TABLE_SQLSTATES = {
    "55P03": "lock timeout (a writer or DDL holds the table)",
    "57014": "statement timeout",
    "42501": "permission denied",
    "53200": "out of shared memory (lock table)",
    "42P01": "table dropped during the probe",
    "42703": "column dropped during the probe",
    "0A000": "not supported",
}
# A grant option lets a role pass the privilege on, not use more of it: the core reads
# `admin` as "can read and write", so grant options are `other`, named in the privilege.
GRANT_OPTION_ACCESS = ACCESS_OTHER
OBSERVED_CAVEAT = "pg_stat_user_tables change counters moved between two scans; TRUNCATE is not counted"


# Owning a schema lets a role drop the objects in it, not read or write other roles' tables.
SCHEMA_OWNER_PRIVILEGE = "OWNER (schema: can drop objects in it)"
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
SCHEMA_PRIVILEGES = ("USAGE", "CREATE")


def _owner_acl(default: bool, held: Iterable[str], everything: tuple[str, ...]) -> str:
    """What an owner's own ACL entries say, for the `via` of its OWNER grant."""
    present = set(held)
    privileges = [p for p in everything if p in present] + sorted(present - set(everything))
    where = "acl default" if default else "acl"
    if set(everything) <= present:
        return f"{where}: all privileges"
    if not privileges:
        return f"{where}: own privileges revoked, can grant them back"
    return f"{where}: {', '.join(privileges)}"


def oid_array(oids: Iterable[int]) -> str:
    """An `oid[]` parameter as its text literal: psycopg adapts a list of 5,000 ints element by
    element (types checked one by one), about 5 ms a query; the literal costs a join."""
    return "{" + ",".join(map(str, oids)) + "}"


def member_query(server_version_num: int) -> str:
    """The pg_auth_members query for this server version."""
    return MEMBERS_SQL if server_version_num >= 160000 else MEMBERS_SQL_BEFORE_16


def normalize_url(url: str) -> str:
    """A libpq URI from the forms users paste: SQLAlchemy's `postgresql+psycopg://`, `postgres://`."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower().startswith(("postgresql+", "postgres+")):
        return "postgresql://" + rest
    return url


INFINITY_CAVEAT = ("{column} holds 'infinity' (a sentinel, not a time): the newest finite value is used")
DATE_CAVEAT = "{column} is a date: read as the end of its day (UTC), the youngest age it allows"


def _max_query(oid: int, table: str, column: str, dated: bool, where: str | None = None) -> str:
    """One relation's max(column) as (oid, finite max, 'infinity'/'-infinity' or NULL, has rows).

    Infinite values are returned as text: psycopg cannot load them as datetimes. A date is
    read as the last microsecond of its day. `has_rows` is asked only when the max is NULL.
    """
    value = f"(max({column}) + 1)::timestamp - interval '1 microsecond'" if dated else f"max({column})"
    filtered = f" WHERE {where}" if where else ""
    return (f"SELECT {oid}::oid, CASE WHEN isfinite(m) THEN m END, "
            f"CASE WHEN NOT isfinite(m) THEN m::text END, "
            f"CASE WHEN m IS NULL THEN EXISTS (SELECT FROM {table}{filtered}) END "
            f"FROM (SELECT ({value})::timestamp with time zone AS m FROM {table}{filtered}) AS q")


def _relation_error(exc: BaseException, sqlstate: str) -> str | None:
    """Why max() failed on one relation, when the fault is that relation's (its data, its view
    definition, a function it calls), not the connection's; None for a connection-wide error."""
    if not sqlstate or sqlstate.startswith(("08", "57P", "53", "XX")) or sqlstate == "57014":
        return None
    first = (str(exc).splitlines() or [type(exc).__name__])[0]
    if sqlstate == "25006":
        return f"read-only transaction: the relation calls a function that writes ({first[:120]})"
    return f"{first[:160]} (SQLSTATE {sqlstate})"


def _is_timestamp(type_name: str) -> bool:
    return type_name.startswith("timestamp") or type_name == "date"


def _parse_iso(value: Any) -> datetime | None:
    """A timestamp this connector wrote into its state, or None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


class PostgresConnector(Connector):
    """PostgreSQL 12+ through psycopg: catalogs, pg_stat counters, ACLs and role membership."""

    kind: ClassVar[str] = "postgres"
    description: ClassVar[str] = (
        "PostgreSQL 12+: tables, views, columns, estimates, freshness (max of a column or "
        "observed change counters) and access paths (roles, memberships, ACLs, RLS), read-only")
    settings: ClassVar[tuple[Setting, ...]] = (
        Setting("url", str, required=True,
                help="postgresql://user:password@host:port/database (a libpq URI; the password is redacted)"),
        Setting("connect_timeout", float,
                help="seconds to wait for the connection (default: a quarter of the probe timeout, 2-10 s)"),
        Setting("statement_timeout", float,
                help="seconds one statement may run (default: half the probe timeout)"),
        Setting("lock_timeout", float,
                help="seconds a max() may wait for a table lock before that table is skipped (default 1)"),
        Setting("batch_size", int, help="tables per max() statement for freshness.column (default 200)"),
        Setting("connections", int,
                help="connections a probe may use: 2 or more read the catalog on two at once and share "
                     "the max() batches for freshness.column; 1 reads everything on one (default 2)"),
        Setting("max_grants", int,
                help="past this many grants, table grants are kept only for runs_as principals (default 200000)"),
    )

    def probe(self, context: ProbeContext) -> SourceSnapshot:
        """Probe the database read-only and return its assets, freshness and access paths."""
        limits = probe_limits(self.source, context)
        url = source_url(self.source)
        watchdog: _Watchdog | None = None
        phase = "cannot connect to PostgreSQL"
        try:
            # The fingerprint (a scan of pg_attribute, ~15 ms at 5,000 tables) runs on a second
            # connection, unless the source allows one; it opens alongside the probe's own.
            aside = _Aside(url, limits) if int(self.source.settings.get("connections") or 2) >= 2 else None
            try:
                conn = _connect_beside(url, limits, aside)
                try:
                    phase = "PostgreSQL probe failed"
                    watchdog = _Watchdog(conn, context, limits)
                    if aside is not None:
                        watchdog.connections.append(aside)
                    with watchdog:
                        return _Probe(self.source, context, conn, limits, watchdog, url, aside).run()
                finally:
                    conn.close()
            except BaseException:
                if aside is not None:
                    aside.abandon()  # what it still runs or has queued is no longer wanted
                raise
            finally:
                if aside is not None:
                    aside.close()
        except ProbeError:
            raise
        except Exception as exc:
            raise self.translate_error(exc, phase, watchdog) from None

    def translate_error(self, exc: BaseException, phase: str,
                        watchdog: _Watchdog | None = None) -> ProbeError:
        """The one place psycopg's exceptions become ProbeErrors, secrets redacted."""
        if watchdog is not None and watchdog.fired:
            return probe_error(phase, watchdog.fired, REASON_TIMEOUT, self.redactions())
        text = str(exc) or type(exc).__name__
        if type(exc).__name__ == "ConnectionTimeout":
            return probe_error(phase, text, REASON_TIMEOUT, self.redactions())
        sqlstate = getattr(exc, "sqlstate", None)
        return probe_error(phase, text, classify(text, sqlstate=sqlstate), self.redactions())


class _Aside:
    """The probe's second connection, opened alongside its own (the two connects overlap). It
    runs FINGERPRINT_SQL at once, then, on a full read, the ACL, schema and counter queries
    while the probe's own connection reads the columns. Each answer is waited for, and is None
    when this connection failed, is abandoned or did not answer in time (the probe's own
    connection does that work then)."""

    def __init__(self, url: str, limits: Limits) -> None:
        import queue
        from concurrent.futures import Future

        self._limits = limits
        self._conn: psycopg.Connection[Any] | None = None
        self._jobs: queue.SimpleQueue[tuple[Callable[[Any], Any], Future[Any]] | None] = queue.SimpleQueue()
        self._future = Future
        self._closing = False
        self._abandoned = False  # nothing it would still run is wanted
        self._first_unwanted = False  # a full read reads the fingerprint in its snapshot instead
        # A daemon thread, as a stuck statement must never hold up the scan's exit.
        self._thread = threading.Thread(target=self._serve, args=(url, limits), name="ctxscan-pg-aside",
                                        daemon=True)
        self._thread.start()
        self._fingerprint = self._submit(
            lambda conn: None if self._first_unwanted else conn.execute(FINGERPRINT_SQL).fetchone(), quiet=True)

    def _serve(self, url: str, limits: Limits) -> None:
        try:
            self._conn = _connect(url, limits)
        except Exception:  # noqa: BLE001 - every answer is None then
            self._conn = None
        while (job := self._jobs.get()) is not None:
            work, future = job
            try:
                future.set_result(None if self._conn is None or self._abandoned else work(self._conn))
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits for it
                future.set_exception(exc)
        if self._conn is not None:
            self._conn.close()

    def _submit(self, work: Callable[[psycopg.Connection[Any]], Any], quiet: bool,
                statements: int = 1) -> Callable[[], Any]:
        """`work` queued for this connection; the returned call waits for its answer (None
        without a connection, or past the time its `statements` may take, when the rest of
        the work is abandoned; a failed statement raises, or answers None when `quiet`)."""
        if self._closing or self._abandoned:
            return lambda: None
        future: Any = self._future()
        self._jobs.put((work, future))

        def answer() -> Any:
            from concurrent.futures import TimeoutError as Late

            # Behind what is queued before it, each statement within the statement timeout.
            wait = self._limits.connect + (statements + 2) * self._limits.statement + 1
            try:
                return future.result(wait)
            except Late:
                self.abandon()
                return None
            except Exception:
                if quiet:
                    return None
                raise
        return answer

    def fingerprint(self) -> tuple[Any, ...] | None:
        """FINGERPRINT_SQL's row, or None."""
        row: tuple[Any, ...] | None = self._fingerprint()
        return row

    def share(self, snapshot: str) -> Callable[[], tuple[Any, ...] | None]:
        """Join the probe connection's exported `snapshot` (a REPEATABLE READ transaction that
        sees what it sees) and read the fingerprint in it; what follows runs in it too. The
        returned call waits for the row, or None when this connection could not join (what
        follows then runs in autocommit, after the probe connection's snapshot was taken)."""
        self._first_unwanted = True  # skipped unless it already runs
        if not _SNAPSHOT_ID.fullmatch(snapshot):
            return lambda: None
        limits = self._limits

        def work(conn: psycopg.Connection[Any]) -> tuple[Any, ...] | None:
            try:
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
                _idle_for_the_probe(conn, limits)
                row: tuple[Any, ...] | None = conn.execute(FINGERPRINT_SQL).fetchone()
            except Exception:
                conn.execute("ROLLBACK")
                raise
            return row
        return self._submit(work, quiet=True)

    def fetch_all(self, queries: list[tuple[str, tuple[Any, ...]]]) -> Callable[[], Any]:
        """Start `queries` in one pipeline; the returned call waits for their rows (a list per
        query), None without a connection or in time; a failed statement raises, as on the
        probe's own."""
        def work(conn: psycopg.Connection[Any]) -> list[list[tuple[Any, ...]]]:
            with conn.pipeline():
                cursors = [conn.cursor().execute(query, params) for query, params in queries]
                return [cursor.fetchall() for cursor in cursors]
        return self._submit(work, quiet=False, statements=len(queries))

    def cancel_safe(self, timeout: float = 2.0) -> None:
        """Cancel its running statement (the probe's watchdog calls this as on a connection)."""
        conn = self._conn
        if conn is not None and not conn.closed:
            try:
                conn.cancel_safe(timeout=timeout)
            except Exception:  # noqa: BLE001 - it ended meanwhile: nothing to cancel
                pass

    def abandon(self) -> None:
        """Skip what is queued and cancel what runs: the probe no longer wants any of it."""
        self._abandoned = True
        self.cancel_safe()

    def close(self, wait: bool = False) -> None:
        """Close its connection once the queued work is done (`wait`: and wait for that)."""
        if not self._closing:
            self._closing = True
            self._jobs.put(None)
        if wait:
            self._thread.join(self._limits.connect + self._limits.statement + 1)


def _idle_for_the_probe(conn: psycopg.Connection[Any], limits: Limits) -> None:
    """In a transaction that waits on the probe's other connection between its statements:
    idle for as long as the probe may still run, not only a statement's timeout."""
    conn.execute("SELECT set_config('idle_in_transaction_session_timeout', %s, true)",
                 (f"{int(max(limits.remaining(), limits.statement) * 1000) + 1000}ms",))


EXPORT_SNAPSHOT_SQL = "SELECT pg_export_snapshot()"
# Its answer, e.g. 00000003-0000001B-1.
_SNAPSHOT_ID = re.compile(r"[0-9A-F]+-[0-9A-F]+(-[0-9]+)?")


# What the server says when a role's CONNECTION LIMIT or max_connections is reached (53300,
# which psycopg does not expose for a failed connection).
_NO_SLOT = ("too many connections", "too many clients", "connection slots are reserved")


def _connect_beside(url: str, limits: Limits, aside: _Aside | None) -> psycopg.Connection[Any]:
    """The probe's own connection, opened while the aside's opens. When that one took the last
    slot the role (CONNECTION LIMIT) or the server allows, wait until it has read the
    fingerprint and closed, and connect again: the second connection never costs the probe
    its own."""
    import time

    try:
        return _connect(url, limits)
    except Exception as exc:
        if aside is None or not any(text in str(exc) for text in _NO_SLOT):
            raise
    aside.close(wait=True)  # after the fingerprint, which it still answers
    deadline = time.monotonic() + max(1.0, limits.connect)
    while True:
        time.sleep(0.02)  # a closed connection's server process exits a moment later
        try:
            return _connect(url, limits)
        except Exception as exc:
            if not any(text in str(exc) for text in _NO_SLOT) or time.monotonic() > deadline:
                raise


def _streamed(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...]) -> Iterable[tuple[Any, ...]]:
    """A query's rows as the server sends them, 10,000 at a time (psycopg 3.2 built with and
    running libpq 17 or later), so the caller works on one chunk while the server makes the
    next; else fetched whole and handed out 20,000 at a time (psycopg's row-by-row iteration
    costs ~2 us a row)."""
    import psycopg

    capabilities = getattr(psycopg, "capabilities", None)  # psycopg 3.2+
    if capabilities is not None and capabilities.has_stream_chunked():
        yield from conn.cursor().stream(query, params, size=10000)
        return
    cursor = conn.cursor().execute(query, params)
    while chunk := cursor.fetchmany(20000):
        yield from chunk
    cursor.close()  # frees the result the server sent (libpq's copy of every row)


def _connect(url: str, limits: Limits) -> psycopg.Connection[Any]:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    params: dict[str, Any] = conninfo_to_dict(normalize_url(url))
    # libpq counts whole seconds and psycopg enforces at least 2.
    params["connect_timeout"] = max(2, int(limits.connect + 0.999))
    params["application_name"] = "ctxscan"
    conn = psycopg.connect(autocommit=True, prepare_threshold=None, **params)
    try:
        # set_config rather than SET (no parameters in SET) or startup options (poolers
        # such as PgBouncer refuse them). Autocommit plus default_transaction_read_only makes
        # every statement its own short read-only transaction.
        conn.execute(
            "SELECT set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, false),"
            " set_config('idle_in_transaction_session_timeout', %s, false),"
            " set_config('default_transaction_read_only', 'on', false),"
            " set_config('TimeZone', 'UTC', false)",
            (f"{int(limits.statement * 1000)}ms", f"{int(limits.lock * 1000)}ms",
             f"{int(limits.statement * 1000)}ms"))
    except BaseException:
        conn.close()
        raise
    return conn


class _Watchdog:
    """Cancels the running statement when the probe's budget is spent or the core gives up."""

    def __init__(self, conn: psycopg.Connection[Any], context: ProbeContext, limits: Limits) -> None:
        self.connections: list[Any] = [conn]  # each with cancel_safe(): connections, the aside
        self.context = context
        self.limits = limits
        self.fired: str | None = None
        self.out_of_budget = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ctxscan-pg-watchdog", daemon=True)

    def __enter__(self) -> _Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            if self.context.cancelled.is_set():
                self.fired = "the scan cancelled the probe"
            elif self.limits.remaining() <= 0:
                self.fired = f"the probe exceeded its time budget of {self.limits.budget:g} s"
                self.out_of_budget = True
            else:
                continue
            for conn in list(self.connections):
                try:
                    conn.cancel_safe(timeout=2.0)
                except Exception:  # the statement may have ended meanwhile; nothing to cancel
                    pass
            return


@dataclass(slots=True)
class _Relation:
    oid: int
    schema: str
    name: str
    relkind: str
    is_partition: bool
    parent: int | None
    owner_oid: int
    reltuples: float
    size_bytes: int
    index_count: int
    rls_enabled: bool
    rls_forced: bool
    policies: int
    comment: str | None
    acl_default: bool
    toast: int = 0
    index_oids: list[int] | None = None
    path: str = ""


def _relations_state(assets: list[_Relation], partitions: Mapping[int, list[_Relation]]) -> list[Any]:
    """The relations of a full read as an unchanged rescan needs them, JSON-ready: per asset
    and per partition, the root asset's oid (0 for an asset), the asset's path and the oids
    whose pages count in its size (TOAST table, indexes)."""
    out: list[Any] = []
    for rel in assets:
        out.append([rel.schema, rel.name, rel.oid, rel.relkind, rel.index_count, 0, rel.path,
                    _size_oids(rel)])
        out.extend([p.schema, p.name, p.oid, p.relkind, p.index_count, rel.oid, "", _size_oids(p)]
                   for p in partitions.get(rel.oid, ()))
    return out


def _size_oids(rel: _Relation) -> list[int]:
    return ([rel.toast] if rel.toast else []) + list(rel.index_oids or ())


def _oids_from_state(entries: list[Any]) -> list[int]:
    """The oids _relations_state's entries need read: theirs and those of their size."""
    out: list[int] = []
    for entry in entries:
        if isinstance(entry, list) and len(entry) == 8 and isinstance(entry[2], int) and isinstance(entry[7], list):
            out.append(entry[2])
            out.extend(entry[7])
    return out


def _relations_from_state(entries: list[Any]) -> list[_Relation]:
    """_relations_state's entries back as relations (sizes to be read), or [] if malformed."""
    out: list[_Relation] = []
    try:
        for schema, name, oid, relkind, index_count, root, path, size_oids in entries:
            if relkind not in RELKIND_ASSET_KIND or not isinstance(path, str):
                return []
            # index_oids holds every oid whose pages count in its size, the TOAST table too.
            out.append(_Relation(int(oid), str(schema), str(name), relkind, bool(root), int(root) or None, 0,
                                 -1.0, 0, int(index_count), False, False, 0, None, True, 0,
                                 [int(o) for o in size_oids], path))
    except (TypeError, ValueError):
        return []
    return out


class _Probe:
    """One probe: runs the catalog queries and assembles the snapshot."""

    def __init__(self, source: SourceConfig, context: ProbeContext, conn: psycopg.Connection[Any],
                 limits: Limits, watchdog: _Watchdog, url: str,
                 aside: _Aside | None = None) -> None:
        self.source = source
        self.url = url
        self.aside = aside
        self.context = context
        self.conn = conn
        self.limits = limits
        self.watchdog = watchdog
        self.notes: list[str] = []
        self.partial = False

    def check_cancelled(self) -> None:
        if self.context.cancelled.is_set():
            raise ProbeError("PostgreSQL probe cancelled by the scan", retryable=True, reason=REASON_TIMEOUT)

    def fetch(self, query: str, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
        self.check_cancelled()
        return self.conn.execute(query, params).fetchall()

    def _relevant_roles(self, server: tuple[Any, ...], roles: Iterable[tuple[Any, ...]],
                        members: Iterable[tuple[Any, ...]],
                        referenced: Iterable[int]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """The role and membership rows the catalog part depends on: the roles it refers to
        (`referenced`: owners and grantees), the database owner, the runs_as principals and the
        predefined roles, and every role that shares a membership with one of those, at any
        depth and in either direction (a member gains the role's access; bound_grants follows
        the runs_as principals' roles)."""
        role_rows = list(roles)
        by_name = {row[1]: row[0] for row in role_rows}
        wanted = set(referenced)
        for name in (str(server[1]), "pg_database_owner", *self.context.principals, *PREDEFINED_DATA_ROLES,
                     *PREDEFINED_PRIVILEGED_ROLES):
            if name in by_name:
                wanted.add(by_name[name])
        linked: dict[int, list[int]] = defaultdict(list)
        member_rows = list(members)
        for row in member_rows:
            linked[row[0]].append(row[1])
            linked[row[1]].append(row[0])
        todo = list(wanted)
        while todo:
            for other in linked.get(todo.pop(), ()):
                if other not in wanted:
                    wanted.add(other)
                    todo.append(other)
        return [row for row in role_rows if row[0] in wanted], [row for row in member_rows if row[0] in wanted]

    def _catalog_key(self, server: tuple[Any, ...], roles: Iterable[tuple[Any, ...]],
                     members: Iterable[tuple[Any, ...]], fingerprint: tuple[Any, ...],
                     referenced: Iterable[int]) -> str:
        """What the catalog part of a snapshot depends on: the server's fingerprint, the roles
        and memberships it refers to (see _relevant_roles), and the settings and runs_as
        principals that shape the snapshot."""
        import hashlib

        source = self.source
        roles, members = self._relevant_roles(server, roles, members, referenced)
        parts = [FINGERPRINT_VERSION, list(fingerprint), str(server[1]), server[2], str(server[8]),
                 sorted(map(str, roles)), sorted(map(str, members)), sorted(self.context.principals),
                 sorted((k, str(v)) for k, v in source.settings.items()), list(source.include),
                 list(source.exclude), source.owner_tag]
        return hashlib.sha256(repr(parts).encode("utf-8", "surrogatepass")).hexdigest()

    def _reusable(self, key: str) -> SourceSnapshot | None:
        """The previous snapshot, when its catalog part may be reused as it stands."""
        previous = self.context.previous
        if not key or previous is None or previous.partial or not isinstance(previous.state, Mapping):
            return None
        if previous.state.get("catalog_key") != key:
            return None
        return previous

    def _previous_roles(self) -> list[int] | None:
        """The roles the previous snapshot's catalog referred to (its key's seed), if recorded."""
        previous = self.context.previous
        if previous is None or not isinstance(previous.state, Mapping):
            return None
        recorded = previous.state.get("catalog_roles")
        if not isinstance(recorded, list) or not all(isinstance(oid, int) for oid in recorded):
            return None
        return recorded

    def _candidate(self) -> SourceSnapshot | None:
        """The previous snapshot, when it recorded what an unchanged rescan needs to skip the
        relation list (its catalog key and relations)."""
        previous = self.context.previous
        if previous is None or previous.partial or not isinstance(previous.state, Mapping):
            return None
        if not previous.state.get("catalog_key") or not isinstance(previous.state.get("catalog_relations"), list):
            return None
        return previous

    def _begin_snapshot(self) -> Callable[[], tuple[Any, ...] | None] | None:
        """Start the full read's REPEATABLE READ transaction and hand its snapshot to the second
        connection, which reads the fingerprint in it; the returned call waits for that row
        (None: read it here). Without a second connection, None: it is read here."""
        import psycopg

        self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        _idle_for_the_probe(self.conn, self.limits)
        if self.aside is None:
            return None
        try:
            exported = self.conn.execute(EXPORT_SNAPSHOT_SQL).fetchone()
        except psycopg.Error:  # e.g. a pooler or server that cannot export one: read it here
            self.conn.execute("ROLLBACK")
            self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            _idle_for_the_probe(self.conn, self.limits)
            return None
        return self.aside.share(str(exported[0])) if exported else None

    def run(self) -> SourceSnapshot:
        from psycopg.pq import TransactionStatus

        # One round trip for what every scan reads and the fingerprint, which then says whether
        # the rest of the catalog (relations, columns, ACLs, schemas) must be read again. With
        # a previous snapshot the relation list is not asked for at first: its row estimates,
        # pages and counters are (what an unchanged catalog still needs); the list follows only
        # when the fingerprint moved.
        candidate = self._candidate()
        speculated = candidate is not None  # the relation list not asked for at first
        # The fingerprint aside runs while this connection reads the sizes on a rescan. A full
        # read reads the catalog in one REPEATABLE READ snapshot and the fingerprint in the same
        # one (aside, while the relation list is read here), or a change in between would be
        # recorded as already read.
        row: tuple[Any, ...] | None = None
        shared = None if speculated else self._begin_snapshot()
        aside = self.aside if speculated else None
        in_pipeline = aside is None and shared is None  # no second connection, or it failed
        with self.conn.pipeline():
            cursors = [self.conn.cursor().execute(query) for query in
                       (SERVER_SQL, ROLES_SQL, member_query(self.conn.info.server_version))
                       + ((FINGERPRINT_SQL,) if in_pipeline else ())]
            if candidate is not None:
                # Binary rows: ~1-2 ms less to load 20,000 of them at 5,000 tables.
                if self.source.include or self.source.exclude:
                    recorded_oids = _oids_from_state(candidate.state["catalog_relations"])
                    last = self.conn.cursor(binary=True).execute(SIZES_SQL, {"oids": oid_array(recorded_oids)})
                else:
                    last = self.conn.cursor(binary=True).execute(SIZES_ALL_SQL)
            else:
                last = self.conn.cursor().execute(RELATIONS_SQL)
            server = cursors[0].fetchall()[0]
            role_rows, members = cursors[1].fetchall(), cursors[2].fetchall()
            early: SourceSnapshot | None = None
            tried_early = False
            notes_before = len(self.notes)
            if aside is not None:
                last_rows = last.fetchall()
                if candidate is not None and not self.source.reads_freshness_columns():
                    # The sizes come in before the fingerprint (it scans pg_attribute on the
                    # other connection): build the reuse meanwhile, as if the key matched, and
                    # keep it only if it does (~10-15 ms of a 5,000-table rescan). A freshness
                    # column would query the server: such sources wait for the key first.
                    tried_early = True
                    early = self._unchanged(candidate, str(candidate.state.get("catalog_key") or ""),
                                            last_rows, server, role_rows, members)
                row = aside.fingerprint()
                if row is None:  # the second connection failed: read it here
                    self.check_cancelled()
                    row = self.conn.execute(FINGERPRINT_SQL).fetchone()
            else:
                if in_pipeline:
                    row = cursors[3].fetchone()
                last_rows = last.fetchall()
        if shared is not None:
            row = shared()
            if row is None:  # the second connection could not read it: read it here, in this snapshot
                self.check_cancelled()
                row = self.conn.execute(FINGERPRINT_SQL).fetchone()
        fingerprint = fingerprint_key(row or (0,))
        self.check_cancelled()
        # The key as the previous snapshot's roles make it (what a reuse must match); a full
        # read makes it again from the roles its catalog refers to.
        previous_roles = self._previous_roles()
        catalog_key = "" if previous_roles is None else \
            self._catalog_key(server, role_rows, members, tuple(fingerprint), previous_roles)
        if speculated:
            assert candidate is not None
            if tried_early:
                fast = early if catalog_key and catalog_key == candidate.state.get("catalog_key") else None
                if fast is None:
                    del self.notes[notes_before:]  # what the early reuse noted is not this scan's
            else:
                if self.aside is not None and catalog_key and catalog_key == candidate.state.get("catalog_key"):
                    self.aside.close(wait=True)  # unchanged: its slot is free for the max() batches' connections
                fast = self._unchanged(candidate, catalog_key, last_rows, server, role_rows, members)
            if fast is not None:
                return fast
            relation_rows = self.fetch(RELATIONS_SQL)
        else:
            relation_rows = last_rows
        (database, database_owner, version, stats_reset, started, track_counts, max_locks,
         current_user, database_comment) = server
        self.check_cancelled()
        roles = {row[0]: row for row in role_rows}
        role_names = {oid: row[1] for oid, row in roles.items()}
        relations = [_Relation(*row) for row in relation_rows]
        by_oid = {rel.oid: rel for rel in relations}
        assets_rel: list[_Relation] = []
        for rel in relations:
            if rel.is_partition:
                continue
            rel.path = qualified_path(rel.schema, rel.name)
            if self.source.wants(rel.path):
                assets_rel.append(rel)
        # Partitions (at any depth) belong to their top-level parent.
        partitions: dict[int, list[_Relation]] = defaultdict(list)
        for rel in relations:
            if rel.is_partition:
                root = rel
                seen = 0
                while root.is_partition and root.parent in by_oid and seen < 100:
                    root = by_oid[root.parent]  # type: ignore[index]
                    seen += 1
                partitions[root.oid].append(rel)
        asset_oids = [rel.oid for rel in assets_rel]
        counter_oids = asset_oids + [p.oid for rel in assets_rel for p in partitions.get(rel.oid, ())]
        schema_names = sorted({rel.schema for rel in assets_rel})
        reuse = self._reusable(catalog_key)
        if reuse is not None and {a.path for a in reuse.assets} != {rel.path for rel in assets_rel}:
            reuse = None  # only a full read may find an asset gone (or new)

        # The rest depends only on the assets. A full read streams the columns on this
        # connection, turning each chunk into objects while the server makes the next, and the
        # second connection runs the other queries meanwhile, in one pipeline (the server works
        # on both at once); without it they come first here (a pipeline after a stream on one
        # connection gets the stream's chunked results: psycopg 3.3 with libpq 18). Each starts
        # after the fingerprint was read, as before, and a failed one fails the probe wherever
        # it ran.
        oids = oid_array(asset_oids)
        queries = [] if reuse is not None else \
            [(RELATION_ACL_SQL, (oids,)), (COLUMN_ACL_SQL, (oids,)), (SCHEMAS_SQL, (schema_names,))]
        if track_counts == "on":
            queries.append((COUNTERS_SQL, (oid_array(counter_oids),)))
        else:
            self.notes.append("track_counts is off: PostgreSQL keeps no change counters, so freshness "
                              "without freshness.column is unknown")
        self.check_cancelled()
        columns: dict[int, list[Column]] = defaultdict(list)
        beside = self.aside.fetch_all(queries) if reuse is None and self.aside is not None else None
        rest: list[list[Any]] = []
        if beside is None:
            with self.conn.pipeline():
                cursors = [self.conn.cursor().execute(query, params) for query, params in queries]
                rest = [cursor.fetchall() for cursor in cursors]
        if reuse is None:
            # Each distinct name and type kept once: 600,000 columns repeat a few dozen names
            # and types (~100 MB less at peak). The rows come ordered by relation;
            # tuple.__new__ skips the named tuple's Python __new__.
            strings: dict[str, str] = {}
            share = strings.setdefault
            make = tuple.__new__
            current: int | None = None
            bucket: list[Column] = []
            for attrelid, name, type_name, notnull, comment in _streamed(self.conn, COLUMNS_SQL, (oids,)):
                if attrelid != current:
                    current, bucket = attrelid, columns[attrelid]
                bucket.append(make(Column, (share(name, name), share(type_name, type_name), not notnull, comment)))
            del strings
        if beside is not None:
            rest = beside()
            if rest is None:  # the second connection failed or is late: read them here
                self.check_cancelled()
                if self.watchdog.fired:
                    raise TimeoutError(self.watchdog.fired)
                rest = [self.conn.execute(query, params).fetchall() for query, params in queries]
        if self.conn.info.transaction_status != TransactionStatus.IDLE:
            self.conn.execute("COMMIT")  # the catalog is read; max() batches run in autocommit
        if self.aside is not None:
            self.aside.close(wait=True)  # its slot is free for the max() batches' connections
        relation_acl, column_acl, schema_rows = rest[:3] if reuse is None else ([], [], [])
        counters = {oid: (changes, live) for oid, changes, live in (rest[-1] if track_counts == "on" else ())}
        if reuse is not None:
            return self._rescan(reuse, catalog_key, assets_rel, partitions, counters, roles, members, server)
        referenced = sorted(({rel.owner_oid for rel in relations} | {row[1] for row in relation_acl}
                             | {row[2] for row in column_acl} | {row[1] for row in schema_rows}
                             | {row[3] for row in schema_rows if row[3] is not None}) - {0})
        catalog_key = self._catalog_key(server, role_rows, members, tuple(fingerprint), referenced)

        schema_comments = {row[0]: row[6] for row in schema_rows}
        totals = self._totals(assets_rel, partitions, counters)
        state: dict[str, Any] = {"database": database, "stats_reset": _iso(stats_reset), "server_started": _iso(started),
                 "counters": {rel.path: [rel.oid, totals[rel.oid]] for rel in assets_rel if rel.oid in totals}}
        freshness = self._observed([(rel.oid, rel.path, rel.relkind) for rel in assets_rel], totals, state)
        state["unchanged_since"] = self._unchanged_since
        # Each asset's column: its `assets:` entry's `column` (e.g. a dbt loaded_at_field), else
        # the source's freshness.column; one batched pass per distinct column.
        column_of = self.source.freshness_columns()
        by_column: dict[str, list[_Relation]] = {}
        for rel in assets_rel:
            column_name = column_of(rel.path)
            if column_name:
                by_column.setdefault(column_name, []).append(rel)
        for column_name, relations in sorted(by_column.items()):
            freshness.update(self._column_freshness(column_name, relations, columns, partitions, max_locks))

        assets = [self._asset(rel, columns.get(rel.oid, ()), partitions.get(rel.oid, ()), counters,
                              role_names, freshness[rel.oid], schema_comments)
                  for rel in assets_rel]
        assets = self._vector_columns(assets_rel, assets)
        grants = self._grants(assets_rel, relation_acl, column_acl, schema_rows, role_names)
        granted = {g.principal for g in grants}
        principals, memberships = self._principals(roles, members, granted, database_owner, version)
        grants.extend(self._predefined_grants(role_names.values()))
        grants, left_out = bound_grants(grants, memberships, self.context,
                                        int(self.source.settings.get("max_grants") or DEFAULT_MAX_GRANTS))
        if left_out:
            self.notes.append(left_out)
        known = list(role_names.values())  # every role, the pg_* ones left out of `principals` too
        self.notes.extend(runs_as_notes(self.context, known))
        state["unknown_principals"] = unknown_principals(self.context, known)

        owner = None
        found = owner_from_comment(database_comment, self.source.owner_tag)
        if found:
            owner = DiscoveredOwner(found, f"comment:{self.source.owner_tag}")
        if not self.partial:  # what an unchanged rescan reuses (a partial read is never reused)
            state.update(catalog_key=catalog_key, catalog_notes=[left_out] if left_out else [],
                         catalog_relations=_relations_state(assets_rel, partitions), catalog_roles=referenced,
                         catalog_granted=sorted(name for name in granted if name.startswith("pg_")))
        return SourceSnapshot(
            source_id=self.source.id, connector=self.source.connector, probed_at=self.context.now,
            assets=tuple(assets), principals=tuple(principals), memberships=tuple(memberships),
            grants=tuple(grants), owner=owner, partial=self.partial, notes=tuple(self.notes),
            reports_grants=True, state=state, container_usage=True)

    def _unchanged(self, previous: SourceSnapshot, catalog_key: str, rows: list[tuple[Any, ...]],
                   server: tuple[Any, ...], role_rows: list[tuple[Any, ...]],
                   members: list[tuple[Any, ...]]) -> SourceSnapshot | None:
        """The rescan of an unchanged catalog from the previous snapshot's relations and this
        scan's sizes and counters (`rows`, SIZES_SQL), or None when the catalog must be read
        (or the recorded relations are not what a full read wrote)."""
        if not catalog_key or previous.state.get("catalog_key") != catalog_key:
            return None
        found = {row[0]: row for row in rows}
        track = server[5] == "on"  # track_counts
        items: list[tuple[int, str, str]] = []
        sizes: list[tuple[int | None, int | None]] = []
        totals: dict[int, int] = {}
        # Partitioned tables (and their partitions) go through _size and _totals as a full read
        # does; plain relations are worked out inline, the same way, without a _Relation each.
        nested: dict[int, list[_Relation]] = {}
        counters: dict[int, tuple[int, int]] = {}
        try:
            for schema, name, oid, relkind, index_count, root, path, size_oids in previous.state["catalog_relations"]:
                row = found[oid]
                size = row[2]
                for other in size_oids:
                    size += found[other][2]
                changes = row[3] if track else None
                if root or relkind == "p":
                    if relkind not in RELKIND_ASSET_KIND:
                        return None
                    nested.setdefault(root or oid, []).append(_Relation(
                        oid, schema, name, relkind, bool(root), root or None, 0, row[1], size, index_count,
                        False, False, 0, None, True, path=path))
                    if changes is not None:
                        counters[oid] = (changes, row[4])
                    if root:
                        continue
                    sizes.append((None, None))  # below
                elif relkind == "r" or relkind == "m":
                    if changes is not None:
                        totals[oid] = changes
                    if row[1] >= 0:
                        sizes.append((int(row[1]), size))
                    else:  # never analyzed: the live-tuple counter is the best estimate
                        sizes.append((row[4] if changes is not None else None, None))
                elif relkind == "v" or relkind == "f":
                    sizes.append((None, None))
                else:
                    return None
                items.append((oid, path, relkind))
        except (KeyError, TypeError, ValueError):
            return None  # malformed, or a relation gone: cannot be with this key, but never guess
        partitions: dict[int, list[_Relation]] = {}
        for index, (oid, _path, relkind) in enumerate(items):
            if relkind == "p":
                parent, *parts = nested[oid]
                partitions[oid] = parts
                totals.update(self._totals([parent], partitions, counters))
                sizes[index] = self._size(parent, parts, counters)
        if not track:
            self.notes.append("track_counts is off: PostgreSQL keeps no change counters, so freshness "
                              "without freshness.column is unknown")
        before = list(previous.assets)
        if len(before) != len(items) or any(a.path != item[1] for a, item in zip(before, items, strict=True)):
            by_path = {a.path: a for a in before}
            if set(by_path) != {item[1] for item in items}:
                return None  # only a full read may find an asset gone (or new)
            before = [by_path[item[1]] for item in items]

        def relations() -> tuple[list[_Relation], Mapping[int, list[_Relation]]]:
            known = _relations_from_state(previous.state["catalog_relations"])
            for rel in known:
                row = found[rel.oid]
                rel.reltuples = row[1]
                rel.size_bytes = row[2] + sum(found[o][2] for o in rel.index_oids or ())
            return [rel for rel in known if not rel.is_partition], partitions

        return self._reuse(previous, catalog_key, items, before, sizes, totals, {row[0]: row for row in role_rows},
                           members, server, previous.state["catalog_relations"], relations)

    def _rescan(self, previous: SourceSnapshot, catalog_key: str, assets_rel: list[_Relation],
                partitions: Mapping[int, list[_Relation]], counters: Mapping[int, tuple[int, int]],
                roles: Mapping[int, tuple[Any, ...]], members: list[tuple[Any, ...]],
                server: tuple[Any, ...]) -> SourceSnapshot:
        """An unchanged catalog whose relation list was read again (the recorded one was not
        usable): the previous snapshot's assets, which the caller checked are these."""
        before = {asset.path: asset for asset in previous.assets}
        return self._reuse(
            previous, catalog_key, [(rel.oid, rel.path, rel.relkind) for rel in assets_rel],
            [before[rel.path] for rel in assets_rel],
            [self._size(rel, partitions.get(rel.oid, ()), counters) for rel in assets_rel],
            self._totals(assets_rel, partitions, counters), roles, members, server,
            _relations_state(assets_rel, partitions), lambda: (assets_rel, partitions))

    def _reuse(self, previous: SourceSnapshot, catalog_key: str, items: list[tuple[int, str, str]],
               before: list[Asset], sizes: list[tuple[int | None, int | None]], totals: Mapping[int, int],
               roles: Mapping[int, tuple[Any, ...]], members: list[tuple[Any, ...]], server: tuple[Any, ...],
               relations_state: list[Any],
               relations: Callable[[], tuple[list[_Relation], Mapping[int, list[_Relation]]]]) -> SourceSnapshot:
        """An unchanged catalog: the previous snapshot's columns, access and owners (`before`,
        one per item), with this scan's counters, freshness, row counts and sizes, and the
        principals and memberships of this scan's roles. The caller checked that the assets
        are the previous snapshot's, so nothing is marked missing (or new) here. `relations`
        gives the assets as relations, for freshness columns."""
        (database, database_owner, version, stats_reset, started, _track_counts, max_locks, *_rest) = server
        role_names = {oid: row[1] for oid, row in roles.items()}
        state: dict[str, Any] = {"database": database, "stats_reset": _iso(stats_reset), "server_started": _iso(started),
                 "counters": {path: [oid, totals[oid]] for oid, path, _kind in items if oid in totals}}
        freshness = self._observed(items, totals, state, before)
        state["unchanged_since"] = self._unchanged_since
        # Each asset's freshness column, as a full read picks it (its `assets:` entry, else
        # the source's freshness.column).
        column_of = self.source.freshness_columns()
        by_column: dict[str, list[int]] = {}
        if self.source.reads_freshness_columns():
            for index, (_oid, path, _kind) in enumerate(items):
                column_name = column_of(path)
                if column_name:
                    by_column.setdefault(column_name, []).append(index)
        if by_column:
            assets_rel, partitions = relations()
            columns = {rel.oid: list(old.columns) for rel, old in zip(assets_rel, before, strict=True)}
            for column_name, indexes in sorted(by_column.items()):
                freshness.update(self._column_freshness(column_name, [assets_rel[i] for i in indexes], columns,
                                                        partitions, max_locks))
        assets = []
        new = object.__new__
        for (oid, _path, _kind), old, (row_count, size) in zip(items, before, sizes, strict=True):
            # The previous asset with this scan's sizes and freshness. Copying its __dict__ is
            # what dataclasses.replace() does, without re-running __init__ field by field
            # (~15 ms at 5,000 assets); Asset is a frozen dataclass without slots.
            asset = new(Asset)
            fields = asset.__dict__
            fields.update(old.__dict__)
            fields["row_count"], fields["size_bytes"], fields["freshness"] = row_count, size, freshness[oid]
            assets.append(asset)
        self.notes.extend(previous.state.get("catalog_notes") or ())
        self.notes.extend(runs_as_notes(self.context, list(role_names.values())))
        state["unknown_principals"] = unknown_principals(self.context, list(role_names.values()))
        granted = previous.state.get("catalog_granted")
        if not isinstance(granted, list):
            granted = sorted({g.principal for g in previous.grants})
        principals, memberships = self._principals(roles, members, granted, database_owner, version)
        if not self.partial:
            state.update(catalog_key=catalog_key, catalog_notes=list(previous.state.get("catalog_notes") or ()),
                         catalog_relations=relations_state, catalog_roles=previous.state.get("catalog_roles"),
                         catalog_granted=granted)
        state["catalog_read"] = "reused"
        return SourceSnapshot(
            source_id=self.source.id, connector=self.source.connector, probed_at=self.context.now,
            assets=tuple(assets), principals=tuple(principals), memberships=tuple(memberships),
            grants=previous.grants, owner=previous.owner, partial=self.partial, notes=tuple(self.notes),
            reports_grants=True, state=state, container_usage=previous.container_usage)

    # -- assets ------------------------------------------------------------------------

    def _vector_columns(self, relations: list[_Relation], assets: list[Asset]) -> list[Asset]:
        """pgvector columns (`vector(N)`, `halfvec(N)`, `sparsevec(N)`) as `vector_columns`: name,
        type, dimension and their ivfflat/hnsw indexes. One query, only when there are any."""
        found: dict[str, list[dict[str, Any]]] = {}
        search = _VECTOR_TYPE.search
        for asset in assets:
            for column in asset.columns:
                # The substring test first: a regex search per column costs ~0.2 s at 600,000.
                match = search(column.type) if "vec" in column.type else None
                if match:
                    found.setdefault(asset.path, []).append(
                        {"name": column.name, "type": match.group(1), "dimension": int(match.group(2)),
                         "indexes": []})
        if not found:
            return assets
        oid_of = {rel.path: rel.oid for rel in relations}
        by_oid = {oid_of[path]: path for path in found if path in oid_of}
        for relid, column, index, method, opclass in self.fetch(VECTOR_INDEXES_SQL, (oid_array(by_oid),)):
            for entry in found.get(by_oid.get(relid, ""), ()):
                if entry["name"] == column:
                    entry["indexes"].append({"name": index, "method": method, "opclass": opclass})
        return [dataclasses.replace(a, properties={**a.properties, "vector_columns": found[a.path]})
                if a.path in found else a for a in assets]

    @staticmethod
    def _totals(assets: list[_Relation], partitions: Mapping[int, list[_Relation]],
                counters: Mapping[int, tuple[int, int]]) -> dict[int, int]:
        totals: dict[int, int] = {}
        for rel in assets:
            if rel.relkind == "p":
                totals[rel.oid] = sum(counters[p.oid][0] for p in partitions.get(rel.oid, ()) if p.oid in counters)
            elif rel.oid in counters:
                totals[rel.oid] = counters[rel.oid][0]
        return totals

    @staticmethod
    def _size(rel: _Relation, parts: Iterable[_Relation],
              counters: Mapping[int, tuple[int, int]]) -> tuple[int | None, int | None]:
        """An asset's row count and size in bytes, where PostgreSQL knows them."""
        row_count: int | None = None
        size: int | None = None
        if rel.relkind in ("r", "m"):
            if rel.reltuples >= 0:
                row_count, size = int(rel.reltuples), rel.size_bytes
            elif rel.oid in counters:
                # Never analyzed: reltuples is -1; the live-tuple counter is the best estimate.
                row_count = counters[rel.oid][1]
        elif rel.relkind == "p":
            leaves = [p for p in parts if p.relkind in ("r", "m", "f")]
            analyzed = [p for p in leaves if p.reltuples >= 0]
            if leaves and len(analyzed) == len(leaves):
                row_count = int(sum(p.reltuples for p in analyzed))
                size = sum(p.size_bytes for p in analyzed)
            elif leaves and all(p.oid in counters for p in leaves):
                row_count = sum(counters[p.oid][1] for p in leaves)
            elif not leaves:
                row_count, size = 0, 0
        return row_count, size

    def _asset(self, rel: _Relation, columns: Iterable[Column], parts: Iterable[_Relation],
               counters: Mapping[int, tuple[int, int]], role_names: Mapping[int, str],
               freshness: FreshnessObservation, schema_comments: Mapping[str, str | None]) -> Asset:
        row_count, size = self._size(rel, parts, counters)
        owner_role = role_names.get(rel.owner_oid, str(rel.owner_oid))
        properties: dict[str, Any] = {"owner_role": owner_role}
        if rel.relkind in ("r", "p"):
            properties.update(rls_enabled=rel.rls_enabled, rls_forced=rel.rls_forced,
                              rls_policies=rel.policies)
        if rel.relkind == "p":
            properties["partitions"] = sum(1 for p in parts if p.relkind != "p")
        if rel.comment:
            properties["comment"] = rel.comment
        owner = None
        key = self.source.owner_tag
        if key:
            found = owner_from_comment(rel.comment, key)
            if found:
                owner = DiscoveredOwner(found, f"comment:{key}")
            else:
                found = owner_from_comment(schema_comments.get(rel.schema), key)
                if found:
                    owner = DiscoveredOwner(found, f"schema comment:{key}")
        return Asset(path=rel.path, kind=RELKIND_ASSET_KIND[rel.relkind], columns=tuple(columns),
                     container=rel.schema, row_count=row_count, size_bytes=size, freshness=freshness,
                     owner=owner, properties=properties)

    # -- freshness ---------------------------------------------------------------------

    def _observed(self, assets: list[tuple[int, str, str]], totals: Mapping[int, int],
                  state: Mapping[str, Any],
                  before: list[Asset] | None = None) -> dict[int, FreshnessObservation]:
        """Freshness from change counters compared with the previous scan's.

        Counters unchanged since the scan at T0 that first recorded them prove the last change
        came before T0: the age is at least now - T0 (`unchanged_since` in the state, per
        path). That lower bound is an `observed` freshness without `changed_after`, and becomes
        `stale` once it passes the SLA. A move of the counters, a re-created table, a
        statistics reset or a server restart starts the bound again.

        `assets` are (oid, path, relkind); `before`, when given, the previous snapshot's asset
        of each, in the same order.
        """
        previous = self.context.previous
        now_iso = self.context.now.isoformat()
        self._unchanged_since: dict[str, str] = {}
        prev_state = previous.state if previous is not None else {}
        prev_counters = prev_state.get("counters") if isinstance(prev_state, Mapping) else None
        prev_since = prev_state.get("unchanged_since") if isinstance(prev_state, Mapping) else None
        prev_since = prev_since if isinstance(prev_since, Mapping) else {}
        baseline = (previous is not None and isinstance(prev_counters, Mapping)
                    and prev_state.get("database") == state["database"])
        reset = baseline and (prev_state.get("stats_reset") != state["stats_reset"]
                              or prev_state.get("server_started") != state["server_started"])
        if reset:
            what = ("the server restarted" if prev_state.get("server_started") != state["server_started"]
                    else "statistics were reset")
            self.notes.append(
                f"{what} since the previous scan: change counters cannot be compared this time, so "
                "observed freshness is carried over or unknown; it resumes from the next scan")
        out: dict[int, FreshnessObservation] = {}
        unchanged: dict[Any, tuple[str, FreshnessObservation]] = {}
        none_first = FreshnessObservation(
            method=METHOD_NONE, detail="first scan: change counters recorded; changes show from the next scan")
        if baseline:
            assert previous is not None and isinstance(prev_counters, Mapping)
            asset_of = previous.asset
        for index, (oid, path, relkind) in enumerate(assets):
            if oid not in totals:
                kind = RELKIND_ASSET_KIND[relkind].replace("_", " ")
                out[oid] = FreshnessObservation(
                    method=METHOD_NONE, detail=f"a {kind} has no change counters; set freshness.column")
                continue
            if not baseline:
                self._unchanged_since[path] = now_iso
                out[oid] = none_first
                continue
            assert previous is not None and prev_counters is not None
            counted = prev_counters.get(path)
            prev_asset = before[index] if before is not None else asset_of(path)
            carried = prev_asset.freshness if prev_asset is not None else None
            if carried is not None and carried.method != METHOD_OBSERVED:
                carried = None
            if not isinstance(counted, (list, tuple)) or len(counted) != 2:  # noqa: UP038 - faster
                self._unchanged_since[path] = now_iso
                out[oid] = FreshnessObservation(
                    method=METHOD_NONE, detail="first seen: change counters recorded; changes show from the next scan")
                continue
            before_oid, before_total = counted
            now_total = totals[oid]
            if before_oid != oid:
                self._unchanged_since[path] = now_iso
                out[oid] = FreshnessObservation(
                    method=METHOD_OBSERVED, last_changed=self.context.now, changed_after=previous.probed_at,
                    caveat=OBSERVED_CAVEAT, detail="the table was dropped and created again between two scans")
            elif reset or now_total < before_total:
                self._unchanged_since[path] = now_iso
                # Counters restarted from zero: more, equal or fewer prove nothing.
                caveat = "statistics were reset since this change was observed; later changes may be missed"
                if carried is not None and carried.changed_after is not None:  # a bound restarts
                    out[oid] = FreshnessObservation(
                        method=METHOD_OBSERVED, last_changed=carried.last_changed,
                        changed_after=carried.changed_after, caveat=caveat, detail=carried.detail)
                else:
                    out[oid] = FreshnessObservation(
                        method=METHOD_NONE,
                        detail="statistics reset or server restart since the previous scan: counters recorded again")
            elif now_total > before_total:
                self._unchanged_since[path] = now_iso
                out[oid] = FreshnessObservation(
                    method=METHOD_OBSERVED, last_changed=self.context.now, changed_after=previous.probed_at,
                    caveat=OBSERVED_CAVEAT,
                    detail=f"{now_total - before_total} rows inserted, updated or deleted between two scans")
            else:
                # Unchanged: the counters have held this value since T0 (the scan that first
                # recorded it, else the previous scan), so nothing changed after T0.
                # Most tables share one T0 (the scan that first recorded them): parse it, and
                # build its observation, once per distinct value (~30 ms at 5,000 tables).
                raw = prev_since.get(path)
                held = unchanged.get(raw)
                if held is None:
                    since = _parse_iso(raw) or previous.probed_at
                    held = unchanged[raw] = (since.isoformat(), FreshnessObservation(
                        method=METHOD_OBSERVED, last_changed=since, caveat=OBSERVED_CAVEAT,
                        detail=f"change counters unchanged since {since.isoformat(timespec='seconds')}: "
                               "the last change was before that"))
                self._unchanged_since[path] = held[0]
                if carried is not None and carried.changed_after is not None:
                    out[oid] = carried  # a change seen between two scans: a tighter window
                else:
                    out[oid] = held[1]
        return out

    def _column_freshness(self, column: str, assets: list[_Relation], columns: Mapping[int, list[Column]],
                          partitions: Mapping[int, list[_Relation]],
                          max_locks: int) -> dict[int, FreshnessObservation]:
        """max(column) per asset, a few hundred tables per autocommit statement."""
        from psycopg import sql

        out: dict[int, FreshnessObservation] = {}
        eligible: list[_Relation] = []
        lacking: list[str] = []
        for rel in assets:
            found = next((c for c in columns.get(rel.oid, ()) if c.name == column), None)
            if found is not None and _is_timestamp(found.type):
                eligible.append(rel)
            else:
                lacking.append(rel.path)
        if lacking:
            shown = ", ".join(lacking[:10]) + (f" and {len(lacking) - 10} more" if len(lacking) > 10 else "")
            self.notes.append(f"freshness.column {column!r} is missing or not a timestamp in "
                              f"{len(lacking)} assets ({shown}); their freshness comes from change counters")
        if not eligible:
            return out
        denied = {row[0] for row in self.fetch(UNREADABLE_COLUMN_SQL, (oid_array(r.oid for r in eligible), column))}
        for rel in eligible:
            if rel.oid in denied:
                out[rel.oid] = FreshnessObservation(
                    method=METHOD_NONE, detail=f"no SELECT privilege on {column} for the scanning role")
        eligible = [rel for rel in eligible if rel.oid not in denied]

        def weight(rel: _Relation) -> int:
            # Locks one max() takes: the relation and its indexes, and every partition's too.
            own = 1 + rel.index_count
            if rel.relkind == "v":
                own += 8  # unknown: the tables behind the view
            return own + sum(1 + p.index_count for p in partitions.get(rel.oid, ()))

        dated = {rel.oid for rel in eligible
                 if any(c.name == column and c.type == "date" for c in columns.get(rel.oid, ()))}
        batch_size = int(self.source.settings.get("batch_size") or 200)
        groups = deque(batches(eligible, max(1, batch_size), max(64, max_locks * 8), weight))
        quoted_column = sql.Identifier(column).as_string(self.conn)
        by_oid = {rel.oid: rel for rel in eligible}

        def per_table(exc: Exception) -> str | None:
            if self.watchdog.out_of_budget:
                raise BatchAborted("time budget exhausted")
            if self.watchdog.fired:
                return None
            sqlstate = getattr(exc, "sqlstate", None) or ""
            if sqlstate in PER_TABLE_SQLSTATES:
                return PER_TABLE_SQLSTATES[sqlstate]
            if sqlstate.startswith("HV"):  # a foreign-data wrapper error: that table only
                return "foreign server error"
            return _relation_error(exc, sqlstate)

        results: dict[int, Any] = {}
        failures: dict[int, str] = {}
        lock = threading.Lock()
        stop = threading.Event()
        errors: list[BaseException] = []
        progress = {"done": 0, "aborted": 0}

        def out_of_time() -> bool:
            return stop.is_set() or self.limits.remaining() <= 0 or self.context.cancelled.is_set()

        def work(conn: psycopg.Connection[Any]) -> None:
            def run(batch: list[_Relation]) -> dict[int, Any]:
                parts = [_max_query(rel.oid, sql.Identifier(rel.schema, rel.name).as_string(conn),
                                    quoted_column, rel.oid in dated) for rel in batch]
                return {oid: (value, infinite, has_rows)
                        for oid, value, infinite, has_rows in conn.execute(" UNION ALL ".join(parts)).fetchall()}

            while True:
                with lock:
                    if stop.is_set() or not groups:
                        return
                    group = groups.popleft()
                try:
                    run_bisecting(group, run, per_table, results, failures, key=lambda rel: rel.oid,
                                  out_of_time=out_of_time)
                except BatchAborted:
                    progress["aborted"] = 1
                    stop.set()
                    return
                except BaseException as exc:  # re-raised by the probe's thread below
                    errors.append(exc)
                    stop.set()
                    return
                with lock:
                    progress["done"] += len(group)

        # The batches spread over a few connections: each backend spends most of a max()
        # opening relations it has not seen yet, which is work the server can do in parallel.
        wanted = max(1, int(self.source.settings.get("connections") or 2))
        extra: list[psycopg.Connection[Any]] = []
        try:
            for _ in range(min(wanted, len(groups)) - 1):
                try:
                    extra.append(_connect(self.url, self.limits))
                except Exception:  # e.g. the role's connection limit: use what we have
                    break
                self.watchdog.connections.append(extra[-1])
            threads = [threading.Thread(target=work, args=(conn,), name="ctxscan-pg-max", daemon=True)
                       for conn in extra]
            for thread in threads:
                thread.start()
            work(self.conn)
            for thread in threads:
                thread.join()
        finally:
            for conn in extra:
                conn.close()
        if errors:
            raise errors[0]
        if progress["aborted"]:
            self.partial = True
            self.notes.append(f"max({column}) stopped when the time budget ran out: "
                              f"{progress['done']} of {len(eligible)} assets measured; the rest use change counters")
        for oid, (value, infinite, has_rows) in results.items():
            if infinite == "infinity":
                out[oid] = self._finite_max(by_oid[oid], column, quoted_column, oid in dated)
            elif infinite == "-infinity":
                out[oid] = FreshnessObservation(
                    method=METHOD_NONE, detail=f"max({column}) is -infinity: no finite time in the column")
            else:
                out[oid] = column_observation(column, value, has_rows)
            if oid in dated and out[oid].method == METHOD_COLUMN:
                caveats = [out[oid].caveat, DATE_CAVEAT.format(column=column)]
                out[oid] = replace(out[oid], caveat="; ".join(c for c in caveats if c))
        for oid, reason in failures.items():
            out[oid] = FreshnessObservation(method=METHOD_NONE, detail=f"max({column}) failed: {reason}")
        if failures:
            paths = sorted(by_oid[oid].path for oid in failures)
            self.notes.append(f"max({column}) failed for {len(paths)} assets: " + ", ".join(paths[:10]))
        return out

    def _finite_max(self, rel: _Relation, column: str, quoted_column: str,
                    dated: bool) -> FreshnessObservation:
        """The newest finite value of a column whose max() is `infinity` (a sentinel such as
        "valid until forever" says nothing about when the table last changed)."""
        from psycopg import sql

        table = sql.Identifier(rel.schema, rel.name).as_string(self.conn)
        try:
            rows = self.fetch(_max_query(rel.oid, table, quoted_column, dated,
                                         where=f"{quoted_column} < 'infinity'"))
        except Exception as exc:
            reason = _relation_error(exc, getattr(exc, "sqlstate", None) or "")
            if reason is None:
                raise
            return FreshnessObservation(method=METHOD_NONE, detail=f"max({column}) failed: {reason}")
        value = rows[0][1] if rows else None
        observation = column_observation(column, value, rows[0][3] if rows else None)
        if observation.method != METHOD_COLUMN:
            return FreshnessObservation(method=METHOD_NONE,
                                        detail=f"max({column}) is infinity and no row has a finite value")
        return replace(observation, caveat=INFINITY_CAVEAT.format(column=column))

    # -- access ------------------------------------------------------------------------

    @staticmethod
    def _grants(assets: list[_Relation], relation_acl: Iterable[tuple[Any, ...]],
                column_acl: Iterable[tuple[Any, ...]], schema_rows: Iterable[tuple[Any, ...]],
                role_names: Mapping[int, str]) -> list[Grant]:
        by_oid = {rel.oid: rel for rel in assets}
        grants: list[Grant] = []
        append = grants.append

        def name_of(grantee: int) -> str:
            return "PUBLIC" if grantee == 0 else role_names.get(grantee, str(grantee))

        # An owner's own ACL entries (from acldefault() when relacl is NULL) fold into one
        # OWNER grant: ownership already means every privilege, since an owner can always
        # grant itself back whatever was revoked. That keeps 5,000 tables at 5,000 grants for
        # their owners instead of 35,000.
        owner_holds: dict[int, list[str]] = {}
        for oid, grantee, privileges in relation_acl:
            rel = by_oid[oid]
            if grantee == rel.owner_oid:
                owner_holds[oid] = [p.rstrip("*") for p in privileges.split(",")]
                continue
            name = name_of(grantee)
            public = grantee == 0
            for entry in privileges.split(","):
                privilege = entry.rstrip("*")
                via = f"GRANT {privilege} ON {rel.path}"
                append(new_grant(name, privilege, rel.path, SCOPE_ASSET, PRIVILEGE_ACCESS.get(privilege, ACCESS_OTHER),
                             (), public, via))
                if entry.endswith("*"):
                    append(new_grant(name, f"{privilege} WITH GRANT OPTION", rel.path, SCOPE_ASSET,
                                 GRANT_OPTION_ACCESS, (), public, via + " WITH GRANT OPTION"))
        # Most owners hold the same privileges: describe each distinct ACL once (50,000 tables).
        described: dict[tuple[bool, tuple[str, ...]], tuple[str, bool]] = {}
        everything = set(TABLE_PRIVILEGES)
        for rel in assets:
            owner = role_names.get(rel.owner_oid, str(rel.owner_oid))
            holds = owner_holds.get(rel.oid, [])
            acl = (rel.acl_default, tuple(holds))
            known = described.get(acl)
            if known is None:
                known = described[acl] = (_owner_acl(rel.acl_default, holds, TABLE_PRIVILEGES),
                                          everything <= set(holds))
            via = f"owner of {rel.path} ({known[0]})"
            if known[1]:
                append(new_grant(owner, PRIVILEGE_OWNER, rel.path, SCOPE_ASSET, ACCESS_ADMIN, (), False, via))
                continue
            # An owner whose own privileges were revoked may still ALTER and DROP the table
            # and grant itself back the rest (escalation), but uses only what its ACL holds.
            append(new_grant(owner, PRIVILEGE_OWNER, rel.path, SCOPE_ASSET, ACCESS_ALTER, (), False, via))
            for privilege in holds:
                append(new_grant(owner, privilege, rel.path, SCOPE_ASSET,
                             PRIVILEGE_ACCESS.get(privilege, ACCESS_OTHER), (), False,
                             f"owner's own {privilege} on {rel.path}"))
        by_column: dict[tuple[int, int, str, bool], list[str]] = defaultdict(list)
        for oid, column, grantee, privilege, grantable in column_acl:
            by_column[(oid, grantee, privilege, grantable)].append(column)
        for (oid, grantee, privilege, grantable), names in by_column.items():
            rel = by_oid[oid]
            name = name_of(grantee)
            via = f"GRANT {privilege} ({', '.join(names)}) ON {rel.path}"
            append(new_grant(name, privilege, rel.path, SCOPE_COLUMN, PRIVILEGE_ACCESS.get(privilege, ACCESS_OTHER),
                         tuple(names), grantee == 0, via))
            if grantable:
                append(new_grant(name, f"{privilege} WITH GRANT OPTION", rel.path, SCOPE_COLUMN, GRANT_OPTION_ACCESS,
                             tuple(names), grantee == 0, via + " WITH GRANT OPTION"))
        schema_owner: dict[str, tuple[int, bool, list[str]]] = {}
        for schema, owner_oid, acl_default, grantee, privilege, grantable, _comment in schema_rows:
            held = schema_owner.setdefault(schema, (owner_oid, acl_default, []))[2]
            if grantee is None:
                continue
            if grantee == owner_oid:
                held.append(privilege)
                continue
            name = name_of(grantee)
            via = f"GRANT {privilege} ON SCHEMA {schema}"
            # USAGE and CREATE on a schema neither read nor write its tables.
            append(new_grant(name, privilege, schema, SCOPE_CONTAINER, ACCESS_OTHER, (), grantee == 0, via))
            if grantable:
                append(new_grant(name, f"{privilege} WITH GRANT OPTION", schema, SCOPE_CONTAINER, GRANT_OPTION_ACCESS,
                             (), grantee == 0, via + " WITH GRANT OPTION"))
        for schema, (owner_oid, acl_default, held) in schema_owner.items():
            # A schema's owner may drop any table in it, whoever owns the table (alter), but may
            # not read or change a table someone else owns. (On 15+, `public` belongs to
            # pg_database_owner, so every database owner holds this.)
            owner_name = role_names.get(owner_oid, str(owner_oid))
            via = f"owner of schema {schema} ({_owner_acl(acl_default, held, SCHEMA_PRIVILEGES)})"
            append(new_grant(owner_name, SCHEMA_OWNER_PRIVILEGE, schema, SCOPE_CONTAINER, ACCESS_ALTER, (), False, via))
            if PRIVILEGE_USAGE in held:  # the core needs USAGE as a grant, the owner's included
                append(new_grant(owner_name, PRIVILEGE_USAGE, schema, SCOPE_CONTAINER, ACCESS_OTHER, (), False,
                             f"owner's own USAGE on schema {schema}"))
        return grants

    @staticmethod
    def _predefined_grants(names: Iterable[str]) -> list[Grant]:
        existing = set(names)
        return [Grant(role, privilege, "*", SCOPE_SOURCE, access, (), False, f"predefined role {role}")
                for role, privileges in PREDEFINED_DATA_ROLES.items() if role in existing
                for privilege, access in privileges]

    @staticmethod
    def _principals(roles: Mapping[int, tuple[Any, ...]], members: Iterable[tuple[Any, ...]],
                    granted: Iterable[str], database_owner: str,
                    version: int) -> tuple[list[Principal], list[Membership]]:
        names = {oid: row[1] for oid, row in roles.items()}
        memberships = [Membership(names.get(member, str(member)), names.get(role, str(role)), bool(inherit),
                                  bool(admin), bool(can_set))
                       for role, member, admin, inherit, can_set in members]
        if version >= 140000 and "pg_database_owner" in names.values():
            # Implicit: the database owner is the one member of pg_database_owner.
            memberships.append(Membership(database_owner, "pg_database_owner", True))
        # Predefined pg_* roles appear only when something refers to them.
        referenced = {m.role for m in memberships} | {m.member for m in memberships}
        referenced |= set(granted)  # the principals of the grants
        referenced |= set(PREDEFINED_DATA_ROLES) | PREDEFINED_PRIVILEGED_ROLES
        principals: list[Principal] = []
        for (_oid, name, superuser, inherit, createrole, createdb, login, replication,
             bypassrls) in roles.values():
            if name.startswith("pg_") and name not in referenced:
                continue
            flags = (("superuser", superuser), ("bypassrls", bypassrls), ("createrole", createrole),
                     ("createdb", createdb), ("replication", replication))
            attributes = tuple(flag for flag, on in flags if on)
            # Only SUPERUSER gives table access; BYPASSRLS skips policies, CREATEROLE lets it
            # grant itself roles (escalation), and neither is inherited by members.
            privileged = bool(superuser or bypassrls or createrole)
            if name in PREDEFINED_PRIVILEGED_ROLES:
                attributes += (name,)
                privileged = True
            properties: dict[str, Any] = {"login": bool(login), "inherit": bool(inherit)}
            if version < 160000:
                # Before 16 a new membership inherits as the member's attribute says, and the
                # session user may grant its own role to others (since 16 the grantor picks
                # INHERIT, and nobody administers itself).
                properties.update(inherits_grants=bool(inherit), admin_of_itself=True)
            if name == "pg_database_owner":
                properties["grantable"] = False  # its one member is implicit
            # Before 16, CREATEROLE may grant any role but a superuser one, itself included;
            # from 16 only roles it holds ADMIN OPTION on (memberships say so).
            grants_itself = ("*",) if createrole and version < 160000 else ()
            principals.append(Principal(name=name, kind="user" if login else "role", attributes=attributes,
                                        privileged=privileged, properties=properties,
                                        all_access=bool(superuser), inherited=False,
                                        grants_itself=grants_itself,
                                        grants_itself_reason="CREATEROLE" if grants_itself else ""))
        return principals, memberships
