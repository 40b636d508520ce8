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
    `.ctxscan/state.db` next to it (`--state` is applied by the CLI before this)."""
    env = os.environ if env is None else env
    if env.get("CTXSCAN_STATE"):
        return as_state_url(env["CTXSCAN_STATE"])
    base = Path(config_files[0]).resolve().parent if config_files else Path.cwd()
    if config_files and Path(config_files[0]).is_dir():
        base = Path(config_files[0]).resolve()
    if declared:
        return as_state_url(declared, base)
    return f"sqlite:///{base / '.ctxscan' / 'state.db'}"
