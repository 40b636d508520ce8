"""`qdrant`: a Qdrant server (`url`, `api_key`) or a local folder (`path`, qdrant-client's local mode).

Each collection is an asset: its points count (`row_count`), its vectors (size and distance,
named vectors each on their own), its status (green, yellow, red) and its payload indexes.
Qdrant keeps no write time, so freshness is `observed`: the points count and a fingerprint of
the points (ids and payloads of up to `fingerprint_limit` points) are kept in the snapshot's
state and compared at the next scan.

Access (server): before using `api_key`, the connector lists collections without it; when
the server answers, anyone who can reach it can read every collection, reported as a public
read grant (`public_access`). A local folder is opened by qdrant-client, which locks it
(a folder another process holds open fails with a clear reason) and loads its collections
into memory: local mode is for small stores, as qdrant-client itself says.

Needs `pip install 'ctxscan[qdrant]'`.
"""

from __future__ import annotations

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

PAGE = 1000


def _vectors(params: Any) -> list[dict[str, Any]]:
    """Each vector of a collection: `{name, size, distance}` (`name` is "" for the unnamed one)."""
    vectors = params.vectors
    if vectors is None:
        return []
    items = vectors.items() if isinstance(vectors, dict) else [("", vectors)]
    out = []
    for name, spec in sorted(items):
        distance = getattr(spec.distance, "value", spec.distance)
        out.append({"name": name, "size": int(spec.size), "distance": str(distance)})
    return out


class QdrantConnector(Connector):
    """A Qdrant server or local folder."""

    kind = "qdrant"
    description = "a Qdrant vector store (server url or local folder): each collection, observed freshness"
    settings = (
        Setting("url", str, help="the server, e.g. http://127.0.0.1:6333 (or set path)"),
        Setting("path", str, help="a folder written by qdrant-client's local mode (or set url)"),
        Setting("api_key", str, secret=True, help="the server's API key, usually ${ENV_VAR}"),
        Setting("fingerprint_limit", int, help="points hashed per collection for observed freshness "
                                               "(default 10000; 0: the count alone)"),
    )

    def probe(self, context: ProbeContext) -> SourceSnapshot:
        """List the collections and summarise each one."""
        url, path = self.setting("url"), self.setting("path")
        if bool(url) == bool(path):
            raise ProbeError("qdrant: set exactly one of `url` and `path`")
        limit = fingerprint_limit(self.setting("fingerprint_limit"))
        notes: list[str] = []
        grants: list[Grant] = []
        principals: list[Principal] = []
        reports_grants = False
        client = None
        try:
            if url:
                if self._answers_without_credentials(str(url), context):
                    reports_grants = True
                    principal, grant = public_read("the server listed its collections without an API key")
                    principals.append(principal)
                    grants.append(grant)
                elif not self.setting("api_key"):
                    raise ProbeError("qdrant: the server requires an API key; set `api_key` (from ${ENV_VAR})",
                                     reason="no_credentials")
                client = self._server_client(str(url), context)
            else:
                client = self._local_client(str(path))
                notes.append("a local folder: access is the folder's file permissions (not reported)")
            assets, prints = self._collections(client, context, limit)
        except ProbeError as exc:
            redact_probe_error(self, exc)
            raise
        except Exception as exc:  # the SDK's errors, translated in one place
            raise self._translate(exc) from None
        finally:
            if client is not None:
                try:
                    client.close()
                except Exception:  # noqa: S110 - closing is best effort; the probe's result stands
                    pass
        return collections_snapshot(self, context, assets, prints, limit, "points", notes, principals, grants,
                                    reports_grants)

    def _answers_without_credentials(self, url: str, context: ProbeContext) -> bool:
        """Whether the server lists collections to anyone: Qdrant's own answer, no key sent."""
        return answers_without_credentials("qdrant", url.rstrip("/") + "/collections", context)

    def _server_client(self, url: str, context: ProbeContext) -> Any:
        from qdrant_client import QdrantClient

        api_key = self.setting("api_key")
        return QdrantClient(url=url, api_key=str(api_key) if api_key else None,
                            timeout=int(max(1, min(context.timeout, 30))), check_compatibility=False)

    def _local_client(self, path: str) -> Any:
        folder = local_folder(self, path)
        # qdrant-client would create a missing folder: a probe must not.
        if not (folder / "meta.json").is_file():
            raise ProbeError(f"qdrant: {folder} is not a Qdrant local folder (no meta.json)", reason="not_found")
        from qdrant_client import QdrantClient

        return QdrantClient(path=str(folder))

    def _collections(self, client: Any, context: ProbeContext, limit: int) -> tuple[list[Asset], dict[str, Any]]:
        assets: list[Asset] = []
        prints: dict[str, Any] = {}
        for name in sorted(c.name for c in client.get_collections().collections):
            if context.cancelled.is_set():
                break
            if not self.source.wants(name):
                continue
            info = client.get_collection(name)
            count = int(info.points_count or 0)
            digest = Fingerprint()
            offset = None
            while digest.records < min(count, limit) and not context.cancelled.is_set():
                points, offset = client.scroll(name, limit=min(PAGE, limit - digest.records), offset=offset,
                                               with_payload=True, with_vectors=False)
                for point in points:
                    digest.add(str(point.id), point.payload)
                if offset is None or not points:
                    break
            vectors = _vectors(info.config.params)
            status = str(getattr(info.status, "value", info.status))
            config = Fingerprint.of(vectors, sorted((info.payload_schema or {}).keys()))
            current: dict[str, Any] = {"key": name, "count": count, "hash": digest.hexdigest(), "config": config,
                                       "partial": count > limit}
            prints[name] = current
            freshness = observed_freshness(context, name, current, name, what="points count or payloads")
            columns = [Column("id", "point id", False), Column("payload", "map")]
            for vector in vectors:
                label = vector["name"] or "vector"
                if all(c.name != label for c in columns):
                    columns.append(Column(label, f"vector({vector['size']}, {vector['distance']})"))
            properties: dict[str, Any] = {
                "status": status, "vectors": vectors,
                "indexed_vectors_count": info.indexed_vectors_count,
                "payload_indexes": sorted((info.payload_schema or {}).keys()),
            }
            if len(vectors) == 1:
                properties["dimension"] = vectors[0]["size"]
                properties["distance"] = vectors[0]["distance"]
            assets.append(Asset(path=name, kind="collection", columns=tuple(columns), row_count=count,
                                freshness=freshness, properties=properties))
        return assets, prints

    def _translate(self, exc: Exception) -> ProbeError:
        """qdrant-client's and httpx's errors as a ProbeError (secrets redacted)."""
        if isinstance(exc, ImportError):
            return ProbeError(f"qdrant: the qdrant-client package is missing ({exc}); pip install 'ctxscan[qdrant]'")
        name = type(exc).__name__
        text = str(exc).splitlines()[0] if str(exc) else name
        lowered = f"{name} {text}".lower()
        if "already accessed by another instance" in lowered:
            reason, retry = "error", True
            text = "the folder is open in another Qdrant client (local mode allows one at a time)"
        elif "timeout" in lowered or "timed out" in lowered:
            reason, retry = "timeout", True
        elif "connect" in lowered or "refused" in lowered:
            reason, retry = "unreachable", True
        elif "401" in lowered or "unauthorized" in lowered:
            reason, retry = "no_credentials", False
        elif "403" in lowered or "forbidden" in lowered:
            reason, retry = "access_denied", False
        else:
            reason, retry = "error", False
        return ProbeError(redact_text(f"qdrant: {name}: {text}", self.redactions()), reason=reason,
                          retryable=retry)
