"""File-system helpers: atomic writes, content hashes, copies, and removals that stay inside a folder."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def _current_umask() -> int:
    """The process umask, read without changing it where /proc allows (os.umask sets it to read it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    """Write, fsync, rename: a reader sees the old file or the new one, never half of one."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """atomic_write_text for bytes; the file is a new inode, so hard links to the old one keep their contents."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_current_umask())  # mkstemp makes 0600; a written file is as open() would make it
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def hash_path(path: Path) -> str:
    """sha256 over a file's bytes, or over a folder's relative paths and file contents."""
    return _digest(path, None)


def copy_path(source: Path, target: Path) -> str:
    """Copy a file (to the file target) or a folder's files (into the folder target) as new files, and
    return hash_path of what was read; a missing source is FileNotFoundError."""
    return _digest(source, target)


def stat_signature(path: Path) -> str | None:
    """A cheap fingerprint of a file or folder (names, sizes, times, inodes): equal signatures mean unchanged
    contents, so a digest recorded with one can be trusted; None when it cannot be read."""
    try:
        files = [path] if path.is_file() else _files(path)
        stats = [(str(f.relative_to(path)), s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino)
                 for f in files for s in [f.stat()]]
    except OSError:
        return None
    return hash_json(stats)


def _files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such file or folder", str(folder))
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _digest(path: Path, target: Path | None) -> str:
    digest = hashlib.sha256()
    if path.is_file():
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
        _pump(path, digest, target)
        return digest.hexdigest()
    files = _files(path)
    if target is not None:
        target.mkdir(parents=True, exist_ok=True)
        for folder in sorted(p for p in path.rglob("*") if p.is_dir()):
            (target / folder.relative_to(path)).mkdir(parents=True, exist_ok=True)
    for file in files:
        relative = file.relative_to(path)
        digest.update(str(relative).encode() + b"\0")
        _pump(file, digest, None if target is None else target / relative)
    return digest.hexdigest()


def _pump(path: Path, digest: "hashlib._Hash", target: Path | None) -> None:
    with open(path, "rb") as source, open(target, "xb") if target else contextlib.nullcontext() as copy:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
            if copy:
                copy.write(chunk)
    digest.update(b"\0")


def hash_json(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def link_tree(source: Path, target: Path) -> None:
    """Copy a folder (or a file, to the file `target`) by hard links where possible, real copies otherwise."""
    source = source.resolve()
    if source.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        _link_or_copy(source, target)
        return
    shutil.copytree(source, target, copy_function=_link_or_copy, dirs_exist_ok=True)


def copy_tree(source: Path, target: Path) -> None:
    """A copy of a file (to the file target) or a folder (to the folder target, which must not exist) made of new
    files and folders its owner may write, whatever the source's modes: what a job gets of an S3 input, so nothing
    written, appended or deleted there reaches source. Links are followed (the copy holds what they point to);
    a dangling one is left out."""
    if source.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return
    shutil.copytree(source, target, symlinks=False, ignore_dangling_symlinks=True, copy_function=shutil.copyfile)
    for folder, _, _ in os.walk(target):  # copytree copies the folders' modes: a read-only one stays so
        os.chmod(folder, os.stat(folder).st_mode | 0o700)


def remove_path(path: Path) -> None:
    """Remove a file, link or folder; nothing there is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class UnsafePath(Exception):
    """A path that leads outside the folder it must stay in (a planted symbolic link, say)."""


def inside(path: Path, root: Path, follow: bool = False) -> Path:
    """path with its folders resolved (and its last part too when follow), checked to lie under root."""
    if path.name in ("", ".", ".."):
        raise UnsafePath(f"refusing to touch {path}: not a plain name")
    real = path.resolve() if follow else path.parent.resolve() / path.name
    base = root.resolve()
    if base not in real.parents:
        raise UnsafePath(f"refusing to touch {path}: it leads to {real}, outside {base}")
    return real


def remove_inside(path: Path, root: Path) -> None:
    """remove_path, refusing (UnsafePath) unless path lies under root once its folders are resolved; a link
    is removed itself, never followed."""
    real = inside(path, root)
    if real.is_dir() and not real.is_symlink():
        shutil.rmtree(real)
    else:
        real.unlink(missing_ok=True)


def fresh_dir(path: Path, root: Path) -> None:
    """An empty folder at path, which must lie under root."""
    remove_inside(path, root)
    path.mkdir(parents=True)


def _link_or_copy(src: str | Path, dst: str | Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def held_by_another(lock_file: Path) -> bool:
    """Whether some process holds an exclusive flock on lock_file now (a missing file is held by none)."""
    try:
        fd = os.open(lock_file, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
