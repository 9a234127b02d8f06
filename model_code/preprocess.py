"""Processing step: data-quality gate, join, stratified split, and the fitted feature transform.

Inputs (SageMaker processing layout, under $SAGEPIPE_PROCESSING_DIR or /opt/ml/processing):
  input/raw/claims.csv, input/raw/customers.csv     input/expectations/*.yaml
Outputs: output/{train,validation,test}/<split>.parquet, output/transform/feature_transform.json,
  output/data_docs/ (Great Expectations Data Docs).
The suite's join_and_split section decides how many claims may lack a customer (min_join_coverage) and how
many fraud and non-fraud rows each split needs (min_positives_per_split, min_negatives_per_split).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

import features
from data_quality import DATASET, DataError, check_classes, join_coverage, load_suite, validate
from fraud_schema import KEY, LABEL, NA_VALUES
from tracking import Tracking

ROOT = Path(os.environ.get("SAGEPIPE_PROCESSING_DIR", "/opt/ml/processing"))


def read_csv(path: Path, expected_columns: int) -> pd.DataFrame:
    """Read a raw CSV, turning every way it can be unreadable into a DataError naming the file."""
    name = path.name
    if not path.exists():
        raise DataError(f"{name}: file not found in the input folder {path.parent}")
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{name}: line {line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset "
                        f"{exc.start}); re-export the file as UTF-8") from None
    if not raw.strip():
        raise DataError(f"{name}: the file is empty; expected a header line and rows")
    try:
        frame = pd.read_csv(path, keep_default_na=False, na_values=NA_VALUES, encoding="utf-8")
    except pd.errors.ParserError as exc:
        raise DataError(f"{name}: cannot be parsed as CSV: {str(exc).strip()}") from None
    if len(frame.columns) == 1 and expected_columns > 1:
        header = str(frame.columns[0])
        guess = next((d for d in (";", "\t", "|") if d in header), None)
        hint = f"; it seems to use {guess!r} — save it comma-separated" if guess else ""
        raise DataError(f"{name}: line 1: found one column {header[:60]!r}, expected {expected_columns} "
                        f"comma-separated columns{hint}")
    return frame


def stratified_split(frame: pd.DataFrame, ratios: tuple[float, float, float], seed: int) -> list[pd.DataFrame]:
    """Train/validation/test with the label's class balance kept in each part."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for _, group in frame.groupby(LABEL, sort=True):
        index = rng.permutation(group.index.to_numpy())
        cut1 = int(round(len(index) * ratios[0]))
        cut2 = cut1 + int(round(len(index) * ratios[1]))
        for part, chunk in zip(parts, (index[:cut1], index[cut1:cut2], index[cut2:])):
            part.append(chunk)
    return [frame.loc[np.sort(np.concatenate(p))].reset_index(drop=True) for p in parts]


def run(args: argparse.Namespace) -> None:
    suites = sorted((ROOT / "input" / "expectations").glob("*.y*ml"))
    if not suites:
        raise DataError("no expectation suite (*.yaml) in input 'expectations'")
    suite = load_suite(suites[0])
    frames = {name: read_csv(ROOT / "input" / "raw" / name, len(suite.get(name, {}).get("columns", {})))
              for name in ("claims.csv", "customers.csv")}
    docs = ROOT / "output" / "data_docs"
    failures = validate(frames, suite, docs)
    track = Tracking.from_env()
    track.log_artifacts(docs, "data_docs")
    track.log_metrics({f"rows_{name.removesuffix('.csv')}": len(frame) for name, frame in frames.items()}
                      | {"expectations_failed": len(failures)})
    if failures:
        raise DataError("data-quality check failed (Data Docs: output data_docs/index.html):\n  "
                        + "\n  ".join(failures))
    print(f"data quality: all expectations passed for {', '.join(frames)}")
    claims, customers = frames["claims.csv"], frames["customers.csv"]
    rules, suite_name = suite[DATASET], suites[0].name
    joined, dropped = join_coverage(claims, customers, KEY, ("claims.csv", "customers.csv"), ("claim", "customer"),
                                    rules["min_join_coverage"], suite_name)
    track.log_metrics({"claims_without_customer": len(claims) - len(joined)})
    if dropped:
        print(f"WARNING: join: {dropped}", file=sys.stderr)
    print(f"join: {len(joined):,} of {len(claims):,} claims have a customer")
    ratios = (args.train_ratio, args.validation_ratio, 1 - args.train_ratio - args.validation_ratio)
    splits = stratified_split(joined, ratios, args.seed)
    source = "claims.csv" if len(joined) == len(claims) else "the joined claims"
    check_classes(dict(zip(("train", "validation", "test"), splits)), LABEL, rules, source, suite_name)
    for name, split in zip(("train", "validation", "test"), splits):
        split.to_parquet(ROOT / "output" / name / f"{name}.parquet", index=False)
        print(f"{name}: {len(split)} rows, {split[LABEL].mean():.2%} fraud")
        track.log_metrics({f"{name}_rows": len(split), f"{name}_fraud_rate": float(split[LABEL].mean())})
    features.save(features.fit(splits[0]), ROOT / "output" / "transform")


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
