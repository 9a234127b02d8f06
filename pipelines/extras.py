"""Optional dependencies: which `sagepipe[extra]` brings a module, and the line that installs it.

The core (`pip install sagepipe`) validates, describes and graphs pipelines; the rest comes in extras.
A command that needs one it lacks says which `pip install` line to run, not a ModuleNotFoundError.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from pipelines.errors import EXIT_CONFIG, UserError

# top-level module -> (extra, what it is for)
EXTRA_OF = {
    "mlflow": ("tracking", "MLflow tracking and the model registry"),
    "sqlalchemy": ("tracking", "MLflow tracking and the model registry"),
    "alembic": ("tracking", "MLflow tracking and the model registry"),
    "sagemaker": ("aws", "the SageMaker SDK"),
    "boto3": ("aws", "AWS access"),
    "botocore": ("aws", "AWS access"),
    "moto": ("aws", "the offline S3 that compile and emulate use"),
    "gunicorn": ("serve", "the local endpoint"),
    "gevent": ("serve", "the local endpoint"),
    "pandas": ("ml", "the example's data handling"),
    "pyarrow": ("ml", "Parquet files"),
    "numpy": ("ml", "the example's model code"),
    "lightgbm": ("ml", "LightGBM training"),
    "sklearn": ("ml", "the example's metrics"),
    "matplotlib": ("ml", "the evaluation plots"),
    "great_expectations": ("ml", "data-quality checks"),
    "optuna": ("ml", "hyperparameter tuning"),
    "torch": ("torch", "PyTorch training"),
    "argcomplete": ("completion", "shell completion"),
}


class MissingExtra(UserError):
    """A command needs an optional dependency that is not installed; the message says how to install it."""

    exit_code = EXIT_CONFIG


def install_line(extra: str) -> str:
    return f"pip install 'sagepipe[{extra}]'"


def missing_extra_message(exc: ModuleNotFoundError, command: str = "this command") -> str | None:
    """The message for a missing optional module, or None when exc is about a module of no extra (a bug)."""
    top = (exc.name or "").split(".")[0]
    if top not in EXTRA_OF:
        return None
    extra, purpose = EXTRA_OF[top]
    return (f"{command} needs {purpose} (the '{top}' package), which is not installed: "
            f"{install_line(extra)}   (or {install_line('all')} for everything)")


def require(module: str, command: str = "this command") -> ModuleType:
    """Import module, or raise MissingExtra naming the extra that brings it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        message = missing_extra_message(exc, command)
        if message is None:
            raise
        raise MissingExtra(message) from None
