"""Content-addressed step outputs: a step whose code, config and inputs are unchanged is reused.

An entry holds its own copies of the outputs (read-only files, never shared with a run folder) and their
digests. It is built in a temporary folder and renamed into place only once complete, so a crash never
leaves a half-written entry; a hit copies the files out and checks them against the digests, and an entry
that is unreadable, incomplete or altered is a miss (with a warning) and is discarded.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from pipelines.fsutil import atomic_write_json, copy_path, hash_json, remove_inside

_NUMBER = r"(\d+(?:[.,]\d+)?)"
# ISO 8601 durations as CacheConfig.ExpireAfter takes them: P30D, PT12H, P1DT12H, P4W, and (SDK docstring, developer
# guide) lower case and the P left out (p30d, T12H, 30d, 30dT5h)
_DURATION = re.compile(rf"^(P)?(?:{_NUMBER}Y)?(?:{_NUMBER}M)?(?:{_NUMBER}W)?(?:{_NUMBER}D)?"
                       rf"(?:(T)(?:{_NUMBER}H)?(?:{_NUMBER}M)?(?:{_NUMBER}S)?)?$", re.IGNORECASE)
_SECONDS = (365 * 86400, 30 * 86400, 7 * 86400, 86400, 3600, 60, 1)
FORMAT = 3  # 3: entries are copies with verified digests (2 shared hard links with run folders); older are not reused


def duration_seconds(text: str) -> float:
    """ISO 8601 duration (as SageMaker's CacheConfig takes it) in seconds; ValueError says what is wrong."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not match or not _well_formed(match):
        raise ValueError(f"{text!r} is not an ISO 8601 duration (P30D, PT12H, P1DT12H, P4W, T12H or 30d)")
    date, time_part = match.groups()[1:5], match.groups()[6:]
    numbers = [float((v or "0").replace(",", ".")) for v in (*date, *time_part)]
    return sum(n * s for n, s in zip(numbers, _SECONDS))


def _well_formed(match: re.Match) -> bool:
    """At least one unit; a T is followed by at least one time unit. The P may be left out, as the developer
    guide's own examples do ("30d", "5y", "T16m", "30dT5h")."""
    groups = match.groups()
    date, time_designator, time_part = groups[1:5], groups[5], groups[6:]
    has_date, has_time = any(date), any(time_part)
    if time_designator and not has_time:
        return False
    return has_date or has_time


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
