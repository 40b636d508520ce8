"""Without its extra installed, a vector-store connector fails its probe with one line saying
which extra to install (the SDK's absence is injected: `sys.modules[name] = None`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CODE = """
import sys
sys.modules[{module!r}] = None
from datetime import UTC, datetime
from scanner.errors import ProbeError
from scanner.plugins import ProbeContext, SourceConfig, connectors
config = SourceConfig(id="s", connector={kind!r}, settings={settings!r})
try:
    connectors()[{kind!r}](config).probe(ProbeContext(now=datetime.now(UTC)))
except ProbeError as exc:
    print(exc.message)
"""


@pytest.mark.parametrize(("kind", "module", "marker"), [
    ("chroma", "chromadb", "chroma.sqlite3"),
    ("lancedb", "lancedb", None),
    ("qdrant", "qdrant_client", "meta.json"),
])
def test_a_missing_sdk_names_the_extra(kind: str, module: str, marker: str | None, tmp_path: Path) -> None:
    if marker:
        (tmp_path / marker).write_text("")
    settings = {"uri": str(tmp_path)} if kind == "lancedb" else {"path": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", CODE.format(module=module, kind=kind, settings=settings)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"pip install 'ctxscan[{kind}]'" in proc.stdout and "Traceback" not in proc.stdout, proc.stdout
