"""Which run wrote a checkpoint: a fingerprint of the arguments, inputs and code that shape the result.

SageMaker restores `CheckpointConfig.S3Uri` into /opt/ml/checkpoints when a training job starts. A checkpoint
is resumed only when it carries the fingerprint of the run that reads it (a restart of the same job after a
spot interruption or a retry), never one left by another execution with other arguments, data or code.
Plain Python (no torch): the training script stores the fingerprint in its checkpoint and compares it here.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

VERSION = 1
CHANNEL_PREFIX = "SM_CHANNEL_"


def fingerprint(arguments: Mapping[str, Any], processes: int, code_files: Iterable[Path],
                environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The fingerprint of this run: its arguments, process count, input channels' contents and code.

    Args:
        arguments: the parsed hyperparameters that change the result (leave out testing aids).
        processes: the world size (it shards the data and splits the global batch).
        code_files: the source files whose code shapes the trained model.
        environ: where the `SM_CHANNEL_<NAME>` folders are named.
    """
    channels = {key[len(CHANNEL_PREFIX):].lower(): Path(value)
                for key, value in environ.items() if key.startswith(CHANNEL_PREFIX)}
    code = hashlib.sha256()
    for path in code_files:
        code.update(Path(path).name.encode() + b"\0" + Path(path).read_bytes() + b"\0")
    return {"version": VERSION, "arguments": {k: arguments[k] for k in sorted(arguments)}, "processes": processes,
            "inputs": {name: folder_digest(channels[name]) for name in sorted(channels)},
            "code": code.hexdigest()}


def folder_digest(folder: Path) -> str:
    """sha256 over every file's relative path, size and bytes, in a fixed order ("missing" for no folder)."""
    if not folder.exists():
        return "missing"
    digest = hashlib.sha256()
    if folder.is_file():
        files = [(folder.name, folder)]
    else:
        files = []
        for root, dirs, names in os.walk(folder, followlinks=True):  # the local runner links its inputs
            dirs.sort()
            files += [(Path(root, n).relative_to(folder).as_posix(), Path(root, n)) for n in sorted(names)]
    for relative, path in files:
        if not path.is_file():
            continue
        digest.update(f"{relative}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def differences(saved: Any, own: Mapping[str, Any]) -> list[str]:
    """What differs between a checkpoint's fingerprint and this run's, in words ("seed 7 vs 42"); [] if equal."""
    if not isinstance(saved, Mapping) or "version" not in saved:
        return ["it records no fingerprint: an older version of the script wrote it"]
    if saved["version"] != own["version"]:
        return [f"fingerprint version {saved['version']} vs {own['version']}"]
    found = []
    old_args, new_args = saved.get("arguments") or {}, own["arguments"]
    for key in sorted(set(old_args) | set(new_args)):
        if old_args.get(key) != new_args.get(key):
            found.append(f"{key} {old_args.get(key, 'unset')} vs {new_args.get(key, 'unset')}")
    if saved.get("processes") != own["processes"]:
        found.append(f"processes {saved.get('processes')} vs {own['processes']}")
    old_inputs, new_inputs = saved.get("inputs") or {}, own["inputs"]
    for name in sorted(set(old_inputs) | set(new_inputs)):
        if name not in old_inputs or name not in new_inputs:
            found.append(f"input channel '{name}' {'added' if name not in old_inputs else 'removed'}")
        elif old_inputs[name] != new_inputs[name]:
            found.append(f"input channel '{name}' differs")
    if saved.get("code") != own["code"]:
        found.append("training code differs")
    if not found and dict(saved) != dict(own):
        found.append("fingerprints differ")
    return found
