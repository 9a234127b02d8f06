"""Processing step: data-quality gate, join, stratified split, and the fitted feature transform.

Inputs (SageMaker processing layout, under $SAGEPIPE_PROCESSING_DIR or /opt/ml/processing):
  input/raw/claims.csv, input/raw/customers.csv     input/expectations/*.yaml
Outputs: output/{train,validation,test}/<split>.parquet, output/transform/feature_transform.json,
  output/data_docs/ (the data-quality report: index.html, validations/*.html, data_quality.json).
The suite's join_and_split section decides how many claims may lack a customer (min_join_coverage) and how
many fraud and non-fraud rows each split needs (min_positives_per_split, min_negatives_per_split).

Tables stay in Arrow (dictionary-encoded text) and are joined by row index; each split is written in batches,
so memory stays near the size of the two raw tables even at millions of rows.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import features
from data_quality import DATASET, DataError, check_classes, engine_from_env, join_coverage, load_suite, validate
from fraud_schema import CATEGORICAL, KEY, LABEL, NA_VALUES
from raw_tables import pandas_like, read_table
from tracking import Tracking

ROOT = Path(os.environ.get("SAGEPIPE_PROCESSING_DIR", "/opt/ml/processing"))
SPLITS = ("train", "validation", "test")
BATCH_ROWS = 500_000


def stratified_split(labels: np.ndarray, ratios: tuple[float, float, float], seed: int) -> list[np.ndarray]:
    """Row numbers of train/validation/test, with the label's class balance kept in each part (the same rows
    pandas' groupby(label) over a permutation per class picked before)."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for value in np.unique(labels):
        index = rng.permutation(np.flatnonzero(labels == value))
        cut1 = int(round(len(index) * ratios[0]))
        cut2 = cut1 + int(round(len(index) * ratios[1]))
        for part, chunk in zip(parts, (index[:cut1], index[cut1:cut2], index[cut2:])):
            part.append(chunk)
    return [np.sort(np.concatenate(p)) for p in parts]


def _labels(table: pa.Table, rows: np.ndarray) -> np.ndarray:
    labels = table.column(LABEL).take(rows)
    return labels.to_numpy(zero_copy_only=False)


def write_split(path: Path, left: pa.Table, right: pa.Table, rows: tuple[np.ndarray, np.ndarray],
                vocab: dict[str, set] | None) -> None:
    """The joined rows (claims columns, then customers columns but the key) as parquet, batch by batch;
    collects the categorical values seen when vocab is given."""
    right_columns = [c for c in right.column_names if c != KEY]
    names = [f"{c}_x" if c in right_columns and c != KEY else c for c in left.column_names]
    names += [f"{c}_y" if c in left.column_names else c for c in right_columns]
    writer = None
    try:
        for start in range(0, max(len(rows[0]), 1), BATCH_ROWS):
            lrows, rrows = rows[0][start:start + BATCH_ROWS], rows[1][start:start + BATCH_ROWS]
            columns = [pandas_like(left.column(c).take(lrows), keep_dictionary=True) for c in left.column_names]
            columns += [pandas_like(right.column(c).take(rrows), keep_dictionary=True) for c in right_columns]
            batch = pa.table(columns, names=names)
            if writer is None:  # without the Arrow schema, readers see the dictionary columns as plain text
                writer = pq.ParquetWriter(path, batch.schema, store_schema=False)
            writer.write_table(batch)
            for column in vocab or {}:
                if column in batch.column_names:
                    vocab[column].update(pc.unique(batch.column(column).drop_null()).to_pylist())
    finally:
        if writer is not None:
            writer.close()


def run(args: argparse.Namespace) -> None:
    suites = sorted((ROOT / "input" / "expectations").glob("*.y*ml"))
    if not suites:
        raise DataError("no expectation suite (*.yaml) in input 'expectations'")
    suite, suite_name = load_suite(suites[0]), suites[0].name
    engine = engine_from_env()
    tables = {name: read_table(ROOT / "input" / "raw" / name, len(suite.get(name, {}).get("columns", {})))
              for name in ("claims.csv", "customers.csv")}
    docs = ROOT / "output" / "data_docs"
    frames = None
    if engine == "great_expectations":  # the reference checker, on the frames pandas reads
        import pandas as pd

        frames = {name: pd.read_csv(ROOT / "input" / "raw" / name, keep_default_na=False, na_values=NA_VALUES)
                  for name in tables}
    failures = validate(tables, suite, suite_name, docs, engine, frames)
    track = Tracking.from_env()
    track.log_artifacts(docs, "data_docs")
    track.log_metrics({f"rows_{name.removesuffix('.csv')}": t.num_rows for name, t in tables.items()}
                      | {"expectations_failed": len(failures)})
    if failures:
        raise DataError("data-quality check failed (report: output data_docs/index.html):\n  "
                        + "\n  ".join(failures))
    print(f"data quality: all expectations passed for {', '.join(tables)}")
    claims, customers = tables["claims.csv"], tables["customers.csv"]
    left_rows, right_rows, dropped = join_coverage(claims, customers, KEY, ("claims.csv", "customers.csv"),
                                                   ("claim", "customer"), suite[DATASET]["min_join_coverage"],
                                                   suite_name)
    track.log_metrics({"claims_without_customer": claims.num_rows - len(left_rows)})
    if dropped:
        print(f"WARNING: join: {dropped}", file=sys.stderr)
    print(f"join: {len(left_rows):,} of {claims.num_rows:,} claims have a customer")
    ratios = (args.train_ratio, args.validation_ratio, 1 - args.train_ratio - args.validation_ratio)
    labels = _labels(claims, left_rows)
    splits = stratified_split(labels, ratios, args.seed)
    source = "claims.csv" if len(left_rows) == claims.num_rows else "the joined claims"
    counts = {name: dict(zip(*np.unique(labels[rows], return_counts=True))) for name, rows in zip(SPLITS, splits)}
    check_classes({name: {int(k): int(v) for k, v in c.items()} for name, c in counts.items()}, LABEL,
                  suite[DATASET], source, suite_name)
    vocab: dict[str, set] = {c: set() for c in CATEGORICAL}
    for name, rows in zip(SPLITS, splits):
        write_split(ROOT / "output" / name / f"{name}.parquet", claims, customers,
                    (left_rows[rows], right_rows[rows]), vocab if name == "train" else None)
        rate = float(labels[rows].mean()) if len(rows) else float("nan")
        print(f"{name}: {len(rows)} rows, {rate:.2%} fraud")
        track.log_metrics({f"{name}_rows": len(rows), f"{name}_fraud_rate": rate})
    features.save(features.from_vocabulary(vocab), ROOT / "output" / "transform")


def main() -> None:
    parser = argparse.ArgumentParser(description="validate, join and split the insurance-claims data")
    parser.add_argument("--train-ratio", type=float, default=0.7)
    parser.add_argument("--validation-ratio", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if not (0 < args.train_ratio < 1 and 0 < args.validation_ratio < 1
            and args.train_ratio + args.validation_ratio < 1):
        parser.error("ratios must be in (0, 1) and train + validation must leave room for test")
    try:
        run(args)
    except DataError as exc:  # one ERROR line per problem; indented lines belong to the one above
        print("\n".join(line if line.startswith(" ") else f"ERROR: {line}" for line in str(exc).splitlines()),
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
