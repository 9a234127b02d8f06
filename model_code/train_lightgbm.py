"""Training step: LightGBM on the encoded claims with early stopping on the validation split.

Channels: SM_CHANNEL_TRAIN, SM_CHANNEL_VALIDATION (parquet), SM_CHANNEL_TRANSFORM (feature_transform.json).
Writes to SM_MODEL_DIR: model.txt (LightGBM text format), feature_transform.json, metadata.json.
Writes to SM_OUTPUT_DATA_DIR: training_history.json (validation metrics per iteration).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

import features
import model_io
from fraud_schema import BOTH_CLASSES_RULE, CATEGORICAL, LABEL, one_class_only
from tracking import Tracking


class TrainingDataError(Exception):
    """Training data that cannot give a model; the message says what, with counts, and how to fix it."""


def _read(channel: str, transform: dict) -> tuple[np.ndarray, np.ndarray]:
    try:
        return features.read_split(Path(os.environ[f"SM_CHANNEL_{channel.upper()}"]), transform, "channel", channel)
    except features.SplitError as exc:
        raise TrainingDataError(str(exc)) from None


def check_both_classes(channel: str, labels: np.ndarray) -> None:
    """LightGBM's binary objective needs both classes to train, and validation AUC needs both to mean anything."""
    counts = one_class_only(labels, f"{channel} channel")
    if counts:
        raise TrainingDataError(f"{counts}; a fraud model needs both classes in train and validation — "
                                f"{BOTH_CLASSES_RULE}")


def main() -> None:
    try:
        train_model()
    except TrainingDataError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        sys.exit(1)


def train_model() -> None:
    parser = argparse.ArgumentParser(description="train the LightGBM fraud model")
    parser.add_argument("--num_boost_round", type=int, default=300)
    parser.add_argument("--learning_rate", type=float, default=0.03)
    parser.add_argument("--num_leaves", type=int, default=15)
    parser.add_argument("--min_child_samples", type=int, default=20)
    parser.add_argument("--feature_fraction", type=float, default=0.9)
    parser.add_argument("--bagging_fraction", type=float, default=0.9)
    parser.add_argument("--lambda_l2", type=float, default=1.0)
    parser.add_argument("--early_stopping_rounds", type=int, default=50)
    parser.add_argument("--class_imbalance", choices=["none", "scale_pos_weight", "sqrt_scale_pos_weight", "is_unbalance"],
                        default="sqrt_scale_pos_weight",
                        help="up-weight the rare fraud class by neg/pos, by its square root, or not at all")
    parser.add_argument("--seed", type=int, default=42)
    args, _ = parser.parse_known_args()

    # OpenMP threads that spin while they wait take the CPU from the threads doing the work when the machine is
    # shared (a local run beside other steps): 3x slower training here. The model is the same either way.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import lightgbm as lgb

    model_dir, output_dir = Path(os.environ["SM_MODEL_DIR"]), Path(os.environ["SM_OUTPUT_DATA_DIR"])
    transform = features.load(Path(os.environ["SM_CHANNEL_TRANSFORM"]))
    x_train, y_train = _read("train", transform)
    x_val, y_val = _read("validation", transform)
    check_both_classes("train", y_train)
    check_both_classes("validation", y_val)
    params = {
        "objective": "binary", "metric": ["auc", "binary_logloss"], "learning_rate": args.learning_rate,
        "num_leaves": args.num_leaves, "min_child_samples": args.min_child_samples,
        "feature_fraction": args.feature_fraction, "bagging_fraction": args.bagging_fraction, "bagging_freq": 1,
        "lambda_l2": args.lambda_l2, "seed": args.seed, "deterministic": True, "verbosity": -1,
        "num_threads": int(os.environ.get("SM_NUM_CPUS", "0")),
    }
    positives = max(int(y_train.sum()), 1)
    if args.class_imbalance == "scale_pos_weight":
        params["scale_pos_weight"] = (len(y_train) - positives) / positives
    elif args.class_imbalance == "sqrt_scale_pos_weight":
        params["scale_pos_weight"] = ((len(y_train) - positives) / positives) ** 0.5
    elif args.class_imbalance == "is_unbalance":
        params["is_unbalance"] = True
    names = transform["features"]
    train_set = lgb.Dataset(x_train, y_train, feature_name=names, categorical_feature=CATEGORICAL,
                            free_raw_data=True)
    val_set = lgb.Dataset(x_val, y_val, reference=train_set, feature_name=names, categorical_feature=CATEGORICAL)
    history: dict = {}
    try:
        booster = lgb.train(
            params, train_set, num_boost_round=args.num_boost_round, valid_sets=[val_set],
            valid_names=["validation"],
            callbacks=[lgb.early_stopping(args.early_stopping_rounds, first_metric_only=True, verbose=False),
                       lgb.record_evaluation(history), lgb.log_evaluation(period=50)],
        )
    except lgb.basic.LightGBMError as exc:
        message = " ".join(str(exc).split())
        raise TrainingDataError(f"LightGBM could not train on {len(y_train):,} rows "
                                f"({int(y_train.sum()):,} {LABEL}=1): {message}") from None
    best = booster.best_iteration or booster.current_iteration()
    booster.save_model(str(model_dir / "model.txt"), num_iteration=best)
    features.save(transform, model_dir)
    model_io.pack_serving_code(model_dir)
    val_auc = history["validation"]["auc"][best - 1]
    metadata = {"model_type": "lightgbm", "framework_version": lgb.__version__, "best_iteration": best,
                "validation_auc": val_auc, "hyperparameters": vars(args), "params": params,
                "features": transform["features"], "train_rows": len(y_train), "train_positive_rate": float(y_train.mean())}
    (model_dir / "metadata.json").write_text(json.dumps(metadata, indent=2, default=str))
    (output_dir / "training_history.json").write_text(json.dumps(history["validation"]))
    shutil.copy(model_dir / "metadata.json", output_dir / "metadata.json")
    print(f"best iteration {best}: validation auc {val_auc:.4f} ({len(y_train)} training rows)")
    del x_train, train_set
    log_to_mlflow(booster, x_val[:5], names, params, vars(args), history["validation"], best)


def log_to_mlflow(booster, x_head: np.ndarray, names: list[str], params: dict, hyperparameters: dict,
                  history: dict, best: int) -> None:
    """Hyperparameters, validation metrics per iteration, and the booster through mlflow.lightgbm."""
    track = Tracking.from_env()
    if not track.enabled:
        return
    track.log_params({**hyperparameters, **{f"lgb.{k}": v for k, v in params.items() if k not in hyperparameters}})
    for metric, values in history.items():
        track.log_metric_history(f"validation_{metric}", values)
    track.log_metrics({"best_iteration": best, **{f"best_validation_{m}": v[best - 1] for m, v in history.items()}})

    def log_model() -> None:
        import lightgbm as lgb
        import mlflow.lightgbm
        from mlflow.models import infer_signature

        import pandas as pd

        example = pd.DataFrame(x_head, columns=names)
        mlflow.lightgbm.log_model(booster, name="model", signature=infer_signature(example, booster.predict(example)),
                                  input_example=example, pip_requirements=[f"lightgbm=={lgb.__version__}"])
    track.log_model(log_model)


if __name__ == "__main__":
    main()
