"""Load a trained model folder and score raw claim + customer rows (used by evaluation and serving)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

import features


class FraudModel:
    """The booster plus the feature transform it was trained with."""

    def __init__(self, model_dir: Path):
        import lightgbm as lgb

        self.metadata = json.loads((model_dir / "metadata.json").read_text())
        self.transform = features.load(model_dir)
        self.booster = lgb.Booster(model_file=str(model_dir / "model.txt"))

    def predict_proba(self, raw: pd.DataFrame) -> np.ndarray:
        """Fraud probability for each raw row."""
        return self.booster.predict(features.apply(self.transform, raw))

    def feature_importance(self) -> dict[str, float]:
        gains = self.booster.feature_importance(importance_type="gain")
        return dict(zip(self.booster.feature_name(), map(float, gains)))
