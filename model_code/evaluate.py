"""Evaluation step: score the test split, write evaluation.json (SageMaker model-quality format) and plots.

Inputs: input/model/ (model.tar.gz, as SageMaker hands a training step's model output to a processing job,
or the model folder itself: model.txt, feature_transform.json, metadata.json), input/test/*.parquet.
Output: output/evaluation/{evaluation.json, roc.png, precision_recall.png, confusion_matrix.png,
feature_importance.png (LightGBM)}.
Every value and standard deviation in evaluation.json is a finite number: a test split without both classes,
or a model whose scores are not finite, stops the step with one line that says so instead.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

import features
from bootstrap import RankedScores, average_precision, ranking_std, roc_auc, threshold_std
from model_io import FraudModel, ModelArchiveError, open_model_dir
from fraud_schema import BOTH_CLASSES_RULE, LABEL, one_class_only
from tracking import Tracking

ROOT = Path(os.environ.get("SAGEPIPE_PROCESSING_DIR", "/opt/ml/processing"))


class EvaluationError(Exception):
    """Test data or scores that give no meaningful metrics; the message says what, with counts."""


def check_test_data(y: np.ndarray, p: np.ndarray) -> None:
    """Both classes present and every score a finite probability, or ROC/PR AUC would be NaN or meaningless."""
    counts = one_class_only(y, "test split")
    if counts:
        raise EvaluationError(f"{counts}; ROC AUC and PR AUC are undefined without both classes — {BOTH_CLASSES_RULE}")
    bad = int((~np.isfinite(p)).sum())
    if bad:
        raise EvaluationError(f"the model gave {bad:,} of {len(p):,} test rows a score that is not a finite number "
                              "(NaN or infinite); no metrics were written — check the model and its input features")


def non_finite(report: dict, prefix: str = "") -> list[str]:
    """Names of the report's values that are not finite numbers (NaN, infinity, or a text placeholder)."""
    found = []
    for key, value in report.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            found += non_finite(value, f"{name}.")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            found.append(f"{name}={value!r}")
    return found


def metrics_report(y: np.ndarray, p: np.ndarray, threshold: float, rounds: int) -> dict:
    from sklearn import metrics as m

    check_test_data(y, p)
    predicted = (p >= threshold).astype(int)
    tn, fp, fn, tp = m.confusion_matrix(y, predicted, labels=[0, 1]).ravel()
    std = threshold_std(y, p, predicted, rounds, 3)
    ranked = RankedScores(y, p)

    def entry(value: float, std: float) -> dict:
        return {"value": float(value), "standard_deviation": float(std)}

    report = {"binary_classification_metrics": {
        "auc": entry(m.roc_auc_score(y, p), ranking_std(ranked, roc_auc, len(y), rounds, 1)),
        "pr_auc": entry(m.average_precision_score(y, p), ranking_std(ranked, average_precision, len(y), rounds, 2)),
        "log_loss": entry(m.log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1]), std["log_loss"]),
        "precision": entry(m.precision_score(y, predicted, zero_division=0), std["precision"]),
        "recall": entry(m.recall_score(y, predicted, zero_division=0), std["recall"]),
        "f1": entry(m.f1_score(y, predicted, zero_division=0), std["f1"]),
        "accuracy": entry(m.accuracy_score(y, predicted), std["accuracy"]),
        "threshold": entry(threshold, 0.0),
        "confusion_matrix": {"0": {"0": int(tn), "1": int(fp)}, "1": {"0": int(fn), "1": int(tp)}},
        "test_rows": entry(len(y), 0.0), "positive_rate": entry(y.mean(), std["positive_rate"]),
    }}
    bad = non_finite(report)
    if bad:
        raise EvaluationError(f"metrics that are not finite numbers: {', '.join(bad)}; nothing was written")
    return report


def plots(y: np.ndarray, p: np.ndarray, importance: dict[str, float], report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn import metrics as m

    scores = report["binary_classification_metrics"]
    fpr, tpr, _ = m.roc_curve(y, p)
    fig, ax = plt.subplots(figsize=(6, 5), dpi=110)
    ax.plot(fpr, tpr, lw=2, label=f"model (AUC {scores['auc']['value']:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", label="chance (AUC 0.5)")
    ax.set(xlabel="false positive rate", ylabel="true positive rate (recall)", title="ROC curve — test split",
           xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "roc.png")
    plt.close(fig)

    precision, recall, _ = m.precision_recall_curve(y, p)
    fig, ax = plt.subplots(figsize=(6, 5), dpi=110)
    ax.plot(recall, precision, lw=2, label=f"model (PR AUC {scores['pr_auc']['value']:.3f})")
    ax.axhline(y.mean(), ls="--", c="grey", label=f"chance (fraud rate {y.mean():.1%})")
    ax.scatter([scores["recall"]["value"]], [scores["precision"]["value"]], c="red", zorder=3,
               label=f"threshold {scores['threshold']['value']:.2f}")
    ax.set(xlabel="recall", ylabel="precision", title="Precision–recall curve — test split", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "precision_recall.png")
    plt.close(fig)

    confusion_plot(plt, scores, out)
    if not importance:  # e.g. a neural network: no built-in importance to plot
        return
    top = sorted(importance.items(), key=lambda kv: kv[1])[-15:]
    total = sum(importance.values()) or 1.0
    fig, ax = plt.subplots(figsize=(7, 5.5), dpi=110)
    ax.barh([k for k, _ in top], [100 * v / total for _, v in top], color="#4c72b0")
    ax.set(xlabel="share of total gain (%)", title="Feature importance (gain), top 15")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "feature_importance.png")
    plt.close(fig)


def confusion_plot(plt, scores: dict, out: Path) -> None:
    """The confusion matrix at the threshold: counts and the share of each true class."""
    cells = scores["confusion_matrix"]
    counts = np.array([[cells["0"]["0"], cells["0"]["1"]], [cells["1"]["0"], cells["1"]["1"]]], dtype=float)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5, 4.4), dpi=110)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    names = [["true negative", "false positive"], ["false negative", "true positive"]]
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{int(counts[i, j]):,}\n{share[i, j]:.1%} of row\n{names[i][j]}", ha="center",
                    va="center", fontsize=10, color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks([0, 1], ["not flagged (0)", "flagged (1)"])
    ax.set_yticks([0, 1], ["not fraud (0)", "fraud (1)"])
    ax.set(xlabel="predicted", ylabel="actual",
           title=f"Confusion matrix at threshold {scores['threshold']['value']:.2f}")
    fig.tight_layout()
    fig.savefig(out / "confusion_matrix.png")
    plt.close(fig)


def read_test(folder: Path, transform: dict) -> tuple[np.ndarray, np.ndarray]:
    """The test split's labels (0/1) and feature matrix, read from Arrow as training reads its channels."""
    try:
        matrix, labels = features.read_split(folder, transform, "input", "test")
    except features.SplitError as exc:
        raise EvaluationError(str(exc)) from None
    valid = np.isin(labels, [0, 1])  # NaN and None are neither
    if not valid.all():
        odd = sorted({str(v) for v in labels[~valid]})[:5]
        raise EvaluationError(f"input 'test': {LABEL} must be 0 or 1; found {odd}")
    return labels.astype(np.int64), matrix


def main() -> None:
    parser = argparse.ArgumentParser(description="evaluate the fraud model on the test split")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--bootstrap-rounds", type=int, default=100)
    args = parser.parse_args()
    try:
        model = FraudModel(open_model_dir(ROOT / "input" / "model"))
    except ModelArchiveError as exc:
        sys.exit(f"error: {exc}")
    try:
        evaluate(model, args)
    except EvaluationError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        sys.exit(1)


def evaluate(model: FraudModel, args: argparse.Namespace) -> None:
    y, matrix = read_test(ROOT / "input" / "test", model.transform)
    p = np.asarray(model.predict_matrix(matrix), dtype=np.float64)
    report = metrics_report(y, p, args.threshold, args.bootstrap_rounds)
    out = ROOT / "output" / "evaluation"
    (out / "evaluation.json").write_text(json.dumps(report, indent=2, allow_nan=False))
    plots(y, p, model.feature_importance(), report, out)
    scores = report["binary_classification_metrics"]
    track = Tracking.from_env()
    track.log_metrics({f"test_{k}": v["value"] for k, v in scores.items()
                       if isinstance(v, dict) and isinstance(v.get("value"), (int, float))})
    track.log_artifacts(out, "evaluation")
    print(f"test rows {len(y)}: auc {scores['auc']['value']:.4f} ± {scores['auc']['standard_deviation']:.4f}, "
          f"pr_auc {scores['pr_auc']['value']:.4f}, recall {scores['recall']['value']:.3f}, "
          f"precision {scores['precision']['value']:.3f} at threshold {args.threshold}")


if __name__ == "__main__":
    main()
