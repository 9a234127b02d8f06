"""Content-addressed step outputs: a step whose code, config and inputs are unchanged is reused.

An entry is built in a temporary folder and renamed into place only once complete, so a crash or
Ctrl-C never leaves a half-written entry that a later run could reuse.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from pipelines.fsutil import atomic_write_json, hash_json, link_tree, remove_path

_DURATION = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")
_SECONDS = (365 * 86400, 30 * 86400, 7 * 86400, 86400, 3600, 60, 1)
FORMAT = 2  # 2: an output may be a file (a training step's model.tar.gz); older entries are not reused


def duration_seconds(text: str) -> float:
    """ISO 8601 duration (as SageMaker's CacheConfig takes it) in seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not an ISO 8601 duration: {text!r}")
    return float(sum(int(v or 0) * s for v, s in zip(match.groups(), _SECONDS)))


class StepCache:
    """Cache entries under `<root>/<key>/`: `outputs/<name>` (a folder or a file) and `entry.json`."""

    def __init__(self, root: Path):
        self.root = root

    @staticmethod
    def key(payload: dict[str, Any]) -> str:
        return hash_json(payload)

    def lookup(self, key: str, expire_after: str) -> dict[str, Any] | None:
        entry_file = self.root / key / "entry.json"
        try:
            entry = json.loads(entry_file.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if entry.get("format") != FORMAT or time.time() - entry["created_at"] > duration_seconds(expire_after):
            return None
        if not all((self.root / key / "outputs" / name).exists() for name in entry["outputs"]):
            return None
        return entry

    def restore(self, key: str, targets: dict[str, Path]) -> None:
        for name, target in targets.items():
            remove_path(target)
            link_tree(self.root / key / "outputs" / name, target)

    def store(self, key: str, outputs: dict[str, Path], entry: dict[str, Any]) -> None:
        final = self.root / key
        if final.exists():
            shutil.rmtree(final, ignore_errors=True)
        tmp = self.root / f".tmp-{uuid.uuid4().hex}"
        try:
            for name, folder in outputs.items():
                link_tree(folder, tmp / "outputs" / name)
            atomic_write_json(tmp / "entry.json", {**entry, "outputs": sorted(outputs), "format": FORMAT,
                                                   "created_at": time.time()})
            tmp.rename(final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
