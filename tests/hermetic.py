"""Keeping a user's own state out of the suite: the repository's `.sagepipe/` is neither read nor written.

A guard watches one folder: in this process through an audit hook (every open, listing and stat-like event
Python audits), and across subprocesses through a fingerprint of the folder (names, sizes, mtimes) taken
before and compared after. Tests run on a private SAGEPIPE_HOME (conftest), so nothing should come near it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Audited events whose first argument is a path a test touched.
_PATH_EVENTS = frozenset({"open", "os.listdir", "os.scandir", "os.mkdir", "os.remove", "os.rename", "os.rmdir",
                          "os.chmod", "os.utime", "os.truncate", "shutil.rmtree", "shutil.copyfile",
                          "os.symlink", "os.link", "glob.glob", "os.walk"})


class RepoStateGuard:
    """Records every access to `folder` (or below) while active."""

    def __init__(self, folder: Path):
        self.folder = os.path.realpath(folder)
        self.touched: list[str] = []
        self.active = False
        self.before = fingerprint(Path(self.folder))

    def check(self, event: str, args: tuple) -> None:
        if not self.active or event not in _PATH_EVENTS or not args:
            return
        target = args[0]
        if isinstance(target, bytes):
            target = os.fsdecode(target)
        if not isinstance(target, (str, os.PathLike)):
            return
        path = os.path.realpath(os.path.abspath(os.fspath(target)))
        if path == self.folder or path.startswith(self.folder + os.sep):
            self.touched.append(f"{event} {path}")

    def changes(self) -> list[str]:
        """What a subprocess (or anything) created, changed or removed in the folder since the guard began."""
        after = fingerprint(Path(self.folder))
        return sorted(f"{'added' if name not in self.before else 'removed' if name not in after else 'changed'} "
                      f"{name}" for name in set(self.before) | set(after) if self.before.get(name) != after.get(name))


def fingerprint(folder: Path) -> dict[str, tuple[int, int]]:
    if not folder.is_dir():
        return {}
    found = {}
    for path in sorted(folder.rglob("*")):
        stat = path.lstat()
        found[str(path.relative_to(folder))] = (stat.st_size, stat.st_mtime_ns)
    return found


_GUARDS: list[RepoStateGuard] = []
_HOOKED: list[bool] = []


def _hook(event: str, args: tuple) -> None:
    for guard in _GUARDS:
        guard.check(event, args)


def watch(folder: Path) -> RepoStateGuard:
    """A guard on folder, checked by the one audit hook this process has (hooks cannot be removed)."""
    if not _HOOKED:
        sys.addaudithook(_hook)
        _HOOKED.append(True)
    guard = RepoStateGuard(folder)
    guard.active = True
    _GUARDS.append(guard)
    return guard


def unwatch(guard: RepoStateGuard) -> None:
    guard.active = False
    if guard in _GUARDS:
        _GUARDS.remove(guard)
