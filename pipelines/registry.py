"""Model registries: groups of numbered versions, each PendingManualApproval, Approved or Rejected.

Every backend returns the same package dict: group, version, status, created_at, metrics, lineage,
model_uri, run_id and history (who, when, note, previous status for each change).
The file backend here is used when no tracking store is configured: `.sagepipe/registry/<group>/
<version>/` holding `package.json`, `model.tar.gz` (the model_uri, as SageMaker's ModelDataUrl) and
`model/` (its files, for serving); versions are claimed with an atomic mkdir, so two registrations at
once get two versions. A status change is atomic: under the group's lock (`file_lock`) it re-reads the
version, checks the transition and writes, so two decisions at once never both start from the same status.
`open_registry` picks the backend for an environment.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ContextManager, Iterator

from pipelines.errors import did_you_mean
from pipelines.fsutil import atomic_write_json, link_tree
from pipelines.model_archive import ARCHIVE, model_folder, pack

STATUSES = ("PendingManualApproval", "Approved", "Rejected")


class RegistryError(Exception):
    """A registry request that cannot be carried out (unknown group, bad transition)."""


class TransitionConflict(RegistryError):
    """Someone else changed the version's status while this decision was being made; nothing changed."""


def _now(timespec: str = "seconds") -> str:
    return datetime.now(timezone.utc).isoformat(timespec=timespec)


def check_transition(package: dict[str, Any], status: str, force: bool, since: float | None = None) -> None:
    """Raise RegistryError for a status change a person may not make (without --force).

    since: when the person started deciding (epoch seconds); a decision recorded after it by someone
    else is a TransitionConflict, so of two racing decisions exactly one takes effect."""
    group, version, previous = package["group"], package["version"], package["status"]
    if status not in STATUSES:
        raise RegistryError(f"unknown status '{status}'{did_you_mean(status, STATUSES)}")
    last = (package.get("history") or [{}])[-1]
    if since is not None and not force and last.get("previous") and _timestamp(last.get("at")) > since:
        raise TransitionConflict(f"{group} version {version} was {previous} by {last.get('by')} at {last['at']} "
                                 f"while you were deciding; nothing changed (sagepipe models show {group} {version})")
    if previous == status:
        raise RegistryError(f"{group} version {version} is already {status}")
    if previous == "Rejected" and status == "Approved" and not force:
        raise RegistryError(f"{group} version {version} was rejected; approving it needs --force")


def history_entry(status: str, note: str, previous: str | None) -> dict[str, Any]:
    """One recorded change: the new status, when, by whom, why, and the status before."""
    return {"status": status, "at": _now("microseconds"), "by": _user(), "note": note, "previous": previous}


def _timestamp(at: Any) -> float:
    try:
        return datetime.fromisoformat(str(at)).timestamp()
    except ValueError:
        return float("-inf")


_held = threading.local()


@contextmanager
def file_lock(path: Path, what: str, wait_s: float = 120) -> Iterator[None]:
    """Hold an exclusive lock on `path` (re-entrant in a thread; the OS drops it when the process dies)."""
    if not hasattr(_held, "paths"):
        _held.paths = {}
    held: dict[str, int] = _held.paths
    key = str(path)
    if key in held:
        held[key] += 1
        try:
            yield
        finally:
            held[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    handle.seek(0)
                    raise RegistryError(f"{what} is still locked by another change ({handle.read().strip() or path}) "
                                        f"after {wait_s:.0f} s; try again") from None
                time.sleep(0.02)
        handle.truncate(0)
        handle.write(f"pid {os.getpid()}, {_user()}, since {_now()}")
        handle.flush()
        held[key] = 1
        try:
            yield
        finally:
            del held[key]
            fcntl.flock(handle, fcntl.LOCK_UN)


class Registry:
    """What every backend shares; each provides groups, versions, show, register or not, locked, _write_status."""

    def groups(self) -> list[str]:
        raise NotImplementedError

    def versions(self, group: str) -> list[dict[str, Any]]:
        raise NotImplementedError

    def locked(self, group: str) -> ContextManager[None]:
        """The group's lock: status changes (and what they deploy) happen one at a time."""
        raise NotImplementedError

    def _write_status(self, package: dict[str, Any], status: str, entry: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def set_status(self, group: str, version: int, status: str, note: str = "", force: bool = False,
                   since: float | None = None) -> dict[str, Any]:
        """Approve or reject a version atomically, recording who, when, why and the real previous status.

        since: when the caller started deciding; see check_transition."""
        with self.locked(group):
            package = self.show(group, version)
            check_transition(package, status, force, since)
            return self._write_status(package, status, history_entry(status, note, package["status"]))

    def latest(self, group: str, status: str | None = None) -> dict[str, Any] | None:
        """The newest version, or the newest with that status."""
        matching = [p for p in self.versions(group) if status is None or p["status"] == status]
        return matching[-1] if matching else None

    def no_such_group(self, group: str) -> RegistryError:
        return RegistryError(f"no model group '{group}'{did_you_mean(group, self.groups())}")

    def no_such_version(self, group: str, version: int) -> RegistryError:
        known = [str(p["version"]) for p in self.versions(group)]
        return RegistryError(f"model group '{group}' has no version {version} (versions: {', '.join(known) or 'none'})")


def open_registry(settings: Any, state_root: Path, repo_root: Path) -> Any:
    """The registry an environment uses: MLflow's when a tracking store is configured, else files."""
    from pipelines.tracking import resolve_tracking_uri

    if settings.sagemaker.get("region"):  # a cloud env: the SageMaker Model Registry
        from pipelines.sagemaker.registry import SageMakerRegistry

        return SageMakerRegistry(settings.sagemaker["region"])
    uri = resolve_tracking_uri(settings.tracking_uri, state_root, repo_root)
    if uri is None:
        return LocalRegistry(state_root / "registry")
    from pipelines.mlflow_registry import MlflowRegistry

    return MlflowRegistry(uri, state_root / "models")


class LocalRegistry(Registry):
    """Model package groups under one folder."""

    def __init__(self, root: Path):
        self.root = root

    def groups(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.exists() else []

    def versions(self, group: str) -> list[dict[str, Any]]:
        folder = self._group_dir(group)
        packages = []
        for entry in folder.iterdir():
            manifest = entry / "package.json"
            if entry.name.isdigit() and manifest.exists():
                packages.append(json.loads(manifest.read_text()))
        return sorted(packages, key=lambda p: p["version"])

    def show(self, group: str, version: int) -> dict[str, Any]:
        manifest = self._group_dir(group) / str(version) / "package.json"
        if not manifest.exists():
            raise self.no_such_version(group, version)
        return json.loads(manifest.read_text())

    def register(self, group: str, model: Path, metrics: dict[str, Any], status: str,
                 lineage: dict[str, Any], run_id: str | None = None) -> tuple[dict[str, Any], bool]:
        """Add a version (or return the existing one for an identical model); (package, created).

        model is a model folder or a model.tar.gz (or a folder holding one)."""
        group_dir = self.root / group
        group_dir.mkdir(parents=True, exist_ok=True)
        existing = [p for p in self.versions(group) if p["lineage"].get("model_hash") == lineage.get("model_hash")]
        if existing:
            return existing[-1], False
        version = self._claim_version(group_dir)
        folder = group_dir / str(version)
        with model_folder(model) as files:
            pack(files, folder / ARCHIVE)
            link_tree(files, folder / "model")
        package = {
            "group": group, "version": version, "status": status, "created_at": _now(),
            "metrics": metrics, "lineage": lineage, "model_uri": str(folder / ARCHIVE),
            "run_id": lineage.get("run_id"), "history": [history_entry(status, "registered", None)],
        }
        atomic_write_json(folder / "package.json", package)
        return package, True

    def locked(self, group: str) -> ContextManager[None]:
        return file_lock(self._group_dir(group) / ".lock", f"model group {group}")

    def _write_status(self, package: dict[str, Any], status: str, entry: dict[str, Any]) -> dict[str, Any]:
        package = {**package, "status": status, "history": [*package["history"], entry]}
        atomic_write_json(self._group_dir(package["group"]) / str(package["version"]) / "package.json", package)
        return package

    def model_path(self, package: dict[str, Any]) -> Path:
        """A local folder holding the version's model files (model.tar.gz extracted at registration)."""
        uri = Path(package["model_uri"])
        return uri.parent / "model" if uri.name == ARCHIVE else uri  # older versions name the folder itself

    def _group_dir(self, group: str) -> Path:
        folder = self.root / group
        if not folder.is_dir():
            raise self.no_such_group(group)
        return folder

    @staticmethod
    def _claim_version(group_dir: Path) -> int:
        taken = [int(p.name) for p in group_dir.iterdir() if p.name.isdigit()]
        version = max(taken, default=0) + 1
        while True:
            try:
                (group_dir / str(version)).mkdir()
                return version
            except FileExistsError:
                version += 1


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")

