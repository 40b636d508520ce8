"""`lancedb`: a LanceDB database, a local folder or an S3 URI (`endpoint_url` for S3-compatible storage).

Each table is an asset: its rows, its columns (Arrow types), and its vector columns with their
dimension (fixed-size lists of floats). Freshness is `metadata`: the timestamp of the table's
newest version, which Lance writes with every commit (add, delete, update, overwrite). The
connector only opens tables and reads their manifests; it never writes or compacts. Access is
not reported (a folder's permissions, or the bucket's policies, which the `s3` connector reads).

Needs `pip install 'ctxscan[lancedb]'`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scanner.errors import ProbeError
from scanner.model import METHOD_METADATA, Asset, Column, FreshnessObservation, SourceSnapshot
from scanner.plugins import Connector, ProbeContext, Setting
from scanner.redact import redact_text


def _as_utc(moment: datetime) -> datetime:
    # Lance reports versions as naive local times (datetime.fromtimestamp).
    return moment.astimezone(UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _vector_dimension(arrow_type: Any) -> int | None:
    """The dimension of a vector column: a fixed-size list of floats (or of halfs/ints)."""
    import pyarrow as pa

    if pa.types.is_fixed_size_list(arrow_type):
        value = arrow_type.value_type
        if pa.types.is_floating(value) or pa.types.is_integer(value):
            return int(arrow_type.list_size)
    return None


class LanceDbConnector(Connector):
    """A LanceDB database in a folder or on S3."""

    kind = "lancedb"
    description = "a LanceDB database (folder or s3:// URI): each table, newest version time"
    settings = (
        Setting("uri", str, required=True, help="the database: a folder, or s3://bucket/prefix"),
        Setting("endpoint_url", str, help="an S3-compatible endpoint, e.g. http://127.0.0.1:9000"),
        Setting("region", str, help="the bucket's region"),
        Setting("access_key_id", str, secret=True, help="access key id, usually ${ENV_VAR}; default: the AWS environment"),
        Setting("secret_access_key", str, secret=True, help="secret access key, usually ${ENV_VAR}"),
        Setting("session_token", str, secret=True, help="session token for temporary credentials"),
    )

    def _uri(self) -> str:
        uri = str(self.setting("uri"))
        if "://" in uri:
            return uri
        folder = Path(uri).expanduser()
        if not folder.is_absolute() and self.source.file:
            folder = Path(self.source.file).resolve().parent / folder
        if not folder.is_dir():
            raise ProbeError(f"lancedb: folder {folder} does not exist", reason="not_found")
        return str(folder)

    def _storage_options(self, context: ProbeContext) -> dict[str, str]:
        budget = int(max(1, min(context.timeout, 30)))
        # object_store retries ten times over three minutes by default: past the probe's timeout.
        options = {"timeout": f"{budget}s", "connect_timeout": "5s", "client_max_retries": "2",
                   "client_retry_timeout": str(budget)}
        endpoint = self.setting("endpoint_url")
        if endpoint:
            options["aws_endpoint"] = str(endpoint)
            if str(endpoint).startswith("http://"):
                options["allow_http"] = "true"
        for setting, key in (("region", "aws_region"), ("access_key_id", "aws_access_key_id"),
                             ("secret_access_key", "aws_secret_access_key"),
                             ("session_token", "aws_session_token")):
            if self.setting(setting):
                options[key] = str(self.setting(setting))
        return options

    def probe(self, context: ProbeContext) -> SourceSnapshot:
        """Open the database, then read each table's schema, row count and versions."""
        uri = self._uri()
        notes: list[str] = []
        assets: list[Asset] = []
        try:
            import lancedb

            options = self._storage_options(context) if uri.startswith("s3://") else None
            db = lancedb.connect(uri, storage_options=options)
            names = sorted(self._table_names(db))
        except ProbeError:
            raise
        except Exception as exc:
            raise self._translate(exc) from None
        for name in names:
            if context.cancelled.is_set():
                break
            if not self.source.wants(name):
                continue
            try:
                assets.append(self._table(db, name))
            except Exception as exc:  # one broken table never fails the source
                notes.append(f"{name}: {self._translate(exc).message}")
        return SourceSnapshot(
            source_id=self.source.id, connector=self.kind, probed_at=context.now, assets=tuple(assets),
            notes=tuple(redact_text(n, self.redactions()) for n in notes), reports_grants=False,
            partial=context.cancelled.is_set(),
        )

    @staticmethod
    def _table_names(db: Any) -> list[str]:
        names: list[str] = []
        token = None
        while True:
            page = db.list_tables(page_token=token)
            names.extend(page.tables)
            token = page.page_token
            if not token:
                return names

    def _table(self, db: Any, name: str) -> Asset:
        table = db.open_table(name)
        schema = table.schema
        columns = []
        vectors = []
        for field in schema:
            columns.append(Column(field.name, str(field.type), bool(field.nullable)))
            dimension = _vector_dimension(field.type)
            if dimension is not None:
                vectors.append({"name": field.name, "dimension": dimension})
        versions = table.list_versions()
        newest = max(versions, key=lambda v: v["version"]) if versions else None
        rows = int(table.count_rows())
        properties: dict[str, Any] = {"vector_columns": vectors, "version": int(table.version),
                                      "versions": len(versions)}
        size = None
        if newest is not None:
            size_text = (newest.get("metadata") or {}).get("total_files_size")
            size = int(size_text) if size_text and str(size_text).isdigit() else None
            freshness = FreshnessObservation(
                method=METHOD_METADATA, last_changed=_as_utc(newest["timestamp"]),
                detail=f"newest version ({newest['version']}) written")
        else:
            freshness = FreshnessObservation(detail="the table has no versions")
        return Asset(path=name, kind="table", columns=tuple(columns), row_count=rows, size_bytes=size,
                     freshness=freshness, properties=properties)

    def _translate(self, exc: Exception) -> ProbeError:
        """Lance's and object_store's errors as a ProbeError (secrets redacted)."""
        if isinstance(exc, ImportError):
            return ProbeError(f"lancedb: the lancedb package is missing ({exc}); pip install 'ctxscan[lancedb]'")
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        lowered = text.lower()
        if "timed out" in lowered or "timeout" in lowered:
            reason, retry = "timeout", True
        elif "connect" in lowered or "dns" in lowered or "refused" in lowered:
            reason, retry = "unreachable", True
        elif "403" in lowered or "forbidden" in lowered or "accessdenied" in lowered:
            reason, retry = "access_denied", False
        elif "not found" in lowered or "nosuchbucket" in lowered or "404" in lowered:
            reason, retry = "not_found", False
        else:
            reason, retry = "error", False
        return ProbeError(redact_text(f"lancedb: {type(exc).__name__}: {text}", self.redactions()),
                          reason=reason, retryable=retry)
