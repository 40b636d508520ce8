"""Helpers for the zone tests: a private redis-server, `ctxscan worker` and `ctxscan scan`
subprocesses, and short delivery timings so that redelivery takes seconds, not minutes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.daemon_support import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
# Short timings for tests (the defaults are 60s, 90s and 10s).
ZONE_ENV = {"CTXSCAN_ZONE_ANSWER_TIMEOUT": "3s", "CTXSCAN_ZONE_VISIBILITY_TIMEOUT": "5s",
            "CTXSCAN_ZONE_RESTORE_INTERVAL": "1s"}


def base_env(**extra: str) -> dict[str, str]:
    """The test process's environment without ctxscan's variables, plus the zone timings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CTXSCAN_") and k not in ("CANARY", "WHERE")}
    env.update(ZONE_ENV)
    env.update(extra)
    return env


class RedisServer:
    """A private `redis-server` on a free loopback port that keeps nothing on disk."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (tests/run-all.sh installs it)"
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                     "--appendonly", "no", "--dir", str(self.folder)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.cli("PING").strip() == "PONG", 10, "redis-server to answer")

    def cli(self, *args: str) -> str:
        out = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True)
        return out.stdout

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def everything(self) -> str:
        """Every key and its value as the server holds them (lists, hashes, sets, strings)."""
        parts = []
        for key in self.cli("--scan").split():
            kind = self.cli("TYPE", key).strip()
            command = {"list": ("LRANGE", key, "0", "-1"), "hash": ("HGETALL", key),
                       "zset": ("ZRANGE", key, "0", "-1"), "set": ("SMEMBERS", key),
                       "string": ("GET", key)}.get(kind)
            if command:
                parts.append(key + "\n" + self.cli(*command))
        return "\n".join(parts)


class Worker:
    """`ctxscan worker --zone ZONE` in a subprocess, its log in a file."""

    def __init__(self, folder: Path, zone: str, broker: str, env: dict[str, str] | None = None,
                 concurrency: int = 2) -> None:
        self.zone = zone
        self.log_path = folder / f"worker-{zone}-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scanner", "worker", "--zone", zone, "--broker", broker,
             "--concurrency", str(concurrency)],
            cwd=folder, stdout=self._log, stderr=subprocess.STDOUT, env=base_env(**(env or {})))

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout: float = 40.0) -> Worker:
        wait_for(lambda: " ready." in self.log or self.proc.poll() is not None, timeout, f"worker {self.zone}")
        assert self.proc.poll() is None, self.log
        return self

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def ctxscan(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user does."""
    return subprocess.run([sys.executable, "-m", "scanner", *args], capture_output=True, text=True,
                          timeout=timeout, env=base_env(**(env or {})))


def scan_json(config: Path, state: str, broker: str, *extra: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = ctxscan("scan", "-c", str(config), "--state", state, "--broker", broker, "--json", *extra, env=env)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)
