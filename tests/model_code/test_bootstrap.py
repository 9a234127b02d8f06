"""The bootstrap standard deviations of ROC AUC and PR AUC, from weighted counts over one sort, are the ones
sklearn gives on the same resampled rows (ties included)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from sklearn import metrics

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "model_code"))

import bootstrap  # noqa: E402


def _by_resampling(y: np.ndarray, p: np.ndarray, metric: object, rounds: int, seed: int) -> float:
    """The definition: draw the rows, score the drawn rows with sklearn."""
    rng, values = np.random.default_rng(seed), []
    for _ in range(rounds):
        idx = rng.integers(0, len(y), min(len(y), bootstrap.MAX_RESAMPLE))
        if y[idx].min() != y[idx].max():
            values.append(metric(y[idx], p[idx]))  # type: ignore[operator]
    return float(np.std(values))


@pytest.mark.parametrize("rows, decimals", [(40, 1), (3_000, 2), (20_000, 6)])
def test_ranking_metrics_match_sklearn_on_the_same_resamples(rows: int, decimals: int) -> None:
    rng = np.random.default_rng(rows)
    y = (rng.random(rows) < 0.1).astype(np.int64)
    p = np.round(rng.random(rows) * 0.6 + 0.3 * y, decimals)  # few decimals: many tied scores
    ranked = bootstrap.RankedScores(y, p)
    for fast, slow, seed in ((bootstrap.roc_auc, metrics.roc_auc_score, 1),
                             (bootstrap.average_precision, metrics.average_precision_score, 2)):
        expected = _by_resampling(y, p, slow, 30, seed)
        assert bootstrap.ranking_std(ranked, fast, rows, 30, seed) == pytest.approx(expected, rel=1e-9, abs=1e-15)
    everything = np.ones(rows)
    tp, fp = ranked.counts(everything)
    assert bootstrap.roc_auc(tp, fp) == pytest.approx(metrics.roc_auc_score(y, p), rel=1e-12)
    assert bootstrap.average_precision(tp, fp) == pytest.approx(metrics.average_precision_score(y, p), rel=1e-12)
