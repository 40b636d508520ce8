"""Helpers for the daemon and notification tests: a webhook receiver and a daemon process.

The receiver is a real HTTP server on 127.0.0.1 that records every POST and answers as told
(`ok`, `fail` with a 500, or `hang` past the client's timeout). The daemon runs as a real
`ctxscan daemon` subprocess; its stderr goes to a file the test can read.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition",
             interval: float = 0.1) -> Any:
    """Poll until `predicate()` is truthy and return it; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


class WebhookReceiver:
    """Counts deliveries; `mode` is `ok`, `fail` (HTTP 500) or `hang` (answers after `hang_for`)."""

    def __init__(self, secret_path: str = "/hooks/T0KEN-s3cr3t") -> None:
        self.mode = "ok"
        self.hang_for = 3.0
        self.received: list[dict[str, Any]] = []     # accepted (200) deliveries
        self.attempts: list[str] = []                # every POST, by the answer it got
        self.lock = threading.Lock()
        self.secret_path = secret_path
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                mode = receiver.mode
                with receiver.lock:
                    receiver.attempts.append(mode)
                if self.path != receiver.secret_path:
                    self.send_response(404)
                    self.end_headers()
                    return
                if mode == "hang":
                    time.sleep(receiver.hang_for)
                    return  # close without an answer
                if mode == "fail":
                    self.send_response(500)
                    self.end_headers()
                    return
                with receiver.lock:
                    receiver.received.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}{secret_path}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self, fingerprint: str | None = None) -> list[tuple[str, str, str]]:
        """(event, fingerprint, severity) of each accepted delivery, optionally of one finding."""
        with self.lock:
            return [(m["event"], m["finding"]["fingerprint"], m["finding"]["severity"]) for m in self.received
                    if fingerprint is None or m["finding"]["fingerprint"] == fingerprint]

    def of(self, kind: str, asset: str) -> list[dict[str, Any]]:
        """Accepted deliveries about one finding."""
        with self.lock:
            return [m for m in self.received if m["finding"]["kind"] == kind and m["finding"]["asset"] == asset]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def assert_no_duplicate_states(receiver: WebhookReceiver) -> None:
    """Never two deliveries for the same finding in the same state."""
    with receiver.lock:
        states = [(m["finding"]["fingerprint"], m["event"], m["finding"]["severity"],
                   m["finding"]["times_opened"]) for m in receiver.received]
    assert len(states) == len(set(states)), f"duplicate notifications: {states}"


class DaemonProcess:
    """`ctxscan daemon` in a subprocess, with its HTTP endpoint on a free port."""

    def __init__(self, config: Path, state: str, *extra: str, metrics: bool = True,
                 env: dict[str, str] | None = None) -> None:
        self.port = free_port() if metrics else None
        self.log_path = config.parent / f"daemon-{time.monotonic_ns()}.log"
        args = [sys.executable, "-m", "scanner", "daemon", "-c", str(config), "--state", state, *extra]
        if self.port is not None:
            args += ["--metrics-port", str(self.port)]
        full_env = {k: v for k, v in os.environ.items() if k not in ("CTXSCAN_CONFIG", "CTXSCAN_STATE")}
        full_env.update(env or {})
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(args, cwd=config.parent, stdout=subprocess.DEVNULL, stderr=self._log,
                                     env=full_env)

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def get(self, path: str) -> tuple[int, str]:
        """GET a path of the HTTP endpoint: (status, body); (0, "") while it is not up."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def health(self) -> dict[str, Any]:
        code, body = self.get("/healthz")
        return json.loads(body) if code else {}

    def metrics(self) -> str:
        return self.get("/metrics")[1]

    def scans(self, source_id: str) -> int:
        """Scans of one source that this daemon finished (0 until it is up)."""
        return int(self.health().get("sources", {}).get(source_id, {}).get("scans_since_start", 0))

    def wait_scans(self, source_id: str, at_least: int, timeout: float = 20.0) -> int:
        return wait_for(lambda: self.scans(source_id) >= at_least and self.scans(source_id),
                        timeout, f"{at_least} scans of {source_id}\n{self.log}")

    def wait_up(self, timeout: float = 20.0) -> None:
        wait_for(lambda: self.get("/healthz")[0] == 200 or self.proc.poll() is not None, timeout,
                 "the daemon's /healthz")
        assert self.proc.poll() is None, self.log

    def send(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send a stop signal and return the exit code (fails if it does not exit in time)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the daemon did not stop within {timeout}s\n{self.log}") from None
        self._log.close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
