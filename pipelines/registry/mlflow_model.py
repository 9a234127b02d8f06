"""The folder a registered MLflow version points at: `MLmodel` (with the model's signature) + `model.tar.gz`.

The archive is the model as SageMaker serves it (its ModelDataUrl); the MLmodel file is what MLflow's
UI reads for the version's schema. The signature is read off the model folder itself: a model that
carries its feature transform (`feature_transform.json`, written by the example's training scripts)
takes the raw fields that transform reads, numbers as doubles and categories as strings, and answers
with a fraud probability. A model folder without one gets no signature.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipelines.model_archive import ARCHIVE, pack

TRANSFORM_FILE = "feature_transform.json"
METADATA_FILE = "metadata.json"
OUTPUT = "fraud_probability"


def write_model_folder(model_dir: Path, target: Path, run_id: str) -> bool:
    """Write target/model.tar.gz and target/MLmodel; whether a signature was found."""
    from mlflow.models import Model

    target.mkdir(parents=True, exist_ok=True)
    pack(model_dir, target / ARCHIVE)
    signature = signature_of(model_dir)
    metadata = {"sagepipe_archive": ARCHIVE}
    kind = _read_json(model_dir / METADATA_FILE) or {}
    for key in ("model_type", "framework_version", "train_rows", "validation_auc"):
        if key in kind:
            metadata[key] = kind[key]
    Model(run_id=run_id, signature=signature, metadata=metadata).save(str(target / "MLmodel"))
    return signature is not None


def signature_of(model_dir: Path) -> Any:
    """The ModelSignature of the raw fields the model's feature transform reads, or None."""
    transform = _read_json(model_dir / TRANSFORM_FILE)
    if not isinstance(transform, dict) or not isinstance(transform.get("numeric"), list):
        return None
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    columns = [ColSpec("double", str(name), required=False) for name in transform["numeric"]]
    if transform.get("liability"):
        columns.append(ColSpec("string", str(transform["liability"]), required=False))
    columns += [ColSpec("string", str(name), required=False) for name in transform.get("categorical") or {}]
    return ModelSignature(inputs=Schema(columns), outputs=Schema([ColSpec("double", OUTPUT)]))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
