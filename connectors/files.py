"""`files`: a folder of documents. Each first-level subfolder and file is an asset.

Freshness is the newest mtime beneath an asset (method `metadata`). Access is the POSIX
mode and owner; a world-writable or world-readable entry shows as a grant to `world`, and so
does a world-writable file or folder anywhere inside a folder asset (the grant's `via` names
its path: anyone can change what the asset holds); the group bits show as grants to
`group:NAME`. In `runs_as`, `user:NAME` and `group:NAME` name a user or group of this
machine, a bare name is a user; `root` bypasses the mode bits.
Symlinks are never followed out of the root (and not at all with `follow_symlinks: false`);
a file or folder reached twice within one asset, through a link or a cycle, counts once.
Unreadable entries are noted, not fatal.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from connectors._principals import alias_memberships, files_principal
from scanner.errors import ProbeError
from scanner.model import (
    ACCESS_ADMIN,
    ACCESS_READ,
    ACCESS_WRITE,
    PUBLIC_PRINCIPALS,
    SCOPE_ASSET,
    Asset,
    FreshnessObservation,
    Grant,
    Membership,
    Principal,
    SourceSnapshot,
)
from scanner.plugins import Connector, ProbeContext, Setting

MAX_NOTES = 50
MAX_WRITABLE = 5  # world-writable entries named per asset (the count says how many in all)


def _owner_name(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        import grp

        return grp.getgrgid(gid).gr_name
    except (KeyError, ImportError):
        return str(gid)


class FilesConnector(Connector):
    """A folder of files on a local or mounted file system."""

    kind = "files"
    description = "a folder of files: each first-level subfolder and file is an asset"
    owner_tags = False  # nothing in the system carries an owner tag
    settings = (
        Setting("path", str, required=True, help="the folder to scan"),
        Setting("follow_symlinks", bool, help="follow symlinks that stay inside the folder (default true)"),
    )

    def probe(self, context: ProbeContext) -> SourceSnapshot:
        """Walk the folder once and summarise each first-level entry."""
        root = Path(str(self.source.settings["path"])).expanduser()
        if not root.is_absolute() and self.source.file:
            root = Path(self.source.file).resolve().parent / root
        try:
            root_real = root.resolve(strict=True)
        except (FileNotFoundError, RuntimeError):
            raise ProbeError(f"folder {root} does not exist", reason="not_found") from None
        if not root_real.is_dir():
            raise ProbeError(f"{root} is not a folder", reason="not_found")
        follow = self.source.settings.get("follow_symlinks", True)
        notes: list[str] = []
        assets: list[Asset] = []
        grants: list[Grant] = []
        principals: dict[str, Principal] = {}
        try:
            entries = sorted(os.scandir(root_real), key=lambda e: e.name)
        except PermissionError:
            raise ProbeError(f"folder {root} is not readable", reason="access_denied") from None

        def note(text: str) -> None:
            if len(notes) < MAX_NOTES:
                notes.append(text)
            elif len(notes) == MAX_NOTES:
                notes.append("more unreadable entries were not listed")

        for entry in entries:
            if context.cancelled.is_set():
                break
            name = entry.name
            if "\n" in name or "\r" in name:
                shown = name.encode("unicode_escape").decode()
                note(f"entry {shown!r} has a newline in its name; kept as is")
            if not self.source.wants(name):
                continue
            link_to: str | None = None
            try:
                target = Path(entry.path)
                if entry.is_symlink():
                    if not follow:
                        continue
                    resolved = target.resolve()
                    if not resolved.is_relative_to(root_real):
                        note(f"{name}: symlink points outside the folder; skipped")
                        continue
                    target = resolved
                    # Another entry's content under a second name: say so, as its totals repeat.
                    link_to = resolved.relative_to(root_real).as_posix() or "."
                info = target.stat()
            except RuntimeError:  # Path.resolve() on a symlink loop (Python < 3.13)
                note(f"{name}: symlink loop; skipped")
                continue
            except OSError as exc:
                loop = exc.errno == errno.ELOOP
                note(f"{name}: symlink loop; skipped" if loop else f"{name}: cannot stat ({exc.strerror})")
                continue
            is_dir = stat.S_ISDIR(info.st_mode)
            newest, count, size = info.st_mtime, 0, 0
            inner_writable: list[tuple[str, int]] = []
            if is_dir:
                newest, count, size = self._walk(target, root_real, name, note, context, bool(follow),
                                                 inner_writable)
                newest = max(newest, info.st_mtime) if count == 0 else newest
            else:
                count, size = 1, info.st_size
            owner = _owner_name(info.st_uid)
            mode = stat.S_IMODE(info.st_mode)
            world_writable = bool(mode & stat.S_IWOTH)
            world_readable = bool(mode & stat.S_IROTH)
            properties = {
                "mode": oct(mode), "owner_user": owner, "owner_group": _group_name(info.st_gid),
                "file_count": count, "world_writable": world_writable,
            }
            if link_to is not None:
                properties["symlink_to"] = link_to
            freshness = FreshnessObservation(
                method="metadata",
                last_changed=datetime.fromtimestamp(newest, UTC),
                detail="newest mtime beneath the entry" if is_dir else "file mtime",
                caveat="mtime can be set by copies and restores" if is_dir else None,
            ) if count or not is_dir else FreshnessObservation(detail="empty folder")
            assets.append(Asset(path=name, kind="folder" if is_dir else "file", size_bytes=size,
                                row_count=count, freshness=freshness, properties=properties))
            via = f"mode {oct(mode)} owner {owner}"
            principals.setdefault(f"user:{owner}", Principal(f"user:{owner}", "user"))
            # The owner can chmod, so it holds every right whatever the mode bits say.
            grants.append(Grant(f"user:{owner}", "owner", name, SCOPE_ASSET, ACCESS_ADMIN, via=via))
            if world_readable:
                grants.append(Grant("world", "read", name, SCOPE_ASSET, ACCESS_READ, public=True, via=via))
            if world_writable:
                grants.append(Grant("world", "write", name, SCOPE_ASSET, ACCESS_WRITE, public=True, via=via))
            group = f"group:{properties['owner_group']}"
            for bit, right, level in ((stat.S_IRGRP, "read", ACCESS_READ), (stat.S_IWGRP, "write", ACCESS_WRITE)):
                if mode & bit:
                    principals.setdefault(group, Principal(group, "group"))
                    grants.append(Grant(group, right, name, SCOPE_ASSET, level, via=f"mode {oct(mode)} group "
                                                                                    f"{properties['owner_group']}"))
            for inner, inner_mode in inner_writable[:MAX_WRITABLE]:
                grants.append(Grant("world", "write", name, SCOPE_ASSET, ACCESS_WRITE, public=True,
                                    via=f"{inner} mode {oct(inner_mode)}"))
            if inner_writable:
                properties["world_writable_entries"] = [path for path, _ in inner_writable[:MAX_WRITABLE]]
                properties["world_writable_count"] = len(inner_writable)
        if any(g.principal == "world" for g in grants):
            principals["world"] = Principal("world", "public")
        memberships, state = _runs_as(context, principals, notes)
        return SourceSnapshot(
            source_id=self.source.id, connector=self.kind, probed_at=context.now,
            assets=tuple(assets), principals=tuple(principals.values()), grants=tuple(grants),
            memberships=tuple(memberships), notes=tuple(notes), partial=context.cancelled.is_set(),
            state={"root": str(root_real), **state},
        )

    @staticmethod
    def _walk(folder: Path, root: Path, label: str, note: Callable[[str], None],
              context: ProbeContext, follow: bool,
              writable: list[tuple[str, int]] | None = None) -> tuple[float, int, int]:
        """Newest mtime, file count and bytes beneath a folder; each world-writable file or
        folder beneath it (its path from the root, its mode) goes to `writable`.

        Symlinks are followed only with `follow` and only while they stay in the root. Files and
        folders are identified by (device, inode), so one reached again through a link, a link
        cycle or a hard link is counted once.
        """
        newest, count, size = 0.0, 0, 0
        try:
            start = os.stat(folder)
        except OSError as exc:
            note(f"{label}: cannot stat ({exc.strerror})")
            return newest, count, size
        seen_folders = {(start.st_dev, start.st_ino)}
        seen_files: set[tuple[int, int]] = set()
        todo = [str(folder)]

        def relative(path: str) -> str:
            return os.path.relpath(path, root)

        while todo and not context.cancelled.is_set():
            current = todo.pop()
            try:
                with os.scandir(current) as listing:
                    entries = list(listing)
            except OSError as exc:
                note(f"{relative(exc.filename or current)}: unreadable ({exc.strerror})")
                continue
            for entry in entries:
                path = entry.path
                try:
                    if entry.is_symlink():
                        if not follow:
                            continue
                        real = os.path.realpath(path)
                        if not Path(real).is_relative_to(root):
                            note(f"{relative(path)}: symlink points outside the folder; skipped")
                            continue
                        path = real
                        info = os.stat(real)
                    else:
                        info = os.stat(path, follow_symlinks=False)
                except OSError as exc:
                    note(f"{relative(entry.path)}: cannot stat ({exc.strerror})")
                    continue
                key = (info.st_dev, info.st_ino)
                if (writable is not None and info.st_mode & stat.S_IWOTH and key not in seen_files
                        and key not in seen_folders and not stat.S_ISLNK(info.st_mode)):
                    writable.append((relative(entry.path), stat.S_IMODE(info.st_mode)))
                if stat.S_ISDIR(info.st_mode):
                    if key not in seen_folders:
                        seen_folders.add(key)
                        todo.append(path)
                    continue
                if key in seen_files:
                    continue
                seen_files.add(key)
                count += 1
                size += info.st_size
                newest = max(newest, info.st_mtime)
        return newest, count, size


def _runs_as(context: ProbeContext, principals: dict[str, Principal],
             notes: list[str]) -> tuple[list[Membership], dict[str, object]]:
    """Resolve the `runs_as` names against this machine's users and groups.

    A user is a member of its primary and supplementary groups; root bypasses the mode bits,
    so it is privileged. A name this machine does not know is unknown, never "world only".
    """
    import grp
    import pwd

    resolved: dict[str, str] = {}
    unknown: list[str] = []
    memberships: list[Membership] = []
    for wanted in sorted(context.principals):
        if wanted in PUBLIC_PRINCIPALS:
            continue
        principal, bare = files_principal(wanted)
        try:
            if principal.startswith("group:"):
                grp.getgrnam(bare)
                principals.setdefault(principal, Principal(principal, "group"))
            else:
                account = pwd.getpwnam(bare)
                groups = {grp.getgrgid(account.pw_gid).gr_name} | {
                    g.gr_name for g in grp.getgrall() if bare in g.gr_mem}
                memberships.extend(Membership(principal, f"group:{g}", True, can_set=False) for g in sorted(groups)
                                   if f"group:{g}" in principals)
                if account.pw_uid == 0:
                    principals[principal] = Principal(principal, "user", ("uid 0: bypasses file modes",), True)
                else:
                    principals.setdefault(principal, Principal(principal, "user"))
        except KeyError:
            unknown.append(wanted)
            kind = "group" if principal.startswith("group:") else "user"
            notes.append(f"runs_as principal {wanted!r} does not exist on this machine: no {kind} named {bare!r} "
                         "(write user:NAME or group:NAME; a bare name is a user)")
            continue
        if principal != wanted:
            resolved[wanted] = principal
    memberships.extend(alias_memberships(resolved))
    return memberships, {"unknown_principals": unknown, "resolved_principals": resolved}
