"""The example pipeline: wall time at 5,000 rows, framework overhead, cached re-run, and scale.

- wall time of `sagepipe run configs/fraud-detection.yaml` (target < 60 s on 2 cores);
- overhead: that wall time over the sum of the same model_code scripts run directly, one after
  another, on the same inputs (target <= 1.3x);
- a fully cached re-run over the first run (target <= 10 %);
- with --rows 50000 500000 5000000: wall time and peak RSS of the largest step at each size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write

REPO = Path(__file__).resolve().parents[1]
CODE = REPO / "model_code"


def run_pipeline(home: Path, params: list[str], no_cache: bool) -> tuple[float, dict]:
    argv = [str(Path(sys.executable).parent / "sagepipe"), "run", "configs/fraud-detection.yaml", "--json"]
    argv += [a for p in params for a in ("--param", p)] + (["--no-cache"] if no_cache else [])
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=REPO, env={**os.environ, "SAGEPIPE_HOME": str(home)},
                          capture_output=True, text=True, check=True)
    return time.perf_counter() - start, json.loads(done.stdout)


def run_scripts_directly(work: Path, rows: int) -> float:
    """The same scripts, same arguments, same folder layout — without sagepipe."""
    py = sys.executable
    proc = lambda step: work / step / "processing"  # noqa: E731
    for step, outs in {"ingest": ["raw"], "preprocess": ["train", "validation", "test", "transform", "data_docs"],
                       "evaluate": ["evaluation"]}.items():
        for out in outs:
            (proc(step) / "output" / out).mkdir(parents=True)
    (proc("preprocess") / "input").mkdir(parents=True)
    (proc("preprocess") / "input" / "raw").symlink_to(proc("ingest") / "output" / "raw")
    (proc("preprocess") / "input" / "expectations").mkdir()
    shutil.copy(REPO / "configs" / "expectations" / "insurance-claims.yaml", proc("preprocess") / "input" / "expectations")
    model, data = work / "train" / "model", work / "train" / "output" / "data"
    model.mkdir(parents=True)
    data.mkdir(parents=True)
    (proc("evaluate") / "input").mkdir(parents=True)
    (proc("evaluate") / "input" / "model").symlink_to(model)
    (proc("evaluate") / "input" / "test").symlink_to(proc("preprocess") / "output" / "test")
    pre_out = proc("preprocess") / "output"
    train_env = {"SM_CHANNEL_TRAIN": str(pre_out / "train"), "SM_CHANNEL_VALIDATION": str(pre_out / "validation"),
                 "SM_CHANNEL_TRANSFORM": str(pre_out / "transform"), "SM_MODEL_DIR": str(model),
                 "SM_OUTPUT_DATA_DIR": str(data), "SM_NUM_CPUS": str(os.cpu_count())}
    commands = [
        ({"SAGEPIPE_PROCESSING_DIR": str(proc("ingest"))}, [CODE / "ingest.py", "--rows", str(rows), "--seed", "42"]),
        ({"SAGEPIPE_PROCESSING_DIR": str(proc("preprocess"))},
         [CODE / "preprocess.py", "--train-ratio", "0.7", "--validation-ratio", "0.15", "--seed", "42"]),
        (train_env, [CODE / "train_lightgbm.py", "--num_boost_round", "600", "--learning_rate", "0.03",
                     "--num_leaves", "15", "--min_child_samples", "20", "--early_stopping_rounds", "60",
                     "--class_imbalance", "sqrt_scale_pos_weight", "--seed", "42"]),
        ({"SAGEPIPE_PROCESSING_DIR": str(proc("evaluate"))}, [CODE / "evaluate.py", "--threshold", "0.25"]),
    ]
    start = time.perf_counter()
    for env, argv in commands:
        subprocess.run([py, *map(str, argv)], env={**os.environ, **env}, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="*", default=[], help="extra scale points, e.g. 50000 500000")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sagepipe-speed-"))
    first, summary = run_pipeline(work / "state", [], no_cache=True)
    cached, _ = run_pipeline(work / "state", [], no_cache=False)
    direct = run_scripts_directly(work / "direct", 5000)
    result = {
        "rows_5000": {"pipeline_wall_s": round(first, 2), "direct_scripts_wall_s": round(direct, 2),
                      "overhead_ratio": round(first / direct, 3), "cached_rerun_wall_s": round(cached, 2),
                      "cached_rerun_fraction": round(cached / first, 3),
                      "steps": {s["name"]: s["duration_s"] for s in summary["steps"]}},
        "targets": {"pipeline_wall_s": 60, "overhead_ratio": 1.3, "cached_rerun_fraction": 0.10},
    }
    rows = [("measure", "value", "target"), ("pipeline wall s (5,000 rows)", f"{first:.1f}", "< 60"),
            ("direct scripts wall s", f"{direct:.1f}", ""), ("overhead ratio", f"{first / direct:.2f}x", "<= 1.3x"),
            ("cached re-run s", f"{cached:.2f}", ""), ("cached / first", f"{cached / first:.1%}", "<= 10%")]
    for n in args.rows:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        wall, scaled = run_pipeline(work / f"state-{n}", [f"rows={n}"], no_cache=True)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        result[f"rows_{n}"] = {"wall_s": round(wall, 1), "peak_child_rss_mb": round(peak_mb, 1),
                               "peak_is_new": peak_mb * 1024 > before, "status": scaled["status"],
                               "steps": {s["name"]: s["duration_s"] for s in scaled["steps"]}}
        rows.append((f"{n:,} rows wall s / peak RSS MB", f"{wall:.1f}", f"{peak_mb:.0f}"))
    print("Example pipeline speed (wall seconds on this machine)")
    write("pipeline_speed", result, rows)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
