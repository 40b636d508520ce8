"""The command line as a user meets it: fast help, the demo, examples and README honesty."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from scanner.cli import main
from scanner.plugins import connectors
from scanner.rules import RULES

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("sqlalchemy", "networkx", "boto3", "botocore", "google.cloud", "apscheduler",
         "prometheus_client", "psycopg", "pymysql", "yaml", "celery", "kombu", "redis", "chromadb", "lancedb",
         "pyarrow", "qdrant_client")


def test_help_imports_no_heavy_library() -> None:
    code = ("import sys; from scanner.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_version(ctxscan) -> None:
    result = ctxscan("--version")
    assert result.code == 0 and "ctxscan" in result.out


def test_demo_builds_scans_and_finds(tmp_path: Path, ctxscan) -> None:
    result = ctxscan("demo", "--dir", str(tmp_path / "demo"))
    assert result.code == 0, result
    assert "helpdesk:main.sla_policies" in result.out and "STALE" in result.out
    data = json.loads(ctxscan("demo", "--dir", str(tmp_path / "demo"), "--json").out)
    statuses = {a["asset"]: a["status"] for a in data["assets"]}
    assert statuses["helpdesk:main.sla_policies"] == "STALE"
    assert statuses["kb:policies"] == "STALE"
    assert statuses["helpdesk:main.customers"] == "fresh"
    stale = {f["asset"] for f in data["findings"] if f["kind"] == "stale"}
    assert {"helpdesk:main.sla_policies", "kb:policies"} <= stale
    # The demo leaves a working inventory behind: the CLI reads its store.
    config = tmp_path / "demo" / "ctxscan.yaml"
    listed = json.loads(ctxscan("findings", "-c", str(config), "--json").out)
    assert {f["fingerprint"] for f in listed} >= {f["fingerprint"] for f in data["findings"]
                                                  if f["kind"] == "stale"}


EXAMPLE_ENV = {"CRM_URL": "postgresql://reader@127.0.0.1/crm", "ALERT_WEBHOOK": "http://127.0.0.1:9/hook"}


@pytest.mark.parametrize("config", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_example_configs_validate(config: str, ctxscan) -> None:
    result = ctxscan("validate", "-c", str(ROOT / "configs" / config), env=EXAMPLE_ENV)
    assert result.code == 0, result


def _readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def _commands() -> set[str]:
    names = set()
    for name, command in main.commands.items():
        sub = getattr(command, "commands", None)
        names |= {f"{name} {s}" for s in sub} if sub else {name}
        if sub and getattr(command, "invoke_without_command", False):
            names.add(name)  # a group that is also a command (`findings` and `findings show`)
    return names


def test_readme_lists_every_command_and_only_those() -> None:
    listed = set(re.findall(r"^\| `ctxscan ([a-z]+(?: [a-z]+)?)", _readme(), re.M))
    listed = {c if c.split()[0] in main.commands and getattr(main.commands[c.split()[0]], "commands", None)
              else c.split()[0] for c in listed}
    assert listed == _commands()


def test_readme_lists_every_connector_and_only_those() -> None:
    section = _readme().split("## Connectors", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([a-z0-9_]+)` \|", section, re.M))
    ours = {name for name, cls in connectors().items() if cls.__module__.startswith("connectors.")}
    assert listed == ours


def test_readme_and_rules_list_every_finding_kind() -> None:
    section = _readme().split("## Findings", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([a-z_]+)` \|", section, re.M))
    product = (ROOT.parent / "shared" / "PRODUCT.md")
    assert listed == set(RULES)
    if product.exists():
        brief = product.read_text().split("## Findings", 1)[1].split("\n## ", 1)[0]
        assert set(re.findall(r"^\| `([a-z_]+)` \|", brief, re.M)) == listed


def test_bad_output_paths_are_one_line_and_exit_2(tmp_path: Path, ctxscan) -> None:
    result = ctxscan("demo", "--dir", "/proc/ctxscan-demo")
    assert result.code == 2 and "cannot build the demo in" in result.err and "Traceback" not in result.err
    assert ctxscan("demo", "--dir", str(tmp_path / "demo")).code == 0
    config = str(tmp_path / "demo" / "ctxscan.yaml")
    for target, words in (("/proc/x.json", "cannot write /proc/x.json"), (str(tmp_path), "is a folder")):
        result = ctxscan("graph", "export", "-c", config, "--format", "json", "-o", target)
        assert result.code == 2 and words in result.err and "Traceback" not in result.err, result
    assert not list(tmp_path.glob(".*.tmp")) and not Path("/.proc.tmp").exists()


def test_readme_lists_every_setting_of_every_connector() -> None:
    section = _readme().split("## Connectors", 1)[1].split("\n## ", 1)[0]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([a-z0-9_]+)` \| ([^|]*) \|", section, re.M)}
    for name, cls in connectors().items():
        if not cls.__module__.startswith("connectors."):
            continue
        listed = set(re.findall(r"`([a-z_]+)`", rows[name]))
        assert listed == {s.name for s in cls.settings}, name


@pytest.mark.parametrize("command, collects", [("validate", False), ("daemon --once", True)])
def test_only_the_daemon_keeps_the_cyclic_collector(write_inventory, tmp_path: Path, command: str,
                                                     collects: bool) -> None:
    """One-shot commands pause the collector (they exit soon); the daemon runs for months."""
    path = write_inventory("version: 1\nsources: [{id: a, connector: fake, tables: [t]}]\n")
    code = ("import gc, sys; from scanner.cli import main\n"
            "try:\n    main(sys.argv[1:], standalone_mode=False)\nfinally:\n    print(gc.isenabled())")
    args = ["-c", str(path), "--state", f"sqlite:///{tmp_path / 's.db'}", *command.split()]
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == str(collects)
