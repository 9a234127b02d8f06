"""The model registry on MLflow: a registered model per group, a model version per registration.

A version points at the training step's nested run: its source is `registered_model/` in that run's
artifacts (MLmodel with the signature, and model.tar.gz as SageMaker's ModelDataUrl), its run_id that
run (for a cached training step, the run that trained the model). Status, metrics, lineage and history
are plain version tags and a Markdown description (mlflow_tags); an approval points the group's
`approved` alias at the version, and rejecting the version it names moves the alias to the newest
version still Approved (or removes it). MLflow has no compare-and-set, so status changes take a file
lock per tracking URI and group under the state folder (`locks/`); so do registrations, so that identical
registrations at once make one version (version numbers come from MLflow's store). The client comes from
mlflow_sqlite.open_client: a fresh SQLite store is created by one process at a time, a damaged one reported.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import Any, ContextManager

from pipelines.model_archive import ARCHIVE, ModelArchiveError, model_folder, unpack
from pipelines.registry import mlflow_tags as tags
from pipelines.registry.base import Registry, RegistryError, history_entry, newest_with_hash
from pipelines.registry.locking import file_lock, store_lock
from pipelines.registry.mlflow_model import write_model_folder
from pipelines.registry.mlflow_sqlite import SqliteView, open_client
from pipelines.tracking import artifact_root, mlflow_client

ALIAS = "approved"
ARTIFACT_PATH = "registered_model"
EXPERIMENT = "sagepipe-registry"


class MlflowRegistry(Registry):
    """Model package groups kept in an MLflow Model Registry (SQLite store or tracking server)."""

    def __init__(self, uri: str, download_root: Path, lock_root: Path | None = None):
        self.uri = uri
        self.download_root = download_root
        self.lock_root = lock_root or download_root.parent / "locks"
        self._client: Any = None
        self._view = SqliteView.of(uri)  # reads a SQLite store without importing mlflow

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                self._client = open_client(self.uri, lambda: store_lock(self.uri), lambda: mlflow_client(self.uri))
            except ConnectionError as exc:
                raise RegistryError(f"the model registry at {self.uri} is unreachable: {exc}") from None
        return self._client

    # --- reading ---------------------------------------------------------------------------------
    def groups(self) -> list[str]:
        fast = self._view.groups() if self._view else None  # None: the view cannot tell, ask MlflowClient
        if fast is not None:
            return fast
        return sorted(m.name for m in _all_pages(self.client.search_registered_models))

    def versions(self, group: str) -> list[dict[str, Any]]:
        found: list[Any] | None = self._viewed(group)
        if found is None:
            self._require_group(group)
            found = _all_pages(self.client.search_model_versions, filter_string=f"name = '{group}'")
        packages = [tags.package(v) for v in found if tags.is_sagepipe_version(v.tags or {})]
        return sorted(packages, key=lambda p: p["version"])

    def identical(self, group: str, model_hash: str) -> dict[str, Any] | None:
        """A SQLite store answers from the view alone: while the background writer may still be creating the
        store, opening MlflowClient here could race its schema migration; register() asks MlflowClient later."""
        if self._view is None:
            return super().identical(group, model_hash)
        return newest_with_hash(map(tags.package, self._viewed(group) or []), model_hash)

    def show(self, group: str, version: int) -> dict[str, Any]:
        from mlflow.exceptions import MlflowException

        found = self._viewed(group)
        if found is not None:  # the view knows the group, so an absent version is absent
            match = [v for v in found if v.version == int(version)]
            if not match:
                raise self.no_such_version(group, version)
            return tags.package(match[0])
        self._require_group(group)
        try:
            found = self.client.get_model_version(group, str(version))
        except MlflowException:
            raise self.no_such_version(group, version) from None
        return tags.package(found)

    def approved(self, group: str) -> dict[str, Any] | None:
        """The version the group's `approved` alias names; for stores from before the alias, the newest Approved."""
        found = self._viewed(group)
        if found is not None:
            named = [tags.package(v) for v in found if ALIAS in v.aliases]
            package = named[0] if named else None
        else:
            from mlflow.exceptions import MlflowException

            self._require_group(group)
            try:
                package = tags.package(self.client.get_model_version_by_alias(group, ALIAS))
            except MlflowException:
                package = None
        if package is not None and package["status"] == "Approved":
            return package
        return self.latest(group, "Approved")

    def model_path(self, package: dict[str, Any]) -> Path:
        """The version's model files, downloaded (and extracted) once under the local models folder."""
        target = self.download_root / package["group"] / str(package["version"])
        if target.is_dir():
            return target
        import mlflow.artifacts

        source = package["model_uri"].rstrip("/")
        if source.endswith(f"/{ARTIFACT_PATH}"):
            source += f"/{ARCHIVE}"
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{package['version']}."))
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(staging),
                                                             tracking_uri=self.uri))
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

        run_id: the registering step's MLflow run; the version links to the training step's run when
        lineage names it (training_step, mlflow_run_id), else to run_id, else to a new registration run.
        Under the group's lock: of identical registrations at once, the first makes the version, the rest find it."""
        client = self.client
        with self.locked(group):
            self._ensure_group(group)
            same = newest_with_hash(self.versions(group), lineage.get("model_hash"))  # for certain, unlike identical()
            if same:
                return same, False
            return self._add(client, group, model, metrics, status, lineage, run_id), True

    def _add(self, client: Any, group: str, model: Path, metrics: dict[str, Any], status: str,
             lineage: dict[str, Any], run_id: str | None) -> dict[str, Any]:
        source_run = self._training_run(lineage) or run_id or self._registration_run(group)
        lineage = {**lineage, "source_run": source_run}
        with model_folder(model) as files, tempfile.TemporaryDirectory() as scratch:
            write_model_folder(files, Path(scratch) / ARTIFACT_PATH, source_run)
            client.log_artifacts(source_run, str(Path(scratch) / ARTIFACT_PATH), ARTIFACT_PATH)
        source = client.get_run(source_run).info.artifact_uri.rstrip("/") + f"/{ARTIFACT_PATH}"
        first = history_entry(status, "registered", None)
        created = client.create_model_version(group, source, run_id=source_run,
                                              tags=tags.version_tags(status, metrics, lineage, first))
        package = tags.package(created)
        client.update_model_version(group, created.version, description=tags.description(package))
        if status == "Approved":
            client.set_registered_model_alias(group, ALIAS, created.version)
            package["aliases"] = [ALIAS]
        return package

    def locked(self, group: str) -> ContextManager[None]:
        key = hashlib.sha256(f"{self.uri}\0{group}".encode()).hexdigest()[:16]
        return file_lock(self.lock_root / f"mlflow-{key}.lock", f"model group {group} at {self.uri}")

    def _write_status(self, package: dict[str, Any], status: str, entry: dict[str, Any]) -> dict[str, Any]:
        group, version = package["group"], str(package["version"])
        client = self.client
        client.set_model_version_tag(group, version, tags.history_key(), tags.history_line(entry))
        client.set_model_version_tag(group, version, tags.STATUS, status)
        if status == "Approved":
            client.set_registered_model_alias(group, ALIAS, version)
        elif ALIAS in package.get("aliases", []):
            self._move_alias_off(group, int(version))
        after = self.show(group, int(version))
        client.update_model_version(group, version, description=tags.description(after))
        return after

    # --- helpers ---------------------------------------------------------------------------------
    def _move_alias_off(self, group: str, version: int) -> None:
        """The alias leaves a version no longer Approved: to the newest version still Approved, or away."""
        others = [p for p in self.versions(group) if p["status"] == "Approved" and p["version"] != version]
        if others:
            self.client.set_registered_model_alias(group, ALIAS, str(others[-1]["version"]))
        else:
            self.client.delete_registered_model_alias(group, ALIAS)

    def _training_run(self, lineage: dict[str, Any]) -> str | None:
        """The nested run of the step that trained the model: a sibling of the registering step's run
        named by lineage; when that step was a cache hit, the latest run that really trained it."""
        registering, step = lineage.get("mlflow_run_id"), lineage.get("training_step")
        if not registering or not step:
            return None
        run = self.client.get_run(registering)
        parent, experiment = run.data.tags.get("mlflow.parentRunId"), run.info.experiment_id
        if not parent:
            return None
        found = self.client.search_runs([experiment], max_results=1, filter_string=(
            f"tags.mlflow.parentRunId = '{parent}' and tags.`sagepipe.step` = '{_quoted(step)}'"))
        if not found:
            return None
        trained = found[0]
        key = trained.data.tags.get("sagepipe.cache_key")
        if trained.data.tags.get("sagepipe.cached") == "true" and key:
            original = self.client.search_runs([experiment], max_results=1, order_by=["attributes.start_time DESC"],
                                               filter_string=(f"tags.`sagepipe.cache_key` = '{_quoted(key)}' and "
                                                              "tags.`sagepipe.cached` = 'false'"))
            if original:
                return str(original[0].info.run_id)
        return str(trained.info.run_id)

    def _registration_run(self, group: str) -> str:
        run_id = self.client.create_run(self._experiment_id(), run_name=f"register-{group}",
                                        tags={"sagepipe.kind": "registration"}).info.run_id
        self.client.set_terminated(run_id, "FINISHED")
        return str(run_id)

    def _viewed(self, group: str) -> list[Any] | None:
        """The group's versions as the SQLite view reads them; None where there is no view or it cannot tell."""
        return self._view.versions(group) if self._view else None

    def _require_group(self, group: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(group)
        except MlflowException:
            raise self.no_such_group(group) from None

    def _ensure_group(self, group: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(group, tags={"sagepipe.group": "true"}, description=(
                f"Model versions registered by sagepipe. `@{ALIAS}` names the version approved last; "
                "each version's tags carry its status, test metrics and lineage."))
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise

    def _experiment_id(self) -> str:
        from pipelines.tracking import _experiment_id

        return _experiment_id(self.client, EXPERIMENT, artifact_root(self.uri))


def _quoted(value: str) -> str:
    return str(value).replace("'", "\\'")


def _all_pages(search: Any, **kwargs: Any) -> list[Any]:
    items, token = [], None
    while True:
        page = search(max_results=200, page_token=token, **kwargs)
        items.extend(page)
        token = page.token
        if not token:
            return items
