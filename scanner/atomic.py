"""Write output files safely: atomically, never through a symlink or onto a device."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from scanner.errors import UsageError


def check_target(target: Path, create_folder: bool = False) -> None:
    """UsageError unless `target` can be replaced by a regular file: an existing symlink,
    device, FIFO or folder is refused, and a missing folder is created only when asked."""
    try:
        info = target.lstat()
    except FileNotFoundError:
        info = None
    if info is not None and not stat.S_ISREG(info.st_mode):
        what = ("a symlink" if stat.S_ISLNK(info.st_mode) else "a folder" if stat.S_ISDIR(info.st_mode)
                else "not a regular file")
        raise UsageError(f"{target} is {what}; ctxscan only replaces regular files (give another path)")
    folder = target.parent
    if not folder.is_dir():
        if not create_folder:
            raise UsageError(f"the folder {folder} does not exist (create it first)")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the folder {folder}: {exc.strerror or exc}") from None


def write_atomically(target: Path, data: bytes, create_folder: bool = False) -> None:
    """Write `data` to a temporary file beside `target`, then rename it over `target`: a
    reader sees the old file or the new one, never half of one; UsageError when refused."""
    target = Path(target)
    check_target(target, create_folder)
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644 & ~_umask())
        check_target(target)  # it may have become a symlink meanwhile; rename replaces a link, not its target
        os.replace(temporary, target)
    except BaseException as exc:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
