"""Where things live, without importing anything heavy."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path


def as_state_url(value: str, base: Path | None = None) -> str:
    """A state store as a sqlite:/// or postgresql:// URL, or a plain path meaning a SQLite file."""
    if "://" in value:
        return value
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return f"sqlite:///{path.resolve()}"


def default_state_url(config_files: Sequence[str], declared: str | None = None,
                      env: Mapping[str, str] | None = None) -> str:
    """Where the store lives: CTXSCAN_STATE, else `state:` in the inventory, else
    `.ctxscan/<inventory name>.db` next to it (see `default_store_path`; `--state` is applied
    by the CLI before this)."""
    env = os.environ if env is None else env
    if env.get("CTXSCAN_STATE"):
        return as_state_url(env["CTXSCAN_STATE"])
    base = Path(config_files[0]).resolve().parent if config_files else Path.cwd()
    if config_files and Path(config_files[0]).is_dir():
        base = Path(config_files[0]).resolve()
    if declared:
        return as_state_url(declared, base)
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
