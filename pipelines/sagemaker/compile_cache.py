"""Compiled pipelines kept by what they were made from, so an unchanged config is not compiled twice.

A compile is deterministic (the same inputs give byte-identical definitions and code archives) and takes
seconds, most of them importing the SageMaker SDK; `emulate` then `upsert` in CI, or emulating again with
other --param values (execution parameters, not compile inputs), would pay them each time. An entry is found
by the loaded config (env overlay and parameter defaults included), sagepipe's own code, and the Python and
SDK versions; it then holds a digest of every local file or folder the compile read (code folders, staged
inputs), and is used while all of them still match.

When only the contents of files change (an edit of a script, no file added, removed or renamed), the entry is
brought up to date without the SDK: a compile depends on a shipped folder's file names (which requirements.txt
or entry script there is) and on its contents only through the content-addressed artifact it becomes
(artifacts.py). So each changed folder's artifact is made again and its new address replaces the old one in
the definition; the entry records, for every read path whose artifact it checked byte for byte, that address
and the file names. Any other change (a file added or removed, a path not shipped as one artifact, a config
edit) compiles, and so does every change to a compile that ships an archive (a tuning step packs its code
folder: contents no artifact mirrors). A file written while the compile ran keeps it out of the cache.

Entries are JSON files under `<state>/compiled/`, written whole (atomically); the newest KEEP are kept.
SAGEPIPE_COMPILE_CACHE=off compiles every time.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import time
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

FORMAT = 2
KEEP = 20
SDK_DISTRIBUTIONS = ("sagemaker", "sagemaker-core", "sagemaker-mlops", "sagemaker-train", "sagemaker-serve",
                     "boto3", "botocore", "pydantic")


def compiled_or_cached(spec: Any, root: Path | None, compile_: Callable[[Any, set[Path]], Any]) -> Any:
    """compile_(spec, read) -> Compiled, where it adds each local path it reads to read; or the entry under root
    that the same inputs made (brought up to date where only file contents changed). root None (or
    SAGEPIPE_COMPILE_CACHE=off): always compile."""
    if root is None or os.environ.get("SAGEPIPE_COMPILE_CACHE", "").lower() in ("off", "0", "false", "no"):
        return compile_(spec, set())
    entry, started = root / f"{_key(spec)}.json", time.time()
    data = _read(entry)
    if data is not None:
        current = _inputs_digest({Path(p) for p in data["inputs"]})
        if current == data["inputs"]:
            return _compiled(data["compiled"], "reused from the compile cache")
        try:
            updated = _with_new_contents(data, current)
        except (KeyError, TypeError, ValueError, AttributeError):
            updated = None  # an entry this version cannot read: compile
        if updated is not None:
            _store(entry, updated, {Path(p) for p in data["inputs"]}, started)
            return updated
    read: set[Path] = set()
    compiled = compile_(spec, read)
    _store(entry, compiled, read, started)
    return compiled


def _key(spec: Any) -> str:
    digest = hashlib.sha256()
    for part in (str(FORMAT), sys.version, json.dumps(spec.model_dump(mode="python"), default=repr, sort_keys=True),
                 _own_code(), *(f"{name}=={_version(name)}" for name in SDK_DISTRIBUTIONS)):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:32]


def _own_code() -> str:
    """The content of sagepipe's Python code (pipelines/, steps/): the compiler and every step type."""
    import pipelines
    import steps

    digest = hashlib.sha256()
    for package in (pipelines, steps):
        base = Path(str(package.__file__)).parent
        for file in sorted(base.rglob("*.py")):
            digest.update(str(file.relative_to(base)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def _inputs_digest(paths: set[Path]) -> dict[str, str]:
    from pipelines.fsutil import hash_path

    found = {}
    for path in sorted(paths):
        try:
            found[str(path)] = hash_path(path)
        except OSError:
            found[str(path)] = "missing"
    return found


def _read(entry: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(entry.read_text())
        if data.get("format") != FORMAT or not isinstance(data.get("inputs"), dict):
            return None
        data["compiled"]["artifacts"] = {key: base64.b64decode(body)
                                         for key, body in data["compiled"]["artifacts"].items()}
        return data
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # no entry, or one this version cannot read: compile


def _compiled(kept: dict[str, Any], reused: str) -> Any:
    from pipelines.sagemaker.compiler import Compiled

    return Compiled(**kept, reused=reused)


def _with_new_contents(data: dict[str, Any], current: dict[str, str]) -> Any:
    """The entry's compile with each changed path's artifact made again from its new contents, or None where
    a change is more than new contents of the same files in a path shipped as one artifact."""
    from pipelines.archives import local_members
    from pipelines.sagemaker.artifacts import artifact_folder

    kept, sources = dict(data["compiled"]), data.get("sources") or {}
    artifacts, renamed = dict(kept["artifacts"]), {}
    changed = [p for p, digest in data["inputs"].items() if current.get(p) != digest]
    for path in changed:
        source, members = sources.get(path), local_members(Path(path))
        if source is None or members is None or sorted(members) != source["names"]:
            return None
        old, new = source["folder"], artifact_folder(kept["name"], members)
        artifacts = {k: v for k, v in artifacts.items() if not k.startswith(old + "/")}
        artifacts.update({f"{new}/{name}": body for name, body in members.items()})
        renamed[old] = new
    kept.update(artifacts=artifacts, definition=_renamed(kept["definition"], renamed))
    return _compiled(kept, "from the compile cache, with new contents of "
                           + ", ".join(sorted(Path(p).name for p in changed)))


def _renamed(value: Any, renamed: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _renamed(v, renamed) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v, renamed) for v in value]
    if isinstance(value, str) and value.startswith("s3://"):
        bucket, _, key = value[5:].partition("/")
        for old, new in renamed.items():
            if key == old or key.startswith(old + "/"):
                return f"s3://{bucket}/{new}{key[len(old):]}"
    return value


def _sources(compiled: Any, read: set[Path]) -> dict[str, dict[str, Any]]:
    """{read path: its artifact folder and file names}, for each path whose artifact holds exactly its files
    and no other read path's (two paths with the same contents share one artifact: neither is recorded)."""
    from pipelines.archives import local_members
    from pipelines.sagemaker.artifacts import artifact_folder

    found: dict[str, dict[str, Any]] = {}
    for path in read:
        members = local_members(path)
        if not members:
            continue
        folder = artifact_folder(compiled.name, members)
        shipped = {k[len(folder) + 1:]: v for k, v in compiled.artifacts.items() if k.startswith(folder + "/")}
        if shipped == members:
            found[str(path)] = {"folder": folder, "names": sorted(members)}
    mirrored = tuple(s["folder"] + "/" for s in found.values())
    if any(_archive(body) for key, body in compiled.artifacts.items() if not key.startswith(mirrored)):
        return {}  # a packed folder (a tuning step's sourcedir.tar.gz) depends on contents it does not mirror
    shared = Counter(s["folder"] for s in found.values())
    return {p: s for p, s in found.items() if shared[s["folder"]] == 1}


def _written_since(paths: set[Path], moment: float) -> bool:
    for path in paths:
        files = [path] if path.is_file() else path.rglob("*")
        try:
            if any(f.stat().st_mtime >= moment for f in files if f.is_file()):
                return True
        except OSError:
            return True
    return False


def _archive(body: bytes) -> bool:
    return body[:2] == b"\x1f\x8b" or body[:4] == b"PK\x03\x04" or body[257:262] == b"ustar"


def _store(entry: Path, compiled: Any, read: set[Path], started: float) -> None:
    """Keep compiled as the entry, unless a file it read changed while it was made (the digests, taken now,
    would stand for contents it was not made from)."""
    from pipelines.fsutil import atomic_write_text

    if _written_since(read, started):  # (a coarse file clock may date a write a tick early: before any read)
        return

    kept = {"name": compiled.name, "definition": compiled.definition, "bucket": compiled.bucket,
            "region": compiled.region, "role": compiled.role, "tags": compiled.tags,
            "artifacts": {key: base64.b64encode(body).decode() for key, body in compiled.artifacts.items()}}
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(entry, json.dumps({"format": FORMAT, "inputs": _inputs_digest(read),
                                             "sources": _sources(compiled, read), "compiled": kept}))
        for old in sorted(entry.parent.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)[KEEP:]:
            old.unlink(missing_ok=True)
    except OSError:
        pass  # a cache that cannot be written costs the next compile, nothing else
