"""Content-addressed step outputs: a step whose code, config and inputs are unchanged is reused.

An entry holds its own copies of the outputs (read-only files, never shared with a run folder) and their
digests. It is built in a temporary folder and renamed into place only once complete, so a crash never
leaves a half-written entry; a hit copies the files out and checks them against the digests, and an entry
that is unreadable, incomplete or altered is a miss (with a warning) and is discarded.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from pipelines.fsutil import atomic_write_json, copy_path, hash_json, remove_inside
from pipelines.values import duration_seconds

FORMAT = 3  # 3: entries are copies with verified digests (2 shared hard links with run folders); older are not reused


class StepCache:
    """Cache entries under `<root>/<key>/`: `outputs/<name>` (a folder or a file) and `entry.json`."""

    def __init__(self, root: Path, warn: Callable[[str], None] = lambda text: None):
        self.root = root
        self.warn = warn

    @staticmethod
    def key(payload: dict[str, Any]) -> str:
        return hash_json(payload)

    def fetch(self, key: str, expire_after: str, targets: dict[str, Path], run_dir: Path) -> dict[str, Any] | None:
        """On a hit, copy the entry's outputs to targets (paths under run_dir) and return the entry."""
        folder = self.root / key
        if not folder.is_dir():
            return None
        try:
            entry = json.loads((folder / "entry.json").read_text())
            if entry.get("format") != FORMAT:
                return None
            age = time.time() - float(entry["created_at"])
            digests = {name: str(entry["output_digests"][name]) for name in targets}
        except (OSError, ValueError, LookupError, TypeError, AttributeError) as exc:
            return self._miss(folder, f"its entry.json is unreadable ({type(exc).__name__}: {exc})")
        if age > duration_seconds(expire_after):
            return None
        for name, target in targets.items():
            remove_inside(target, run_dir)
            try:
                found = copy_path(folder / "outputs" / name, target)
            except FileNotFoundError:
                return self._miss(folder, f"its output '{name}' is missing")
            except OSError as exc:
                return self._miss(folder, f"its output '{name}' cannot be read ({exc})")
            if found != digests[name]:
                return self._miss(folder, f"its output '{name}' differs from its recorded digest")
        return entry

    def store(self, key: str, outputs: dict[str, Path], digests: dict[str, str], entry: dict[str, Any]) -> None:
        """Record copies of outputs (whose digests the caller computed) as the entry for key."""
        tmp = self.root / f".tmp-{uuid.uuid4().hex}"
        try:
            for name, path in outputs.items():
                if copy_path(path, tmp / "outputs" / name) != digests[name]:
                    self.warn(f"warning: output '{name}' changed while it was being cached; not cached")
                    return
            atomic_write_json(tmp / "entry.json", {**entry, "outputs": sorted(outputs), "format": FORMAT,
                                                   "output_digests": digests, "created_at": time.time()})
            for file in [tmp, *tmp.rglob("*")]:
                if file.is_file():
                    file.chmod(0o444)
            self._discard(self.root / key)
            tmp.rename(self.root / key)
        except OSError:
            pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _miss(self, folder: Path, why: str) -> dict[str, Any] | None:
        """No entry (a warning saying why, and the broken entry removed)."""
        self.warn(f"warning: cache entry {folder.name[:12]} is not reused: {why}; running the step")
        self._discard(folder)
        return None

    def _discard(self, folder: Path) -> None:
        """Move an entry out of the way in one rename, then delete it: no reader sees half of one."""
        trash = self.root / f".trash-{uuid.uuid4().hex}"
        try:
            folder.rename(trash)
            remove_inside(trash, self.root)
        except OSError:
            pass
