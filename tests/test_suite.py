"""The suite's own arrangements (tests/conftest.py)."""

from __future__ import annotations

from tests.conftest import ROOT, SERVER_ROLE_MODULES


def test_the_server_role_modules_exist() -> None:
    """A module renamed or moved would silently leave the one-worker group (and flake)."""
    missing = [name for name in sorted(SERVER_ROLE_MODULES) if not (ROOT / name).is_file()]
    assert not missing, missing


def test_xdist_groups_hold_in_this_environment(tmp_path) -> None:
    """`--dist loadgroup` must really keep a group on one worker: pytest 9 with pytest-xdist 3.8
    silently ignored the groups (every test of a group could land on either worker)."""
    import subprocess
    import sys

    (tmp_path / "conftest.py").write_text(
        "import pytest\n\n\n@pytest.hookimpl(tryfirst=True)\ndef pytest_collection_modifyitems(items):\n"
        "    for item in items:\n        item.add_marker(pytest.mark.xdist_group('g'))\n")
    (tmp_path / "test_g.py").write_text("".join(f"def test_{n}():\n    pass\n\n\n" for n in range(6)))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadgroup",
                           "-v", str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    passed = [line for line in proc.stdout.splitlines() if "PASSED" in line]
    assert proc.returncode == 0 and len(passed) == 6, proc.stdout + proc.stderr
    assert all(line.rstrip().endswith("@g") for line in passed), passed
    assert len({line.split()[0] for line in passed}) == 1, passed  # one worker ran them all
