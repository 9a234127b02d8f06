"""The file registry, used when no tracking store is configured: `.sagepipe/registry/<group>/<version>/`.

Each version folder holds `package.json`, `model.tar.gz` (the model_uri, as SageMaker's ModelDataUrl) and
`model/` (its files, for serving). Registrations and status changes take the group's lock file, so identical
registrations at once make one version; version numbers are claimed with an atomic mkdir. A `package.json` that
does not read is reported (file, what is wrong, how to fix) and left exactly as it is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ContextManager

from pipelines.fsutil import atomic_write_json, link_tree
from pipelines.model_archive import ARCHIVE, model_folder, pack
from pipelines.registry.base import Registry, RegistryError, history_entry, newest_with_hash, now
from pipelines.registry.locking import file_lock

MANIFEST = "package.json"
# what every package.json holds, and the type of each
FIELDS = {"group": str, "version": int, "status": str, "lineage": dict, "history": list, "model_uri": str}


class UnreadablePackage(RegistryError):
    """A version whose package.json does not read as a model package (sagepipe leaves it as it is)."""

    def __init__(self, manifest: Path, group: str, version: int, why: str):
        super().__init__(f"{group} version {version} cannot be read: {manifest} {why}. sagepipe has not changed it; "
                         f"restore the file from a backup, or remove the folder {manifest.parent} to drop the version")
        self.manifest, self.group, self.version = manifest, group, version


class LocalRegistry(Registry):
    """Model package groups under one folder."""

    def __init__(self, root: Path):
        self.root = root

    def groups(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.exists() else []

    def versions(self, group: str) -> list[dict[str, Any]]:
        packages, broken = self.listing(group)
        if broken:
            raise broken[0]
        return packages

    def listing(self, group: str) -> tuple[list[dict[str, Any]], list[RegistryError]]:
        folder = self._group_dir(group)
        packages: list[dict[str, Any]] = []
        broken: list[RegistryError] = []
        for entry in sorted(folder.iterdir(), key=lambda p: (len(p.name), p.name)):
            if entry.name.isdigit() and (entry / MANIFEST).exists():  # no manifest yet: a registration under way
                try:
                    packages.append(_read_package(entry / MANIFEST, group, int(entry.name)))
                except UnreadablePackage as exc:
                    broken.append(exc)
        return sorted(packages, key=lambda p: p["version"]), broken

    def show(self, group: str, version: int) -> dict[str, Any]:
        manifest = self._group_dir(group) / str(version) / MANIFEST
        if not manifest.exists():
            raise self.no_such_version(group, version)
        return _read_package(manifest, group, version)

    def register(self, group: str, model: Path, metrics: dict[str, Any], status: str,
                 lineage: dict[str, Any], run_id: str | None = None) -> tuple[dict[str, Any], bool]:
        group_dir = self.root / group
        group_dir.mkdir(parents=True, exist_ok=True)
        with self.locked(group):  # of identical registrations at once, the first makes the version, the rest find it
            existing = newest_with_hash(self.listing(group)[0], lineage.get("model_hash"))
            if existing:
                return existing, False
            return self._add(group_dir, model, metrics, status, lineage), True

    def _add(self, group_dir: Path, model: Path, metrics: dict[str, Any], status: str,
             lineage: dict[str, Any]) -> dict[str, Any]:
        group = group_dir.name
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
        atomic_write_json(folder / MANIFEST, package)
        return package

    def locked(self, group: str) -> ContextManager[None]:
        return file_lock(self._group_dir(group) / ".lock", f"model group {group}")

    def _write_status(self, package: dict[str, Any], status: str, entry: dict[str, Any]) -> dict[str, Any]:
        package = {**package, "status": status, "history": [*package["history"], entry]}
        atomic_write_json(self._group_dir(package["group"]) / str(package["version"]) / MANIFEST, package)
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


def _read_package(manifest: Path, group: str, version: int) -> dict[str, Any]:
    """The package a version's package.json holds; UnreadablePackage (naming the file and the fault) otherwise."""
    try:
        package = json.loads(manifest.read_text())
    except OSError as exc:
        raise UnreadablePackage(manifest, group, version, f"cannot be read ({exc.strerror})") from None
    except ValueError as exc:  # also UnicodeDecodeError
        raise UnreadablePackage(manifest, group, version, f"is not valid JSON ({exc})") from None
    if not isinstance(package, dict):
        raise UnreadablePackage(manifest, group, version, f"holds a JSON {type(package).__name__}, not a model package")
    wrong = [f"'{key}'" for key, kind in FIELDS.items()
             if not isinstance(package.get(key), kind) or (kind is int and isinstance(package.get(key), bool))]
    if wrong:
        raise UnreadablePackage(manifest, group, version, f"is not a model package: {', '.join(wrong)} missing or "
                                "of the wrong type")
    if package["group"] != group or package["version"] != version:
        raise UnreadablePackage(manifest, group, version, f"describes {package['group']} version {package['version']}, "
                                "not the version of its folder")
    return package
