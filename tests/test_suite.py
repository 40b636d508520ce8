"""The suite's own arrangements (tests/conftest.py)."""

from __future__ import annotations

from tests.conftest import ROOT, SERVER_ROLE_MODULES


def test_the_server_role_modules_exist() -> None:
    """A module renamed or moved would silently leave the one-worker group (and flake)."""
    missing = [name for name in sorted(SERVER_ROLE_MODULES) if not (ROOT / name).is_file()]
    assert not missing, missing
