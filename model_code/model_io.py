"""Load a trained model folder and score raw claim + customer rows (used by evaluation and serving).

The folder's metadata.json says which kind of model it holds: "lightgbm" (model.txt) or "torch"
(model.pt state dict + model_config.json); both carry the feature transform that takes raw fields.
A training step's model output is that folder packed as model.tar.gz; open_model_dir unpacks it.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

import features


SERVING_CODE = ("inference.py", "model_io.py", "features.py", "fraud_schema.py", "torch_model.py")
SERVING_REQUIREMENTS = "serving-requirements.txt"
ARCHIVE = "model.tar.gz"


class ModelArchiveError(ValueError):
    """A model.tar.gz that cannot be read, or whose members would land outside its folder."""


def open_model_dir(path: Path | str) -> Path:
    """The folder of model files at path: a plain model folder as is; a model.tar.gz, or a folder holding
    one (what a SageMaker processing input of a training step's model output contains), extracted to a
    temporary folder that is removed when the process exits. Absolute paths, `..` and links that leave
    the folder are refused (ModelArchiveError)."""
    path = Path(path)
    archive = path / ARCHIVE if path.is_dir() else path
    if not archive.is_file():
        return path
    target = Path(tempfile.mkdtemp(prefix="model-"))
    atexit.register(shutil.rmtree, target, True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(target, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ModelArchiveError(f"cannot extract model archive {archive}: {exc}") from None
    return target


def pack_serving_code(model_dir: Path) -> None:
    """Put the inference handlers into <model>/code/, as SageMaker's framework inference containers expect
    (they import code/inference.py and pip-install code/requirements.txt): the model archive serves itself."""
    here, code = Path(__file__).resolve().parent, model_dir / "code"
    code.mkdir(parents=True, exist_ok=True)
    for name in SERVING_CODE:
        (code / name).write_bytes((here / name).read_bytes())
    (code / "requirements.txt").write_bytes((here / SERVING_REQUIREMENTS).read_bytes())


class FraudModel:
    """The trained model plus the feature transform it was trained with."""

    def __init__(self, model_dir: Path):
        self.metadata = json.loads((model_dir / "metadata.json").read_text())
        self.transform = features.load(model_dir)
        self.kind = self.metadata.get("model_type", "lightgbm")
        if self.kind == "torch":
            import torch_model

            self.net, self.config = torch_model.load(model_dir)
        else:
            import lightgbm as lgb

            self.booster = lgb.Booster(model_file=str(model_dir / "model.txt"))

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Fraud probability for each row of an encoded feature matrix."""
        if self.kind == "torch":
            import torch_model

            return torch_model.predict(self.net, self.config, np.asarray(matrix, dtype=np.float32))
        return self.booster.predict(matrix, num_threads=1 if len(matrix) < 10_000 else 0)

    def predict_proba(self, raw: pd.DataFrame) -> np.ndarray:
        """Fraud probability for each raw row."""
        encoded = features.apply(self.transform, raw)
        return self.predict_matrix(encoded.to_numpy() if self.kind == "torch" else encoded)

    def feature_importance(self) -> dict[str, float]:
        """Gain per feature (LightGBM); empty for models without a built-in importance."""
        if self.kind == "torch":
            return {}
        gains = self.booster.feature_importance(importance_type="gain")
        return dict(zip(self.booster.feature_name(), map(float, gains)))
