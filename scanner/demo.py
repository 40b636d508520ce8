"""`ctxscan demo`: a small estate (a SQLite helpdesk and a folder of documents), scanned.

Needs no server and no network. The estate has one stale table, one old folder, a
world-writable folder, a search index of the articles (a SQLite table of chunks, declared
`derived_from: kb:articles`) that was last built before the articles changed, three workflows
(one without an owner, one reading a table that does not exist), so the scan has real
findings and readiness cards to show.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DEMO_INVENTORY = """\
# The ctxscan demo estate. Scan it again with: ctxscan -c {config} scan
version: 1
owners:
  - {{id: data-eng, contact: "#data-eng"}}
  - {{id: support-platform, contact: "#support-platform"}}
sources:
  - id: helpdesk
    connector: sqlite
    path: helpdesk.db
    owner: data-eng
    schedule: 15m
    freshness: {{max_age: 24h, column: updated_at}}
  - id: kb
    connector: files
    path: kb
    owner: support-platform
    schedule: 1h
    freshness: {{max_age: 7d}}
  - id: kb-index
    connector: sqlite
    path: kb-index.db
    owner: support-platform
    schedule: 1h
    freshness: {{max_age: 7d, column: embedded_at}}
    assets:
      # the chunks are built from the articles: they must follow them within 12 hours
      - {{path: main.chunks, derived_from: ["kb:articles"], max_lag: 12h}}
workflows:
  - id: support-reply-assistant
    owner: support-platform
    stage: production
    runs_as: {{helpdesk: support_bot}}
    reads:
      - {{asset: "helpdesk:main.customers", max_age: 1h}}
      - {{asset: "helpdesk:main.tickets", max_age: 1h}}
      - {{asset: "kb:articles"}}
      - {{asset: "kb:macros"}}
      - {{asset: "kb-index:main.chunks"}}
    feeds: [escalation-router]
    evaluation: {{suite: evals/support.yaml}}
    rollout: {{fallback: human-queue, rollback_owner: support-platform}}
  - id: escalation-router
    owner: support-platform
    stage: pilot
    reads:
      - {{asset: "helpdesk:main.sla_policies"}}
      - {{asset: "helpdesk:main.tickets"}}
  - id: refund-drafter
    stage: poc
    reads:
      - {{asset: "helpdesk:main.refunds", max_age: 24h}}
      - {{asset: "helpdesk:main.refund_reasons"}}
      - {{asset: "kb:policies", max_age: 30d}}
"""


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def build_estate(directory: Path, now: datetime | None = None) -> Path:
    """Write the demo database, documents and inventory; return the inventory path."""
    now = now or datetime.now(UTC)
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / "helpdesk.db"
    if db.exists():
        db.unlink()
    with sqlite3.connect(db) as conn:
        conn.executescript("""
            CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT,
                                    tier TEXT, updated_at TEXT NOT NULL);
            CREATE TABLE tickets (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id),
                                  subject TEXT, status TEXT, updated_at TEXT NOT NULL);
            CREATE TABLE sla_policies (id INTEGER PRIMARY KEY, tier TEXT, first_reply_minutes INTEGER,
                                       updated_at TEXT NOT NULL);
            CREATE TABLE refunds (id INTEGER PRIMARY KEY, ticket_id INTEGER, amount_cents INTEGER,
                                  updated_at TEXT NOT NULL);
            CREATE VIEW open_tickets AS SELECT * FROM tickets WHERE status = 'open';
        """)
        conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?)", [
            (i, f"Customer {i}", f"c{i}@example.com", ("gold", "silver")[i % 2],
             _iso(now - timedelta(minutes=5 * i))) for i in range(1, 9)])
        conn.executemany("INSERT INTO tickets VALUES (?, ?, ?, ?, ?)", [
            (i, 1 + i % 8, f"Question {i}", ("open", "closed")[i % 2],
             _iso(now - timedelta(minutes=3 * i))) for i in range(1, 21)])
        # The stale table: its loader stopped nine days ago.
        conn.executemany("INSERT INTO sla_policies VALUES (?, ?, ?, ?)", [
            (1, "gold", 30, _iso(now - timedelta(days=9))), (2, "silver", 240, _iso(now - timedelta(days=9, hours=2)))])
        conn.executemany("INSERT INTO refunds VALUES (?, ?, ?, ?)", [
            (1, 3, 1999, _iso(now - timedelta(hours=2))), (2, 7, 4500, _iso(now - timedelta(hours=1)))])
    kb = directory / "kb"
    for folder, files, age in (
        ("articles", ["reset-password.md", "billing-faq.md", "shipping-times.md"], timedelta(hours=3)),
        ("macros", ["greeting.txt", "refund-approved.txt"], timedelta(days=1)),
        ("policies", ["refund-policy-2024.md", "warranty.md"], timedelta(days=75)),  # the old folder
    ):
        (kb / folder).mkdir(parents=True, exist_ok=True)
        stamp = (now - age).timestamp()
        for name in files:
            path = kb / folder / name
            path.write_text(f"# {name}\n\nDemo document for ctxscan.\n", encoding="utf-8")
            os.utime(path, (stamp, stamp))
        os.utime(kb / folder, (stamp, stamp))
    # Anyone on the machine can rewrite the reply macros the production assistant reads.
    os.chmod(kb / "macros", 0o777)
    _build_index(directory / "kb-index.db", kb / "articles", now - timedelta(days=2))
    config = directory / "ctxscan.yaml"
    config.write_text(DEMO_INVENTORY.format(config=config), encoding="utf-8")
    return config


def _build_index(db: Path, articles: Path, built: datetime) -> None:
    """The articles' search index: one row per paragraph, with a small made-up embedding.

    It was built `built` (two days before the demo's clock); the articles changed since,
    so the index lags them (`index_lag`).
    """
    import hashlib

    if db.exists():
        db.unlink()
    rows = []
    for article in sorted(articles.iterdir()):
        paragraphs = [p.strip() for p in article.read_text(encoding="utf-8").split("\n\n") if p.strip()]
        for number, text in enumerate(paragraphs):
            digest = hashlib.sha256(f"{article.name}:{number}:{text}".encode()).digest()
            embedding = ",".join(f"{b / 255:.3f}" for b in digest[:8])  # stands in for a model's vector
            rows.append((f"{article.stem}-{number}", f"articles/{article.name}", number, text,
                         f"[{embedding}]", _iso(built)))
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE chunks (id TEXT PRIMARY KEY, document TEXT NOT NULL, chunk INTEGER NOT NULL, "
                     "text TEXT NOT NULL, embedding TEXT NOT NULL, embedded_at TEXT NOT NULL)")
        conn.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?)", rows)


def run_demo(directory: str | Path, echo: Callable[[str], None] | None = print,
             graphs: str | Path | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Build the estate, scan it and return (and print, unless echo is None) the results.

    Graph exports go to `graphs` (default DIRECTORY/graphs). A fixed `now` makes the estate,
    the scan and so the exports reproducible byte for byte.
    """
    from scanner.durations import format_duration
    from scanner.inventory import load_inventory
    from scanner.model import utcnow
    from scanner.output import table
    from scanner.readiness import readiness_cards, render_cards
    from scanner.rules import build_context, evaluate
    from scanner.scan import run_scan
    from scanner.store import Store, default_state_url

    directory = Path(directory)
    config = build_estate(directory, now)
    inventory = load_inventory([config])
    store = Store.open(default_state_url([str(config)], inventory.state))
    try:
        report = run_scan(inventory, store, trigger="demo", now=(lambda: now) if now is not None else utcnow)
        ctx = build_context(inventory, store, report.finished_at)
        assets = _freshness_rows(ctx)
        open_findings = store.findings("open")
        cards = readiness_cards(ctx, evaluate(ctx), inventory.accept)
        graph_files = _write_graphs(inventory, store, Path(graphs) if graphs is not None else directory / "graphs")
    finally:
        store.close()
    result = {
        "directory": str(directory.resolve()),
        "config": str(config.resolve()),
        "scan_id": report.scan_id,
        "status": report.status,
        "assets": assets,
        "findings": [f.to_json() for f in open_findings],
        "readiness": [card.to_json() for card in cards],
        "graphs": [str(path) for path in graph_files],
    }
    if echo is not None:
        echo(f"Built the demo estate in {directory}/ (a SQLite helpdesk, a folder of documents and "
             "a search index of them)")
        echo(f"Scanned {len(report.outcomes)} sources in scan {report.scan_id}: {report.status}\n")
        echo(table(["asset", "method", "age", "sla", "sla set by", "status"],
                   [[a["asset"], a["method"], format_duration(a["age_seconds"]),
                     format_duration(a["sla_seconds"]), a["sla_set_by"] or "-", a["status"]] for a in assets]))
        echo(f"\n{len(open_findings)} open findings:")
        echo(table(["severity", "kind", "subject", "message"],
                   [[f.severity, f.kind + (f"/{f.subkind}" if f.subkind else ""),
                     f.subject, f.message] for f in open_findings],
                   max_width=90))
        echo("\nReadiness (ctxscan readiness):")
        echo(render_cards(cards))
        echo(f"\nGraph exports: {', '.join(str(p) for p in graph_files)}")
        echo(f"\nNext: ctxscan -c {config} findings --json   |   edit {config} and scan again")
    return result


def _write_graphs(inventory: Any, store: Any, directory: Path) -> list[Path]:
    """The dependency graph of the demo estate in every export format."""
    from datetime import date

    from scanner.acceptance import acceptance_for
    from scanner.export import write_exports
    from scanner.graph import graph_from_store

    today = date.today()
    findings = [f for f in store.findings("open") if acceptance_for(f, inventory.accept, today) is None]
    return write_exports(graph_from_store(inventory, store, findings), directory)


def _freshness_rows(ctx: Any) -> list[dict[str, Any]]:
    """Each asset's age against its effective SLA (the one the `stale` rule uses)."""
    from scanner.rules.sla import effective_sla

    rows = []
    for source_id, snapshot in sorted(ctx.snapshots.items()):
        for asset in snapshot.assets:
            age = asset.freshness.newest_age_seconds(min(ctx.now, snapshot.probed_at))
            effective = effective_sla(ctx, source_id, asset.path)
            sla = effective.max_age if effective else None
            set_by = effective.set_by if effective else None
            if age is None:
                status = "unknown"
            elif sla is None:
                status = "no sla"
            else:
                status = "STALE" if age > sla else "fresh"
            rows.append({"asset": f"{source_id}:{asset.path}", "method": asset.freshness.method,
                         "age_seconds": round(age) if age is not None else None,
                         "sla_seconds": sla, "sla_set_by": set_by, "status": status})
    return rows
