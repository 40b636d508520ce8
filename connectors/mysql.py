"""MySQL 8 and MariaDB 10.4+: schema, estimates, freshness and access paths, read-only.

Schema and estimates come from information_schema in a few bulk queries. Access comes from
the grant tables (mysql.user, mysql.db, mysql.tables_priv, mysql.columns_priv and role
edges) when the scanning account may read them, else from information_schema, which shows
only the scanning account's own privileges (and says so in a note). Accounts are named
`user@host` (`support_bot@%`); MariaDB roles by their name.

The grants reported for an account are those the server applies to its sessions
(connectors/_mysql_privileges.py): the first matching database row, the most specific table
row, rows of the same user on other matching hosts; a role's grants include its sub-roles'.
The default role is an inheriting membership; other granted roles need SET ROLE. In
`runs_as`, a bare `user` stands for its only account; with accounts on several hosts it must
be written `user@host`.

On MariaDB a rescan whose tables all have the CREATE_TIME they had at the previous scan
reuses that scan's columns (`catalog_key_of`) and reads information_schema.COLUMNS for views
only; estimates, UPDATE_TIME, freshness.column and grants are read on every scan.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

from connectors._mysql_privileges import (
    MAX_DATABASE_LENGTH,
    DatabaseRow,
    Found,
    GrantTables,
    TableRow,
    database_matches,
    magic,
)
from connectors._sqlcommon import (
    DEFAULT_MAX_GRANTS,
    REASON_ERROR,
    REASON_NOT_FOUND,
    Limits,
    as_utc,
    bound_grants,
    classify,
    measure_column,
    measured_observation,
    owner_from_comment,
    probe_error,
    probe_limits,
    qualified_path,
    source_url,
)
from scanner.errors import ProbeError
from scanner.model import (
    ACCESS_ALTER,
    ACCESS_OTHER,
    ACCESS_READ,
    ACCESS_WRITE,
    METHOD_METADATA,
    METHOD_NONE,
    PUBLIC_PRINCIPALS,
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
)
from scanner.plugins import Connector, ProbeContext, Setting, SourceConfig

if TYPE_CHECKING:
    import pymysql

SYSTEM_DATABASES = frozenset({"mysql", "information_schema", "performance_schema", "sys"})
PRIVILEGE_ACCESS = {
    "SELECT": ACCESS_READ,
    # Data can change: DROP is what TRUNCATE needs (it is also a schema change, see below).
    "INSERT": ACCESS_WRITE, "UPDATE": ACCESS_WRITE, "DELETE": ACCESS_WRITE, "DROP": ACCESS_WRITE,
    "DELETE HISTORY": ACCESS_WRITE,
    "ALTER": ACCESS_ALTER, "CREATE": ACCESS_ALTER, "INDEX": ACCESS_ALTER,
    # A grant option passes on only what the account already holds, even on *.*: no access.
    # SUPER, FILE and CREATE USER make an account privileged (a finding) but give no table
    # privilege: the server still checks those.
    "GRANT OPTION": ACCESS_OTHER,
}
# DROP changes the data (TRUNCATE) and the schema.
ALSO_ALTER = frozenset({"DROP"})
# Global privileges that make an account superuser-like.
PRIVILEGED_GLOBAL = frozenset({"SUPER", "FILE", "CREATE USER"})
# `Xxx_priv` columns of the grant tables whose privilege is not just the words of the name.
_PRIV_COLUMN_WORDS = {"Grant": "GRANT OPTION", "Show_db": "SHOW DATABASES", "Create_tmp_table":
                      "CREATE TEMPORARY TABLES", "Repl_slave": "REPLICATION SLAVE", "Repl_client":
                      "REPLICATION CLIENT"}
# Words of tables_priv.Table_priv that differ from the GRANT statement's.
_TABLE_PRIV_WORDS = {"GRANT": "GRANT OPTION", "DELETE VERSIONING ROWS": "DELETE HISTORY"}
PER_TABLE_ERRNOS = {1142: "permission denied", 1143: "permission denied", 1205: "lock wait timeout",
                    1969: "statement timeout", 3024: "statement timeout", 1146: "table dropped during the probe",
                    1054: "column dropped during the probe", 1356: "view references something invalid"}
# What a MariaDB probe's grants are read from (mysql.user is a view over global_priv): the
# accounts, database rows (whose names may be patterns) and roles whole, by CHECKSUM TABLE
# (the server sums a CRC32 per row); the table and column rows of the scanned databases only,
# by two sums of per-row CRCs (CRC32 and CRC32C) and the count, so that grants in other
# databases change nothing here. Both run in the server: a few ms for 30,000 grants.
WHOLE_GRANT_TABLES = ("global_priv", "db", "roles_mapping")
_ROW = "CONCAT_WS(0x1f, {})"
GRANT_ROWS_DIGEST_SQL = " UNION ALL ".join(
    f"SELECT '{table}', COUNT(*), SUM(CRC32({_ROW.format(columns)})), SUM(CRC32C({_ROW.format(columns)}))"
    f" FROM mysql.{table} WHERE Db IN %s"
    for table, columns in (("tables_priv", "Host, Db, User, Table_name, Grantor, Timestamp, Table_priv, Column_priv"),
                           ("columns_priv", "Host, Db, User, Table_name, Column_name, Timestamp, Column_priv")))
UPDATE_TIME_CAVEAT = ("information_schema UPDATE_TIME: cached by the server, empty after a restart for "
                      "InnoDB, not kept by every engine")


def catalog_key_of(version: str, mariadb: bool, databases: Sequence[str], tables: Sequence[Mapping[str, Any]],
                   now: Any) -> str | None:
    """A fingerprint of every column, type and comment of the tables, or None when there is none.

    MariaDB writes a table's definition anew on every ALTER (an instant ADD COLUMN, a type, a
    column or table comment, a default, a rename, an index), RENAME and re-creation,
    and information_schema.TABLES.CREATE_TIME is that definition's time: the list of tables
    with their CREATE_TIME changes whenever any table's columns do. Grants live in the grant
    tables, read on every scan; the probe adds them to the key, since the scanning account's
    privileges decide which columns information_schema shows it. It is not used on MySQL 8, where this is unproven here and
    information_schema caches these columns (information_schema_stats_expiry, a day by
    default), nor when a table has no CREATE_TIME, nor when the newest one is within two seconds of the server's clock
    read before the list: CREATE_TIME has one-second resolution, so a second change in that
    same second would keep it (a CREATE_TIME of second S may hide a change until S + 1)."""
    import hashlib
    from datetime import datetime, timedelta

    if not mariadb or not isinstance(now, datetime):
        return None
    parts: list[Any] = [version, list(databases)]
    newest = ""
    for row in sorted(tables, key=lambda r: (str(r["TABLE_SCHEMA"]), str(r["TABLE_NAME"]))):
        head = (row["TABLE_SCHEMA"], row["TABLE_NAME"], row["TABLE_TYPE"], row["ENGINE"])
        if row["TABLE_TYPE"] in ("VIEW", "SYSTEM VIEW"):
            parts.append(head)  # its columns are read on every scan
            continue
        created = row.get("CREATE_TIME")  # as text, YYYY-MM-DD HH:MM:SS: it sorts as it reads
        if not isinstance(created, str) or not created:
            return None
        newest = max(newest, created)
        parts.append((*head, created))
    if newest:
        try:
            if datetime.fromisoformat(newest) >= now - timedelta(seconds=2):
                return None
        except ValueError:
            return None
    return hashlib.sha256(repr(parts).encode("utf-8", "surrogatepass")).hexdigest()  # repr: no separator to forge


def _is_timestamp(type_name: str) -> bool:
    lowered = type_name.lower()
    return lowered.startswith(("datetime", "timestamp")) or lowered == "date"


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _via(privilege: str, on: str, columns: Sequence[str] = ()) -> str:
    """The GRANT statement that gives a privilege, for `ctxscan why`."""
    if privilege == "GRANT OPTION":
        return f"GRANT USAGE ON {on} WITH GRANT OPTION"
    listed = f" ({', '.join(columns)})" if columns else ""
    return f"GRANT {privilege}{listed} ON {on}"


def _privilege_from_column(column: str) -> str:
    base = column[: -len("_priv")]
    return _PRIV_COLUMN_WORDS.get(base, base.replace("_", " ").upper())


def _split_set(value: Any) -> list[str]:
    """A SET column (`Select,Insert,Grant`) as upper-case privilege words."""
    if not value:
        return []
    items = value if isinstance(value, set | frozenset | list | tuple) else str(value).split(",")
    words = [str(item).strip().upper() for item in items if str(item).strip()]
    return sorted(_TABLE_PRIV_WORDS.get(word, word) for word in words)


_GRANTEE = re.compile(r"^'((?:[^']|'')*)'@'((?:[^']|'')*)'$")


def parse_grantee(grantee: str) -> tuple[str, str]:
    """information_schema's `'user'@'host'` as (user, host)."""
    match = _GRANTEE.match(grantee)
    if not match:
        return grantee, ""
    return match.group(1).replace("''", "'"), match.group(2).replace("''", "'")


@dataclass(frozen=True)
class _Target:
    host: str
    port: int
    user: str
    password: str
    database: str | None
    unix_socket: str | None


def parse_url(url: str) -> _Target:
    """mysql://user:password@host:port/database (also mariadb:// and SQLAlchemy's +pymysql)."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+")[0].lower()
    if scheme not in ("mysql", "mariadb"):
        raise ProbeError(f"url must start with mysql:// or mariadb://, not {parts.scheme}://", reason=REASON_ERROR)
    query = parse_qs(parts.query)
    database = unquote(parts.path.lstrip("/")) or None
    try:
        port = parts.port or 3306
    except ValueError:
        raise ProbeError("url has an invalid port", reason=REASON_ERROR) from None
    return _Target(host=parts.hostname or "127.0.0.1", port=port, user=unquote(parts.username or ""),
                   password=unquote(parts.password or ""), database=database,
                   unix_socket=query["unix_socket"][0] if query.get("unix_socket") else None)


class MysqlConnector(Connector):
    """MySQL 8 and MariaDB through PyMySQL: information_schema, grant tables and roles."""

    kind: ClassVar[str] = "mysql"
    description: ClassVar[str] = (
        "MySQL 8 / MariaDB 10.4+: tables, views, columns, estimates, freshness (max of a column or "
        "UPDATE_TIME) and access paths (accounts, roles, global, database, table and column grants)")
    settings: ClassVar[tuple[Setting, ...]] = (
        Setting("url", str, required=True,
                help="mysql://user:password@host:port/[database] (no database: every user database; "
                     "the password is redacted)"),
        Setting("connect_timeout", float,
                help="seconds to wait for the connection (default: a quarter of the probe timeout, 2-10 s)"),
        Setting("statement_timeout", float,
                help="seconds one statement may run (default: half the probe timeout)"),
        Setting("lock_timeout", float, help="seconds to wait for a metadata or row lock (default 1)"),
        Setting("batch_size", int, help="tables per max() statement for freshness.column (default 200)"),
        Setting("max_grants", int,
                help="past this many grants, table grants are kept only for runs_as principals (default 200000)"),
    )

    def probe(self, context: ProbeContext) -> SourceSnapshot:
        """Probe the server read-only and return its assets, freshness and access paths."""
        limits = probe_limits(self.source, context)
        url = source_url(self.source)
        target = parse_url(url)
        phase = "cannot connect to MySQL"
        try:
            conn = _connect(target, limits)
            try:
                phase = "MySQL probe failed"
                return _Probe(self.source, context, conn, limits, target).run()
            finally:
                conn.close()
        except ProbeError:
            raise
        except Exception as exc:
            raise self.translate_error(exc, phase) from None

    def translate_error(self, exc: BaseException, phase: str) -> ProbeError:
        """The one place PyMySQL's exceptions become ProbeErrors, secrets redacted."""
        errno: int | None = None
        text = str(exc)
        args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
        if len(args) >= 2 and isinstance(args[0], int):
            errno, text = args[0], str(args[1])
        if isinstance(exc, TimeoutError | OSError) and errno is None:
            text = f"{type(exc).__name__}: {exc}"
        return probe_error(phase, text or type(exc).__name__, classify(text, errno=errno), self.redactions())


def _connect(target: _Target, limits: Limits) -> pymysql.connections.Connection[Any]:
    import pymysql

    # PyMySQL's read_timeout bounds every wait on the server, the handshake included, so a
    # server that accepts and never answers fails within the connect timeout; afterwards a
    # statement may take its own timeout (the server's limit) plus a margin.
    conn = pymysql.connect(
        host=target.host, port=target.port, user=target.user, password=target.password,
        database=target.database, unix_socket=target.unix_socket, charset="utf8mb4",
        connect_timeout=limits.connect, read_timeout=limits.connect, write_timeout=limits.connect,
        autocommit=True, program_name="ctxscan")
    if hasattr(conn, "_read_timeout") and hasattr(conn, "_write_timeout"):
        conn._read_timeout = conn._write_timeout = limits.statement + 1.0
    return conn


class _Probe:
    """One probe: session set-up, bulk information_schema queries, grants, freshness."""

    def __init__(self, source: SourceConfig, context: ProbeContext, conn: Any, limits: Limits,
                 target: _Target) -> None:
        self.source = source
        self.context = context
        self.conn = conn
        self.limits = limits
        self.target = target
        self.notes: list[str] = []
        self.partial = False

    def fetch(self, query: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        if self.context.cancelled.is_set():
            raise ProbeError("MySQL probe cancelled by the scan", retryable=True, reason="timeout")
        with self.conn.cursor() as cursor:
            cursor.execute(query, params)
            return list(cursor.fetchall())

    def fetch_named(self, query: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        with self.conn.cursor() as cursor:
            cursor.execute(query, params)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def _session(self, mariadb: bool) -> None:
        import pymysql

        statement_seconds = max(1.0, self.limits.statement)
        lock_seconds = max(1, int(self.limits.lock + 0.999))
        statements = ["SET SESSION TRANSACTION READ ONLY", "SET time_zone = '+00:00'",
                      f"SET SESSION lock_wait_timeout = {lock_seconds}",
                      f"SET SESSION innodb_lock_wait_timeout = {lock_seconds}"]
        if mariadb:
            statements.append(f"SET SESSION max_statement_time = {statement_seconds:.3f}")
        else:
            statements.append(f"SET SESSION max_execution_time = {int(statement_seconds * 1000)}")
        for statement in statements:
            try:
                self.fetch(statement)
            except pymysql.err.MySQLError as exc:
                # An old server or a proxy may lack one of these; the others still bound us.
                if statement.startswith("SET time_zone"):
                    raise
                self.notes.append(f"could not apply {statement.split('=')[0].strip()}: {exc.args[-1]}")

    def run(self) -> SourceSnapshot:
        version, current_user = self.fetch("SELECT VERSION(), CURRENT_USER()")[0]
        mariadb = "mariadb" in str(version).lower()
        self._session(mariadb)

        schemata = self.fetch_named("SELECT * FROM information_schema.SCHEMATA")
        all_databases = [row["SCHEMA_NAME"] for row in schemata]
        schema_comments = {row["SCHEMA_NAME"]: row.get("SCHEMA_COMMENT") for row in schemata}
        if self.target.database:
            if self.target.database not in all_databases:
                raise ProbeError(f"MySQL database {self.target.database!r} does not exist or is not visible",
                                 reason=REASON_NOT_FOUND)
            databases = [self.target.database]
        else:
            databases = [name for name in all_databases if name not in SYSTEM_DATABASES]

        tables: list[dict[str, Any]] = []
        columns: dict[tuple[str, str], list[Column]] = defaultdict(list)
        catalog_key: str | None = None
        if databases:
            now = self.fetch("SELECT NOW(6)")[0][0]  # before the table list: see catalog_key()
            tables = self.fetch_named(
                "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE, ENGINE, TABLE_ROWS, DATA_LENGTH, INDEX_LENGTH,"
                " UPDATE_TIME, CAST(CREATE_TIME AS CHAR) AS CREATE_TIME, CREATE_OPTIONS, TABLE_COMMENT"
                " FROM information_schema.TABLES"
                " WHERE TABLE_SCHEMA IN %s", (databases,))
            catalog_key = catalog_key_of(str(version), mariadb, databases, tables, now)

        wanted: list[tuple[dict[str, Any], str, str]] = []
        for row in tables:
            kind = self._kind(row)
            if kind is None:
                continue
            path = qualified_path(row["TABLE_SCHEMA"], row["TABLE_NAME"])
            if self.source.wants(path):
                wanted.append((row, path, kind))

        # Access first: the scanning account's own privileges decide which columns
        # information_schema shows it, so a grant changes the catalog key too.
        principals, memberships, grants, access_state = self._access(databases, wanted, mariadb, str(version))
        if catalog_key:
            import hashlib

            catalog_key = hashlib.sha256(f"{catalog_key}\x1e{access_state['access_key']}".encode()).hexdigest()
        reused = self._reuse_columns(catalog_key, wanted, columns) if databases else False
        if databases and not reused:
            self._read_columns(columns, "TABLE_SCHEMA IN %s", (databases,))

        freshness = {path: self._metadata_freshness(row, kind) for row, path, kind in wanted}
        # Each asset's column: its `assets:` entry's `column`, else the source's freshness.column.
        column_of = self.source.freshness_columns()
        by_column: dict[str, list[Any]] = {}
        for item in wanted:
            column = column_of(item[1])
            if column:
                by_column.setdefault(column, []).append(item)
        for column, items in sorted(by_column.items()):
            freshness.update(self._column_freshness(column, items, columns))

        assets = []
        key = self.source.owner_tag
        for row, path, kind in wanted:
            schema, name = row["TABLE_SCHEMA"], row["TABLE_NAME"]
            properties: dict[str, Any] = {}
            if row["ENGINE"]:
                properties["engine"] = row["ENGINE"]
            comment = row["TABLE_COMMENT"] if kind != "view" else None
            if comment:
                properties["comment"] = comment
            owner = None
            found = owner_from_comment(comment, key)
            provenance = f"comment:{key}"
            if not found:
                found = owner_from_comment(schema_comments.get(schema), key)
                provenance = f"schema comment:{key}"
            if found:
                owner = DiscoveredOwner(found, provenance)
            is_view = kind == "view"
            size = None if is_view or row["DATA_LENGTH"] is None else int(row["DATA_LENGTH"]) + int(
                row["INDEX_LENGTH"] or 0)
            rows = None if is_view or row["TABLE_ROWS"] is None else int(row["TABLE_ROWS"])
            assets.append(Asset(path=path, kind=kind, columns=tuple(columns.get((schema, name), ())),
                                container=schema, row_count=rows, size_bytes=size, freshness=freshness[path],
                                owner=owner, properties=properties))

        state: dict[str, Any] = dict(access_state)
        if catalog_key:
            state["catalog_key"] = catalog_key
        if reused:
            state["catalog_read"] = "reused"
        return SourceSnapshot(
            source_id=self.source.id, connector=self.source.connector, probed_at=self.context.now,
            assets=tuple(assets), principals=tuple(principals), memberships=tuple(memberships),
            grants=tuple(grants), partial=self.partial, notes=tuple(self.notes), reports_grants=True,
            state=state)

    def _access(self, databases: list[str], wanted: list[tuple[dict[str, Any], str, str]], mariadb: bool,
                version: str) -> tuple[list[Principal], list[Membership], list[Grant], dict[str, Any]]:
        """Principals, memberships and grants as reported (runs_as aliases added, bounded), and the
        state that carries them to the next scan: `access_key` names what they were read from.

        On MariaDB 10.8+, when the scanning account may read the grant tables, the key is their
        digest (WHOLE_GRANT_TABLES, GRANT_ROWS_DIGEST_SQL: computed by the server) with the
        assets, the runs_as names and max_grants; when it equals the previous snapshot's, that
        snapshot's access is this one's and the grant tables are not read. Otherwise the key
        is a digest of what was read."""
        import hashlib

        import pymysql

        max_grants = int(self.source.settings.get("max_grants") or DEFAULT_MAX_GRANTS)
        checksums: list[tuple[Any, ...]] | None = None
        if mariadb and databases:
            try:
                checksums = self.fetch("CHECKSUM TABLE " + ", ".join(f"mysql.{t}" for t in WHOLE_GRANT_TABLES))
                checksums += self.fetch(GRANT_ROWS_DIGEST_SQL, (databases, databases))
            except pymysql.err.MySQLError:
                checksums = None  # no SELECT on them: the grants are read from information_schema
            if checksums is not None and any(row[1] is None for row in checksums):
                checksums = None
        access_key = None
        if checksums is not None:
            described = repr((version, databases, sorted(path for _row, path, _kind in wanted),
                              sorted(self.context.principals), max_grants, sorted(checksums)))
            access_key = "checksum:" + hashlib.sha256(described.encode("utf-8", "surrogatepass")).hexdigest()
            previous = self.context.previous
            if previous is not None and previous.state.get("access_key") == access_key \
                    and isinstance(previous.state.get("access_notes"), list):
                self.notes.extend(previous.state["access_notes"])
                return (list(previous.principals), list(previous.memberships), list(previous.grants),
                        {"access_key": access_key, "access_notes": previous.state["access_notes"],
                         "access_read": "reused",
                         "unknown_principals": previous.state.get("unknown_principals", []),
                         "resolved_principals": previous.state.get("resolved_principals", {})})
        first_note = len(self.notes)
        access = _Access(self, databases, wanted, mariadb)
        principals, memberships, grants = access.read()
        resolved, unknown = self._resolve_runs_as(principals, access.sees_every_account)
        # An alias edge (`rev1_bot` -> `rev1_bot@%`) lets every path, finding and `why` answer
        # for the name the inventory uses, showing the account it stands for.
        memberships.extend(Membership(name, account, True) for name, account in sorted(resolved.items()))
        grants, left_out = bound_grants(grants, memberships, self.context, max_grants)
        if left_out:
            self.notes.append(left_out)
        if access_key is None or not access.sees_every_account:
            seen = repr((principals, memberships, grants)).encode("utf-8", "surrogatepass")
            access_key = "read:" + hashlib.sha256(seen).hexdigest()
        return principals, memberships, grants, {
            "access_key": access_key, "access_notes": self.notes[first_note:],
            "unknown_principals": unknown, "resolved_principals": resolved}

    def _read_columns(self, columns: dict[tuple[str, str], list[Column]], where: str,
                      params: Sequence[Any]) -> None:
        for schema, table, name, type_name, nullable, comment in self.fetch(
                "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_COMMENT"
                f" FROM information_schema.COLUMNS WHERE {where}"
                " ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION", params):
            columns[(schema, table)].append(Column(name, type_name, nullable == "YES", comment or None))

    def _reuse_columns(self, catalog_key: str | None, wanted: Sequence[tuple[dict[str, Any], str, str]],
                       columns: dict[tuple[str, str], list[Column]]) -> bool:
        """Fill `columns` from the previous snapshot when its catalog key is this one: the tables'
        columns as they were, the views' read again (a view has no CREATE_TIME, and its columns
        follow the tables it reads). False, with `columns` untouched, when a full read is needed."""
        previous = self.context.previous if catalog_key else None
        if previous is None or previous.state.get("catalog_key") != catalog_key:
            return False
        before = {asset.path: asset for asset in previous.assets}
        views: dict[str, list[str]] = defaultdict(list)
        found: dict[tuple[str, str], list[Column]] = {}
        for row, path, kind in wanted:
            if kind == "view":
                views[row["TABLE_SCHEMA"]].append(row["TABLE_NAME"])
                continue
            asset = before.get(path)
            if asset is None or asset.kind != kind:
                return False  # the previous scan left it out (another include/exclude): read it all
            found[(row["TABLE_SCHEMA"], row["TABLE_NAME"])] = list(asset.columns)
        columns.update(found)
        for schema, names in sorted(views.items()):
            for start in range(0, len(names), 500):
                self._read_columns(columns, "TABLE_SCHEMA = %s AND TABLE_NAME IN %s",
                                   (schema, names[start:start + 500]))
        return True

    def _resolve_runs_as(self, principals: Sequence[Principal],
                         complete: bool) -> tuple[dict[str, str], list[str]]:
        """The `runs_as` names that stand for an account under another name, and those that
        name nothing: a bare `user` is the account `user@host` when exactly one exists, and
        `'user'@'host'` (as SHOW GRANTS writes it) is `user@host`."""
        names = {p.name for p in principals}
        accounts: dict[str, list[str]] = defaultdict(list)
        for p in principals:
            if p.kind == "user":
                accounts[str(p.properties.get("user", ""))].append(p.name)
        resolved: dict[str, str] = {}
        unresolved: list[str] = []
        for wanted in sorted(self.context.principals):
            if wanted in names or wanted in PUBLIC_PRINCIPALS:
                continue
            if _GRANTEE.match(wanted):
                user, host = parse_grantee(wanted)
                if f"{user}@{host}" in names:
                    resolved[wanted] = f"{user}@{host}"
                    continue
            candidates = sorted(accounts.get(wanted, ())) if "@" not in wanted else []
            if len(candidates) == 1:
                resolved[wanted] = candidates[0]
                self.notes.append(f"runs_as principal {wanted!r} has no @host: it is read as the only "
                                  f"account of that user, {candidates[0]} (write it so to be explicit)")
            elif candidates:
                unresolved.append(wanted)
                self.notes.append(f"runs_as principal {wanted!r} has no @host and that user has "
                                  f"{len(candidates)} accounts ({', '.join(candidates)}): name one as user@host")
            else:
                unresolved.append(wanted)
        if not complete:
            # Only the scanning account's own privileges are visible: absence proves nothing.
            for wanted in unresolved:
                self.notes.append(f"runs_as principal {wanted!r} is not visible to the scanning account, "
                                  "which cannot read the mysql grant tables: whether it exists is unknown")
            return resolved, []
        for wanted in unresolved:
            if any(repr(wanted) in note for note in self.notes):
                continue
            same_user = sorted(accounts.get(wanted.rpartition("@")[0], ())) if "@" in wanted else []
            hint = (f" (that user's accounts: {', '.join(same_user)})" if same_user
                    else " (MySQL accounts are named user@host, e.g. support_bot@%)")
            self.notes.append(f"runs_as principal {wanted!r} does not exist in this source{hint}")
        return resolved, unresolved

    @staticmethod
    def _kind(row: Mapping[str, Any]) -> str | None:
        table_type = row["TABLE_TYPE"]
        if table_type in ("VIEW", "SYSTEM VIEW"):
            return "view"
        if table_type not in ("BASE TABLE", "SYSTEM VERSIONED"):
            return None  # sequences, temporary tables
        if str(row["ENGINE"] or "").upper() in ("FEDERATED", "FEDERATEDX", "CONNECT"):
            return "foreign_table"
        if "partitioned" in str(row["CREATE_OPTIONS"] or "").lower():
            return "partitioned_table"
        return "table"

    @staticmethod
    def _metadata_freshness(row: Mapping[str, Any], kind: str) -> FreshnessObservation:
        if kind == "view":
            return FreshnessObservation(method=METHOD_NONE, detail="a view has no UPDATE_TIME; set freshness.column")
        moment, _naive = as_utc(row["UPDATE_TIME"])  # the session time zone is UTC
        if moment is None:
            return FreshnessObservation(
                method=METHOD_NONE,
                detail="UPDATE_TIME is empty (no write since the server started, or not kept by this engine)")
        return FreshnessObservation(method=METHOD_METADATA, last_changed=moment, caveat=UPDATE_TIME_CAVEAT,
                                    detail="information_schema.TABLES.UPDATE_TIME")

    def _column_freshness(self, column: str, wanted: list[tuple[dict[str, Any], str, str]],
                          columns: Mapping[tuple[str, str], list[Column]]) -> dict[str, FreshnessObservation]:
        import pymysql

        out: dict[str, FreshnessObservation] = {}
        eligible: list[tuple[int, dict[str, Any], str]] = []
        lacking: list[str] = []
        for row, path, _kind in wanted:
            cols = columns.get((row["TABLE_SCHEMA"], row["TABLE_NAME"]), ())
            found = next((c for c in cols if c.name == column), None)
            if found is not None and _is_timestamp(found.type):
                eligible.append((len(eligible), row, path))
            else:
                lacking.append(path)
        if lacking:
            shown = ", ".join(lacking[:10]) + (f" and {len(lacking) - 10} more" if len(lacking) > 10 else "")
            self.notes.append(f"freshness.column {column!r} is missing or not a timestamp in {len(lacking)} "
                              f"assets ({shown}); their freshness comes from UPDATE_TIME")
        if not eligible:
            return out
        quoted_column = _quote(column)

        def run(batch: list[tuple[int, dict[str, Any], str]]) -> dict[int, Any]:
            parts = [f"SELECT {index}, MAX({quoted_column}) FROM {_quote(row['TABLE_SCHEMA'])}."
                     f"{_quote(row['TABLE_NAME'])}" for index, row, _path in batch]
            return {int(index): value for index, value in self.fetch(" UNION ALL ".join(parts))}

        def per_table(exc: Exception) -> str | None:
            if isinstance(exc, pymysql.err.MySQLError) and exc.args and exc.args[0] in PER_TABLE_ERRNOS:
                return PER_TABLE_ERRNOS[exc.args[0]]
            return None

        results, failures, stopped_at = measure_column(
            eligible, run, per_table, key=lambda item: item[0],
            batch_size=int(self.source.settings.get("batch_size") or 200),
            out_of_time=lambda: self.limits.remaining() <= 0 or self.context.cancelled.is_set())
        if stopped_at is not None:
            self.partial = True
            self.notes.append(f"max({column}) stopped when the time budget ran out: {stopped_at} of "
                              f"{len(eligible)} assets measured; the rest use UPDATE_TIME")
        for index, _row, path in eligible:
            observation = measured_observation(column, index, results, failures)
            if observation is not None:
                out[path] = observation
        if failures:
            paths = sorted(path for index, _row, path in eligible if index in failures)
            self.notes.append(f"max({column}) failed for {len(paths)} assets: " + ", ".join(paths[:10]))
        return out


class _Access:
    """Accounts, roles and grants, from the grant tables or, failing that, information_schema."""

    def __init__(self, probe: _Probe, databases: list[str], wanted: list[tuple[dict[str, Any], str, str]],
                 mariadb: bool = True):
        self.probe = probe
        self.mariadb = mariadb
        self.roles_seen: set[tuple[str, str]] = set()
        self.databases = databases
        # (database, table) -> asset path, for the assets this probe reports.
        self.paths = {(row["TABLE_SCHEMA"], row["TABLE_NAME"]): path for row, path, _kind in wanted}
        self.accounts: dict[tuple[str, str], str] = {}
        self.grants: list[Grant] = []
        # False when only the scanning account's own privileges could be read.
        self.sees_every_account = True

    def name(self, user: str, host: str) -> str:
        """The principal name of an account or role."""
        known = self.accounts.get((user, host))
        if known is not None:
            return known
        return user if host == "" else f"{user}@{host}"

    def read(self) -> tuple[list[Principal], list[Membership], list[Grant]]:
        import pymysql

        try:
            return self._from_grant_tables()
        except pymysql.err.MySQLError as exc:
            if not exc.args or exc.args[0] not in (1142, 1143, 1044, 1146, 1227):
                raise
        self.grants = []
        self.accounts = {}
        self.sees_every_account = False
        self.probe.notes.append(
            "the scanning account cannot read the mysql grant tables: only its own privileges are "
            "reported (grant SELECT ON mysql.* to see every account's)")
        return self._from_information_schema()

    # -- grant tables --------------------------------------------------------------------

    def _priv_columns(self, table: str) -> list[str]:
        rows = self.probe.fetch(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'mysql'"
            " AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION", (table,))
        return [r[0] for r in rows if str(r[0]).endswith("_priv")]

    def _from_grant_tables(self) -> tuple[list[Principal], list[Membership], list[Grant]]:
        fetch = self.probe.fetch_named
        user_columns = self._priv_columns("user")
        extra = {r[0] for r in self.probe.fetch(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'mysql'"
            " AND TABLE_NAME = 'user' AND COLUMN_NAME IN ('is_role', 'default_role', 'account_locked')")}
        selected = ["User", "Host", *sorted(extra), *user_columns]
        # Never select authentication_string: a password hash has no business in a scan.
        users = fetch("SELECT " + ", ".join(_quote(c) for c in selected) + " FROM mysql.user")
        globals_of: dict[tuple[str, str], list[str]] = {}
        rows_of: dict[tuple[str, str], dict[str, Any]] = {}
        roles: set[tuple[str, str]] = set()
        for row in users:
            user, host = row["User"], row["Host"]
            is_role = str(row.get("is_role", "N")).upper() == "Y"
            self.accounts[(user, host)] = user if (is_role and host == "") else f"{user}@{host}"
            if is_role:
                roles.add((user, host))
            rows_of[(user, host)] = row
            globals_of[(user, host)] = [_privilege_from_column(c) for c in user_columns
                                        if str(row.get(c, "N")).upper() == "Y"]

        db_columns = self._priv_columns("db")
        database_rows = [
            DatabaseRow(row["User"], row["Host"], row["Db"],
                        tuple(_privilege_from_column(c) for c in db_columns if str(row.get(c, "N")).upper() == "Y"))
            for row in fetch("SELECT User, Host, Db, " + ", ".join(_quote(c) for c in db_columns) + " FROM mysql.db")]
        table_rows: dict[tuple[str, str, str, str], TableRow] = {}
        for row in fetch("SELECT User, Host, Db, Table_name, Table_priv FROM mysql.tables_priv"):
            key = (row["User"], row["Host"], row["Db"], row["Table_name"])
            table_rows[key] = TableRow(*key, privileges=tuple(_split_set(row["Table_priv"])))
        for row in fetch("SELECT User, Host, Db, Table_name, Column_name, Column_priv FROM mysql.columns_priv"):
            key = (row["User"], row["Host"], row["Db"], row["Table_name"])
            table_row = table_rows.setdefault(key, TableRow(*key))
            for privilege in _split_set(row["Column_priv"]):
                table_row.columns.setdefault(privilege, []).append(row["Column_name"])
        role_grants, defaults = self._role_grants(rows_of, roles)
        tables = GrantTables(database_rows, table_rows.values(), role_grants, roles)

        principals: list[Principal] = []
        memberships: list[Membership] = []
        for (user, host), row in rows_of.items():
            name = self.name(user, host)
            if (user, host) in roles or name == "PUBLIC":
                # A role holds its own privileges merged with those of the roles granted to it
                # (the server merges them), so role-to-role grants are no edges of their own.
                closure = tables.role_closure((user, host))
                global_privileges = sorted({p for member in closure for p in globals_of.get(member, ())})
                global_from = [member for member in closure if globals_of.get(member)]
                self._role_object_grants(name, tables, closure)
                properties: dict[str, Any] = {"user": user, "host": host}
                if len(closure) > 1:
                    properties["granted_roles"] = [self.name(*member) for member in closure[1:]]
            else:
                settable = tables.settable_roles(user, host)
                active = [(role, grantee) for role, grantee in settable if role in defaults.get((user, host), ())]
                # While a role is active, MariaDB takes the global privileges of the account the
                # role is granted to (which may be user@'%' for a session of user@127.0.0.1).
                source = active[0][1] if active and self.mariadb else (user, host)
                global_privileges = globals_of.get(source, [])
                global_from = [source]
                self._account_object_grants(name, user, host, tables)
                seen: set[tuple[str, str]] = set()
                for role, grantee in settable:
                    if role in seen:
                        continue
                    seen.add(role)
                    is_default = any(role == a[0] for a in active)
                    taken = sorted(set(globals_of.get(grantee, ())) - set(global_privileges))
                    if is_default or grantee == (user, host) or not taken or not self.mariadb:
                        memberships.append(Membership(name, self.name(*role), is_default))
                        continue
                    # SET ROLE to a role granted to another account of the same user (u@'%' for a
                    # session of u@127.0.0.1) takes that account's global privileges: a step of its own.
                    step = f"{self.name(*role)} (granted to {self.name(*grantee)})"
                    principals.append(Principal(step, "role", properties={"role": self.name(*role),
                                                                          "granted_to": self.name(*grantee)}))
                    memberships.extend((Membership(name, step, False), Membership(step, self.name(*role), True)))
                    for privilege in taken:
                        self._add(step, privilege, "*", SCOPE_SOURCE, _via(privilege, "*.*") + self._to(
                            grantee, (user, host)) + ", whose global privileges SET ROLE takes")
                properties = {"user": user, "host": host, "any_host": "%" in host or "_" in host,
                              "anonymous": user == ""}
                if user == "":
                    self.probe.notes.append(
                        f"anonymous account ''@'{host}' exists: a connection from {host} that matches no "
                        "named account gets its privileges")
                if source != (user, host) and global_privileges != globals_of.get((user, host), []):
                    properties["global_privileges_from"] = self.name(*source)
            for privilege in global_privileges:
                holder = next((m for m in global_from if privilege in globals_of.get(m, ())), (user, host))
                self._add(name, privilege, "*", SCOPE_SOURCE,
                          _via(privilege, "*.*") + self._to(holder, (user, host)))
            if name == "PUBLIC":
                continue  # MariaDB 10.11's PUBLIC role: everyone, reported as public grants
            all_global = bool(user_columns) and len(global_privileges) == len(user_columns)
            attributes = tuple(f"global_{p.lower().replace(' ', '_')}" for p in global_privileges
                               if p in PRIVILEGED_GLOBAL)
            if all_global:
                attributes = ("global_all", *attributes)
            if row.get("default_role"):
                properties["default_role"] = row["default_role"]
            if str(row.get("account_locked", "N")).upper() == "Y":
                properties["locked"] = True
            principals.append(Principal(name=name, kind="role" if (user, host) in roles and host == "" else "user",
                                        attributes=attributes, privileged=all_global or bool(
                                            set(global_privileges) & PRIVILEGED_GLOBAL),
                                        all_access=all_global,
                                        properties=properties))
        self._dynamic_privileges()
        return principals, memberships, self.grants

    def _to(self, holder: tuple[str, str], principal: tuple[str, str]) -> str:
        """` TO 'u'@'%'` when a grant row of another account or role applies to the principal."""
        if holder == principal:
            return ""
        user, host = holder
        return f" TO {_quote(user)}" if (user, host) in self.roles_seen else f" TO '{user}'@'{host}'"

    def _account_object_grants(self, name: str, user: str, host: str, tables: GrantTables) -> None:
        for database in self.databases:
            found = tables.database_privileges(user, host, database)
            if found is not None:
                to = self._to(found.grantees[0], (user, host))
                for privilege in found.privileges:
                    self._add(name, privilege, database, SCOPE_CONTAINER,
                              _via(privilege, f"{_quote(found.pattern)}.*") + to)
        for database, table in sorted(tables.tables_of.get(user, ())):
            path = self.paths.get((database, table))
            if path is None:
                continue
            found = tables.table_privileges(user, host, database, table)
            if found is not None:
                self._table_grants(name, path, database, table, found, self._to(found.grantees[0], (user, host)))

    def _role_object_grants(self, name: str, tables: GrantTables, closure: list[tuple[str, str]]) -> None:
        for database in self.databases:
            found = tables.role_database_privileges(closure, database)
            if found is not None:
                to = self._to(found.grantees[0], closure[0]) if len(set(found.grantees)) == 1 else \
                    " TO " + ", ".join(_quote(u) for u, _h in found.grantees)
                for privilege in found.privileges:
                    self._add(name, privilege, database, SCOPE_CONTAINER,
                              _via(privilege, f"{_quote(found.pattern)}.*") + to)
        keys = sorted({key for member in closure for key in tables.tables_of.get(member[0], ())})
        for database, table in keys:
            path = self.paths.get((database, table))
            if path is None:
                continue
            for holder, found in tables.role_table_privileges(closure, database, table):
                self._table_grants(name, path, database, table, found, self._to(holder, closure[0]))

    def _table_grants(self, name: str, path: str, database: str, table: str, found: Found, to: str) -> None:
        for privilege in found.privileges:
            self._add(name, privilege, path, SCOPE_ASSET,
                      _via(privilege, f"{_quote(database)}.{_quote(table)}") + to)
        for privilege, columns in sorted(found.columns.items()):
            self._add(name, privilege, path, SCOPE_COLUMN, _via(privilege, path, columns) + to, columns=columns)

    def _role_grants(self, rows_of: Mapping[tuple[str, str], Mapping[str, Any]], roles: set[tuple[str, str]]
                     ) -> tuple[list[tuple[str, str, str, str]], dict[tuple[str, str], set[tuple[str, str]]]]:
        """(grantee user, grantee host, role user, role host) for every role grant, and each
        account's default roles (those active at login; the others need SET ROLE)."""
        import pymysql

        self.roles_seen = roles
        defaults: dict[tuple[str, str], set[tuple[str, str]]] = {}
        try:
            rows = self.probe.fetch("SELECT User, Host, Role FROM mysql.roles_mapping")  # MariaDB
            for identity, row in rows_of.items():
                if row.get("default_role"):
                    defaults[identity] = {(str(row["default_role"]), "")}
            return [(user, host, role, "") for user, host, role in rows], defaults
        except pymysql.err.ProgrammingError as exc:
            if exc.args[0] != 1146:
                raise
        try:
            edges = self.probe.fetch("SELECT FROM_USER, FROM_HOST, TO_USER, TO_HOST FROM mysql.role_edges")  # MySQL 8
        except pymysql.err.ProgrammingError as exc:
            if exc.args[0] != 1146:
                raise
            return [], defaults
        try:
            for user, host, role_user, role_host in self.probe.fetch(
                    "SELECT USER, HOST, DEFAULT_ROLE_USER, DEFAULT_ROLE_HOST FROM mysql.default_roles"):
                defaults.setdefault((user, host), set()).add((role_user, role_host))
        except pymysql.err.ProgrammingError as exc:
            if exc.args[0] != 1146:
                raise
        roles.update((from_user, from_host) for from_user, from_host, _u, _h in edges)
        return [(to_user, to_host, from_user, from_host) for from_user, from_host, to_user, to_host in edges], defaults

    def _dynamic_privileges(self) -> None:
        import pymysql

        try:
            rows = self.probe.fetch("SELECT USER, HOST, PRIV, WITH_GRANT_OPTION FROM mysql.global_grants")
        except pymysql.err.ProgrammingError as exc:
            if exc.args[0] != 1146:
                raise
            return  # MariaDB has no dynamic privileges
        for user, host, privilege, grantable in rows:
            self._add(self.name(user, host), str(privilege), "*", SCOPE_SOURCE, _via(privilege, "*.*"),
                      grantable=str(grantable).upper() == "Y")

    # -- information_schema (own privileges only) -----------------------------------------

    def _from_information_schema(self) -> tuple[list[Principal], list[Membership], list[Grant]]:
        import pymysql

        fetch = self.probe.fetch
        seen: dict[str, tuple[str, str]] = {}

        def name_of(grantee: str) -> str:
            user, host = parse_grantee(grantee)
            name = self.name(user, host)
            seen[name] = (user, host)
            return name

        globals_by: dict[str, list[str]] = defaultdict(list)
        for grantee, privilege, grantable in fetch(
                "SELECT GRANTEE, PRIVILEGE_TYPE, IS_GRANTABLE FROM information_schema.USER_PRIVILEGES"):
            if privilege == "USAGE":
                continue
            name = name_of(grantee)
            globals_by[name].append(privilege)
            self._add(name, privilege, "*", SCOPE_SOURCE, _via(privilege, "*.*"), grantable=grantable == "YES")
        # Database rows: per grantee, the first (most specific) pattern that matches, as the server does.
        patterns: dict[str, dict[str, list[tuple[str, bool]]]] = defaultdict(lambda: defaultdict(list))
        for grantee, pattern, privilege, grantable in fetch(
                "SELECT GRANTEE, TABLE_SCHEMA, PRIVILEGE_TYPE, IS_GRANTABLE FROM information_schema.SCHEMA_PRIVILEGES"):
            patterns[name_of(grantee)][pattern].append((privilege, grantable == "YES"))
        for name, rows in sorted(patterns.items()):
            for database in self.databases:
                matching = [p for p in rows if database_matches(p, database)]
                if matching:
                    pattern = min(matching, key=lambda p: magic(p, MAX_DATABASE_LENGTH))
                    for privilege, grantable in rows[pattern]:
                        self._add(name, privilege, database, SCOPE_CONTAINER,
                                  _via(privilege, f"{_quote(pattern)}.*"), grantable=grantable)
        for grantee, database, table, privilege, grantable in fetch(
                "SELECT GRANTEE, TABLE_SCHEMA, TABLE_NAME, PRIVILEGE_TYPE, IS_GRANTABLE"
                " FROM information_schema.TABLE_PRIVILEGES"):
            path = self.paths.get((database, table))
            if path is not None:
                self._add(name_of(grantee), privilege, path, SCOPE_ASSET,
                          _via(privilege, f"{_quote(database)}.{_quote(table)}"), grantable=grantable == "YES")
        by_columns: dict[tuple[str, str, str], list[str]] = defaultdict(list)
        for grantee, database, table, column, privilege in fetch(
                "SELECT GRANTEE, TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, PRIVILEGE_TYPE"
                " FROM information_schema.COLUMN_PRIVILEGES"):
            path = self.paths.get((database, table))
            if path is not None:
                by_columns[(name_of(grantee), privilege, path)].append(column)
        for (name, privilege, path), names in sorted(by_columns.items()):
            names.sort()
            self._add(name, privilege, path, SCOPE_COLUMN, _via(privilege, path, names),
                      columns=tuple(names))
        memberships: list[Membership] = []
        try:
            # A role that is not the account's default is usable only after SET ROLE.
            for grantee, role, is_default in fetch(
                    "SELECT GRANTEE, ROLE_NAME, IS_DEFAULT FROM information_schema.APPLICABLE_ROLES"):
                user, _, host = str(grantee).rpartition("@") if "@" in str(grantee) else (grantee, "", "")
                memberships.append(Membership(self.name(user, host), role,
                                              host == "" or str(is_default).upper() == "YES"))
        except pymysql.err.MySQLError:
            pass  # MySQL 8 shapes APPLICABLE_ROLES differently; roles stay unknown
        principals = []
        for name, (user, host) in sorted(seen.items()):
            if name == "PUBLIC":
                continue
            privileges = globals_by.get(name, [])
            attributes = tuple(f"global_{p.lower().replace(' ', '_')}" for p in privileges if p in PRIVILEGED_GLOBAL)
            principals.append(Principal(name=name, kind="role" if host == "" else "user", attributes=attributes,
                                        privileged=bool(attributes), all_access=False,
                                        properties={"user": user, "host": host}))
        return principals, memberships, self.grants

    # -- shared --------------------------------------------------------------------------

    def _add(self, name: str, privilege: str, target: str, scope: str, via: str,
             columns: tuple[str, ...] = (), grantable: bool = False) -> None:
        public = name == "PUBLIC"
        self.grants.append(Grant(name, privilege, target, scope, PRIVILEGE_ACCESS.get(privilege, ACCESS_OTHER),
                                 columns, public, via))
        if privilege in ALSO_ALTER:
            self.grants.append(Grant(name, privilege, target, scope, ACCESS_ALTER, columns, public, via))
        if grantable:
            self.grants.append(Grant(name, f"{privilege} WITH GRANT OPTION", target, scope, ACCESS_OTHER,
                                     columns, public, via + " WITH GRANT OPTION"))
