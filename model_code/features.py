"""The feature transform: raw claim + customer fields -> model features, saved as JSON (no pickle).

Categories become integer codes from a vocabulary fitted on the training split (unknown or missing
-> NaN, which LightGBM treats as missing); "25/50" liability strings become two numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fraud_schema import CATEGORICAL, LIABILITY, NUMERIC

TRANSFORM_FILE = "feature_transform.json"


def fit(train: pd.DataFrame) -> dict[str, Any]:
    """Learn the vocabulary of each categorical column from the training rows."""
    vocab = {c: sorted(str(v) for v in train[c].dropna().unique()) for c in CATEGORICAL}
    features = NUMERIC + ["liability_per_person", "liability_per_accident"] + CATEGORICAL
    return {"version": 1, "categorical": vocab, "numeric": NUMERIC, "liability": LIABILITY,
            "features": features}


def apply(transform: dict[str, Any], raw: pd.DataFrame) -> pd.DataFrame:
    """Features for raw rows, in the transform's column order (float32)."""
    out = {}
    for column in transform["numeric"]:
        out[column] = pd.to_numeric(raw[column], errors="coerce").to_numpy(dtype=np.float32)
    limits = raw[transform["liability"]].astype("string").str.split("/", n=1, expand=True)
    limits = limits.reindex(columns=[0, 1])
    out["liability_per_person"] = pd.to_numeric(limits[0], errors="coerce").to_numpy(dtype=np.float32)
    out["liability_per_accident"] = pd.to_numeric(limits[1], errors="coerce").to_numpy(dtype=np.float32)
    for column, categories in transform["categorical"].items():
        codes = pd.Categorical(raw[column].astype("string"), categories=categories).codes.astype(np.float32)
        codes[codes < 0] = np.nan
        out[column] = codes
    return pd.DataFrame(out, index=raw.index)[transform["features"]]


def save(transform: dict[str, Any], folder: Path) -> Path:
    path = folder / TRANSFORM_FILE
    path.write_text(json.dumps(transform, indent=2))
    return path


def load(folder: Path) -> dict[str, Any]:
    return json.loads((folder / TRANSFORM_FILE).read_text())
