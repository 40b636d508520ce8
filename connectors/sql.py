"""Any database SQLAlchemy can reach: schema by multi-table reflection, freshness by column.

For systems without a dedicated connector (SQL Server, Oracle, DuckDB, SQLite, ...). The
schema comes from SQLAlchemy's bulk reflection (`get_multi_columns` and friends, one call
per schema and object kind); freshness only from `max(freshness.column)`. It reports no
grants: access to such a source is unknown, never "nobody", and the snapshot says so.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from connectors._sqlcommon import (
    REASON_ERROR,
    REASON_NOT_FOUND,
    Limits,
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
from scanner.model import METHOD_NONE, Asset, Column, DiscoveredOwner, FreshnessObservation, SourceSnapshot
from scanner.plugins import Connector, ProbeContext, Setting, SourceConfig

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Connection, Engine

NO_GRANTS_NOTE = ("the sql connector reports no grants: who can read or write this source is unknown "
                  "(not 'nobody'); use a dedicated connector (postgres, mysql) for access paths")
SYSTEM_SCHEMAS = frozenset({"information_schema", "pg_catalog", "pg_toast", "mysql", "performance_schema",
                            "sys", "INFORMATION_SCHEMA", "temp"})


class SqlConnector(Connector):
    """Any SQLAlchemy URL: tables, views and columns by reflection; column freshness; no grants."""

    kind: ClassVar[str] = "sql"
    description: ClassVar[str] = (
        "any SQLAlchemy URL (SQLite, SQL Server, DuckDB, ...): tables, views and columns by reflection, "
        "freshness from freshness.column only; reports no grants")
    settings: ClassVar[tuple[Setting, ...]] = (
        Setting("url", str, required=True,
                help="a SQLAlchemy URL, e.g. sqlite:///data/app.db or mssql+pyodbc://...; the password is redacted"),
        Setting("schemas", list, help="schemas to reflect (default: every schema but the system ones)"),
        Setting("connect_timeout", float,
                help="seconds to wait for the connection, where the driver supports it (default 2-10 s)"),
        Setting("statement_timeout", float,
                help="seconds one statement may run, where the driver supports it (default: half the probe timeout)"),
        Setting("lock_timeout", float, help="seconds to wait for a lock (SQLite busy timeout; default 1)"),
        Setting("batch_size", int, help="tables per max() statement for freshness.column (default 200)"),
    )

    def probe(self, context: ProbeContext) -> SourceSnapshot:
        """Reflect the database read-only and return its tables, views and columns."""
        limits = probe_limits(self.source, context)
        url = source_url(self.source)
        phase = "cannot connect"
        try:
            engine = _engine(url, limits)
            try:
                with engine.connect() as conn:
                    phase = "probe failed"
                    _session(conn, limits)
                    return _Probe(self.source, context, conn, limits).run()
            finally:
                engine.dispose()
        except ProbeError:
            raise
        except Exception as exc:
            raise self.translate_error(exc, phase) from None

    def translate_error(self, exc: BaseException, phase: str) -> ProbeError:
        """The one place SQLAlchemy's and its drivers' exceptions become ProbeErrors."""
        from sqlalchemy import exc as sa_exc

        secrets = self.redactions()
        if isinstance(exc, sa_exc.NoSuchModuleError | ModuleNotFoundError | ImportError):
            return probe_error(f"{phase}: the database driver is not installed", str(exc), REASON_ERROR, secrets)
        if isinstance(exc, sa_exc.ArgumentError):
            return probe_error(f"{phase}: invalid url", str(exc), REASON_ERROR, secrets)
        original: BaseException = exc
        if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
            original = exc.orig
        text = str(original) or type(original).__name__
        sqlstate = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
        args: tuple[Any, ...] = tuple(getattr(original, "args", ()))
        errno = args[0] if len(args) >= 2 and isinstance(args[0], int) else None
        if errno is not None:
            text = str(args[1])
        if type(original).__name__ == "ConnectionTimeout":
            return probe_error(phase, text, "timeout", secrets)
        return probe_error(phase, text, classify(text, sqlstate=sqlstate, errno=errno), secrets)


def _resolve_url(raw: str) -> URL:
    from sqlalchemy.engine import make_url

    url = make_url(raw)
    # A bare scheme means SQLAlchemy's default driver; use the one ctxscan ships when that
    # default is not installed.
    if url.drivername == "postgresql" and find_spec("psycopg2") is None and find_spec("psycopg"):
        url = url.set(drivername="postgresql+psycopg")
    elif url.drivername in ("mysql", "mariadb") and find_spec("MySQLdb") is None and find_spec("pymysql"):
        url = url.set(drivername=f"{url.drivername}+pymysql")
    return url


def _engine(raw: str, limits: Limits) -> Engine:
    import sqlite3

    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    url = _resolve_url(raw)
    backend, driver = url.get_backend_name(), url.get_driver_name()
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        database = url.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            if not os.path.isfile(database):
                raise ProbeError(f"SQLite file {database} does not exist", reason=REASON_NOT_FOUND)
            # Opened read-only through a URI: a probe can neither write nor create the file.
            uri = f"file:{quote(os.path.abspath(database))}?mode=ro"

            def connect() -> sqlite3.Connection:
                return sqlite3.connect(uri, uri=True, timeout=limits.lock, check_same_thread=False)

            return create_engine("sqlite://", creator=connect, poolclass=NullPool)
        return create_engine(url, poolclass=NullPool)
    if backend == "postgresql" and driver in ("psycopg", "psycopg2"):
        connect_args = {
            "connect_timeout": max(2, int(limits.connect + 0.999)), "application_name": "ctxscan",
            "options": f"-c statement_timeout={int(limits.statement * 1000)} -c lock_timeout={int(limits.lock * 1000)}"
                       " -c default_transaction_read_only=on -c TimeZone=UTC"}
    elif backend in ("mysql", "mariadb") and driver in ("pymysql", "mysqldb"):
        connect_args = {"connect_timeout": max(1, int(limits.connect + 0.999)),
                        "read_timeout": int(limits.statement + 2), "write_timeout": int(limits.statement + 2)}
    return create_engine(url, poolclass=NullPool, connect_args=connect_args)


def _session(conn: Connection, limits: Limits) -> None:
    """Make the session read-only where the dialect has a way to say so."""
    from sqlalchemy import text

    backend = conn.engine.url.get_backend_name()
    statements: list[str] = []
    if backend == "sqlite":
        statements = ["PRAGMA query_only = ON"]
    elif backend in ("mysql", "mariadb"):
        statements = ["SET SESSION TRANSACTION READ ONLY"]
    for statement in statements:
        conn.execute(text(statement))
    conn.commit()


class _Probe:
    def __init__(self, source: SourceConfig, context: ProbeContext, conn: Connection, limits: Limits) -> None:
        self.source = source
        self.context = context
        self.conn = conn
        self.limits = limits
        self.notes: list[str] = [NO_GRANTS_NOTE]
        self.partial = False

    def run(self) -> SourceSnapshot:
        from sqlalchemy import inspect
        from sqlalchemy.engine.reflection import ObjectKind

        inspector = inspect(self.conn)
        configured = self.source.settings.get("schemas")
        if configured:
            schemas = [str(s) for s in configured]
        else:
            schemas = [s for s in inspector.get_schema_names() if s not in SYSTEM_SCHEMAS]
        found: list[tuple[str, str, str, list[Column], str | None]] = []
        kinds = (("table", ObjectKind.TABLE), ("view", ObjectKind.VIEW),
                 ("materialized_view", ObjectKind.MATERIALIZED_VIEW))
        for schema in schemas:
            if self.context.cancelled.is_set():
                raise ProbeError("probe cancelled by the scan", retryable=True, reason="timeout")
            comments: Mapping[Any, Any] = {}
            try:
                comments = inspector.get_multi_table_comment(schema=schema, kind=ObjectKind.ANY)
            except NotImplementedError:
                pass
            seen: set[str] = set()
            for kind_name, kind in kinds:
                try:
                    reflected = inspector.get_multi_columns(schema=schema, kind=kind)
                except NotImplementedError:
                    continue
                for (_schema, name), columns in reflected.items():
                    if name in seen:
                        continue
                    seen.add(name)
                    comment = (comments.get((_schema, name)) or {}).get("text")
                    found.append((schema, name, kind_name, [_column(c) for c in columns], comment))

        wanted = [(schema, name, kind_name, columns, comment, qualified_path(schema, name))
                  for schema, name, kind_name, columns, comment in found]
        wanted = [item for item in wanted if self.source.wants(item[5])]
        freshness: dict[str, FreshnessObservation] = {}
        column = self.source.freshness.column
        if column:
            freshness = self._column_freshness(column, [(s, n, p) for s, n, _k, cols, _c, p in wanted
                                                         if any(c.name == column for c in cols)])
            lacking = [p for _s, _n, _k, cols, _c, p in wanted if not any(c.name == column for c in cols)]
            if lacking:
                self.notes.append(f"freshness.column {column!r} is missing in {len(lacking)} assets: "
                                  + ", ".join(lacking[:10]))
        default = FreshnessObservation(
            method=METHOD_NONE, detail="the sql connector measures freshness only from freshness.column")
        assets = []
        key = self.source.owner_tag
        for schema, _name, asset_kind, asset_columns, comment, path in wanted:
            owner_name = owner_from_comment(comment, key)
            assets.append(Asset(
                path=path, kind=asset_kind, columns=tuple(asset_columns), container=schema,
                freshness=freshness.get(path, default),
                owner=DiscoveredOwner(owner_name, f"comment:{key}") if owner_name else None,
                properties={"comment": comment} if comment else {}))
        return SourceSnapshot(
            source_id=self.source.id, connector=self.source.connector, probed_at=self.context.now,
            assets=tuple(assets), partial=self.partial, notes=tuple(self.notes), reports_grants=False)

    def _column_freshness(self, column: str,
                          tables: list[tuple[str, str, str]]) -> dict[str, FreshnessObservation]:
        from sqlalchemy import column as column_clause
        from sqlalchemy import exc as sa_exc
        from sqlalchemy import func, literal, select, table

        out: dict[str, FreshnessObservation] = {}
        indexed = list(enumerate(tables))

        def run(batch: list[tuple[int, tuple[str, str, str]]]) -> dict[int, Any]:
            selects: list[Any] = [select(literal(index).label("i"), func.max(column_clause(column)).label("v"))
                       .select_from(table(name, schema=schema)) for index, (schema, name, _path) in batch]
            statement = selects[0] if len(selects) == 1 else selects[0].union_all(*selects[1:])
            try:
                rows = self.conn.execute(statement).fetchall()
            except BaseException:
                self.conn.rollback()  # a failed statement must not poison the next batch
                raise
            self.conn.rollback()  # end the read transaction: release locks between batches
            return {int(i): value for i, value in rows}

        def per_table(exc: Exception) -> str | None:
            if not isinstance(exc, sa_exc.DBAPIError) or exc.connection_invalidated:
                return None
            original = exc.orig if exc.orig is not None else exc
            return " ".join(str(original).split())[:200]

        results, failures, stopped_at = measure_column(
            indexed, run, per_table, key=lambda item: item[0],
            batch_size=int(self.source.settings.get("batch_size") or 200),
            out_of_time=lambda: self.limits.remaining() <= 0 or self.context.cancelled.is_set())
        if stopped_at is not None:
            self.partial = True
            self.notes.append(f"max({column}) stopped when the time budget ran out: {stopped_at} of "
                              f"{len(tables)} assets measured")
        for index, (_schema, _name, path) in indexed:
            observation = measured_observation(column, index, results, failures)
            if observation is not None:
                out[path] = observation
        return out


def _column(reflected: Mapping[str, Any]) -> Column:
    try:
        type_name = str(reflected["type"])
    except Exception:  # some dialect types cannot render without a dialect
        type_name = type(reflected["type"]).__name__
    return Column(str(reflected["name"]), type_name, bool(reflected.get("nullable", True)),
                  reflected.get("comment"))
