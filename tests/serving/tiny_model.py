"""A tiny fraud-detection version for endpoint and transform tests: a LightGBM booster of a few trees over the
fraud model's feature transform, served through endpoint record `tiny-fraud` with this checkout's handlers
(model_code/inference.py), its code/ packed as a model archive's. Nothing here runs a pipeline."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "model_code"))
from fraud_schema import CATEGORICAL, KEY, LIABILITY, NUMERIC, RAW_FEATURES  # noqa: E402

ENDPOINT = "tiny-fraud"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A state folder with endpoint record `tiny-fraud` over the tiny model."""
    import lightgbm as lgb

    home = tmp_path_factory.mktemp("round3") / "state"
    model_dir = home / "models" / "tiny-fraud" / "1"
    (model_dir / "code").mkdir(parents=True)
    features = [*NUMERIC, "liability_per_person", "liability_per_accident", *CATEGORICAL]
    (model_dir / "feature_transform.json").write_text(json.dumps(
        {"version": 1, "categorical": {c: ["A", "B", "None"] for c in CATEGORICAL}, "numeric": NUMERIC,
         "liability": LIABILITY, "features": features}))
    (model_dir / "metadata.json").write_text(json.dumps({"model_type": "lightgbm"}))
    rng = np.random.default_rng(0)
    data = lgb.Dataset(rng.normal(size=(300, len(features))), label=rng.integers(0, 2, 300))
    lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 4}, data, 5).save_model(str(model_dir / "model.txt"))
    for name in ("inference.py", "model_io.py", "features.py", "fraud_schema.py", "torch_model.py"):
        shutil.copy(REPO / "model_code" / name, model_dir / "code" / name)
    (home / "endpoints").mkdir(parents=True)
    record = home / "endpoints" / f"{ENDPOINT}.json"
    record.write_text(json.dumps({
        "endpoint_name": ENDPOINT, "model_group": "tiny-fraud", "version": 1, "model_dir": str(model_dir),
        "model_uri": str(model_dir), "code_dir": str(REPO / "model_code"), "threshold": 0.5, "trigger": "test",
        "follow": None}))
    return {"home": home, "model_dir": model_dir, "record": record}


def claims(rows: int = 12) -> pd.DataFrame:
    """Raw claims as a CSV holds them: text, the key first."""
    frame = pd.DataFrame({KEY: [f"p{i:03d}" for i in range(rows)]})
    for field in RAW_FEATURES:
        frame[field] = [str(i % 5 + 1) for i in range(rows)] if field in NUMERIC else \
            ["25/50"] * rows if field == LIABILITY else ["AB"[i % 2] for i in range(rows)]
    return frame


def csv_text(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, lineterminator="\n")
