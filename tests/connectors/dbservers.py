"""Fixtures for the database connector tests: real servers, unique databases and roles.

Each test module that lists this module in `pytest_plugins` gets its own `postgres_server`
and `mysql_server`: every database, role and account they create carries a random suffix
and is dropped when the module ends (roles and accounts are server-wide, so they must go
too). A missing server fails the tests, never skips them. The socket fixtures stand for a
server that refuses connections, one that accepts and never answers, and (fault injection)
a PostgreSQL front door that rejects a password.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

PG_ADMIN_URL = os.environ.get("CTXSCAN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
MYSQL_HOST = os.environ.get("CTXSCAN_TEST_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("CTXSCAN_TEST_MYSQL_PORT", "3306"))
MYSQL_ADMIN_USER = os.environ.get("CTXSCAN_TEST_MYSQL_USER", "root")
MYSQL_ADMIN_PASSWORD = os.environ.get("CTXSCAN_TEST_MYSQL_PASSWORD", "")


def unique(prefix: str) -> str:
    """A name no other test run uses: `prefix_<10 hex digits>`."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------------------------------
# PostgreSQL


class PostgresServer:
    """The local PostgreSQL, with the databases and roles this test module created."""

    def __init__(self) -> None:
        import psycopg

        try:
            self.admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc} "
                        "(bash tests/run-all.sh starts it)", pytrace=False)
        self.databases: list[str] = []
        self.roles: list[str] = []
        self.connections: list[Any] = []
        self.host = self.admin.info.host
        self.port = self.admin.info.port
        self.user = self.admin.info.user

    def url(self, database: str, user: str | None = None, password: str | None = None) -> str:
        """A libpq URI for one of our databases."""
        who = quote(user or self.user, safe="")
        if password is not None:
            who += ":" + quote(password, safe="")
        return f"postgresql://{who}@{self.host}:{self.port}/{quote(database, safe='')}"

    def create_database(self, prefix: str = "ctxscan_t", owner: str | None = None) -> str:
        """A new, empty database (owned by `owner`, one of our roles); dropped when the module ends."""
        name = unique(prefix)
        self.admin.execute(f'CREATE DATABASE "{name}"' + (f' OWNER "{owner}"' if owner else ""))
        self.databases.append(name)
        return name

    def connect(self, database: str, user: str | None = None) -> Any:
        """An autocommit connection to one of our databases, closed at the end."""
        import psycopg

        conn = psycopg.connect(self.url(database, user), autocommit=True, connect_timeout=10)
        self.connections.append(conn)
        return conn

    def role(self, prefix: str, options: str = "") -> str:
        """A new cluster-wide role `prefix_<hex>` with CREATE ROLE options; dropped at the end."""
        name = unique(prefix)
        self.admin.execute(f'CREATE ROLE "{name}" {options}')
        self.roles.append(name)
        return name

    def wait_for_changes(self, conn: Any, table: str, expected: int, timeout: float = 20.0) -> None:
        """Wait until pg_stat_user_tables shows `expected` inserts+updates+deletes for `table`.

        Backends flush their counters to shared statistics with a delay of up to a second.
        """
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables WHERE relid = %s::regclass",
                (table,)).fetchone()
            seen = row[0] if row else None
            if seen == expected:
                return
            time.sleep(0.1)
        raise AssertionError(f"counters of {table} stayed at {seen}, expected {expected}")

    def close(self) -> None:
        for conn in self.connections:
            try:
                conn.close()
            except Exception:
                pass
        for name in self.databases:
            self.admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for name in reversed(self.roles):
            self.admin.execute(f'DROP ROLE IF EXISTS "{name}"')
        self.admin.close()


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    """The local PostgreSQL; what the module creates on it is dropped afterwards."""
    server = PostgresServer()
    try:
        yield server
    finally:
        server.close()


# ---------------------------------------------------------------------------------------
# MariaDB / MySQL


class MysqlServer:
    """The local MariaDB or MySQL, with the databases and accounts this module created."""

    def __init__(self) -> None:
        import pymysql

        try:
            self.admin = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_ADMIN_USER,
                                         password=MYSQL_ADMIN_PASSWORD, autocommit=True, connect_timeout=10,
                                         charset="utf8mb4")
        except pymysql.err.MySQLError as exc:
            pytest.fail(f"MariaDB/MySQL is not reachable at {MYSQL_HOST}:{MYSQL_PORT}: {exc} "
                        "(bash tests/run-all.sh starts it)", pytrace=False)
        self.databases: list[str] = []
        self.accounts: list[tuple[str, str]] = []
        self.roles: list[str] = []
        self.version = str(self.execute("SELECT VERSION()")[0][0])
        self.mariadb = "mariadb" in self.version.lower()

    def execute(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement as the admin account and return its rows."""
        with self.admin.cursor() as cursor:
            cursor.execute(statement, params)
            return list(cursor.fetchall())

    def url(self, database: str | None = None, user: str | None = None, password: str | None = None) -> str:
        """A mysql:// URL for one of our databases (or the whole server)."""
        who = quote(user if user is not None else MYSQL_ADMIN_USER, safe="")
        secret = password if password is not None else (MYSQL_ADMIN_PASSWORD if user is None else "")
        if secret:
            who += ":" + quote(secret, safe="")
        path = quote(database, safe="") if database else ""
        return f"mysql://{who}@{MYSQL_HOST}:{MYSQL_PORT}/{path}"

    def create_database(self, name: str | None = None) -> str:
        """A new database (a random name, or `name` which must be unique); dropped at the end."""
        name = name or unique("ctxscan_t")
        self.execute(f"CREATE DATABASE `{name.replace('`', '``')}` CHARACTER SET utf8mb4")
        self.databases.append(name)
        return name

    def create_user(self, prefix: str, host: str = "%", password: str | None = None,
                    user: str | None = None) -> str:
        """A new account; returns its principal name `user@host`."""
        user = user if user is not None else unique(prefix)
        clause = " IDENTIFIED BY %s" if password else ""
        self.execute(f"CREATE USER %s@%s{clause}", (user, host, password) if password else (user, host))
        self.accounts.append((user, host))
        return f"{user}@{host}"

    def create_role(self, prefix: str) -> str:
        """A new role (MariaDB) named `prefix_<hex>`."""
        name = unique(prefix)
        self.execute(f"CREATE ROLE `{name}`")
        self.roles.append(name)
        return name

    def close(self) -> None:
        for name in self.databases:
            self.execute(f"DROP DATABASE IF EXISTS `{name.replace('`', '``')}`")
        if self.databases:
            # Grants outlive their database; PUBLIC's (MariaDB 10.11) would outlive the test.
            for table in ("db", "tables_priv", "columns_priv"):
                self.execute(f"DELETE FROM mysql.{table} WHERE Db IN %s", (self.databases,))
            self.execute("FLUSH PRIVILEGES")
        for user, host in self.accounts:
            self.execute("DROP USER IF EXISTS %s@%s", (user, host))
        for name in self.roles:
            self.execute(f"DROP ROLE IF EXISTS `{name}`")
        self.admin.close()


@pytest.fixture(scope="module")
def mysql_server() -> Iterator[MysqlServer]:
    """The local MariaDB/MySQL; what the module creates on it is dropped afterwards."""
    server = MysqlServer()
    try:
        yield server
    finally:
        server.close()


# ---------------------------------------------------------------------------------------
# Sockets that misbehave


@pytest.fixture
def closed_port() -> int:
    """A loopback port where nothing listens: connecting is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _SocketServer:
    """A loopback TCP server that runs `handle(conn)` for each connection in a thread."""

    def __init__(self, handle: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.handle = handle
        self.stop = threading.Event()
        self.clients: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.clients.append(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        try:
            self.handle(conn, self.stop)
        except OSError:
            pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        for conn in self.clients:
            conn.close()
        self.sock.close()


@pytest.fixture
def hanging_server() -> Iterator[int]:
    """A loopback port that accepts connections and never says a word."""
    def hang(conn: socket.socket, stop: threading.Event) -> None:
        stop.wait()

    server = _SocketServer(hang)
    try:
        yield server.port
    finally:
        server.close()


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise OSError("client went away")
        data += chunk
    return data


@pytest.fixture
def postgres_password_rejecting_server() -> Iterator[int]:
    """Fault injection: a PostgreSQL front door that asks for a password and rejects it.

    It speaks just enough of the wire protocol (SSL/GSS refusal, startup, cleartext password
    request) and answers with FATAL 28P01, as a real server with password auth does, except
    that its message also repeats the password it received, to prove that ctxscan redacts
    it even when a server echoes it.
    """
    def serve(conn: socket.socket, stop: threading.Event) -> None:
        conn.settimeout(10)
        while True:
            length, code = struct.unpack("!ii", _recv_exact(conn, 8))
            body = _recv_exact(conn, length - 8)
            if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest: not here
                conn.sendall(b"N")
                continue
            break
        params = body.split(b"\0")
        user = params[params.index(b"user") + 1].decode() if b"user" in params else "?"
        conn.sendall(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
        kind = _recv_exact(conn, 1)
        size = struct.unpack("!i", _recv_exact(conn, 4))[0]
        password = _recv_exact(conn, size - 4).rstrip(b"\0").decode("utf-8", "replace")
        assert kind == b"p"
        message = f'password authentication failed for user "{user}" (received password {password})'
        fields = (b"SFATAL\0VFATAL\0C28P01\0M" + message.encode() + b"\0\0")
        conn.sendall(b"E" + struct.pack("!i", len(fields) + 4) + fields)
        conn.close()

    server = _SocketServer(serve)
    try:
        yield server.port
    finally:
        server.close()
