"""The `files` connector against real folders."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.files import FilesConnector
from scanner.errors import ProbeError
from scanner.plugins import ProbeContext, SourceConfig
from tests.connectors.contract import check_snapshot_contract

NOW = datetime.now(UTC)


def _touch(path: Path, age: timedelta, text: str = "x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    stamp = (NOW - age).timestamp()
    os.utime(path, (stamp, stamp))


def _probe(root: Path, **settings: object):
    source = SourceConfig(id="kb", connector="files", settings={"path": str(root), **settings})
    return source, FilesConnector(source).probe(ProbeContext(now=NOW))


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    root = tmp_path / "kb"
    _touch(root / "articles" / "a.md", timedelta(hours=5), "hello")
    _touch(root / "articles" / "deep" / "b.md", timedelta(hours=1), "world!")
    _touch(root / "archive" / "old.md", timedelta(days=90))
    _touch(root / "README.md", timedelta(days=2), "readme")
    (root / "empty").mkdir()
    return root


def test_contract(kb: Path) -> None:
    source, snapshot = _probe(kb)
    check_snapshot_contract(snapshot, source)


def test_assets_are_first_level_entries_with_newest_mtime(kb: Path) -> None:
    _, snapshot = _probe(kb)
    assert sorted(a.path for a in snapshot.assets) == ["README.md", "archive", "articles", "empty"]
    articles = snapshot.asset("articles")
    assert articles is not None and articles.kind == "folder"
    assert articles.row_count == 2 and articles.size_bytes == len("hello") + len("world!")
    assert articles.freshness.method == "metadata"
    # The newest file is one level deeper; its mtime wins.
    assert abs((NOW - articles.freshness.last_changed).total_seconds() - 3600) < 5
    archive = snapshot.asset("archive")
    assert archive is not None and (NOW - archive.freshness.last_changed).days == 90
    readme = snapshot.asset("README.md")
    assert readme is not None and readme.kind == "file" and readme.row_count == 1
    empty = snapshot.asset("empty")
    assert empty is not None and empty.freshness.method == "none"


def test_world_writable_is_exposed(kb: Path) -> None:
    os.chmod(kb / "archive", 0o777)
    os.chmod(kb / "articles", 0o750)
    _, snapshot = _probe(kb)
    public = {(g.target, g.access) for g in snapshot.grants if g.public}
    assert ("archive", "write") in public and ("archive", "read") in public
    assert not any(target == "articles" for target, _ in public)
    assert snapshot.asset("archive").properties["world_writable"] is True  # type: ignore[union-attr]


def test_the_owner_holds_every_right(kb: Path) -> None:
    os.chmod(kb / "archive", 0o000)  # the owner can chmod it back, so it is still theirs
    _, snapshot = _probe(kb)
    owner = [g for g in snapshot.grants if g.target == "archive" and g.privilege == "owner"]
    assert len(owner) == 1 and owner[0].access == "admin" and owner[0].principal.startswith("user:")


def test_symlinks_never_leave_the_root(kb: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    _touch(outside / "passwords.txt", timedelta(0), "hunter2")
    os.symlink(outside, kb / "escape")
    os.symlink(outside / "passwords.txt", kb / "articles" / "leak.txt")
    os.symlink(kb / "archive", kb / "archive-link")
    _, snapshot = _probe(kb)
    assert snapshot.asset("escape") is None
    assert any("escape" in note and "outside" in note for note in snapshot.notes)
    articles = snapshot.asset("articles")
    assert articles is not None and articles.row_count == 2  # the outside file is not counted
    assert snapshot.asset("archive-link") is not None  # a link inside the root is fine


def test_follow_symlinks_false_skips_links_at_every_depth(kb: Path) -> None:
    _touch(kb / "fresh" / "new.md", timedelta(0), "brand new")
    os.symlink(kb / "fresh" / "new.md", kb / "articles" / "deep" / "link.md")
    os.symlink(kb / "fresh", kb / "articles" / "shared")
    os.symlink(kb / "archive", kb / "archive-link")
    _, snapshot = _probe(kb, follow_symlinks=False)
    assert snapshot.asset("archive-link") is None
    articles = snapshot.asset("articles")
    assert articles is not None
    assert articles.row_count == 2 and articles.size_bytes == len("hello") + len("world!")
    # The linked file is new; not following it, the folder's newest file is an hour old.
    assert abs((NOW - articles.freshness.last_changed).total_seconds() - 3600) < 5
    # Followed (the default), the links count.
    _, followed = _probe(kb)
    assert followed.asset("articles").row_count == 3  # type: ignore[union-attr]
    assert followed.asset("archive-link") is not None


def test_a_file_reached_through_a_link_counts_once(kb: Path) -> None:
    os.symlink(kb / "articles" / "a.md", kb / "articles" / "alias.md")     # the same file twice
    os.symlink(kb / "articles" / "deep", kb / "articles" / "deep-again")   # the same folder twice
    os.symlink(kb / "articles", kb / "articles" / "deep" / "loop")          # a cycle
    _touch(kb / "fresh" / "new.md", timedelta(0), "brand new")
    os.symlink(kb / "fresh", kb / "articles" / "shared")                    # another folder: counts
    _, snapshot = _probe(kb)
    articles = snapshot.asset("articles")
    assert articles is not None
    assert articles.row_count == 3
    assert articles.size_bytes == len("hello") + len("world!") + len("brand new")
    assert abs((NOW - articles.freshness.last_changed).total_seconds()) < 5
    os.symlink(kb / "archive", kb / "archive-link")
    _, snapshot = _probe(kb)
    link = snapshot.asset("archive-link")
    assert link is not None and link.properties["symlink_to"] == "archive"


def test_unreadable_entries_are_reported_not_fatal(kb: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs as root, where chmod cannot deny reads: inject the fault into os.stat instead."""
    real_stat = os.stat
    target = str(kb / "articles" / "a.md")

    def failing_stat(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(path) == target:
            raise PermissionError(13, "Permission denied", target)
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", failing_stat)
    _, snapshot = _probe(kb)
    assert any("a.md" in note and "Permission denied" in note for note in snapshot.notes)
    assert snapshot.asset("articles").row_count == 1  # type: ignore[union-attr]


def test_hostile_names(kb: Path) -> None:
    _touch(kb / "line\nbreak" / "x.md", timedelta(hours=1))
    _touch(kb / "quote'\"; DROP" / "x.md", timedelta(hours=1))
    _touch(kb / "ünïcødé 文档" / "x.md", timedelta(hours=1))
    source, snapshot = _probe(kb)
    paths = {a.path for a in snapshot.assets}
    assert {"line\nbreak", "quote'\"; DROP", "ünïcødé 文档"} <= paths
    check_snapshot_contract(snapshot, source)


def test_include_exclude(kb: Path) -> None:
    source = SourceConfig(id="kb", connector="files", settings={"path": str(kb)},
                          include=("ar*",), exclude=("archive",))
    snapshot = FilesConnector(source).probe(ProbeContext(now=NOW))
    assert [a.path for a in snapshot.assets] == ["articles"]


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ProbeError) as caught:
        _probe(tmp_path / "nope")
    assert caught.value.reason == "not_found" and "does not exist" in caught.value.message


# ---------------------------------------------------------------------------------------
# runs_as names


def _probe_as(root: Path, *principals: str):
    source = SourceConfig(id="kb", connector="files", settings={"path": str(root)})
    return FilesConnector(source).probe(ProbeContext(now=NOW, principals=frozenset(principals)))


def _can(snapshot, principal: str, path: str) -> tuple[bool, bool]:
    from scanner.access import access_paths, can_read, can_write

    paths = access_paths(snapshot, principal, snapshot.asset(path))
    return can_read(paths), can_write(paths)


def test_runs_as_names_resolve_to_users_and_groups_of_this_machine(kb: Path) -> None:
    import grp
    import pwd

    nobody = pwd.getpwuid(65534).pw_name           # Debian's unprivileged user
    os.chown(kb / "articles", 0, 0)
    os.chmod(kb / "articles", 0o750)               # the group (root) reads, the world does not
    os.chmod(kb / "README.md", 0o644)
    root_group = grp.getgrgid(0).gr_name
    snapshot = _probe_as(kb, "root", "user:root", nobody, f"user:{nobody}", f"group:{root_group}",
                         "rooot", "group:no_such_group_x")
    assert snapshot.state["resolved_principals"] == {"root": "user:root", nobody: f"user:{nobody}"}
    assert snapshot.state["unknown_principals"] == ["group:no_such_group_x", "rooot"]
    assert any("'rooot' does not exist on this machine" in note for note in snapshot.notes)
    # root bypasses the mode bits, whichever way it is written
    for name in ("root", "user:root"):
        assert _can(snapshot, name, "archive") == (True, True)
    # a bare name is that user: the world's bits only, not the group's
    for name in (nobody, f"user:{nobody}"):
        assert _can(snapshot, name, "articles") == (False, False)
        assert _can(snapshot, name, "README.md") == (True, False)
    assert _can(snapshot, f"group:{root_group}", "articles") == (True, False)


def test_an_unknown_files_principal_is_a_finding(kb: Path, tmp_path: Path) -> None:
    import json

    from scanner.inventory import load_inventory
    from scanner.queries import why
    from scanner.rules import build_context, evaluate
    from scanner.scan import run_scan
    from scanner.store import Store

    inventory_file = tmp_path / "ctxscan.yaml"
    inventory_file.write_text(json.dumps({
        "version": 1, "owners": [{"id": "data-eng"}],
        "sources": [{"id": "kb", "connector": "files", "path": str(kb), "owner": "data-eng"}],
        "workflows": [{"id": "assistant", "owner": "data-eng", "stage": "production",
                       "runs_as": {"kb": "rooot"}, "reads": ["kb:articles"]}]}))
    inventory = load_inventory([inventory_file], env={})
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        run_scan(inventory, store)
        ctx = build_context(inventory, store, datetime.now(UTC))
        findings = evaluate(ctx)
        snapshot = ctx.snapshots["kb"]
    finally:
        store.close()
    unknown = [f for f in findings if f.subkind == "unknown_principal"]
    assert len(unknown) == 1 and unknown[0].principal == "rooot" and unknown[0].source == "kb"
    from scanner.graph import build_graph

    answer = why(build_graph(inventory, {"kb": snapshot}), snapshot, "assistant", "kb:articles")
    assert answer["can_read"] is None and "rooot does not exist in source kb" in answer["note"]
def test_a_world_writable_file_inside_a_folder_exposes_the_folder(kb: Path) -> None:
    # Only the first-level entry's mode used to count: anyone could rewrite deep/b.md unseen.
    os.chmod(kb / "articles", 0o755)
    os.chmod(kb / "articles" / "deep" / "b.md", 0o666)
    _, snapshot = _probe(kb)
    writes = [g for g in snapshot.grants if g.public and g.access == "write"]
    assert [(g.target, g.via) for g in writes] == [("articles", "articles/deep/b.md mode 0o666")]
    articles = snapshot.asset("articles")
    assert articles is not None and articles.properties["world_writable"] is False
    assert articles.properties["world_writable_entries"] == ["articles/deep/b.md"]
    os.chmod(kb / "articles" / "deep" / "b.md", 0o644)
    _, snapshot = _probe(kb)
    assert not [g for g in snapshot.grants if g.public and g.access == "write"]
