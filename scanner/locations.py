"""Where things live, without importing anything heavy."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.\-]*")
_LOOKS_LIKE_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]+:")
_DSN_KEYWORD = re.compile(r"(?i)(?:^|\s)(?:host|hostaddr|dbname|user|password|port|sslmode|service|options)\s*=")


def as_state_url(value: str, base: Path | None = None) -> str:
    """A state store as a sqlite:/// or postgresql:// URL, or a plain path meaning a SQLite file.

    ValueError (saying what is wrong, never echoing the value: it may hold a password) for a
    keyword DSN or a URL with a malformed scheme, which would otherwise become a file name.
    """
    if "://" in value:
        if not _SCHEME.fullmatch(value.split("://", 1)[0]):
            raise ValueError("the state URL has a malformed scheme (expected sqlite:///PATH or "
                             "postgresql://USER@HOST/DB)")
        return value
    if _LOOKS_LIKE_SCHEME.match(value):
        raise ValueError("the state store looks like a URL without `//` after its scheme (write "
                         "sqlite:///PATH or postgresql://USER@HOST/DB, or ./NAME for a file)")
    if _DSN_KEYWORD.search(value):
        raise ValueError("the state store looks like a libpq keyword DSN; give it as a "
                         "postgresql://USER:PASSWORD@HOST:PORT/DB URL")
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return f"sqlite:///{path.resolve()}"


def default_state_url(config_files: Sequence[str], declared: str | None = None,
                      env: Mapping[str, str] | None = None) -> str:
    """Where the store lives: CTXSCAN_STATE, else `state:` in the inventory, else
    `.ctxscan/<inventory name>.db` next to it (see `default_store_path`; `--state` is applied
    by the CLI before this)."""
    from scanner.errors import UsageError

    env = os.environ if env is None else env
    if env.get("CTXSCAN_STATE"):
        try:
            return as_state_url(env["CTXSCAN_STATE"])
        except ValueError as exc:
            raise UsageError(f"CTXSCAN_STATE: {exc}") from None
    base = Path(config_files[0]).resolve().parent if config_files else Path.cwd()
    if config_files and Path(config_files[0]).is_dir():
        base = Path(config_files[0]).resolve()
    if declared:
        try:
            return as_state_url(declared, base)
        except ValueError as exc:
            raise UsageError(f"state: {exc}") from None
    return f"sqlite:///{default_store_path(config_files, base)}"


LEGACY_STORE = "state.db"


def default_store_path(config_files: Sequence[str], base: Path) -> Path:
    """`.ctxscan/<inventory name>.db`, so two inventories in one folder keep apart.

    `ctxscan.yaml` (the default name) and a folder of files keep `.ctxscan/state.db`. Another
    inventory `X.yaml` (or several files, the first being `X.yaml`) gets `.ctxscan/X.db`; while that does not exist and an older shared
    `.ctxscan/state.db` does, that one is still read, so no history is lost on upgrade (move
    it to `.ctxscan/X.db`, or set `state:`, to keep the inventories apart).
    """
    folder = base / ".ctxscan"
    first = Path(config_files[0]) if config_files else None
    if first is None or first.is_dir():
        return folder / LEGACY_STORE
    stem = first.name.rsplit(".", 1)[0] if "." in first.name else first.name
    if stem in ("", "ctxscan"):
        return folder / LEGACY_STORE
    own = folder / f"{stem}.db"
    if not own.exists() and (folder / LEGACY_STORE).exists():
        return folder / LEGACY_STORE
    return own


def missing_state_folder(url: str) -> Path | None:
    """The folder of a SQLite state URL when it does not exist (an explicit --state is never
    created with mkdir -p: a typo would silently start an empty store elsewhere)."""
    from urllib.parse import unquote

    match = re.fullmatch(r"sqlite(?:\+pysqlite)?:///(?P<path>[^?]+)", url)
    if match is None:
        return None
    folder = Path(unquote(match["path"])).expanduser().parent
    return None if folder.is_dir() else folder
