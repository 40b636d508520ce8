"""Fixtures for the S3 and BigQuery connector tests: real HTTP servers on 127.0.0.1.

`moto_server` starts moto's server mode (`.venv/bin/moto_server`, beside the running Python)
and `bigquery_emulator` starts bqemulator 1.4.0 from its own virtualenv (`.venv-bq`, made by
tests/services/install-bqemulator.sh), each once per test session on a free loopback port, and
stops them at the end. A server that cannot start FAILS the tests that need it, with its log;
it never skips them.

AWS traffic stays on loopback: the fixture sets dummy credentials, a region and
AWS_EC2_METADATA_DISABLED, and every client gets an explicit endpoint_url.

`FaultProxy` is a small loopback HTTP server in front of a real one: it forwards every request
unchanged, except those a rule answers itself. Tests use it to inject faults (AccessDenied,
throttling, refused queries) and to answer the one API no emulator serves (BigQuery
tables.getIamPolicy) with its documented REST response.

Test modules use these with `pytest_plugins = ("tests.connectors.cloudservers",)` and take
everything through fixtures (`moto_server`, `bigquery_emulator`, `fault_proxy`,
`dead_endpoint`), importing this module only for type names: a plugin module imported before
pytest registers it could not have its asserts rewritten.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BQ_VENV = ROOT / ".venv-bq"
BQ_PROJECT = "ctxscan-test"
AWS_ACCOUNT = "123456789012"  # moto's default account

AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    # Never reach the EC2 metadata service (169.254.169.254) for credentials.
    "AWS_EC2_METADATA_DISABLED": "true",
    # Keep a developer's ~/.aws out of the tests.
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


def unique(prefix: str) -> str:
    """A name no other test uses: `prefix-<10 hex digits>` (valid for buckets and datasets once `-` is `_`)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dead_endpoint() -> str:
    """An http:// URL on loopback where no server listens (a service that is down)."""
    return f"http://127.0.0.1:{free_port()}"


class ServerProcess:
    """A server started as a subprocess, with its log, stopped on `stop()`."""

    def __init__(self, name: str, command: list[str], ready_url: str, log_path: Path,
                 env: dict[str, str] | None = None, timeout: float = 45.0) -> None:
        self.name = name
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        try:
            self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT,
                                            env={**os.environ, **(env or {})}, cwd=log_path.parent,
                                            start_new_session=True)
        except OSError as exc:
            self.log.close()
            pytest.fail(f"{name} could not be started ({' '.join(command)}): {exc}", pytrace=False)
        self._wait(ready_url, timeout)

    def _wait(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.fail(f"exited with code {self.process.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status < 500:
                        return
            except urllib.error.HTTPError as exc:
                if exc.code < 500:
                    return
                last = str(exc)
            except OSError as exc:
                last = str(exc)
            time.sleep(0.2)
        self.fail(f"not ready at {url} after {timeout:g}s ({last})")

    def fail(self, why: str) -> None:
        self.stop()
        tail = self.log_path.read_text(errors="replace")[-3000:]
        pytest.fail(f"{self.name} {why}; its log ({self.log_path}):\n{tail}", pytrace=False)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log.close()


# ---------------------------------------------------------------------------------------
# S3: moto's server mode


class MotoServer:
    """A running moto_server and helpers to fill it."""

    account = AWS_ACCOUNT

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.port = int(urllib.parse.urlsplit(endpoint).port or 80)
        self.buckets: list[str] = []

    def client(self, service: str = "s3") -> Any:
        """A boto3 client for this server (dummy credentials, us-east-1)."""
        import boto3
        from botocore.config import Config

        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing",
                            config=Config(max_pool_connections=16, retries={"total_max_attempts": 1}))

    def control(self) -> Any:
        """An s3control client whose requests reach this server, not `ACCOUNT.127.0.0.1`."""
        client = self.client("s3control")

        def strip_account(request: Any, **_: Any) -> None:
            request.url = request.url.replace(f"//{AWS_ACCOUNT}.", "//", 1)

        client.meta.events.register("before-send.s3-control.*", strip_account)
        return client

    def create_bucket(self, prefix: str = "ctxscan") -> str:
        """A new, uniquely named bucket."""
        name = unique(prefix)
        self.client().create_bucket(Bucket=name)
        self.buckets.append(name)
        return name

    def put_objects(self, bucket: str, keys: Iterable[str], body: bytes = b"x", workers: int = 8) -> None:
        """PUT many small objects fast: raw keep-alive HTTP, several at a time.

        moto does not check request signatures, so plain PUTs save the client the cost of
        SigV4 signing; the server's ~4 ms per object is then the limit.
        """
        local = threading.local()

        def put(key: str) -> None:
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            path = f"/{bucket}/" + urllib.parse.quote(key, safe="/")
            conn.request("PUT", path, body=body, headers={"Content-Length": str(len(body))})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise AssertionError(f"PUT {key!r}: HTTP {response.status}")

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(put, keys))

    def post_object(self, bucket: str, key: str, body: bytes = b"x") -> None:
        """Upload through S3's POST Object (HTML form) API.

        moto_server's URL routing cannot match a key with a newline in the path of a PUT;
        the form upload carries the key in the body, as S3 allows, so such keys can exist.
        """
        boundary = uuid.uuid4().hex
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="key"\r\n\r\n'.encode() + key.encode() + b"\r\n",
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode() + body + b"\r\n",
            f"--{boundary}--\r\n".encode(),
        ]
        request = urllib.request.Request(f"{self.endpoint}/{bucket}", data=b"".join(parts), method="POST",
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status in (200, 201, 204), response.status


@pytest.fixture(scope="session")
def aws_test_env() -> Iterator[dict[str, str]]:
    """Dummy AWS credentials and no metadata service, for the whole session."""
    saved = {name: os.environ.get(name) for name in [*AWS_TEST_ENV, "AWS_PROFILE"]}
    os.environ.pop("AWS_PROFILE", None)
    os.environ.update(AWS_TEST_ENV)
    try:
        yield dict(AWS_TEST_ENV)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session")
def moto_server(aws_test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto_server on a free loopback port for the whole session."""
    binary = Path(sys.executable).parent / "moto_server"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: install the test extras (pip install -e '.[test]')", pytrace=False)
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    server = ServerProcess("moto_server", [str(binary), "-H", "127.0.0.1", "-p", str(port)],
                           f"http://127.0.0.1:{port}/moto-api/", log, env=aws_test_env)
    try:
        yield MotoServer(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------
# BigQuery: bqemulator


class BigQueryEmulator:
    """A running bqemulator and helpers to fill it."""

    def __init__(self, endpoint: str, project: str) -> None:
        self.endpoint = endpoint
        self.project = project

    def client(self, endpoint: str | None = None) -> Any:
        """A google-cloud-bigquery client for the emulator (anonymous credentials)."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(project=self.project, credentials=AnonymousCredentials(),
                               client_options={"api_endpoint": endpoint or self.endpoint})

    def create_dataset(self, prefix: str = "ctxscan", labels: dict[str, str] | None = None,
                       access: Iterable[tuple[str | None, str, Any]] = ()) -> str:
        """A new, uniquely named dataset with labels and access entries."""
        from google.cloud import bigquery

        name = unique(prefix).replace("-", "_")
        dataset = bigquery.Dataset(f"{self.project}.{name}")
        dataset.labels = dict(labels or {})
        dataset.access_entries = [bigquery.AccessEntry(role, kind, entity) for role, kind, entity in access]
        self.client().create_dataset(dataset, retry=None, timeout=30)
        return name


@pytest.fixture(scope="session")
def bigquery_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigQueryEmulator]:
    """bqemulator 1.4.0 from .venv-bq on free loopback ports for the whole session."""
    binary = BQ_VENV / "bin" / "bqemulator"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: run `bash tests/services/install-bqemulator.sh` "
                    "(tests/run-all.sh does) before pytest", pytrace=False)
    rest, grpc = free_port(), free_port()
    log = tmp_path_factory.mktemp("bqemulator") / "bqemulator.log"
    command = [str(binary), "start", "--rest-host", "127.0.0.1", "--rest-port", str(rest),
               "--grpc-host", "127.0.0.1", "--grpc-port", str(grpc), "--ephemeral",
               "--project", BQ_PROJECT, "--log-level", "warning"]
    server = ServerProcess("bqemulator", command, f"http://127.0.0.1:{rest}/healthz", log,
                           env={"NO_GCE_CHECK": "True"})
    try:
        yield BigQueryEmulator(f"http://127.0.0.1:{rest}", BQ_PROJECT)
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------
# A forwarding proxy that injects faults or answers APIs no emulator serves


@dataclass
class Reply:
    """A canned HTTP response."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any) -> Reply:
        return cls(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    @classmethod
    def s3_error(cls, status: int, code: str, message: str) -> Reply:
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                f"<Message>{message}</Message><RequestId>ctxscan-test</RequestId></Error>").encode()
        return cls(status, body, {"Content-Type": "application/xml"})


Rule = Callable[[str, str, bytes], Reply | None]  # (method, path with query, body) -> reply or forward


class FaultProxy:
    """A loopback HTTP server that forwards to `upstream` unless a rule answers first."""

    HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection",
                  "te", "trailer", "upgrade"}

    def __init__(self, upstream: str, rules: Iterable[Rule] = ()) -> None:
        parts = urllib.parse.urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = int(parts.port or 80)
        self.rules = list(rules)
        self.requests: list[tuple[str, str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                proxy.requests.append((self.command, self.path))
                reply = proxy.answer(self.command, self.path, body, self.headers)
                if reply is not None:
                    self._send(reply.status, reply.headers, reply.body)
                    return
                conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in proxy.HOP_BY_HOP}
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                    forwarded = {k: v for k, v in response.getheaders() if k.lower() not in proxy.HOP_BY_HOP}
                    self._send(response.status, forwarded, data)
                finally:
                    conn.close()

            def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="fault-proxy")
        self.thread.start()

    def answer(self, method: str, path: str, body: bytes, headers: Mapping[str, str]) -> Reply | None:
        """The reply to a request, or None to forward it: the first rule that answers."""
        for rule in self.rules:
            reply = rule(method, path, body)
            if reply is not None:
                return reply
        return None

    def count(self, needle: str) -> int:
        """How many requests had `needle` in their path."""
        return sum(1 for _, path in self.requests if needle in path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


def once(rule: Rule) -> Rule:
    """A rule that answers only the first request it matches, then lets everything through."""
    fired = threading.Event()

    def wrapped(method: str, path: str, body: bytes) -> Reply | None:
        if fired.is_set():
            return None
        reply = rule(method, path, body)
        if reply is not None:
            fired.set()
        return reply

    return wrapped


class FaultProxies:
    """The `fault_proxy` fixture: make proxies (closed after the test) and canned replies."""

    def __init__(self) -> None:
        self.made: list[FaultProxy] = []

    def __call__(self, upstream: str, rules: Iterable[Rule] = ()) -> FaultProxy:
        proxy = FaultProxy(upstream, rules)
        self.made.append(proxy)
        return proxy

    once = staticmethod(once)
    json = staticmethod(Reply.json)
    s3_error = staticmethod(Reply.s3_error)

    @staticmethod
    def reply(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Reply:
        return Reply(status, body, dict(headers or {}))


@pytest.fixture
def fault_proxy() -> Iterator[FaultProxies]:
    """Make a FaultProxy in front of a server: `fault_proxy(upstream, [rule, ...])`."""
    proxies = FaultProxies()
    try:
        yield proxies
    finally:
        for proxy in proxies.made:
            proxy.close()


@pytest.fixture(name="dead_endpoint")
def dead_endpoint_fixture() -> str:
    """An http:// URL on loopback where nothing listens: a service that is down."""
    return dead_endpoint()
