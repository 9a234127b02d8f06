"""The model registry on MLflow: a registered model per group, a model version per registration.

MLflow versions have no approval status, so the status, metrics, lineage and each recorded change
live in version tags (`sagepipe.*`). MLflow has no compare-and-set, so status changes take a file lock
per tracking URI and group under the state folder (`locks/`): one machine's decisions are serialized,
each history entry names the real previous status. Version numbers come from MLflow's store, so two
registrations at once get two versions.
A version's source is its model.tar.gz (as SageMaker's ModelDataUrl), logged to a run's artifacts.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ContextManager

from pipelines.model_archive import ARCHIVE, ModelArchiveError, model_folder, pack, unpack
from pipelines.registry import Registry, RegistryError, file_lock, history_entry
from pipelines.tracking import artifact_root, mlflow_client

STATUS_TAG = "sagepipe.approval_status"
METRICS_TAG = "sagepipe.metrics"
LINEAGE_TAG = "sagepipe.lineage"
HISTORY_PREFIX = "sagepipe.history."
EXPERIMENT = "sagepipe-registry"


class MlflowRegistry(Registry):
    """Model package groups kept in an MLflow Model Registry (SQLite store or tracking server)."""

    def __init__(self, uri: str, download_root: Path, lock_root: Path | None = None):
        self.uri = uri
        self.download_root = download_root
        self.lock_root = lock_root or download_root.parent / "locks"
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                self._client = mlflow_client(self.uri)
            except ConnectionError as exc:
                raise RegistryError(f"the model registry at {self.uri} is unreachable: {exc}") from None
        return self._client

    # --- reading ---------------------------------------------------------------------------------
    def groups(self) -> list[str]:
        return sorted(m.name for m in _all_pages(self.client.search_registered_models))

    def versions(self, group: str) -> list[dict[str, Any]]:
        self._require_group(group)
        found = _all_pages(self.client.search_model_versions, filter_string=f"name = '{group}'")
        packages = [_package(v) for v in found if STATUS_TAG in (v.tags or {})]
        return sorted(packages, key=lambda p: p["version"])

    def show(self, group: str, version: int) -> dict[str, Any]:
        from mlflow.exceptions import MlflowException

        self._require_group(group)
        try:
            found = self.client.get_model_version(group, str(version))
        except MlflowException:
            raise self.no_such_version(group, version) from None
        return _package(found)

    def model_path(self, package: dict[str, Any]) -> Path:
        """The version's model files, downloaded (and extracted) once under the local models folder."""
        target = self.download_root / package["group"] / str(package["version"])
        if target.is_dir():
            return target
        import mlflow.artifacts

        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{package['version']}."))
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=package["model_uri"],
                                                             dst_path=str(staging), tracking_uri=self.uri))
            if local.is_file():
                unpack(local, target)
            else:  # a version registered before model archives: the folder itself
                local.rename(target)
        except ModelArchiveError as exc:
            raise RegistryError(f"{package['group']} version {package['version']}: {exc}") from None
        except OSError:
            if not target.is_dir():  # not merely downloaded meanwhile by another process
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    # --- writing ---------------------------------------------------------------------------------
    def register(self, group: str, model: Path, metrics: dict[str, Any], status: str,
                 lineage: dict[str, Any], run_id: str | None = None) -> tuple[dict[str, Any], bool]:
        """Add a version (or return the existing one for an identical model); (package, created).

        model is a model folder or a model.tar.gz (or a folder holding one)."""
        client = self.client
        self._ensure_group(group)
        same = [p for p in self.versions(group) if p["lineage"].get("model_hash") == lineage.get("model_hash")]
        if same:
            return same[-1], False
        if run_id is None:
            run_id = client.create_run(self._experiment_id(), run_name=f"register-{group}",
                                       tags={"sagepipe.kind": "registration"}).info.run_id
            client.set_terminated(run_id, "FINISHED")
        with model_folder(model) as files, tempfile.TemporaryDirectory() as scratch:
            pack(files, Path(scratch) / ARCHIVE)
            client.log_artifact(run_id, str(Path(scratch) / ARCHIVE), "model_package")
        source = client.get_run(run_id).info.artifact_uri.rstrip("/") + f"/model_package/{ARCHIVE}"
        first = history_entry(status, "registered", None)
        tags = {STATUS_TAG: status, METRICS_TAG: json.dumps(metrics, sort_keys=True),
                LINEAGE_TAG: json.dumps(lineage, sort_keys=True), _history_key(): json.dumps(first)}
        created = client.create_model_version(group, source, run_id=run_id, tags=tags,
                                              description=f"registered by {lineage.get('pipeline', 'sagepipe')}")
        return _package(created), True

    def locked(self, group: str) -> ContextManager[None]:
        key = hashlib.sha256(f"{self.uri}\0{group}".encode()).hexdigest()[:16]
        return file_lock(self.lock_root / f"mlflow-{key}.lock", f"model group {group} at {self.uri}")

    def _write_status(self, package: dict[str, Any], status: str, entry: dict[str, Any]) -> dict[str, Any]:
        group, version = package["group"], str(package["version"])
        self.client.set_model_version_tag(group, version, _history_key(), json.dumps(entry))
        self.client.set_model_version_tag(group, version, STATUS_TAG, status)
        return self.show(group, int(version))

    # --- helpers ---------------------------------------------------------------------------------
    def _require_group(self, group: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(group)
        except MlflowException:
            raise self.no_such_group(group) from None

    def _ensure_group(self, group: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(group, tags={"sagepipe.group": "true"})
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise

    def _experiment_id(self) -> str:
        from pipelines.tracking import _experiment_id

        return _experiment_id(self.client, EXPERIMENT, artifact_root(self.uri))


def _history_key() -> str:
    # nanosecond time orders the changes; the random tail keeps two changes in one tick apart
    import secrets

    return f"{HISTORY_PREFIX}{time.time_ns():020d}.{secrets.token_hex(2)}"


def _package(version: Any) -> dict[str, Any]:
    tags = version.tags or {}
    history = [json.loads(tags[k]) for k in sorted(tags) if k.startswith(HISTORY_PREFIX)]
    created = datetime.fromtimestamp(version.creation_timestamp / 1000, timezone.utc)
    lineage = json.loads(tags.get(LINEAGE_TAG, "{}"))
    return {
        "group": version.name, "version": int(version.version), "status": tags.get(STATUS_TAG, "unknown"),
        "created_at": created.isoformat(timespec="seconds"), "metrics": json.loads(tags.get(METRICS_TAG, "{}")),
        "lineage": lineage, "model_uri": version.source, "run_id": lineage.get("run_id"),
        "mlflow_run_id": version.run_id, "history": history,
    }


def _all_pages(search: Any, **kwargs: Any) -> list[Any]:
    items, token = [], None
    while True:
        page = search(max_results=200, page_token=token, **kwargs)
        items.extend(page)
        token = page.token
        if not token:
            return items
