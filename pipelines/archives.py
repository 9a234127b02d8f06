"""Folders as bytes: what a local code or model folder becomes when it is shipped (its members) and a tar.gz of
it that depends only on names and contents, so the same files always give the same archive and digest."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path, PurePosixPath

from pipelines.errors import ConfigError, Problem


def is_noise(key: str) -> bool:
    return "__pycache__/" in key or key.endswith((".pyc", ".DS_Store"))


def local_members(path: Path) -> dict[str, bytes] | None:
    """What a local file or folder becomes as an artifact ({name: bytes}, noise left out); None if absent.

    A symbolic link in a folder is followed only where it points inside that folder (a linked folder's files
    under the link's name); one that points outside is refused (LinkOutside): compile would otherwise ship the
    contents of files outside the code folder, or the repository, to S3. A dangling link is left out."""
    if path.is_file():
        return {path.name: path.read_bytes()}
    if not path.is_dir():
        return None
    root = path.resolve()
    members: dict[str, bytes] = {}
    _collect(path, PurePosixPath(), root, path, (root,), members)
    return dict(sorted(members.items()))


class LinkOutside(ConfigError):
    """A symbolic link in a shipped folder that points outside it (or loops)."""


def _refuse(link: Path, message: str) -> LinkOutside:
    return LinkOutside([Problem(str(link), None, "", message)])


def _collect(folder: Path, relative: PurePosixPath, root: Path, top: Path, chain: tuple[Path, ...],
             members: dict[str, bytes]) -> None:
    for entry in sorted(folder.iterdir()):
        name = relative / entry.name
        target = entry
        if entry.is_symlink():
            target = entry.resolve()
            if target != root and root not in target.parents:
                raise _refuse(top / name, f"a symbolic link to {target}, outside the folder {top} that is shipped "
                              "to the job; compile refuses to upload what it points to. Copy the file into the "
                              "folder (or move the code next to it), or remove the link")
            if target.is_dir() and any(target == c or target in c.parents for c in chain):
                raise _refuse(top / name, f"a symbolic link to {target}, a folder that holds the link itself "
                              "(a loop): remove the link")
        if target.is_dir():
            _collect(target, name, root, top, (*chain, target.resolve()), members)
        elif target.is_file() and not is_noise(str(name)):
            members[str(name)] = target.read_bytes()


def reproducible_targz(folder: Path, extra: dict[str, bytes] | None = None) -> bytes:
    """A tar.gz of a folder (plus `extra` files) that depends only on file names and contents."""
    members = {**(local_members(folder) or {}), **(extra or {})}
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped:
        with tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(members):
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(members[name]), 0o644, 0
                tar.addfile(info, io.BytesIO(members[name]))
    return buffer.getvalue()
