"""Content-addressed code artifacts: the same files always get the same S3 location.

The SDK names uploads after job names with timestamps; a definition that changes on every compile
makes SageMaker's step cache miss on every upsert. Each S3 location in the definition that names
uploaded objects is rewritten to `s3://<bucket>/<pipeline>/artifacts/<sha256 of the contents>/`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

from pipelines.errors import ConfigError, Problem


# Where jobs write: locations, not uploaded code, whatever objects happen to lie below them.
OUTPUT_KEYS = {"OutputDataConfig", "CheckpointConfig", "ProcessingOutputConfig", "S3OutputPath"}


def _is_noise(key: str) -> bool:
    return "__pycache__/" in key or key.endswith((".pyc", ".DS_Store"))


def content_address(definition: Any, objects: dict[str, bytes], bucket: str,
                    prefix: str) -> tuple[Any, dict[str, bytes]]:
    """(definition with content-addressed S3 URIs, {new key: bytes} to upload at upsert)."""
    objects = {k: v for k, v in objects.items() if not _is_noise(k)}
    root = f"s3://{bucket}/"
    artifacts: dict[str, bytes] = {}
    rewritten: dict[str, str] = {}

    def address(uri: str) -> str:
        if uri in rewritten:
            return rewritten[uri]
        key = uri[len(root):]
        if key in objects:
            members, single = {key.rsplit("/", 1)[-1]: objects[key]}, True
        else:
            base = key.rstrip("/") + "/"
            members, single = {k[len(base):]: v for k, v in objects.items() if k.startswith(base)}, False
            if not members:
                return uri  # an output location, or data that is not ours
        folder = artifact_folder(prefix, members)
        for name, data in members.items():
            artifacts[f"{folder}/{name}"] = data
        new_uri = root + (f"{folder}/{next(iter(members))}" if single else folder)
        rewritten[uri] = new_uri
        return new_uri

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v if k in OUTPUT_KEYS else walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, str) and value.startswith(root):
            return address(value)
        return value

    return walk(definition), artifacts


def artifact_folder(prefix: str, members: dict[str, bytes]) -> str:
    """The key of an artifact folder: `<prefix>/artifacts/` and a digest of its members' names and contents."""
    digest = hashlib.sha256()
    for name in sorted(members):
        digest.update(name.encode() + b"\0" + hashlib.sha256(members[name]).digest())
    return f"{prefix}/artifacts/{digest.hexdigest()[:24]}"


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
        elif target.is_file() and not _is_noise(str(name)):
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
