"""benchmarks/summary.py: one table of every figure, tolerant of results that were never measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def summarize(results: Path) -> tuple[str, dict]:
    done = subprocess.run([sys.executable, "benchmarks/summary.py", "--results", str(results)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout, json.loads((results / "summary.json").read_text())


def rows_by_figure(summary: dict) -> dict[str, dict]:
    return {f"{row['area']}: {row['figure']}": row for row in summary["figures"]}


def test_no_results_is_every_figure_not_measured(tmp_path: Path) -> None:
    out, summary = summarize(tmp_path / "results")
    assert summary["counts"]["pass"] == summary["counts"]["FAIL"] == 0
    assert summary["counts"]["not measured"] == len(summary["figures"]) > 20
    assert "not measured" in out and "Traceback" not in out


def test_targets_peers_and_ratios_come_from_the_same_run(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "serving_speed.json").write_text(json.dumps({
        "sagepipe_single_c8": {"requests_per_s": 2400.0, "p99_ms": 6.2},
        "mlflow_single_c8": {"requests_per_s": 75.0, "p99_ms": 150.0},
        "sagepipe_batch1000_c4": {"rows_per_s": 40000.0}, "mlflow_batch1000_c4": {"rows_per_s": 8000.0},
        "ratio_single_c8_rps": 32.0, "ratio_batch_rows_per_s": 5.0, "errors": 0,
        "measured_at": "2026-11-28T15:00:00"}))
    (results / "compile_speed.json").write_text("{not json")  # a damaged result reads as not measured
    (results / "scale.json").write_text(json.dumps({"linear_or_better": False}))
    out, summary = summarize(results)
    rows = rows_by_figure(summary)
    single = rows["endpoint: single-row JSON, concurrency 8"]
    assert (single["value"], single["peer_value"], single["ratio"], single["status"]) == (2400.0, 75.0, 32.0, "pass")
    assert single["measured_at"] == "2026-11-28T15:00:00"
    assert rows["endpoint: single-row JSON, concurrency 8, p99"]["status"] == "FAIL"  # 6.2 ms over 5 ms
    assert rows["endpoint: 1,000-row JSON batches, concurrency 4"]["status"] == "pass"  # 5.0x meets >= 5x
    assert rows["endpoint: errors, every level, both servers"]["status"] == "pass"
    assert rows["scale: time grows no faster than linearly"]["status"] == "FAIL"
    assert rows["compile: cold compile"]["status"] == "not measured"
    assert summary["counts"] == {"pass": 3, "FAIL": 2, "not measured": len(rows) - 5}
    assert "32x" in out and "MLflow scoring server: 75 req/s" in out
