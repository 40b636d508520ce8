"""A zone worker and its PostgreSQL in a network namespace the daemon cannot reach (issue 14).

The namespace has nothing but its own loopback. The PostgreSQL server in it listens on the
namespace's 127.0.0.1 with no Unix socket, so no process outside can connect to it; the zone
worker runs inside, with the database URL in its environment only. The broker, a private
redis-server, listens on a Unix socket file and on no port: files cross network namespaces,
addresses do not, so the worker inside and the scan outside share the broker and nothing
else. The scan outside fails to reach the database itself and gets its snapshot through the
worker, equal to what the server in the namespace answers.

Needs root, `ip netns` (iproute2) and the PostgreSQL server binaries, as on this project's
machines; where the sandbox refuses a namespace the test is skipped and says why.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_support import free_port, wait_for
from tests.zones_support import base_env, ctxscan

CANARY = "n3tns-" + uuid.uuid4().hex[:12]


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def _namespace_or_skip() -> str:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root here")
    if not shutil.which("ip") or not shutil.which("setpriv"):
        pytest.skip("iproute2's ip or util-linux's setpriv is missing")
    name = f"ctxscan-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"ip netns add is refused in this sandbox: {made.stderr.strip()}")
    subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
    return name


class NamespacedPostgres:
    """A throwaway PostgreSQL cluster whose only listener is 127.0.0.1:PORT inside `netns`."""

    def __init__(self, netns: str, bin_dir: Path) -> None:
        self.netns = netns
        self.bin = bin_dir
        self.port = free_port()  # free outside too: a connection from outside finds nothing there
        self.folder = Path(tempfile.mkdtemp(prefix="ctxscan-netns-pg-"))
        postgres = pwd.getpwnam("postgres")
        os.chown(self.folder, postgres.pw_uid, postgres.pw_gid)
        self.as_postgres = ["setpriv", f"--reuid={postgres.pw_uid}", f"--regid={postgres.pw_gid}",
                            "--clear-groups"]
        data = self.folder / "data"
        subprocess.run([*self.as_postgres, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U",
                        "postgres", "--no-sync", "-E", "UTF8", "--locale=C"],
                       check=True, capture_output=True, env={"PATH": os.environ["PATH"], "HOME": str(self.folder)})
        self.log = (self.folder / "server.log").open("wb")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, *self.as_postgres, str(bin_dir / "postgres"), "-D", str(data),
             "-p", str(self.port), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
             "-c", "fsync=off"], stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.proc.poll() is not None or subprocess.run(
            ["ip", "netns", "exec", netns, str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1",
             "-p", str(self.port)]).returncode == 0, 60, "PostgreSQL in the namespace")
        assert self.proc.poll() is None, (self.folder / "server.log").read_text(errors="replace")

    def sql(self, statement: str, database: str = "postgres") -> list[str]:
        """Rows of `statement` (tab-separated), as psql inside the namespace prints them."""
        out = subprocess.run(["ip", "netns", "exec", self.netns, str(self.bin / "psql"), "-X", "-q", "-A", "-t",
                              "-F", "\t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port),
                              "-U", "postgres", "-d", database, "-c", statement],
                             capture_output=True, text=True, check=True)
        return [line for line in out.stdout.splitlines() if line]

    def url(self, database: str) -> str:
        return f"postgresql://postgres:{CANARY}@127.0.0.1:{self.port}/{database}"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture()
def netns() -> Iterator[str]:
    name = _namespace_or_skip()
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _net_namespace(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")


def test_a_zone_worker_probes_a_database_the_daemon_cannot_reach(tmp_path: Path, netns: str) -> None:
    bin_dir = _pg_bin()
    assert bin_dir is not None, "the PostgreSQL server binaries are missing (/usr/lib/postgresql/*/bin)"
    # The broker: a Unix socket only (port 0 turns TCP off), shared by both sides of the wall.
    broker_dir = Path(tempfile.mkdtemp(prefix="ctxscan-netns-redis-"))
    sock = broker_dir / "redis.sock"
    broker = f"redis+socket://{sock}"
    redis = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", "0", "--unixsocket",
                              str(sock), "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
                              "--dir", str(broker_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server: NamespacedPostgres | None = None
    worker: subprocess.Popen[bytes] | None = None
    worker_log = tmp_path / "worker.log"
    try:
        wait_for(sock.exists, 10, "redis-server's socket")
        server = NamespacedPostgres(netns, bin_dir)
        server.sql("CREATE DATABASE crm")
        server.sql("CREATE TABLE accounts (id int PRIMARY KEY, name text NOT NULL);"
                   "CREATE TABLE orders (id bigint, account int, placed timestamptz, total numeric(12,2));"
                   "CREATE SCHEMA billing; CREATE TABLE billing.invoices (id int, due date);"
                   "COMMENT ON TABLE orders IS 'one row per order';"
                   "INSERT INTO accounts VALUES (1, 'a'), (2, 'b')", database="crm")

        # Outside the namespace nothing listens on that port: the daemon side cannot reach it.
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=3):
            pass
        config = tmp_path / "ctxscan.yaml"
        config.write_text("version: 1\nsources:\n"
                          "  - {id: crm, connector: postgres, zone: lab, url: '${CRM_URL}', timeout: 20s}\n")
        direct = tmp_path / "direct.yaml"
        direct.write_text("version: 1\nsources:\n  - {id: crm, connector: postgres, url: '${CRM_URL}', timeout: 10s}\n")
        local = ctxscan("scan", "-c", str(direct), "--state", f"sqlite:///{tmp_path / 'direct.db'}", "--json",
                        env={"CRM_URL": server.url("crm")})
        assert local.returncode == 1, local.stderr
        local_source = json.loads(local.stdout)["sources"][0]
        assert local_source["status"] == "failed" and local_source["reason"] == "unreachable", local_source
        assert "refused" in local_source["error"] or "connect" in local_source["error"], local_source
        assert CANARY not in local.stdout + local.stderr

        # The worker runs inside the namespace, the URL in its environment only.
        with worker_log.open("wb") as log:
            worker = subprocess.Popen(
                ["ip", "netns", "exec", netns, sys.executable, "-m", "scanner", "worker", "--zone", "lab",
                 "--broker", broker, "--concurrency", "2"],
                cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=base_env(CRM_URL=server.url("crm")))
        wait_for(lambda: " ready." in worker_log.read_text(errors="replace") or worker.poll() is not None,
                 60, "the worker in the namespace")
        assert worker.poll() is None, worker_log.read_text(errors="replace")
        assert _net_namespace(worker.pid) != _net_namespace(os.getpid())
        assert _net_namespace(worker.pid) == _net_namespace(server.proc.pid)

        state = tmp_path / "state.db"
        result = ctxscan("scan", "-c", str(config), "--state", f"sqlite:///{state}", "--broker", broker, "--json")
        assert result.returncode == 0, result.stderr + worker_log.read_text(errors="replace")
        source = json.loads(result.stdout)["sources"][0]
        assert source["status"] == "ok", source

        # The snapshot the worker sent back equals what the server in the namespace answers.
        from scanner.store import Store

        store = Store.open(f"sqlite:///{state}")
        try:
            snapshot = store.latest_snapshots()["crm"]
        finally:
            store.close()
        expected = {}
        for row in server.sql("SELECT c.table_schema || '.' || c.table_name, c.column_name, c.data_type "
                              "FROM information_schema.columns c JOIN information_schema.tables t "
                              "USING (table_schema, table_name) WHERE t.table_type = 'BASE TABLE' AND "
                              "c.table_schema NOT IN ('pg_catalog', 'information_schema') "
                              "ORDER BY 1, c.ordinal_position", database="crm"):
            path, column, _ = row.split("\t")
            expected.setdefault(path, []).append(column)
        assert {a.path: [c.name for c in a.columns] for a in snapshot.assets} == expected
        assert set(expected) == {"public.accounts", "public.orders", "billing.invoices"}
        orders = snapshot.asset("public.orders")
        assert orders is not None and orders.properties.get("comment") == "one row per order"
        accounts = snapshot.asset("public.accounts")
        assert accounts is not None and [c.type for c in accounts.columns] == ["integer", "text"]

        # The daemon dispatches the same way: a write in the namespace shows as observed freshness.
        server.sql("INSERT INTO accounts VALUES (3, 'c')", database="crm")
        daemon = ctxscan("daemon", "--once", "-c", str(config), "--state", f"sqlite:///{state}", "--broker", broker)
        assert daemon.returncode in (0, 1), daemon.stderr
        store = Store.open(f"sqlite:///{state}")
        try:
            after = store.latest_snapshots()["crm"]
        finally:
            store.close()
        assert after.probed_at > snapshot.probed_at
        written = after.asset("public.accounts")
        assert written is not None and written.freshness.method == "observed", written
        assert written.freshness.last_changed is not None and written.freshness.last_changed > snapshot.probed_at

        # The source's credentials never crossed into the broker or the store.
        dump = subprocess.run(["redis-cli", "-s", str(sock), "--scan"], capture_output=True, text=True).stdout
        values = "".join(subprocess.run(["redis-cli", "-s", str(sock), "DUMP", key], capture_output=True,
                                        text=True, errors="replace").stdout for key in dump.split())
        assert dump and CANARY not in values and CANARY not in state.read_bytes().decode("latin-1")
    finally:
        if worker is not None and worker.poll() is None:
            worker.terminate()
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        if server is not None:
            server.close()
        redis.kill()
        redis.wait()
        shutil.rmtree(broker_dir, ignore_errors=True)
    # The worker is gone and so is every process that was in the namespace.
    time.sleep(0.1)
    assert not subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout.strip()
