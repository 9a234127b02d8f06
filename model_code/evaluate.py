"""Evaluation step: score the test split, write evaluation.json (SageMaker model-quality format) and plots.

Inputs: input/model/ (model.tar.gz, as SageMaker hands a training step's model output to a processing job,
or the model folder itself: model.txt, feature_transform.json, metadata.json), input/test/*.parquet.
Output: output/evaluation/{evaluation.json, roc.png, precision_recall.png, feature_importance.png (LightGBM)}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from model_io import FraudModel, ModelArchiveError, open_model_dir
from fraud_schema import LABEL
from tracking import Tracking

ROOT = Path(os.environ.get("SAGEPIPE_PROCESSING_DIR", "/opt/ml/processing"))


def bootstrap_std(y: np.ndarray, p: np.ndarray, metric, rounds: int, seed: int) -> float:
    """Standard deviation of a metric over bootstrap resamples of the test rows."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(rounds):
        idx = rng.integers(0, len(y), min(len(y), 200_000))
        if y[idx].min() != y[idx].max():
            values.append(metric(y[idx], p[idx]))
    return float(np.std(values)) if values else 0.0


def metrics_report(y: np.ndarray, p: np.ndarray, threshold: float, rounds: int) -> dict:
    from sklearn import metrics as m

    predicted = (p >= threshold).astype(int)
    tn, fp, fn, tp = m.confusion_matrix(y, predicted, labels=[0, 1]).ravel()

    def entry(value: float, std: float | None = None) -> dict:
        return {"value": float(value), "standard_deviation": float(std) if std is not None else "NaN"}

    return {"binary_classification_metrics": {
        "auc": entry(m.roc_auc_score(y, p), bootstrap_std(y, p, m.roc_auc_score, rounds, 1)),
        "pr_auc": entry(m.average_precision_score(y, p), bootstrap_std(y, p, m.average_precision_score, rounds, 2)),
        "log_loss": entry(m.log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "precision": entry(m.precision_score(y, predicted, zero_division=0)),
        "recall": entry(m.recall_score(y, predicted, zero_division=0)),
        "f1": entry(m.f1_score(y, predicted, zero_division=0)),
        "accuracy": entry(m.accuracy_score(y, predicted)),
        "threshold": entry(threshold),
        "confusion_matrix": {"0": {"0": int(tn), "1": int(fp)}, "1": {"0": int(fn), "1": int(tp)}},
        "test_rows": entry(len(y)), "positive_rate": entry(y.mean()),
    }}


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


def main() -> None:
    parser = argparse.ArgumentParser(description="evaluate the fraud model on the test split")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--bootstrap-rounds", type=int, default=100)
    args = parser.parse_args()
    try:
        model = FraudModel(open_model_dir(ROOT / "input" / "model"))
    except ModelArchiveError as exc:
        sys.exit(f"error: {exc}")
    test = pd.concat([pd.read_parquet(f) for f in sorted((ROOT / "input" / "test").glob("*.parquet"))],
                     ignore_index=True)
    y = test[LABEL].to_numpy()
    p = model.predict_proba(test)
    report = metrics_report(y, p, args.threshold, args.bootstrap_rounds)
    out = ROOT / "output" / "evaluation"
    (out / "evaluation.json").write_text(json.dumps(report, indent=2))
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
