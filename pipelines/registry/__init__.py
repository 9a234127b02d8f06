"""Model registries, read in one direction: base (the contract) -> file, MLflow and SageMaker backends -> factory.

`open_registry` picks the backend for an environment; the MLflow and SageMaker backends live in
`pipelines.registry.mlflow_backend` and `pipelines.registry.sagemaker_backend` (imported on use).
"""

from pipelines.registry.base import STATUSES, Registry, RegistryError, TransitionConflict, check_transition, history_entry
from pipelines.registry.factory import open_registry
from pipelines.registry.file_backend import LocalRegistry
from pipelines.registry.locking import file_lock

__all__ = ["STATUSES", "LocalRegistry", "Registry", "RegistryError", "TransitionConflict", "check_transition",
           "file_lock", "history_entry", "open_registry"]
