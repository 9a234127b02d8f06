"""File-system helpers: atomic writes, content hashes, cheap copies."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_text(path: Path, text: str) -> None:
    """Write, fsync, rename: a reader sees the old file or the new one, never half of one."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """atomic_write_text for bytes; the file is a new inode, so hard links to the old one keep their contents."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
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
    digest = hashlib.sha256()
    if path.is_file():
        _hash_file(path, digest)
        return digest.hexdigest()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode() + b"\0")
        _hash_file(file, digest)
    return digest.hexdigest()


def _hash_file(path: Path, digest: "hashlib._Hash") -> None:
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
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


def remove_path(path: Path) -> None:
    """Remove a file, link or folder; nothing there is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _link_or_copy(src: str | Path, dst: str | Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
