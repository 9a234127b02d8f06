"""The file registry, used when no tracking store is configured: `.sagepipe/registry/<group>/<version>/`.

Each version folder holds `package.json`, `model.tar.gz` (the model_uri, as SageMaker's ModelDataUrl) and
`model/` (its files, for serving); versions are claimed with an atomic mkdir, so two registrations at
once get two versions; status changes take the group's lock file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ContextManager

from pipelines.fsutil import atomic_write_json, link_tree
from pipelines.model_archive import ARCHIVE, model_folder, pack
from pipelines.registry.base import Registry, history_entry, newest_with_hash, now
from pipelines.registry.locking import file_lock


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
        group_dir = self.root / group
        group_dir.mkdir(parents=True, exist_ok=True)
        existing = newest_with_hash(self.versions(group), lineage.get("model_hash"))
        if existing:
            return existing, False
        version = self._claim_version(group_dir)
        folder = group_dir / str(version)
        with model_folder(model) as files:
            pack(files, folder / ARCHIVE)
            link_tree(files, folder / "model")
        package = {
            "group": group, "version": version, "status": status, "created_at": now(),
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
