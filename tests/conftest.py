"""Shared fixtures: run the real CLI in a subprocess, write inventories, make PostgreSQL databases."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_DSN = os.environ.get("CTXSCAN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


class CliResult:
    """What a ctxscan subprocess printed and returned."""

    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def __repr__(self) -> str:
        return f"<exit {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}>"


def run_ctxscan(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
                timeout: float = 120) -> CliResult:
    """Run `ctxscan ARGS` as a user would, in a fresh process."""
    full_env = dict(os.environ)
    for name in ("CTXSCAN_CONFIG", "CTXSCAN_STATE"):
        full_env.pop(name, None)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "scanner", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    return CliResult(proc)


# Modules that create, grant or drop roles and accounts on the shared PostgreSQL and MariaDB
# servers, or compare two probes of them: a probe reads every role of the cluster (and MariaDB's
# whole grant tables), so a role another test makes between two probes changes what a rescan
# must reuse. Under pytest-xdist (`--dist loadgroup`, tests/run-all.sh) they run one after
# another on one worker; everything else spreads over the workers. A new module that changes
# server-wide roles or compares whole-server principals belongs here.
SERVER_ROLE_MODULES = frozenset({
    "tests/test_postgres_rescan.py", "tests/connectors/test_postgres.py",
    "tests/connectors/test_access_postgres_differential.py", "tests/test_access_drift.py",
    "tests/test_why_postgres.py", "tests/connectors/test_mysql_rescan.py", "tests/connectors/test_mysql.py",
    "tests/connectors/test_access_mysql_differential.py", "tests/lineage/test_init.py",
})


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups off the items
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.relative_to(ROOT).as_posix() in SERVER_ROLE_MODULES:
            item.add_marker(pytest.mark.xdist_group("server-roles"))


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    """Secrets one in-process test remembered (scanner.redact) must not redact another's output."""
    yield
    from scanner.redact import forget

    forget()


@pytest.fixture(autouse=True)
def _collector_as_it_was() -> Iterator[None]:
    """The CLI pauses the cyclic collector for the rest of its process (scanner/cli.py: a
    one-shot command) and a scan freezes what it holds; an in-process CliRunner test must not
    leave the next test, whichever it is (the suite runs on several workers, in no fixed order),
    a paused collector or objects it can never collect."""
    import gc

    enabled, frozen = gc.isenabled(), gc.get_freeze_count()
    yield
    if enabled:
        gc.enable()
    if gc.get_freeze_count() > frozen:  # a scan froze what it held (scanner/scan.py): collectable again
        gc.unfreeze()


@pytest.fixture
def ctxscan() -> Callable[..., CliResult]:
    """The CLI as a function: ctxscan("scan", "--json", cwd=...)."""
    return run_ctxscan


@pytest.fixture
def write_inventory(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a dedented inventory into tmp_path and return its path."""
    def write(text: str, name: str = "ctxscan.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path
    return write


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database on the local server; dropped afterwards."""
    import psycopg

    name = f"ctxscan_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
