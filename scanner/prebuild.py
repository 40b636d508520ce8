"""The graph cache built in a forked process while the scan judges its findings."""

from __future__ import annotations

import os
import pickle
import select
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scanner.inventory import Inventory
    from scanner.model import SourceSnapshot
    from scanner.store import Store, StoredFinding

_LENGTH = 8  # bytes of the length before each message


class GraphChild:
    """A child process that builds the graph of the store's latest state, from this scan's
    snapshots as the parent holds them (inherited by the fork, not decoded again), while the
    parent evaluates the rules. The judged findings follow through a pipe, where the child's
    build waits for them at its last step; the encoded graph comes back the same way.

    On 2 cores this takes the graph's build (~0.65 s at 50,000 tables) off the scan's path:
    the parent's rules and report run beside it. Only the parent touches the store.
    """

    def __init__(self, pid: int, to_child: int, from_child: int, inputs: tuple[Any, Any]) -> None:
        self.pid = pid
        self.inputs = inputs  # the store's newest result and lineage events the child read
        self._to_child = to_child
        self._from_child = from_child

    @classmethod
    def start(cls, inventory: Inventory, store: Store, held: Mapping[str, SourceSnapshot]) -> GraphChild | None:
        """Fork the child, or None where there is no fork or no room for it (the graph is then
        built after the scan)."""
        if not sys.platform.startswith("linux") or not room_for_a_child():
            return None
        # Everything the child runs is imported here: a module another thread was importing
        # at the fork would hold its import lock in the child for ever.
        import scanner.rules.base
        import scanner.rules.sla  # noqa: F401
        from scanner.graph import build_parts, encode_parts
        from scanner.lineage.observed import load_observed

        source_ids = list(inventory.sources)
        inputs = store.graph_inputs()
        results = store.latest_results(source_ids)
        rest = [s for s in source_ids if s not in held]
        snapshots = {**(store.latest_snapshots(rest) if rest else {}), **held}
        lineage = load_observed(inventory, store)
        down_read, down_write = os.pipe()
        up_read, up_write = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: build, send, and leave without running any of the parent's code
            code = 1
            try:
                os.close(down_write)
                os.close(up_read)
                parts = build_parts(inventory, snapshots, results, _FindingsFrom(down_read), lineage=lineage)
                _send(up_write, encode_parts(parts))
                code = 0
            except BaseException:  # noqa: BLE001, S110 - the parent builds it itself then
                pass
            finally:
                os._exit(code)
        os.close(down_read)
        os.close(up_write)
        return cls(pid, down_write, up_read, inputs)

    def finish(self, findings: Iterable[StoredFinding], timeout: float,
               meanwhile: Callable[[], None] | None = None) -> bytes | None:
        """Send the open findings the graph shows, run `meanwhile` while the child finishes,
        and return the encoded graph, or None when the child failed or took longer than
        `timeout` seconds."""
        try:
            _send(self._to_child, pickle.dumps(list(findings), protocol=pickle.HIGHEST_PROTOCOL))
            os.close(self._to_child)
            self._to_child = -1
            if meanwhile is not None:
                meanwhile()
            return _receive(self._from_child, time.monotonic() + timeout)
        except (OSError, EOFError, pickle.PicklingError):
            return None
        finally:
            self.abandon()

    def abandon(self) -> None:
        """Stop the child (if it still runs) and let it go."""
        for fd in (self._to_child, self._from_child):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._to_child = self._from_child = -1
        if self.pid:
            try:
                if os.waitpid(self.pid, os.WNOHANG) == (0, 0):
                    os.kill(self.pid, signal.SIGKILL)
                    os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self.pid = 0


def room_for_a_child(proc: Path = Path("/proc"), cgroups: Path = Path("/sys/fs/cgroup")) -> bool:
    """Whether there is memory for the child. While it builds, it and the scan together hold
    about a quarter of the scan's resident size more (pages both touch are copied: ~85 MB at
    50,000 tables); it is forked only when at least the scan's whole resident size is free,
    on the machine (MemAvailable) and under the memory limit of the scan's cgroup (v1 or v2),
    so that a scan near its limit never fails for it."""
    try:
        resident = int((proc / "self" / "statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        free = next(int(line.split()[1]) * 1024 for line in (proc / "meminfo").read_text().splitlines()
                    if line.startswith("MemAvailable:"))
        lines = (proc / "self" / "cgroup").read_text().splitlines()
    except (OSError, ValueError, IndexError, StopIteration):
        return False
    for line in lines:
        hierarchy, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if hierarchy == "0":  # v2: unified, or unified beside v1 controllers
            places = [(cgroups / path.lstrip("/"), "memory.max", "memory.current"),
                      (cgroups / "unified" / path.lstrip("/"), "memory.max", "memory.current")]
        elif "memory" in controllers.split(","):
            places = [(cgroups / "memory" / path.lstrip("/"), "memory.limit_in_bytes", "memory.usage_in_bytes")]
        else:
            continue
        for directory, limit_file, usage_file in places:
            try:
                limit = (directory / limit_file).read_text().strip()
                usage = int((directory / usage_file).read_text().strip())
            except (OSError, ValueError):
                continue
            if limit != "max":
                try:
                    free = min(free, int(limit) - usage)
                except ValueError:
                    return False
    return free >= resident


class _FindingsFrom(Iterable[Any]):
    """The findings the parent sends, read when the build first iterates them."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __iter__(self) -> Iterator[Any]:
        findings: list[Any] = pickle.loads(_receive(self.fd, None))
        return iter(findings)


def _send(fd: int, data: bytes) -> None:
    view = memoryview(len(data).to_bytes(_LENGTH, "big") + data)
    while view:
        view = view[os.write(fd, view):]


def _receive(fd: int, deadline: float | None) -> bytes:
    """One message from `fd`; EOFError when it closes first, TimeoutError past `deadline`."""
    chunks: list[bytes] = []
    size, wanted = 0, _LENGTH
    header = b""
    while True:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError("the graph's child process did not answer in time")
        chunk = os.read(fd, min(wanted - size, 1 << 20))
        if not chunk:
            raise EOFError("the graph's child process stopped")
        chunks.append(chunk)
        size += len(chunk)
        if size < wanted:
            continue
        if not header:
            header = b"".join(chunks)
            chunks, size, wanted = [], 0, int.from_bytes(header, "big")
            if wanted == 0:
                return b""
            continue
        return b"".join(chunks)
