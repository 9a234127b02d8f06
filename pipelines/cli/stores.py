"""Which tracking store and model registry a command uses, said in one line on stderr.

With no `configs/env/local.yaml` (any folder, any repository) the local env uses the embedded store: MLflow
on SQLite in the state folder ($SAGEPIPE_HOME, else `.sagepipe/` of the repository), so `run`, `models`,
`serve`, `transform` and `ui` all see the same runs and versions from wherever they are started.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

LOG = logging.getLogger("sagepipe")


def store_line(settings: Any, state_root: Path, repo_root: Path) -> str:
    """'store: ...' naming where runs are tracked and versions registered."""
    from pipelines.tracking import resolve_tracking_uri

    region = (settings.sagemaker or {}).get("region")
    uri = resolve_tracking_uri(settings.tracking_uri, state_root, repo_root)
    if uri is None:
        tracking = "tracking off (tracking_uri: none)"
        registry = f"registry: files under {state_root / 'registry'}"
    elif uri.startswith("sqlite:///"):
        why = "$MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else \
            "the embedded default" if settings.tracking_uri is None else "tracking_uri of the env file"
        tracking = f"MLflow store {uri[len('sqlite:///'):]} ({why})"
        registry = "registry: the same store"
    else:
        tracking = f"MLflow at {uri}"
        registry = "registry: the same server"
    if region:
        registry = f"registry: SageMaker Model Registry ({region})"
    return f"store: {tracking}; {registry}"


def announce(settings: Any, state_root: Path, repo_root: Path) -> None:
    """Log the store line (INFO: shown by default, hidden by -q)."""
    LOG.info(store_line(settings, state_root, repo_root))


def env_settings(env: str) -> tuple[Any, Path]:
    """(settings of configs/env/ENV.yaml, repository root), for commands that take no pipeline file."""
    from pipelines.loader import find_repo_root, load_env_settings

    repo_root = find_repo_root(Path.cwd() / "sagepipe.yaml")
    return load_env_settings(env, repo_root / "configs" / "env"), repo_root


def open_for_env(env: str, state_root: Path) -> Any:
    """The registry of an environment (configs/env/ENV.yaml under the repository root, else the embedded
    store in the state folder); says which on stderr."""
    from pipelines.registry import open_registry

    settings, repo_root = env_settings(env)
    announce(settings, state_root, repo_root)
    return open_registry(settings, state_root, repo_root)
