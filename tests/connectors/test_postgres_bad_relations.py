"""One bad relation never fails a PostgreSQL source (issue 12, item 5): the error is the asset's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from tests.connectors.test_postgres import probe

if TYPE_CHECKING:
    from tests.connectors.dbservers import PostgresServer

pytest_plugins = ("tests.connectors.dbservers",)


def test_bad_relations_fail_alone_and_sentinels_are_decided(postgres_server: PostgresServer) -> None:
    db = postgres_server.create_database()
    conn = postgres_server.connect(db)
    conn.execute("""
        CREATE TABLE good (id int, updated_at timestamptz);
        INSERT INTO good VALUES (1, '2026-03-01 10:00Z'), (2, '2026-03-02 10:00Z');
        CREATE TABLE raw (id int, updated_at text);
        INSERT INTO raw VALUES (1, '2026-03-01 10:00Z'), (2, 'not a date');
        CREATE VIEW bad_cast AS SELECT id, updated_at::timestamptz AS updated_at FROM raw;
        CREATE TABLE audit (at timestamptz);
        CREATE FUNCTION touch() RETURNS timestamptz LANGUAGE sql VOLATILE
            AS $$ INSERT INTO audit VALUES (now()); SELECT now() $$;
        CREATE VIEW writes AS SELECT 1 AS id, touch() AS updated_at;
        CREATE TABLE forever (id int, updated_at timestamptz);
        INSERT INTO forever VALUES (1, 'infinity'), (2, '2026-02-01 00:00Z');
        CREATE TABLE only_forever (id int, updated_at timestamptz);
        INSERT INTO only_forever VALUES (1, 'infinity');
        CREATE TABLE ancient (id int, updated_at timestamp);
        INSERT INTO ancient VALUES (1, '-infinity');
        CREATE TABLE daily (id int, updated_at date);
        INSERT INTO daily VALUES (1, '2026-03-01'), (2, '2026-02-27');
        CREATE TABLE nulls (id int, updated_at timestamptz);
        INSERT INTO nulls VALUES (1, NULL), (2, NULL);
        CREATE TABLE empty (id int, updated_at timestamptz);
    """)
    snapshot = probe(postgres_server.url(db), column="updated_at", batch_size=50)
    fresh = {a.path: a.freshness for a in snapshot.assets}
    assert set(fresh) >= {"public.good", "public.bad_cast", "public.writes", "public.forever", "public.daily",
                          "public.nulls", "public.empty", "public.ancient", "public.only_forever", "public.raw"}
    assert fresh["public.good"].method == "column"
    assert fresh["public.good"].last_changed == datetime(2026, 3, 2, 10, tzinfo=UTC)
    # The errors belong to the relations, with the server's reason.
    assert fresh["public.bad_cast"].method == "none"
    assert "not a date" in (fresh["public.bad_cast"].detail or "") and "22007" in (fresh["public.bad_cast"].detail or "")
    assert fresh["public.writes"].method == "none"
    assert "read-only transaction" in (fresh["public.writes"].detail or "")
    assert conn.execute("SELECT count(*) FROM audit").fetchone()[0] == 0  # and it wrote nothing
    # infinity is a sentinel: the newest finite value counts, with a caveat; -infinity is no time.
    assert fresh["public.forever"].method == "column"
    assert fresh["public.forever"].last_changed == datetime(2026, 2, 1, tzinfo=UTC)
    assert "infinity" in (fresh["public.forever"].caveat or "")
    assert fresh["public.only_forever"].method == "none"
    assert "no row has a finite value" in (fresh["public.only_forever"].detail or "")
    assert fresh["public.ancient"].method == "none" and "-infinity" in (fresh["public.ancient"].detail or "")
    # A date is read as the end of its day: the youngest age the evidence allows.
    assert fresh["public.daily"].last_changed == datetime(2026, 3, 2, tzinfo=UTC) - timedelta(microseconds=1)
    assert "end of its day" in (fresh["public.daily"].caveat or "")
    assert fresh["public.nulls"].detail == "max(updated_at) is empty: no non-null value"
    assert fresh["public.empty"].detail == "max(updated_at) is empty: no rows"
    assert any("failed for 2 assets" in note for note in snapshot.notes), snapshot.notes
