"""Compiled pipelines kept by what they were made from, so an unchanged config is not compiled twice.

A compile is deterministic (the same inputs give byte-identical definitions and code archives) and takes
seconds, most of them importing the SageMaker SDK; `emulate` then `upsert` in CI, or emulating again with
other --param values (execution parameters, not compile inputs), would pay them each time. An entry is found
by the loaded config (env overlay and parameter defaults included), sagepipe's own code, and the Python and
SDK versions; it then holds a digest of every local file or folder the compile read (code folders, staged
inputs), and is used only while all of them still match. Entries are JSON files under `<state>/compiled/`,
written whole (atomically); the newest KEEP are kept. SAGEPIPE_COMPILE_CACHE=off compiles every time.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

FORMAT = 1
KEEP = 20
SDK_DISTRIBUTIONS = ("sagemaker", "sagemaker-core", "sagemaker-mlops", "sagemaker-train", "sagemaker-serve",
                     "boto3", "botocore", "pydantic")


def compiled_or_cached(spec: Any, root: Path | None, compile_: Callable[[Any, set[Path]], Any]) -> Any:
    """compile_(spec, read) -> Compiled, where it adds each local path it reads to read; or the entry under root
    that the same inputs made. root None (or SAGEPIPE_COMPILE_CACHE=off): always compile."""
    if root is None or os.environ.get("SAGEPIPE_COMPILE_CACHE", "").lower() in ("off", "0", "false", "no"):
        return compile_(spec, set())
    entry = root / f"{_key(spec)}.json"
    found = _load(entry)
    if found is not None:
        return found
    read: set[Path] = set()
    compiled = compile_(spec, read)
    _store(entry, compiled, read)
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


def _load(entry: Path) -> Any:
    from pipelines.sagemaker.compiler import Compiled

    try:
        data = json.loads(entry.read_text())
        if data.get("format") != FORMAT or _inputs_digest({Path(p) for p in data["inputs"]}) != data["inputs"]:
            return None
        kept = data["compiled"]
        artifacts = {key: base64.b64decode(body) for key, body in kept.pop("artifacts").items()}
        return Compiled(artifacts=artifacts, **kept)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no entry, or one this version cannot read: compile


def _store(entry: Path, compiled: Any, read: set[Path]) -> None:
    from pipelines.fsutil import atomic_write_text

    kept = {"name": compiled.name, "definition": compiled.definition, "bucket": compiled.bucket,
            "region": compiled.region, "role": compiled.role, "tags": compiled.tags,
            "artifacts": {key: base64.b64encode(body).decode() for key, body in compiled.artifacts.items()}}
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(entry, json.dumps({"format": FORMAT, "inputs": _inputs_digest(read), "compiled": kept}))
        for old in sorted(entry.parent.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)[KEEP:]:
            old.unlink(missing_ok=True)
    except OSError:
        pass  # a cache that cannot be written costs the next compile, nothing else
