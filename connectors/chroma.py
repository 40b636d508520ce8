"""`chroma`: a Chroma vector store, a server over HTTP (`url`) or a persistent folder (`path`).

Each collection is an asset: its record count (`row_count`), embedding dimension, collection
metadata and configuration (the embedding model's name when the metadata or the embedding
function says it). Chroma keeps no write time, so freshness is `observed`: the record count
and a fingerprint of the content (ids, documents and metadata of up to `fingerprint_limit`
records) are kept in the snapshot's state and compared at the next scan.

Access: before using the token, the connector asks the server to list collections without
credentials; when it answers, anyone who can reach the server can read every collection, and
the source reports a public read grant (an unauthenticated Chroma server is `public_access`).
Chroma has no per-principal grants, so otherwise no grants are reported. A `path` folder is
opened with Chroma's own client (the `chromadb` package); do not point it at a folder a server
is writing.

Needs `pip install 'ctxscan[chroma]'` (the `chromadb` package; `chromadb-client` is enough
for `url`).
"""

from __future__ import annotations

import sys
import threading
import urllib.parse
from typing import Any

from connectors._vectorcommon import (
    Fingerprint,
    answers_without_credentials,
    collections_snapshot,
    fingerprint_limit,
    local_folder,
    observed_freshness,
    public_read,
    redact_probe_error,
)
from scanner.errors import ProbeError
from scanner.model import Asset, Column, Grant, Principal, SourceSnapshot
from scanner.plugins import Connector, ProbeContext, Setting
from scanner.redact import redact_text

# Metadata keys under which teams record the embedding model, in the order they are tried.
MODEL_KEYS = ("embedding_model", "embedding_model_name", "model_name", "model", "embedder")
PAGE = 1000
# chromadb registers a new client's System in a process-wide cache before it counts a
# reference to it; creating clients and sweeping that cache under one lock keeps a sweep from
# dropping the System of a client another probe is creating at that moment.
_CLIENTS = threading.Lock()


def _release(client: Any) -> None:
    """Close a chromadb client (if one was made) and drop the Systems chromadb leaks.

    chromadb keeps every client's System in a process-wide cache until the client is closed,
    and 1.5's AdminClient.from_system registers a client's System once more under a fresh id
    that holds no reference count and that nothing ever releases, also when the client fails
    to start (an unknown database). Without this a daemon would keep one System per probe.
    Entries without a reference count belong to no live client, so dropping them is safe
    while other probes run.
    """
    try:
        if client is not None:
            client.close()
        from chromadb.api.shared_system_client import SharedSystemClient

        with _CLIENTS:
            counted = SharedSystemClient._identifier_to_refcount
            cache = SharedSystemClient._identifier_to_system
            for identifier in [i for i in list(cache) if i not in counted]:
                cache.pop(identifier, None)
    except Exception:  # noqa: S110 - releasing is best effort; the probe's result stands
        pass


class ChromaConnector(Connector):
    """A Chroma server or persistent folder."""

    kind = "chroma"
    description = "a Chroma vector store (server url or folder): each collection, observed freshness"
    settings = (
        Setting("url", str, help="the server, e.g. http://127.0.0.1:8000 (or set path)"),
        Setting("path", str, help="a persistent Chroma folder, opened with the chromadb package (or set url)"),
        Setting("token", str, secret=True, help="the server's auth token, usually ${ENV_VAR}"),
        Setting("token_header", str, help="`Authorization` (sent as Bearer, the default) or `X-Chroma-Token`"),
        Setting("tenant", str, help="the tenant (default `default_tenant`)"),
        Setting("database", str, help="the database (default `default_database`)"),
        Setting("fingerprint_limit", int, help="records hashed per collection for observed freshness "
                                               "(default 10000; 0: the count alone)"),
    )

    def probe(self, context: ProbeContext) -> SourceSnapshot:
        """List the collections and summarise each one."""
        url, path = self.setting("url"), self.setting("path")
        if bool(url) == bool(path):
            raise ProbeError("chroma: set exactly one of `url` and `path`")
        limit = fingerprint_limit(self.setting("fingerprint_limit"))
        notes: list[str] = []
        grants: list[Grant] = []
        principals: list[Principal] = []
        reports_grants = False
        client = None
        try:
            if url:
                public = self._answers_without_credentials(str(url), context)
                if public:
                    reports_grants = True
                    principal, grant = public_read("the server listed its collections without credentials")
                    principals.append(principal)
                    grants.append(grant)
                elif not self.setting("token"):
                    raise ProbeError("chroma: the server requires credentials; set `token` (from ${ENV_VAR})",
                                     reason="no_credentials")
                else:
                    notes.append("the server requires credentials; Chroma reports no per-principal grants")
                with _CLIENTS:
                    client = self._http_client(str(url), context)
            else:
                with _CLIENTS:
                    client = self._folder_client(str(path))
                notes.append("a local folder: access is the folder's file permissions (not reported)")
            assets, prints = self._collections(client, context, limit)
        except ProbeError as exc:
            redact_probe_error(self, exc)
            raise
        except Exception as exc:  # the SDK's errors, translated in one place
            raise self._translate(exc) from None
        finally:
            if "chromadb" in sys.modules:
                _release(client)
        return collections_snapshot(self, context, assets, prints, limit, "records", notes, principals, grants,
                                    reports_grants)

    # -- clients ---------------------------------------------------------------------------

    def _names(self) -> tuple[str, str]:
        return str(self.setting("tenant", "default_tenant")), str(self.setting("database", "default_database"))

    def _answers_without_credentials(self, url: str, context: ProbeContext) -> bool:
        """Whether the server lists collections to anyone: Chroma's own answer, no token sent."""
        tenant, database = self._names()
        quoted = urllib.parse.quote
        target = (url.rstrip("/") + f"/api/v2/tenants/{quoted(tenant, safe='')}/databases/"
                  f"{quoted(database, safe='')}/collections?limit=1")
        return answers_without_credentials(
            "chroma", target, context,
            not_found=f"tenant {tenant!r} or database {database!r} not found (or the server predates "
                      "Chroma's v2 API, 1.0)")

    def _http_client(self, url: str, context: ProbeContext) -> Any:
        import chromadb
        from chromadb.config import Settings

        parts = urllib.parse.urlsplit(url)
        headers = {}
        token = self.setting("token")
        if token:
            header = str(self.setting("token_header", "Authorization"))
            headers[header] = f"Bearer {token}" if header.lower() == "authorization" else str(token)
        tenant, database = self._names()
        client = chromadb.HttpClient(
            host=parts.hostname or "127.0.0.1", port=parts.port or (443 if parts.scheme == "https" else 8000),
            ssl=parts.scheme == "https", headers=headers, tenant=tenant, database=database,
            settings=Settings(anonymized_telemetry=False))
        # chromadb's HTTP session waits forever (timeout=None); a probe is bounded.
        session = getattr(getattr(client, "_server", None), "_session", None)
        if session is not None:
            import httpx

            session.timeout = httpx.Timeout(min(context.timeout, 30), connect=min(context.timeout, 10))
        return client

    def _folder_client(self, path: str) -> Any:
        folder = local_folder(self, path)
        if not (folder / "chroma.sqlite3").is_file():
            raise ProbeError(f"chroma: {folder} is not a Chroma folder (no chroma.sqlite3)", reason="not_found")
        import chromadb
        from chromadb.config import Settings

        tenant, database = self._names()
        return chromadb.PersistentClient(path=str(folder), tenant=tenant, database=database,
                                         settings=Settings(anonymized_telemetry=False, allow_reset=False))

    # -- collections -----------------------------------------------------------------------

    def _collections(self, client: Any, context: ProbeContext, limit: int) -> tuple[list[Asset], dict[str, Any]]:
        assets: list[Asset] = []
        prints: dict[str, Any] = {}
        for collection in sorted(client.list_collections(), key=lambda c: c.name):
            if context.cancelled.is_set():
                break
            name = collection.name
            if not self.source.wants(name):
                continue
            model = collection._model  # the server's record: dimension, configuration
            count = int(collection.count())
            metadata = dict(collection.metadata or {})
            configuration = dict(getattr(model, "configuration_json", None) or {})
            digest = Fingerprint()
            offset = 0
            while offset < min(count, limit) and not context.cancelled.is_set():
                page = collection.get(limit=min(PAGE, limit - offset), offset=offset,
                                      include=["documents", "metadatas"])
                ids = page.get("ids") or []
                if not ids:
                    break
                documents = page.get("documents") or [None] * len(ids)
                metadatas = page.get("metadatas") or [None] * len(ids)
                for record in sorted(zip(ids, documents, metadatas, strict=False), key=lambda r: r[0]):
                    digest.add(*record)
                offset += len(ids)
            current: dict[str, Any] = {"key": str(collection.id), "count": count, "hash": digest.hexdigest(),
                                       "config": Fingerprint.of(metadata, configuration), "partial": count > limit}
            prints[name] = current
            freshness = observed_freshness(context, str(collection.id), current, name)
            dimension = getattr(model, "dimension", None)
            embedding = configuration.get("embedding_function") or {}
            properties: dict[str, Any] = {
                "collection_id": str(collection.id),
                "dimension": dimension,
                "metadata": metadata,
                "distance": (configuration.get("hnsw") or {}).get("space")
                or (configuration.get("spann") or {}).get("space") or metadata.get("hnsw:space"),
            }
            model_name = next((str(metadata[k]) for k in MODEL_KEYS if metadata.get(k)), None)
            if isinstance(embedding, dict) and embedding.get("name"):
                properties["embedding_function"] = embedding.get("name")
                model_name = model_name or (embedding.get("config") or {}).get("model_name")
            if model_name:
                properties["embedding_model"] = str(model_name)
            columns = (Column("id", "string", False), Column("document", "string"),
                       Column("metadata", "map"),
                       Column("embedding", f"vector({dimension})" if dimension else "vector"))
            assets.append(Asset(path=name, kind="collection", columns=columns, row_count=count,
                                freshness=freshness, properties=properties))
        return assets, prints

    def _translate(self, exc: Exception) -> ProbeError:
        """Chroma's and httpx's errors as a ProbeError (secrets redacted)."""
        if isinstance(exc, ImportError):
            return ProbeError(f"chroma: the chromadb package is missing or incomplete ({exc}); "
                              "pip install 'ctxscan[chroma]'")
        name = type(exc).__name__
        text = str(exc).splitlines()[0] if str(exc) else name
        lowered = f"{name} {text}".lower()
        if "timeout" in lowered or "timed out" in lowered:
            reason, retry = "timeout", True
        elif "connect" in lowered or "refused" in lowered:
            reason, retry = "unreachable", True
        elif "unauthorized" in lowered or "401" in lowered or "authentication" in lowered:
            reason, retry = "no_credentials", False
        elif "forbidden" in lowered or "403" in lowered or "permission" in lowered:
            reason, retry = "access_denied", False
        elif "notfound" in lowered or "does not exist" in lowered:
            reason, retry = "not_found", False
        else:
            reason, retry = "error", False
        return ProbeError(redact_text(f"chroma: {name}: {text}", self.redactions()), reason=reason,
                          retryable=retry)
