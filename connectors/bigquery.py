"""The `bigquery` connector: tables and views per dataset, their freshness, owners and access.

Assets are `dataset.table` (container: the dataset), kind `table`, `view`,
`materialized_view`, `external`, `snapshot` or `clone`, with the schema flattened into dotted
names (`address.geo.lat`), row count, bytes, labels, created and modified times.

Metadata costs a few queries per dataset, never one call per table where the service can
avoid it: `INFORMATION_SCHEMA.TABLES`, `COLUMNS` and `TABLE_OPTIONS` (labels) give names,
types and schemas, and `__TABLES__` gives row counts, bytes and last-modified times. Where a
query is refused (no `bigquery.jobs.create`, an emulator without `__TABLES__`) the connector
falls back to per-table `tables.get` calls, on a small thread pool, and says so in the notes.
Region-level views (`region-us.INFORMATION_SCHEMA...`) are not used: a service that does not
implement them can answer with an empty result instead of an error, which would read as "no
tables".

Freshness: with `freshness.column`, `max(column)` per table (batched per dataset with UNION
ALL; method `column`); otherwise the table's lastModifiedTime (method `metadata`, with the
caveat that metadata-only changes such as a new label or column also move it). A view has no
modified time of its own worth trusting, so without a column its freshness is `none`.

Access: dataset access entries become container-scoped grants on the dataset (READER read,
WRITER write, OWNER admin, authorized views / routines / datasets read). Principals are named
as IAM members are: `user:x`, `serviceAccount:x` (a userByEmail entry with a service-account
address), `group:x`, `domain:x`, `allUsers` and `allAuthenticatedUsers` (public), special
groups such as `projectOwners` by name, `view:project.dataset.table`. OWNER marks the
principal privileged (`dataset_owner`). Table IAM policies (`tables.getIamPolicy`) add
asset-scoped grants where readable; where not (access denied, or a service that does not serve
the method) they are recorded as unknown in the notes and the asset's `table_iam` property,
never as "no grants".

Owner: the table's label `owner_tag`, else its dataset's (`DiscoveredOwner(value, "label:KEY")`).
The snapshot's owner is set when every probed dataset carries the same owner label.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from connectors._principals import alias_memberships, bigquery_member, email_domain
from scanner.errors import ProbeError
from scanner.model import (
    ACCESS_ADMIN,
    ACCESS_OTHER,
    ACCESS_READ,
    ACCESS_WRITE,
    METHOD_COLUMN,
    METHOD_METADATA,
    METHOD_NONE,
    PUBLIC_PRINCIPALS,
    SCOPE_ASSET,
    SCOPE_CONTAINER,
    Asset,
    Column,
    DiscoveredOwner,
    FreshnessObservation,
    Grant,
    Membership,
    Principal,
    SourceSnapshot,
)
from scanner.plugins import Connector, ProbeContext, Setting
from scanner.redact import redact_text

T = TypeVar("T")

MAX_ATTEMPTS = 4
BACKOFF_SECONDS = 0.25
# Tables per UNION ALL query for column freshness; BigQuery caps a query's length and the
# number of tables it references (1,000).
FRESHNESS_BATCH = 50

METADATA_CAVEAT = ("lastModifiedTime also moves on metadata-only changes (labels, schema, "
                   "description), so the data can be older than this")
PUBLIC_MEMBERS = {"allUsers", "allAuthenticatedUsers"}
TIMESTAMP_TYPES = {"TIMESTAMP", "DATETIME", "DATE"}

ROLE_ACCESS = {"READER": ACCESS_READ, "WRITER": ACCESS_WRITE, "OWNER": ACCESS_ADMIN}
IAM_ROLE_ACCESS = {
    "roles/bigquery.dataViewer": ACCESS_READ,
    "roles/viewer": ACCESS_READ,
    "roles/bigquery.dataEditor": ACCESS_WRITE,
    "roles/editor": ACCESS_WRITE,
    "roles/bigquery.dataOwner": ACCESS_ADMIN,
    "roles/bigquery.admin": ACCESS_ADMIN,
    "roles/owner": ACCESS_ADMIN,
    # Sees the schema, not the rows.
    "roles/bigquery.metadataViewer": ACCESS_OTHER,
}
# The BigQuery REST schema uses legacy type names; INFORMATION_SCHEMA uses standard SQL ones.
# Both paths report standard SQL names so that switching path is never schema drift.
LEGACY_TYPES = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL", "RECORD": "STRUCT",
                "BIGNUMERIC": "BIGNUMERIC", "NUMERIC": "NUMERIC"}
TABLE_KINDS = {
    "TABLE": "table", "BASE TABLE": "table", "VIEW": "view", "MATERIALIZED_VIEW": "materialized_view",
    "MATERIALIZED VIEW": "materialized_view", "EXTERNAL": "external", "SNAPSHOT": "snapshot",
    "CLONE": "clone",
}
# __TABLES__.type: 1 table, 2 view, 3 external.
LEGACY_TABLE_TYPES = {1: "TABLE", 2: "VIEW", 3: "EXTERNAL"}


def quote_identifier(name: str) -> str:
    """A backtick-quoted BigQuery identifier, safe for any name."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _iso(value: datetime | None) -> str | None:
    utc = _utc(value)
    return utc.isoformat() if utc else None


# ---------------------------------------------------------------------------- schemas

def split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside <...>, (...) or backticks."""
    parts: list[str] = []
    depth = 0
    quoted = False
    current: list[str] = []
    escape = False
    for char in text:
        if quoted:
            current.append(char)
            if escape:
                escape = False
            elif char == "\\":
                escape = True
            elif char == "`":
                quoted = False
            continue
        if char == "`":
            quoted = True
        elif char in "<(":
            depth += 1
        elif char in ">)":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


def struct_fields(type_text: str) -> list[tuple[str, str, bool]]:
    """The (name, type, nullable) fields of a STRUCT<...> or ARRAY<STRUCT<...>> type text."""
    text = type_text.strip()
    while text.upper().startswith("ARRAY<") and text.endswith(">"):
        text = text[6:-1].strip()
    if not (text.upper().startswith("STRUCT<") and text.endswith(">")):
        return []
    fields: list[tuple[str, str, bool]] = []
    for part in split_top_level(text[7:-1]):
        if part.startswith("`"):
            end = 1
            while end < len(part) and part[end] != "`":
                end += 2 if part[end] == "\\" else 1
            name = part[1:end].replace("\\`", "`").replace("\\\\", "\\")
            rest = part[end + 1:].strip()
        else:
            name, _, rest = part.partition(" ")
            rest = rest.strip()
        nullable = True
        if rest.upper().endswith(" NOT NULL"):
            rest, nullable = rest[: -len(" NOT NULL")].strip(), False
        fields.append((name, rest, nullable))
    return fields


def flatten_type(name: str, type_text: str, nullable: bool, out: list[Column]) -> None:
    """Append a column and, for STRUCT types, every nested field with a dotted name."""
    out.append(Column(name=name, type=type_text, nullable=nullable))
    for child, child_type, child_nullable in struct_fields(type_text):
        flatten_type(f"{name}.{child}", child_type, child_nullable, out)


def render_field_type(field_type: str, mode: str | None, fields: Sequence[Any], max_length: Any = None,
                      precision: Any = None, scale: Any = None) -> str:
    """A REST schema field as INFORMATION_SCHEMA writes its type, e.g. ARRAY<STRUCT<a INT64>>."""
    base = LEGACY_TYPES.get(field_type.upper(), field_type.upper())
    if base == "STRUCT":
        inner = ", ".join(
            f"{_plain_or_quoted(sub.name)} {render_field_type(sub.field_type, sub.mode, sub.fields, sub.max_length, sub.precision, sub.scale)}"
            for sub in fields)
        base = f"STRUCT<{inner}>"
    elif max_length:
        base = f"{base}({max_length})"
    elif precision:
        base = f"{base}({precision}, {scale})" if scale is not None else f"{base}({precision})"
    if (mode or "").upper() == "REPEATED":
        return f"ARRAY<{base}>"
    return base


def _plain_or_quoted(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else quote_identifier(name)


def flatten_schema(schema: Iterable[Any]) -> tuple[Column, ...]:
    """REST schema fields (google.cloud.bigquery.SchemaField) as flattened columns."""
    out: list[Column] = []

    def walk(prefix: str, fields: Iterable[Any]) -> None:
        for sub in fields:
            name = f"{prefix}{sub.name}"
            out.append(Column(name=name, nullable=(sub.mode or "NULLABLE").upper() != "REQUIRED",
                              type=render_field_type(sub.field_type, sub.mode, sub.fields, sub.max_length,
                                                     sub.precision, sub.scale)))
            if sub.fields:
                walk(f"{name}.", sub.fields)

    walk("", schema)
    return tuple(out)


def normalise_type(type_text: str) -> str:
    """A standard SQL type name for a top-level legacy one (INTEGER -> INT64)."""
    return LEGACY_TYPES.get(type_text.upper(), type_text) if type_text.isalpha() else type_text


def parse_labels(option_value: str) -> dict[str, str]:
    """Labels from TABLE_OPTIONS' text form: [("owner", "crm"), ("tier", "gold")]."""
    pairs = re.findall(r'\(\s*"((?:[^"\\]|\\.)*)"\s*,\s*"((?:[^"\\]|\\.)*)"\s*\)', option_value or "")
    return {key: value for key, value in pairs}


# ---------------------------------------------------------------------------- principals

def entry_principal(entity_type: str, entity_id: Any) -> tuple[str, str]:
    """(principal name, kind) for a dataset access entry, named as IAM members are."""
    if entity_type == "userByEmail":
        email = str(entity_id)
        if email.endswith(".gserviceaccount.com"):
            return f"serviceAccount:{email}", "serviceAccount"
        return f"user:{email}", "user"
    if entity_type == "groupByEmail":
        return f"group:{entity_id}", "group"
    if entity_type == "domain":
        return f"domain:{entity_id}", "domain"
    if entity_type == "specialGroup":
        return str(entity_id), "public" if entity_id in PUBLIC_MEMBERS else "special"
    if entity_type == "iamMember":
        return member_principal(str(entity_id))
    if entity_type in ("view", "routine") and isinstance(entity_id, Mapping):
        leaf = entity_id.get("tableId") or entity_id.get("routineId") or ""
        return f"{entity_type}:{entity_id.get('projectId')}.{entity_id.get('datasetId')}.{leaf}", entity_type
    if entity_type == "dataset" and isinstance(entity_id, Mapping):
        reference = entity_id.get("dataset", entity_id)
        return f"dataset:{reference.get('projectId')}.{reference.get('datasetId')}", "dataset"
    return f"{entity_type}:{entity_id}", str(entity_type)


def member_principal(member: str) -> tuple[str, str]:
    """(principal name, kind) for an IAM member string."""
    if member in PUBLIC_MEMBERS:
        return member, "public"
    kind, _, _ = member.partition(":")
    return member, kind or "member"


# ---------------------------------------------------------------------------- results

@dataclass
class _Table:
    """What is known of one table while its dataset is probed."""

    name: str
    table_type: str = "TABLE"
    columns: tuple[Column, ...] | None = None
    labels: dict[str, str] | None = None
    created: datetime | None = None
    modified: datetime | None = None
    row_count: int | None = None
    size_bytes: int | None = None
    has_stats: bool = False
    freshness: FreshnessObservation | None = None
    table_iam: str = "not_checked"
    iam_bindings: list[tuple[str, list[str]]] = field(default_factory=list)


@dataclass
class _DatasetResult:
    dataset: str
    found: bool = True
    denied: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    access: list[tuple[str | None, str, Any]] = field(default_factory=list)
    tables: list[_Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    metadata_source: str = ""


class _Run:
    """One probe's shared state: client, deadline, timeouts and retry policy."""

    def __init__(self, connector: BigQueryConnector, context: ProbeContext, client: Any) -> None:
        self.connector = connector
        self.context = context
        self.client = client
        self.timeout = max(1.0, float(context.timeout))
        self.deadline = time.monotonic() + self.timeout
        # Per HTTP request; a query may wait for its job a little longer.
        self.request_timeout = min(30.0, max(2.0, self.timeout / 4))
        self.query_timeout = min(120.0, max(3.0, self.timeout / 2))
        self.stop = threading.Event()

    def call(self, operation: str, call: Callable[[], T]) -> T:
        """Run one SDK call, retrying only retryable failures, with bounded backoff."""
        delay = BACKOFF_SECONDS
        attempt = 0
        while True:
            if self.stop.is_set() or self.context.cancelled.is_set():
                raise ProbeError(f"bigquery probe of project {self.connector.project!r} was cancelled",
                                 retryable=True, reason="timeout")
            try:
                return call()
            except Exception as exc:  # noqa: BLE001 - translated in one place
                error = self.connector.translate_error(exc, operation)
            attempt += 1
            if not error.retryable or attempt >= MAX_ATTEMPTS or time.monotonic() + delay >= self.deadline:
                raise error from None
            if self.context.cancelled.wait(delay):
                raise error from None
            delay *= 2

    def query(self, operation: str, sql: str, location: str | None) -> list[Any]:
        """Run one read-only standard-SQL query and return its rows."""
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(use_legacy_sql=False, use_query_cache=True,
                                         job_timeout_ms=int(self.query_timeout * 1000))

        def run() -> list[Any]:
            # jobs.insert + getQueryResults, not jobs.query: a failed query must raise,
            # and some services answer jobs.query's failures with an empty 200.
            job = self.client.query(sql, job_config=config, location=location, retry=None,
                                    job_retry=None, timeout=self.request_timeout)
            return list(job.result(timeout=self.query_timeout, retry=None))

        return self.call(operation, run)


class BigQueryConnector(Connector):
    """A BigQuery project (optionally some datasets): tables, freshness, labels and access."""

    kind = "bigquery"
    description = "BigQuery tables and views: schema, rows, modified time or column freshness, labels, dataset access and table IAM"
    settings = (
        Setting("project", str, required=True, help="project id"),
        Setting("datasets", list, help="datasets to inventory; default: every dataset in the project"),
        Setting("location", str, help="default location for queries, e.g. US or europe-west1"),
        Setting("endpoint", str, help="API endpoint of an emulator, e.g. http://127.0.0.1:9050 (anonymous credentials)"),
        Setting("credentials_file", str, help="service-account key file; default: Application Default Credentials"),
        Setting("workers", int, help="datasets and tables probed concurrently (default 4)"),
        Setting("table_iam", bool, help="read each table's IAM policy (default true; one call per table)"),
    )

    @property
    def project(self) -> str:
        """The project this source names."""
        return str(self.setting("project", ""))

    # ------------------------------------------------------------------ errors

    def translate_error(self, exc: BaseException, operation: str) -> ProbeError:
        """Turn any google-cloud / google-auth / transport exception into a ProbeError."""
        if isinstance(exc, ProbeError):
            return exc
        import concurrent.futures

        import requests
        from google.api_core import exceptions as gx
        from google.auth import exceptions as ax

        retryable, reason = False, "error"
        detail = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, ax.DefaultCredentialsError):
            reason, detail = "no_credentials", "no Application Default Credentials found"
        elif isinstance(exc, ax.RefreshError):
            reason, detail = "no_credentials", "the credentials could not be refreshed"
        elif isinstance(exc, ax.TransportError):
            reason, retryable = "unreachable", True
        elif isinstance(exc, gx.RetryError):
            reason, retryable = "timeout", True
        elif isinstance(exc, gx.GoogleAPICallError):
            code = int(exc.code or 0) if isinstance(exc.code, int) else 0
            reasons = {str(e.get("reason")) for e in (exc.errors or []) if isinstance(e, Mapping)}
            detail = f"{code} {exc.message}" if code else str(exc.message)
            if reasons & {"rateLimitExceeded", "backendError"}:
                reason, retryable = "throttled", True
            elif "quotaExceeded" in reasons:
                reason = "throttled"
            elif code == 401:
                reason = "no_credentials"
            elif code == 403:
                reason = "access_denied"
            elif code == 404:
                reason = "not_found"
            elif code == 429:
                reason, retryable = "throttled", True
            elif code in (408, 504):
                reason, retryable = "timeout", True
            elif code in (500, 502):
                retryable = True
            elif code == 503:
                reason, retryable = "unreachable", True
        elif isinstance(exc, requests.exceptions.Timeout | concurrent.futures.TimeoutError | TimeoutError):
            reason, retryable, detail = "timeout", True, f"timed out ({type(exc).__name__})"
        elif isinstance(exc, requests.exceptions.ConnectionError | ConnectionError):
            reason, retryable = "unreachable", True
            detail = f"cannot reach the endpoint ({type(exc).__name__})"
        message = redact_text(f"bigquery {operation} in project {self.project!r}: {detail}", self.redactions())
        return ProbeError(message, retryable=retryable, reason=reason)

    # ------------------------------------------------------------------ client

    def _client(self) -> Any:
        from google.cloud import bigquery

        endpoint = self.setting("endpoint")
        credentials: Any = None
        options: dict[str, Any] = {}
        if endpoint:
            from google.auth.credentials import AnonymousCredentials

            credentials = AnonymousCredentials()
            options["api_endpoint"] = str(endpoint)
        elif self.setting("credentials_file"):
            from google.oauth2 import service_account

            credentials = service_account.Credentials.from_service_account_file(
                str(self.setting("credentials_file")),
                scopes=["https://www.googleapis.com/auth/bigquery.readonly"])
        return bigquery.Client(project=self.project, credentials=credentials,
                               location=self.setting("location"), client_options=options or None)

    # ------------------------------------------------------------------ probe

    def probe(self, context: ProbeContext) -> SourceSnapshot:
        """Read datasets, tables, schemas, freshness and access, read-only."""
        try:
            client = self._client()
        except Exception as exc:  # noqa: BLE001 - translated in one place
            raise self.translate_error(exc, "client setup") from None
        run = _Run(self, context, client)
        configured = [str(d) for d in _as_list(self.setting("datasets"))]
        try:
            results, iam_notes = self._probe_datasets(run, configured)
        except ProbeError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated in one place
            raise self.translate_error(exc, "probe") from None
        finally:
            client.close()
        return self._snapshot(context, results, configured, iam_notes)

    def _probe_datasets(self, run: _Run, configured: list[str]) -> tuple[list[_DatasetResult], list[str]]:
        """Every dataset concurrently, then the table IAM policies."""
        client = run.client
        workers = max(1, int(self.setting("workers", 4)))
        if configured:
            datasets = list(dict.fromkeys(configured))
        else:
            datasets = run.call("list datasets", lambda: [
                d.dataset_id for d in client.list_datasets(self.project, retry=None, timeout=run.request_timeout)])
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ctxscan-bq-ds") as dataset_pool, \
                ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ctxscan-bq-table") as table_pool:
            futures = [dataset_pool.submit(self._probe_dataset, run, table_pool, dataset) for dataset in datasets]
            try:
                results = [future.result() for future in futures]
            except BaseException:
                run.stop.set()
                raise
            iam_notes = self._read_table_iam(run, table_pool, results)
        return results, iam_notes

    def _probe_dataset(self, run: _Run, table_pool: ThreadPoolExecutor, dataset_id: str) -> _DatasetResult:
        """One dataset: its labels, access entries and tables."""
        result = _DatasetResult(dataset=dataset_id)
        reference = f"{self.project}.{dataset_id}"
        try:
            dataset = run.call(f"get dataset {dataset_id}", lambda: run.client.get_dataset(
                reference, retry=None, timeout=run.request_timeout))
        except ProbeError as exc:
            if exc.reason == "not_found":
                result.found = False
                return result
            if exc.reason == "access_denied":
                result.denied = exc.message
                return result
            raise
        result.labels = dict(dataset.labels or {})
        result.access = [(e.role, e.entity_type, e.entity_id) for e in dataset.access_entries]
        location = dataset.location or self.setting("location")

        tables = self._bulk_tables(run, result, reference, location)
        if tables is None:
            listed = run.call(f"list tables in {dataset_id}", lambda: list(run.client.list_tables(
                reference, retry=None, timeout=run.request_timeout)))
            tables = {item.table_id: _Table(name=item.table_id, table_type=item.table_type or "TABLE",
                                            created=item.created) for item in listed}
            result.metadata_source = "tables.get"
        wanted = [t for name, t in sorted(tables.items()) if self.source.wants(f"{dataset_id}.{name}")]

        missing = [t for t in wanted if not t.has_stats or not t.columns or t.labels is None]
        if missing:
            if result.metadata_source != "tables.get":
                result.metadata_source += " + tables.get"
            list(table_pool.map(lambda t: self._get_table(run, reference, t), missing))
        result.tables = wanted
        if self.source.freshness.column:
            self._column_freshness(run, table_pool, result, reference, location)
        return result

    def _bulk_tables(self, run: _Run, result: _DatasetResult, reference: str, location: str | None
                     ) -> dict[str, _Table] | None:
        """Tables, columns, labels and stats from one query each; None when queries are refused."""
        schema = f"{quote_identifier(self.project)}.{quote_identifier(result.dataset)}"
        try:
            rows = run.query(f"list tables in {result.dataset}",
                             f"SELECT table_name, table_type, creation_time FROM {schema}.INFORMATION_SCHEMA.TABLES",
                             location)
        except ProbeError as exc:
            if exc.retryable:
                raise
            result.notes.append(f"dataset {result.dataset}: INFORMATION_SCHEMA not queryable ({exc.reason}); "
                                "used per-table calls")
            return None
        tables = {row["table_name"]: _Table(name=row["table_name"], created=row["creation_time"],
                                            table_type=str(row["table_type"]).replace("BASE TABLE", "TABLE")
                                            .replace(" ", "_")) for row in rows}
        result.metadata_source = "INFORMATION_SCHEMA"
        if not tables:
            return tables
        try:
            rows = run.query(f"read columns of {result.dataset}",
                             "SELECT table_name, column_name, is_nullable, data_type "
                             f"FROM {schema}.INFORMATION_SCHEMA.COLUMNS ORDER BY table_name, ordinal_position",
                             location)
            columns: dict[str, list[Column]] = {name: [] for name in tables}
            for row in rows:
                if row["table_name"] in columns:
                    flatten_type(row["column_name"], normalise_type(row["data_type"]),
                                 row["is_nullable"] != "NO", columns[row["table_name"]])
            for name, found in columns.items():
                tables[name].columns = tuple(found)
        except ProbeError as exc:
            if exc.retryable:
                raise
        try:
            rows = run.query(f"read labels of {result.dataset}",
                             "SELECT table_name, option_value FROM "
                             f"{schema}.INFORMATION_SCHEMA.TABLE_OPTIONS WHERE option_name = 'labels'",
                             location)
            for table in tables.values():
                table.labels = {}
            for row in rows:
                if row["table_name"] in tables:
                    tables[row["table_name"]].labels = parse_labels(row["option_value"])
        except ProbeError as exc:
            if exc.retryable:
                raise
        try:
            rows = run.query(f"read table stats of {result.dataset}",
                             "SELECT table_id, type, row_count, size_bytes, creation_time, last_modified_time "
                             f"FROM {schema}.__TABLES__", location)
            for row in rows:
                stats = tables.get(row["table_id"])
                if stats is None:
                    continue
                stats.row_count = int(row["row_count"]) if row["row_count"] is not None else None
                stats.size_bytes = int(row["size_bytes"]) if row["size_bytes"] is not None else None
                stats.modified = _millis(row["last_modified_time"])
                stats.created = stats.created or _millis(row["creation_time"])
                stats.has_stats = True
            result.metadata_source += " + __TABLES__"
        except ProbeError as exc:
            if exc.retryable:
                raise
            result.notes.append(f"dataset {result.dataset}: __TABLES__ not available ({exc.reason}); "
                                "row counts and modified times from per-table calls")
        return tables

    def _get_table(self, run: _Run, reference: str, table: _Table) -> None:
        """Fill in what the bulk queries did not give, from one tables.get call."""
        try:
            found = run.call(f"get table {table.name}", lambda: run.client.get_table(
                f"{reference}.{table.name}", retry=None, timeout=run.request_timeout))
        except ProbeError as exc:
            if exc.reason == "not_found":  # dropped while we looked
                table.has_stats = True
                table.columns = table.columns or ()
                table.labels = table.labels if table.labels is not None else {}
                return
            raise
        table.table_type = found.table_type or table.table_type
        if not table.columns:
            table.columns = flatten_schema(found.schema or ())
        if table.labels is None:
            table.labels = dict(found.labels or {})
        table.created = table.created or found.created
        table.modified = found.modified
        kind = TABLE_KINDS.get(table.table_type.upper(), "table")
        table.row_count = int(found.num_rows) if found.num_rows is not None and kind != "view" else None
        table.size_bytes = int(found.num_bytes) if found.num_bytes is not None and kind != "view" else None
        table.has_stats = True

    def _column_freshness(self, run: _Run, pool: ThreadPoolExecutor, result: _DatasetResult,
                          reference: str, location: str | None) -> None:
        """max(freshness.column) per table, batched with UNION ALL, one table at a time on failure."""
        wanted = str(self.source.freshness.column)
        candidates: list[tuple[_Table, str]] = []
        for table in result.tables:
            if not table.columns:
                # Schema unknown (some services list no columns for views): try the query,
                # and fall back to metadata if the column is not there.
                candidates.append((table, wanted))
                continue
            column = next((c for c in table.columns if c.name.lower() == wanted.lower()), None)
            if column is None:
                continue
            base_type = column.type.split("(")[0].upper()
            if base_type not in TIMESTAMP_TYPES:
                table.freshness = _fallback_freshness(table, f"column {column.name} is {column.type}, not a timestamp")
                continue
            if any(c.name.lower() == prefix.lower() and c.type.upper().startswith("ARRAY<")
                   for prefix in _ancestors(column.name) for c in table.columns or ()):
                table.freshness = _fallback_freshness(table, f"column {column.name} is inside an ARRAY")
                continue
            candidates.append((table, column.name))

        def select(index: int, table: _Table, column: str) -> str:
            path = ".".join(quote_identifier(part) for part in column.split("."))
            return (f"SELECT {index} AS i, CAST(MAX({path}) AS TIMESTAMP) AS m "
                    f"FROM {quote_identifier(reference + '.' + table.name)}")

        def apply(batch: list[tuple[_Table, str]], rows: list[Any]) -> None:
            newest = {int(row["i"]): row["m"] for row in rows}
            for index, (table, column) in enumerate(batch):
                value = _utc(newest.get(index))
                if value is None:
                    table.freshness = _fallback_freshness(table, f"max({column}) is NULL (no rows?)")
                else:
                    column_type = _column_type(table, column)
                    caveat = None
                    if column_type in ("DATETIME", "DATE"):
                        caveat = f"{column} is a {column_type} without a time zone, read as UTC"
                    elif not column_type:
                        caveat = f"the type of {column} is unknown; a DATETIME or DATE is read as UTC"
                    table.freshness = FreshnessObservation(method=METHOD_COLUMN, last_changed=value,
                                                           detail=f"max({column})", caveat=caveat)

        def run_batch(batch: list[tuple[_Table, str]]) -> None:
            sql = " UNION ALL ".join(f"SELECT * FROM ({select(i, t, c)})" for i, (t, c) in enumerate(batch))
            try:
                apply(batch, run.query(f"freshness of {result.dataset}", sql, location))
                return
            except ProbeError as exc:
                if exc.retryable:
                    raise
                if len(batch) == 1:
                    table, column = batch[0]
                    table.freshness = _fallback_freshness(table, f"max({column}) failed ({exc.reason})")
                    return
            # One bad table must not cost the others their column freshness.
            for single in batch:
                run_batch([single])

        batches = [candidates[i:i + FRESHNESS_BATCH] for i in range(0, len(candidates), FRESHNESS_BATCH)]
        list(pool.map(run_batch, batches))
        for table in result.tables:
            if table.freshness is None:
                table.freshness = _fallback_freshness(table, f"no column {wanted}")

    def _read_table_iam(self, run: _Run, pool: ThreadPoolExecutor, results: list[_DatasetResult]) -> list[str]:
        """Each table's IAM policy where readable; unknown (never empty) where not."""
        tables = [(r, t) for r in results for t in r.tables]
        if not tables:
            return []
        if self.setting("table_iam", True) is False:
            for _, table in tables:
                table.table_iam = "unknown"
            return ["table IAM not read (table_iam: false): table-level grants unknown"]
        unsupported = threading.Event()
        denied: list[str] = []

        def fetch(reference: str) -> tuple[str, Any]:
            from google.api_core import exceptions as gx

            try:
                return "read", run.client.get_iam_policy(reference, retry=None, timeout=run.request_timeout)
            except (gx.MethodNotAllowed, gx.MethodNotImplemented):
                return "unsupported", None  # 405 / 501: the endpoint does not serve the method
            except gx.NotFound:
                return "gone", None  # dropped while we looked
            except gx.Forbidden as exc:
                if self.translate_error(exc, "get IAM policy").reason == "access_denied":
                    return "denied", None
                raise  # a rate limit: retried by `run.call`

        def read(pair: tuple[_DatasetResult, _Table]) -> None:
            result, table = pair
            if unsupported.is_set():
                table.table_iam = "unknown"
                return
            reference = f"{self.project}.{result.dataset}.{table.name}"
            status, policy = run.call(f"get IAM policy of {result.dataset}.{table.name}",
                                      functools.partial(fetch, reference))
            if status != "read":
                table.table_iam = "unknown"
                if status == "unsupported":
                    unsupported.set()
                elif status == "denied":
                    denied.append(f"{result.dataset}.{table.name}")
                return
            table.table_iam = "read"
            table.iam_bindings = [(str(b.get("role")), sorted(str(m) for m in b.get("members", ())))
                                  for b in policy.bindings]

        list(pool.map(read, tables))
        notes: list[str] = []
        if unsupported.is_set():
            notes.append("table IAM unknown: the endpoint does not serve tables.getIamPolicy; "
                         "table-level grants are not known, not absent")
        if denied:
            notes.append(f"table IAM unknown for {len(denied)} table(s) (access denied): "
                         + ", ".join(sorted(denied)[:20]))
        return notes

    # ------------------------------------------------------------------ assembly

    def _snapshot(self, context: ProbeContext, results: list[_DatasetResult], configured: list[str],
                  iam_notes: list[str]) -> SourceSnapshot:
        tag = self.source.owner_tag
        notes: list[str] = []
        assets: list[Asset] = []
        grants: list[Grant] = []
        principals: dict[str, Principal] = {}
        owner_values: set[str | None] = set()

        missing = [r.dataset for r in results if not r.found]
        denied = [r for r in results if r.denied]
        probed = [r for r in results if r.found and not r.denied]
        if configured and results and not probed:
            if missing:
                raise ProbeError(f"bigquery project {self.project!r}: dataset(s) not found: {', '.join(missing)}",
                                 reason="not_found")
            raise ProbeError(denied[0].denied or "access denied", reason="access_denied")
        for name in missing:
            notes.append(f"dataset {name} not found")
        for result in denied:
            notes.append(f"dataset {result.dataset}: access denied; its tables and access are unknown")

        def add_principal(name: str, kind: str, owner_of: str | None = None) -> None:
            current = principals.get(name)
            attributes = set(current.attributes) if current else set()
            owned = list(current.properties.get("owner_of", [])) if current else []
            if owner_of:
                attributes.add("dataset_owner")
                if owner_of not in owned:
                    owned.append(owner_of)
            properties: dict[str, Any] = {"owner_of": sorted(owned)} if owned else {}
            principals[name] = Principal(name=name, kind=current.kind if current else kind,
                                         attributes=tuple(sorted(attributes)),
                                         privileged=bool(attributes), properties=properties)

        for result in probed:
            dataset_owner = result.labels.get(tag) if tag else None
            owner_values.add(dataset_owner)
            notes.extend(result.notes)
            for role, entity_type, entity_id in result.access:
                name, kind = entry_principal(str(entity_type), entity_id)
                if role is None:
                    privilege, access = f"AUTHORIZED_{str(entity_type).upper()}", ACCESS_READ
                else:
                    privilege = str(role)
                    access = ROLE_ACCESS.get(privilege.upper(), IAM_ROLE_ACCESS.get(privilege, ACCESS_OTHER))
                add_principal(name, kind, owner_of=result.dataset if access == ACCESS_ADMIN else None)
                grants.append(Grant(principal=name, privilege=privilege, target=result.dataset,
                                    scope=SCOPE_CONTAINER, access=access, public=name in PUBLIC_MEMBERS,
                                    via=f"dataset {result.dataset} access entry ({entity_type})"))
            for table in result.tables:
                path = f"{result.dataset}.{table.name}"
                assets.append(self._asset(result, table, path, dataset_owner))
                for role, members in table.iam_bindings:
                    access = IAM_ROLE_ACCESS.get(role, ACCESS_OTHER)
                    for member in members:
                        name, kind = member_principal(member)
                        add_principal(name, kind)
                        grants.append(Grant(principal=name, privilege=role, target=path, scope=SCOPE_ASSET,
                                            access=access, public=name in PUBLIC_MEMBERS,
                                            via=f"table {path} IAM policy"))
        notes.extend(iam_notes)
        if probed and not any(r.tables for r in probed):
            notes.append("no tables in the probed datasets")
        memberships, state = self._runs_as(context, principals, notes) if probed else ([], {})
        owner = None
        if tag and len(owner_values) == 1:
            value = next(iter(owner_values))
            if value:
                owner = DiscoveredOwner(value, f"label:{tag}")
        return SourceSnapshot(
            source_id=self.source.id,
            connector=self.source.connector,
            probed_at=context.now if context.now.tzinfo else context.now.replace(tzinfo=UTC),
            assets=tuple(assets),
            principals=tuple(principals[name] for name in sorted(principals)),
            grants=tuple(dict.fromkeys(grants)),
            memberships=tuple(memberships),
            state=state,
            owner=owner,
            partial=bool(denied),
            notes=tuple(redact_text(n, self.redactions()) for n in notes),
            reports_grants=bool(probed),
        )

    @staticmethod
    def _runs_as(context: ProbeContext, principals: Mapping[str, Principal],
                 notes: list[str]) -> tuple[list[Membership], dict[str, Any]]:
        """Resolve `runs_as` names as people write them: a bare e-mail is `serviceAccount:` on
        *.gserviceaccount.com, else `user:`; a `domain:` entry covers its domain's members.
        A name in no access entry is unknown: project-level IAM is not read, so its access
        cannot be checked."""
        resolved: dict[str, str] = {}
        unknown: list[str] = []
        memberships: list[Membership] = []
        for wanted in sorted(context.principals):
            if wanted in PUBLIC_MEMBERS or wanted in PUBLIC_PRINCIPALS:
                continue
            member = bigquery_member(wanted)
            domain = email_domain(member)
            covered = f"domain:{domain}" if domain and f"domain:{domain}" in principals else None
            if member not in principals and covered is None:
                unknown.append(wanted)
                spelled = f" (read as {member})" if member != wanted else ""
                notes.append(f"runs_as principal {wanted!r}{spelled} is in no access entry of the probed "
                             "datasets or tables: its access cannot be checked (project-level IAM is not read)")
                continue
            if member != wanted:
                resolved[wanted] = member
            if covered is not None:
                memberships.append(Membership(member, covered, True, can_set=False))
        memberships.extend(alias_memberships(resolved))
        return memberships, {"unknown_principals": unknown, "resolved_principals": resolved}

    def _asset(self, result: _DatasetResult, table: _Table, path: str, dataset_owner: str | None) -> Asset:
        tag = self.source.owner_tag
        kind = TABLE_KINDS.get(table.table_type.upper(), table.table_type.lower().replace(" ", "_"))
        labels = dict(sorted((table.labels or {}).items()))
        owner = None
        if tag and labels.get(tag):
            owner = DiscoveredOwner(labels[tag], f"label:{tag}")
        elif tag and dataset_owner:
            owner = DiscoveredOwner(dataset_owner, f"label:{tag}")
        freshness = table.freshness or _fallback_freshness(table, None)
        properties: dict[str, Any] = {
            "labels": labels,
            "dataset_labels": dict(sorted(result.labels.items())),
            "created": _iso(table.created),
            "modified": _iso(table.modified),
            "table_type": table.table_type,
            "table_iam": table.table_iam,
            "metadata_source": result.metadata_source,
        }
        return Asset(path=path, kind=kind, columns=tuple(table.columns or ()), container=result.dataset,
                     row_count=table.row_count if kind != "view" else None,
                     size_bytes=table.size_bytes if kind != "view" else None,
                     freshness=freshness, owner=owner, properties=properties)


def _millis(value: Any) -> datetime | None:
    """A datetime from __TABLES__' epoch milliseconds."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return _utc(value)
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _column_type(table: _Table, column: str) -> str:
    for candidate in table.columns or ():
        if candidate.name == column:
            return candidate.type.split("(")[0].upper()
    return ""


def _fallback_freshness(table: _Table, why: str | None) -> FreshnessObservation:
    """The table's modified time (method metadata); none for views and when nothing is known."""
    kind = TABLE_KINDS.get(table.table_type.upper(), "table")
    prefix = f"{why}; " if why else ""
    if kind == "view":
        return FreshnessObservation(method=METHOD_NONE,
                                    detail=f"{prefix}a view's data is as fresh as its base tables")
    modified = _utc(table.modified)
    if modified is None:
        return FreshnessObservation(method=METHOD_NONE, detail=f"{prefix}no modified time")
    return FreshnessObservation(method=METHOD_METADATA, last_changed=modified, caveat=METADATA_CAVEAT,
                                detail=f"{prefix}table lastModifiedTime")
