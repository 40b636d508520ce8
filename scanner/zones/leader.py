"""The leader lock: of several daemons on one store, one schedules and notifies.

A PostgreSQL store uses a session advisory lock on a connection of its own; a SQLite store a
`flock` on a file beside the database. Either is released by the system the moment its
holder dies (the server drops the session, the kernel closes the file), so a standby that
tries every third of the lease takes over well within twice the lease.
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger("ctxscan.leader")
_ADVISORY_KEY = "ctxscan-leader"


class LeaderLock:
    """Try to become leader (`acquire`), and check that the lock is still held (`held`)."""

    def acquire(self) -> bool:
        """True when this process holds the lock now (non-blocking)."""
        raise NotImplementedError

    def held(self) -> bool:
        """False when a lock once acquired has been lost (the store's session died)."""
        return True

    def release(self) -> None:
        """Give the lock up."""


class AlwaysLeader(LeaderLock):
    """An in-memory store has no second daemon."""

    def acquire(self) -> bool:
        return True


class FileLock(LeaderLock):
    """`flock` on `PATH.leader`; the kernel releases it when the process dies."""

    def __init__(self, path: str) -> None:
        self.path = path + ".leader"
        self._fd: int | None = None

    def acquire(self) -> bool:
        import fcntl

        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


class AdvisoryLock(LeaderLock):
    """`pg_try_advisory_lock` on a dedicated session; the server frees it when that session ends."""

    def __init__(self, url: str, lease: float) -> None:
        self.url = url
        self.lease = lease
        self._conn: Any = None

    def _connect(self) -> Any:
        import psycopg

        dsn = self.url.replace("postgresql+psycopg://", "postgresql://").replace(
            "postgresql+psycopg2://", "postgresql://")
        # Keepalives so that a partitioned leader's session ends about a lease later.
        idle = max(1, int(self.lease / 3))
        return psycopg.connect(dsn, autocommit=True, connect_timeout=max(2, int(self.lease)),
                               keepalives=1, keepalives_idle=idle, keepalives_interval=idle,
                               keepalives_count=2, application_name="ctxscan-leader")

    def acquire(self) -> bool:
        if self._conn is None:
            try:
                self._conn = self._connect()
            except Exception as exc:
                log.warning("leader lock: cannot reach the store: %s", type(exc).__name__)
                return False
        try:
            row = self._conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (_ADVISORY_KEY,)).fetchone()
        except Exception:
            self.release()
            return False
        return bool(row and row[0])

    def held(self) -> bool:
        if self._conn is None:
            return False
        try:
            self._conn.execute("SELECT 1").fetchone()
            return True
        except Exception:
            self.release()
            return False

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None


def leader_lock(store_url: str, lease: float) -> LeaderLock:
    """The lock that fits the store."""
    from scanner.store import sqlite_path

    if store_url.startswith("postgresql"):
        return AdvisoryLock(store_url, lease)
    path = sqlite_path(store_url)
    if not path or path == ":memory:":
        return AlwaysLeader()
    return FileLock(path)
