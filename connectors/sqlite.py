"""`sqlite`: a SQLite file through SQLAlchemy, opened read-only.

Tables and views are `main.<name>` assets with columns and row counts. Freshness comes from
`freshness.column` when declared (method `column`), otherwise from the newest mtime of the
file and its `-wal` file (in WAL mode commits land in the log first) for every table (method
`metadata`, with the caveat that any write to the file moves it; the detail says which file).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from scanner.errors import ProbeError
from scanner.model import (
    METHOD_COLUMN,
    METHOD_METADATA,
    Asset,
    Column,
    FreshnessObservation,
    SourceSnapshot,
)
from scanner.plugins import Connector, ProbeContext, Setting

MTIME_CAVEAT = "the file's mtime: any write to any table moves it"


def quote_identifier(name: str) -> str:
    """A SQLite identifier, quoted so any name (quotes, spaces, keywords) is safe."""
    return '"' + name.replace('"', '""') + '"'


def parse_timestamp(value: Any) -> datetime | None:
    """A column value as an aware UTC datetime: datetimes, ISO text, or epoch seconds."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 1e11 else value
        return datetime.fromtimestamp(seconds, UTC)
    text = str(value).strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class SqliteConnector(Connector):
    """A SQLite database file."""

    kind = "sqlite"
    description = "a SQLite file, opened read-only: tables and views as main.<name>"
    owner_tags = False  # nothing in the system carries an owner tag
    settings = (Setting("path", str, required=True, help="the SQLite file"),)

    def _path(self) -> Path:
        path = Path(str(self.source.settings["path"])).expanduser()
        if not path.is_absolute() and self.source.file:
            path = Path(self.source.file).resolve().parent / path
        return path

    def probe(self, context: ProbeContext) -> SourceSnapshot:
        """Read the schema, row counts and freshness in one read-only connection."""
        import sqlalchemy as sa

        path = self._path()
        if not path.is_file():
            raise ProbeError(f"SQLite file {path} does not exist", reason="not_found")
        mtime, mtime_detail = _last_write(path)
        # mode=ro: never writes, never creates; the file is opened as a URI.
        uri = f"file:{quote(str(path.resolve()))}?mode=ro"
        engine = sa.create_engine("sqlite+pysqlite:///" + uri + "&uri=true",
                                  connect_args={"uri": True, "timeout": min(context.timeout, 10)})
        column_name = self.source.freshness.column
        assets: list[Asset] = []
        notes: list[str] = []
        try:
            with engine.connect() as conn:
                rows = conn.exec_driver_sql(
                    "SELECT name, type FROM sqlite_master WHERE type IN ('table','view') "
                    "AND name NOT LIKE 'sqlite_%' ORDER BY name").all()
                for name, kind in rows:
                    if context.cancelled.is_set():
                        break
                    path_name = f"main.{name}"
                    if not self.source.wants(path_name):
                        continue
                    quoted = quote_identifier(name)
                    info = conn.exec_driver_sql(f"PRAGMA main.table_info({quoted})").all()
                    columns = tuple(Column(r[1], r[2] or "", not r[3] and not r[5]) for r in info)
                    count = None
                    if kind == "table":
                        count = int(conn.exec_driver_sql(f"SELECT count(*) FROM {quoted}").scalar() or 0)
                    freshness = FreshnessObservation(method=METHOD_METADATA, last_changed=mtime,
                                                     caveat=MTIME_CAVEAT, detail=mtime_detail)
                    if column_name and any(c.name == column_name for c in columns):
                        # Text timestamps in mixed formats compare wrongly as strings:
                        # julianday() normalises them; numbers are epoch seconds or ms.
                        col = quote_identifier(column_name)
                        numeric, julian = conn.exec_driver_sql(
                            f"SELECT max(CASE WHEN typeof({col}) IN ('integer','real') THEN {col} END), "
                            f"max(julianday(CASE WHEN typeof({col}) = 'text' THEN {col} END)) "
                            f"FROM {quoted}").one()
                        candidates = [parse_timestamp(numeric),
                                      parse_timestamp((julian - 2440587.5) * 86400) if julian else None]
                        parsed = max((c for c in candidates if c), default=None)
                        freshness = (FreshnessObservation(method=METHOD_COLUMN, last_changed=parsed,
                                                          detail=f"max({column_name})")
                                     if parsed else FreshnessObservation(
                                         detail=f"max({column_name}) is empty or not a timestamp"))
                    elif column_name:
                        notes.append(f"{path_name} has no column {column_name!r}; used the file mtime")
                    assets.append(Asset(path=path_name, kind="view" if kind == "view" else "table",
                                        columns=columns, row_count=count, freshness=freshness,
                                        container="main"))
        except sa.exc.DBAPIError as exc:
            message = str(exc.orig).splitlines()[0] if exc.orig else "database error"
            retry = "locked" in message or "busy" in message
            raise ProbeError(f"SQLite {path.name}: {message}", retryable=retry,
                             reason="timeout" if retry else "error") from None
        finally:
            engine.dispose()
        return SourceSnapshot(
            source_id=self.source.id, connector=self.kind, probed_at=context.now,
            assets=tuple(assets), notes=tuple(notes), reports_grants=False,
            partial=context.cancelled.is_set(),
        )


def _last_write(path: Path) -> tuple[datetime, str]:
    """The newest mtime of the database file and its `-wal` file, and which one it was.

    In WAL mode a commit appends to `NAME-wal` and leaves the main file alone until a
    checkpoint: the main file's mtime alone can be hours behind a row written a second ago.
    """
    main = path.stat().st_mtime
    try:
        wal = path.with_name(path.name + "-wal").stat().st_mtime
    except OSError:
        wal = None
    if wal is not None and wal > main:
        return datetime.fromtimestamp(wal, UTC), f"mtime of {path.name}-wal (write-ahead log, newer than {path.name})"
    return datetime.fromtimestamp(main, UTC), f"mtime of {path.name}"
