"""Which registry an environment uses: SageMaker's in a cloud env, MLflow's with a tracking store, else files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.registry.base import Registry
from pipelines.registry.file_backend import LocalRegistry


def open_registry(settings: Any, state_root: Path, repo_root: Path) -> Registry:
    """The registry of an environment's settings (the MLflow and SageMaker backends import their SDKs lazily)."""
    from pipelines.tracking import resolve_tracking_uri

    if settings.sagemaker.get("region"):
        from pipelines.registry.sagemaker_backend import SageMakerRegistry

        return SageMakerRegistry(settings.sagemaker["region"])
    uri = resolve_tracking_uri(settings.tracking_uri, state_root, repo_root)
    if uri is None:
        return LocalRegistry(state_root / "registry")
    from pipelines.registry.mlflow_backend import MlflowRegistry

    return MlflowRegistry(uri, state_root / "models")
