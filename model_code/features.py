"""The feature transform: raw claim + customer fields -> model features, saved as JSON (no pickle).

Categories become integer codes from a vocabulary fitted on the training split (unknown or missing
-> NaN, which LightGBM treats as missing); "25/50" liability strings become two numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from fraud_schema import CATEGORICAL, LABEL, LIABILITY, NUMERIC

if TYPE_CHECKING:
    import pandas as pd

TRANSFORM_FILE = "feature_transform.json"


class SplitError(ValueError):
    """A split folder that is not the preprocess step's output; the message says what and how to fix it."""


def fit(train: pd.DataFrame) -> dict[str, Any]:
    """Learn the vocabulary of each categorical column from the training rows."""
    return from_vocabulary({c: train[c].dropna().unique() for c in CATEGORICAL})


def from_vocabulary(seen: dict[str, Iterable[Any]]) -> dict[str, Any]:
    """The transform for the values seen (missing left out) in each categorical column of the training rows."""
    vocab = {c: sorted({str(v) for v in seen[c]}) for c in CATEGORICAL}
    features = NUMERIC + ["liability_per_person", "liability_per_accident"] + CATEGORICAL
    return {"version": 1, "categorical": vocab, "numeric": NUMERIC, "liability": LIABILITY,
            "features": features}


def apply(transform: dict[str, Any], raw: pd.DataFrame) -> pd.DataFrame:
    """Features for raw rows, in the transform's column order (float32)."""
    import pandas as pd

    out = {}
    for column in transform["numeric"]:
        out[column] = pd.to_numeric(raw[column], errors="coerce").to_numpy(dtype=np.float32)
    limits = raw[transform["liability"]].astype("string").str.split("/", n=1, expand=True)
    limits = limits.reindex(columns=[0, 1])
    out["liability_per_person"] = pd.to_numeric(limits[0], errors="coerce").to_numpy(dtype=np.float32)
    out["liability_per_accident"] = pd.to_numeric(limits[1], errors="coerce").to_numpy(dtype=np.float32)
    for column, categories in transform["categorical"].items():
        codes = pd.Index(categories, dtype="string").get_indexer(raw[column].astype("string")).astype(np.float32)
        codes[codes < 0] = np.nan
        out[column] = codes
    return pd.DataFrame(out, index=raw.index)[transform["features"]]


def save(transform: dict[str, Any], folder: Path) -> Path:
    path = folder / TRANSFORM_FILE
    path.write_text(json.dumps(transform, indent=2))
    return path


def load(folder: Path) -> dict[str, Any]:
    return json.loads((folder / TRANSFORM_FILE).read_text())


def matrix(transform: dict[str, Any], table: Any) -> np.ndarray:
    """apply()'s values for an Arrow table, as one float32 matrix built column by column: the raw rows never
    become a pandas frame. Text columns go through apply() once per distinct value, so the codes are apply's."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    names = transform["features"]
    out = np.empty((table.num_rows, len(names)), dtype=np.float32, order="F")
    for column in transform["numeric"]:
        values = table.column(column)
        kind = values.type.value_type if pa.types.is_dictionary(values.type) else values.type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind):
            out[:, names.index(column)] = values.cast(pa.float64()).to_numpy()
        else:
            out[:, names.index(column)] = pd.to_numeric(values.to_pandas(), errors="coerce").to_numpy(np.float32)
    encoded = [transform["liability"], *transform["categorical"]]
    for column in encoded:
        values = table.column(column)
        if pa.types.is_dictionary(values.type):
            values = values.cast(values.type.value_type)
        distinct = pc.unique(values)
        small = apply(transform, pd.DataFrame({c: distinct.to_pandas() if c == column else np.nan
                                               for c in (*transform["numeric"], *encoded)}))
        position = pc.index_in(values, value_set=distinct).to_numpy(zero_copy_only=False).astype(np.int64)
        targets = ["liability_per_person", "liability_per_accident"] if column == transform["liability"] else [column]
        for target in targets:
            out[:, names.index(target)] = small[target].to_numpy()[position]
    return out


def read_split(folder: Path, transform: dict[str, Any], kind: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The feature matrix (float32) and labels of a split folder of Parquet files, read column by column from
    Arrow (text columns dictionary-encoded), so millions of rows fit in a fraction of a pandas frame.

    kind and name say what the folder is in errors: channel 'train', input 'test'."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted(folder.glob("*.parquet"))
    where = f"{kind} {name!r}"
    if not files:
        raise SplitError(f"{where} ({folder}) has no *.parquet file; it must be the preprocess step's {name} output")
    wanted = [*transform["numeric"], transform["liability"], *transform["categorical"], LABEL]
    text = [transform["liability"], *transform["categorical"]]
    tables = []
    for path in files:
        present = set(pq.read_schema(path).names)
        if LABEL not in present:
            raise SplitError(f"{where}: no {LABEL!r} column in {path.name}")
        missing = [c for c in wanted if c not in present]
        if missing:
            raise SplitError(f"{where}: {path.name} lacks the column(s) {', '.join(missing)} that the feature "
                             "transform needs; it must be the preprocess step's output")
        tables.append(pq.read_table(path, columns=wanted, read_dictionary=text))
    table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    labels = table.column(LABEL).to_numpy(zero_copy_only=False)
    return matrix(transform, table), labels
