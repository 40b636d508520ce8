"""A whole scan of one database source, for the connector tests that check findings."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from scanner.inventory import load_inventory
from scanner.model import Finding, SourceSnapshot
from scanner.rules import build_context, evaluate
from scanner.scan import run_scan
from scanner.store import Store


def scan_findings(tmp_path: Path, connector: str, source_id: str, url: str, runs_as: str,
                  reads: list[str]) -> tuple[SourceSnapshot, list[Finding]]:
    """Scan one source for one workflow in-process and evaluate every rule."""
    inventory_file = tmp_path / "ctxscan.yaml"
    inventory_file.write_text(json.dumps({
        "version": 1, "owners": [{"id": "data-eng"}],
        "sources": [{"id": source_id, "connector": connector, "url": url, "owner": "data-eng"}],
        "workflows": [{"id": "assistant", "owner": "data-eng", "stage": "production",
                       "runs_as": {source_id: runs_as}, "reads": [f"{source_id}:{r}" for r in reads]}],
    }))
    inventory = load_inventory([inventory_file], env={})
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        run_scan(inventory, store)
        ctx = build_context(inventory, store, datetime.now(UTC))
        return ctx.snapshots[source_id], evaluate(ctx)
    finally:
        store.close()
