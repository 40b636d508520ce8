"""A small estate for the graph, query and export tests: fake sources, scanned for real."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ESTATE = """
version: 1
owners: [{id: data-eng}, {id: support, contact: "#support"}]
sources:
  - id: crm
    connector: fake
    owner: data-eng
    freshness: {max_age: 24h}
    tables: ["public.customers@2h", "public.tickets@30m", "public.orders@3d", "public.notes@none",
             "internal.audit@1h"]
    columns: ["id:int", "updated_at:timestamp"]
    grants: ["readers:SELECT:public.customers", "readers:SELECT:public.tickets",
             "PUBLIC:SELECT:public.tickets", "writers:INSERT:public.orders",
             "support_bot:SELECT:public.customers", "auditors:SELECT:internal.*",
             "former_intern:SELECT:public.notes"]
    members: ["support_bot:analysts", "analysts:readers", "loader_bot:writers", "loader_bot:auditors",
              "loader_bot:etl:noinherit"]
    superusers: ["etl"]
  - id: kb
    connector: fake
    owner: support
    tables: ["articles@1h", "macros@2d"]
workflows:
  - id: assistant
    owner: support
    stage: production
    runs_as: {crm: support_bot}
    reads:
      - {asset: "crm:public.customers", max_age: 1h}
    feeds: [router, summariser]
  - id: router
    owner: support
    stage: pilot
    reads: ["kb:articles"]
    feeds: [reporter]
  - id: summariser
    owner: support
    reads: ["crm:public.tickets"]
    feeds: [reporter]
  - id: reporter
    owner: support
    reads: ["kb:macros"]
  - id: explorer
    owner: ghost-team
    runs_as: {crm: explorer_bot}
    reads: ["crm:public.*"]
  - id: orphan-reader
    owner: data-eng
    reads: ["crm:public.missing"]
  - id: loader
    owner: data-eng
    runs_as: {crm: loader_bot}
    reads: [{asset: "crm:public.orders", access: write, approval: human}]
"""

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def write_estate(directory: Path, text: str = ESTATE) -> Path:
    """The inventory file of the test estate."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "ctxscan.yaml"
    config.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return config


def scanned_estate(directory: Path, text: str = ESTATE, now: datetime = NOW) -> tuple[Any, Any]:
    """Write the estate, scan it into a store next to it, and return (inventory, store)."""
    from scanner.inventory import load_inventory
    from scanner.scan import run_scan
    from scanner.store import Store, default_state_url

    config = write_estate(directory, text)
    inventory = load_inventory([config])
    store = Store.open(default_state_url([str(config)], inventory.state, env={}))
    run_scan(inventory, store, now=lambda: now)
    return inventory, store


def estate_graph(directory: Path, text: str = ESTATE, findings: Any = None) -> Any:
    """The networkx graph of the scanned estate (with the findings the scan stored, or these)."""
    from scanner.graph import graph_from_store

    inventory, store = scanned_estate(directory, text)
    try:
        return graph_from_store(inventory, store, store.findings("open") if findings is None else findings)
    finally:
        store.close()


def stored_finding(kind: str, severity: str = "high", **subject: Any) -> Any:
    """A StoredFinding as the store would return it."""
    from scanner.store import StoredFinding

    return StoredFinding(
        fingerprint=f"{kind}-{'-'.join(str(v) for v in subject.values())}", kind=kind, subkind=None,
        severity=severity, status="open", source=subject.get("source"), asset=subject.get("asset"),
        workflow=subject.get("workflow"), principal=subject.get("principal"),
        message=subject.get("message", f"{kind} finding"), remediation="", evidence={},
        first_seen=NOW, last_seen=NOW, resolved_at=None, times_opened=1)
