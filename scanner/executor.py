"""Running scans, kept apart from deciding when they run.

The daemon's scheduler decides *when* a source is scanned; an `Executor` decides *where*:
`LocalExecutor` runs each scan on a small pool of threads in this process. Another executor
(remote workers behind a queue) only has to honour the same three methods: `submit` a
`ScanRequest` and get a `Future` of its `ScanReport`, list what is `running`, and `shutdown`
within a deadline.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from scanner.inventory import Inventory
from scanner.scan import ScanReport
from scanner.store import Store

log = logging.getLogger("ctxscan.executor")


@dataclass(frozen=True)
class ScanRequest:
    """Scan one source of an inventory; a remote executor would ship the id and the digest."""

    source_id: str
    inventory: Inventory
    trigger: str = "daemon"


class ExecutorClosed(RuntimeError):
    """The executor is shutting down and takes no more work."""


class Executor(ABC):
    """Where scans run."""

    @abstractmethod
    def submit(self, request: ScanRequest) -> Future[ScanReport]:
        """Queue a scan; the future holds its report, or the exception that stopped it."""

    @abstractmethod
    def running(self) -> frozenset[str]:
        """The sources being scanned right now."""

    @abstractmethod
    def shutdown(self, timeout: float) -> bool:
        """Take no more work, cancel what is queued and wait up to `timeout` seconds for the
        running scans; True when none was left behind."""


ScanFunction = Callable[[Inventory, Store, list[str], str], ScanReport]


def _run_scan(inventory: Inventory, store: Store, source_ids: list[str], trigger: str) -> ScanReport:
    from scanner.scan import run_scan

    return run_scan(inventory, store, source_ids, trigger=trigger)


class LocalExecutor(Executor):
    """Scans on daemon threads of this process, at most `workers` at a time.

    The threads are daemon threads on purpose: a probe that ignores its deadline must never
    keep the process from exiting when the daemon is told to stop.
    """

    def __init__(self, store: Store, workers: int = 4, scan: ScanFunction = _run_scan) -> None:
        self.store = store
        self.scan = scan
        self._queue: queue.Queue[tuple[ScanRequest, Future[ScanReport]] | None] = queue.Queue()
        self._running: dict[int, str] = {}
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"ctxscan-scan-{i}", daemon=True)
                         for i in range(max(1, workers))]
        for thread in self._threads:
            thread.start()

    def submit(self, request: ScanRequest) -> Future[ScanReport]:
        """Queue a scan of one source."""
        future: Future[ScanReport] = Future()
        with self._lock:
            if self._closed:
                raise ExecutorClosed("the executor is shutting down")
            self._queue.put((request, future))
        return future

    def running(self) -> frozenset[str]:
        """The sources being scanned right now."""
        with self._lock:
            return frozenset(self._running.values())

    def _work(self) -> None:
        ident = threading.get_ident()
        while True:
            item = self._queue.get()
            if item is None:
                return
            request, future = item
            if not future.set_running_or_notify_cancel():
                continue
            with self._lock:
                self._running[ident] = request.source_id
            try:
                report = self.scan(request.inventory, self.store, [request.source_id], request.trigger)
            except BaseException as exc:  # the caller decides what a failed scan means
                future.set_exception(exc)
            else:
                future.set_result(report)
            finally:
                with self._lock:
                    self._running.pop(ident, None)
                    self._idle.notify_all()

    def shutdown(self, timeout: float) -> bool:
        """Stop taking work and wait for running scans until the deadline, then abandon them."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            self._closed = True
        while True:  # cancel what never started
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[1].cancel()
        with self._lock:
            while self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._idle.wait(left)
            abandoned = sorted(self._running.values())
        for _ in self._threads:
            self._queue.put(None)
        if abandoned:
            log.warning("stopped waiting for %d running scan(s): %s; they are abandoned",
                        len(abandoned), ", ".join(abandoned), extra={"sources": abandoned})
        return not abandoned
