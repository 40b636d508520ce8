"""The static side of the connector contract, for every registered connector (ours and installed).

The live side (`check_snapshot_contract` on a real probe) runs in each connector's own test
module; the last test here makes sure each of ours has one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from scanner.plugins import BUILTIN_CONNECTORS, ENTRY_POINT_GROUP, Connector, Setting, connectors, load_errors

TESTS = Path(__file__).resolve().parent
SDKS = ("boto3", "botocore", "google.cloud", "psycopg", "pymysql", "sqlalchemy", "chromadb", "lancedb",
        "pyarrow", "qdrant_client")


def test_every_registered_connector_loads() -> None:
    assert load_errors() == {}
    assert {"files", "sqlite", "fake"} <= set(connectors())


def test_the_core_knows_our_entry_points() -> None:
    """BUILTIN_CONNECTORS (which spares a scan the entry-point discovery) is pyproject.toml's list."""
    ours = {e.name: e.value for e in entry_points(group=ENTRY_POINT_GROUP) if e.value.startswith("connectors.")}
    assert BUILTIN_CONNECTORS == ours


@pytest.mark.parametrize("kind", sorted(connectors()))
def test_static_contract(kind: str) -> None:
    cls = connectors()[kind]
    assert issubclass(cls, Connector) and cls.kind == kind
    assert cls.description, f"{kind} needs a description"
    assert cls.probe is not Connector.probe
    names = [s.name for s in cls.settings]
    assert len(names) == len(set(names))
    for setting in cls.settings:
        assert isinstance(setting, Setting) and setting.help, f"{kind}.{setting.name} needs help text"


@pytest.mark.parametrize("entry", sorted(e.value for e in entry_points(group=ENTRY_POINT_GROUP)))
def test_importing_a_connector_imports_no_sdk(entry: str) -> None:
    module = entry.split(":")[0]
    code = f"import sys, {module}; print([m for m in {SDKS!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"{module} imports an SDK at import time: {out}"


@pytest.mark.parametrize("kind", sorted(k for k, c in connectors().items() if c.__module__.startswith("connectors.")))
def test_each_of_our_connectors_runs_the_live_contract(kind: str) -> None:
    module = connectors()[kind].__module__.split(".")[-1]
    if kind == "fake":
        return  # the fake's live contract runs below
    text = (TESTS / f"test_{module}.py").read_text()
    assert "check_snapshot_contract" in text


def test_fake_live_contract() -> None:
    from datetime import UTC, datetime

    from scanner.plugins import ProbeContext, SourceConfig
    from tests.connectors.contract import check_snapshot_contract

    source = SourceConfig(id="f", connector="fake", settings={
        "tables": ["public.a@1h", "public.b@none"], "columns": ["id:int"],
        "grants": ["bot:SELECT:public.a", "PUBLIC:SELECT:public.b"], "members": ["bot:readers"],
        "superusers": ["admin"]})
    snapshot = connectors()["fake"](source).probe(ProbeContext(now=datetime.now(UTC)))
    check_snapshot_contract(snapshot, source)


def test_a_broken_plugin_is_reported_once_and_skipped(tmp_path: Path) -> None:
    """Install a third-party distribution with a broken and a bad entry point, in a subprocess."""
    dist = tmp_path / "thirdparty-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[ctxscan.connectors]\nbroken = thirdparty_missing:Nope\nnotaconnector = json:dumps\n"
        "files = thirdparty_missing:Files\n")
    code = ("import logging, sys; logging.basicConfig(level=logging.WARNING)\n"
            f"sys.path.insert(0, {str(tmp_path)!r})\n"
            "from scanner.plugins import connectors, load_errors\n"
            "found = connectors(); connectors()\n"
            "print(sorted(k for k in load_errors() if k in ('broken', 'notaconnector')));"
            "print('files' in found)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = proc.stdout.strip().splitlines()
    assert lines[-2] == "['broken', 'notaconnector']" and lines[-1] == "True"
    assert proc.stderr.count("'broken'") == 1
    assert "is not a subclass" in proc.stderr
    # A plugin under a built-in kind is reported and skipped; ours keeps working.
    assert "'files' (thirdparty_missing:Files) is registered under a kind already taken" in proc.stderr
    # `ctxscan validate` reads every entry point, so it reports them too.
    inventory = tmp_path / "ctxscan.yaml"
    inventory.write_text("version: 1\nsources: [{id: a, connector: files, path: .}]\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    validated = subprocess.run([sys.executable, "-m", "scanner", "validate", "-c", str(inventory)],
                               capture_output=True, text=True, env=env, cwd=tmp_path)
    assert validated.returncode == 0, validated.stderr
    assert "registered under a kind already taken" in validated.stderr and "'broken'" in validated.stderr
