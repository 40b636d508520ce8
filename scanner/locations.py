"""Where things live, without importing anything heavy."""

from __future__ import annotations

from pathlib import Path


def as_state_url(value: str, base: Path | None = None) -> str:
    """A state store given as a SQLAlchemy URL, or as a plain path meaning a SQLite file."""
    if "://" in value:
        return value
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return f"sqlite:///{path.resolve()}"
