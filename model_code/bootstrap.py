"""Bootstrap standard deviations of the test metrics, without a sort per resample.

The rows are sorted by score once, tied scores grouped; a resample (row indices drawn with replacement)
is then a weight per row, and its ROC AUC and average precision come from weighted cumulative counts per
score group. These are the values sklearn's roc_auc_score and average_precision_score give on the
resampled rows (ties count half, as there), up to float rounding: at 750,000 test rows, 100 resamples
take about a second instead of ten.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

MAX_RESAMPLE = 200_000  # rows drawn per resample (all of them, below this)


class RankedScores:
    """Labels sorted by descending score, with the score group of each row."""

    def __init__(self, y: np.ndarray, p: np.ndarray):
        self.order = np.argsort(-p, kind="stable")
        ranked = p[self.order]
        self.positive = y[self.order].astype(np.float64)
        self.group = np.concatenate(([0], np.cumsum(ranked[1:] != ranked[:-1])))
        self.groups = int(self.group[-1]) + 1 if len(ranked) else 0

    def counts(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cumulative weighted true and false positives at each score group, highest score first."""
        w = weights[self.order]
        tp = np.bincount(self.group, w * self.positive, self.groups).cumsum()
        fp = np.bincount(self.group, w * (1 - self.positive), self.groups).cumsum()
        return tp, fp


def roc_auc(tp: np.ndarray, fp: np.ndarray) -> float:
    """Area under the ROC curve through every score group (trapezoids, so ties count half)."""
    tpr, fpr = np.concatenate(([0.0], tp)) / tp[-1], np.concatenate(([0.0], fp)) / fp[-1]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2)


def average_precision(tp: np.ndarray, fp: np.ndarray) -> float:
    """Sum over score groups of the recall gained times the precision there (sklearn's definition)."""
    gained = np.diff(np.concatenate(([0.0], tp))) / tp[-1]
    flagged = tp + fp
    precision = np.divide(tp, flagged, out=np.zeros_like(tp), where=flagged > 0)
    return float(np.sum(gained * precision))


def _resamples(n: int, rounds: int, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(rounds):
        yield rng.integers(0, n, min(n, MAX_RESAMPLE))


def ranking_std(ranked: RankedScores, metric: Callable[[np.ndarray, np.ndarray], float], n: int, rounds: int,
                seed: int) -> float:
    """Standard deviation of a ranking metric (roc_auc, average_precision) over bootstrap resamples that hold
    both classes."""
    values = []
    for idx in _resamples(n, rounds, seed):
        tp, fp = ranked.counts(np.bincount(idx, minlength=n).astype(np.float64))
        if tp[-1] > 0 and fp[-1] > 0:
            values.append(metric(tp, fp))
    return float(np.std(values)) if values else 0.0


def threshold_std(y: np.ndarray, p: np.ndarray, predicted: np.ndarray, rounds: int, seed: int) -> dict[str, float]:
    """Standard deviations of the metrics at the threshold (from each resample's confusion counts)."""
    cell = 2 * y.astype(np.int64) + predicted  # 0 tn, 1 fp, 2 fn, 3 tp
    loss = -(y * np.log(np.clip(p, 1e-7, 1)) + (1 - y) * np.log(np.clip(1 - p, 1e-7, 1)))
    values: dict[str, list[float]] = {k: [] for k in ("log_loss", "precision", "recall", "f1", "accuracy",
                                                      "positive_rate")}
    for idx in _resamples(len(y), rounds, seed):
        tn, fp, fn, tp = np.bincount(cell[idx], minlength=4)
        if tp + fn == 0 or tn + fp == 0:
            continue
        values["log_loss"].append(loss[idx].mean())
        values["precision"].append(tp / (tp + fp) if tp + fp else 0.0)
        values["recall"].append(tp / (tp + fn))
        values["f1"].append(2 * tp / (2 * tp + fp + fn))
        values["accuracy"].append((tp + tn) / len(idx))
        values["positive_rate"].append((tp + fn) / len(idx))
    return {k: float(np.std(v)) if v else 0.0 for k, v in values.items()}
