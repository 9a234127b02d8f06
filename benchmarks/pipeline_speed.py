"""The example pipeline: wall time at 5,000 rows, framework overhead, cached re-run, and scale.

- wall time of `sagepipe run configs/fraud-detection.yaml` (target < 60 s on 2 cores);
- overhead: that wall time over the sum of the same model_code scripts run directly, one after
  another, on the same inputs (target <= 1.3x). Both log to MLflow (the scripts' own logging is
  work, not overhead); the pipeline also records its parent and step runs, which counts as overhead.
  Both SQLite stores are created before timing (a store's one-time schema set-up takes ~4 s);
- a fully cached re-run over the first run (target <= 5 % and <= 1 s), and against the same re-run
  untracked (MLFLOW_TRACKING_URI=none); the background MLflow writer is waited for between runs;
- with --rows 50000 500000 5000000: wall time, and each step's time and peak RSS, at each size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write

REPO = Path(__file__).resolve().parents[1]
CODE = REPO / "model_code"


def run_pipeline(home: Path, params: list[str], no_cache: bool, **env: str) -> tuple[float, dict]:
    argv = [str(Path(sys.executable).parent / "sagepipe"), "run", "configs/fraud-detection.yaml", "--json"]
    argv += [a for p in params for a in ("--param", p)] + (["--no-cache"] if no_cache else [])
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=REPO, env={**os.environ, "SAGEPIPE_HOME": str(home), **env},
                          capture_output=True, text=True, check=True)
    return time.perf_counter() - start, json.loads(done.stdout)


def wait_for_writers(home: Path, limit: float = 300) -> None:
    """Until the background MLflow writers of home's runs are done (so they do not slow the next timing)."""
    sys.path.insert(0, str(REPO))
    from pipelines.tracking_journal import unwritten, writer_busy

    deadline = time.time() + limit
    while time.time() < deadline and any(writer_busy(r.parent) or unwritten(r.parent)
                                         for r in (home / "runs").glob("*/mlflow")):
        time.sleep(0.2)


def create_store(uri: str) -> None:
    """Create an MLflow SQLite store (its schema set-up) outside the timed part."""
    subprocess.run([sys.executable, "-c", f"from mlflow.tracking import MlflowClient; "
                    f"MlflowClient({uri!r}).search_experiments()"], check=True, capture_output=True)


def config_arguments(rows: int) -> dict[str, list[str]]:
    """Each script's command-line arguments as the pipeline config gives them (so both runs do the same work)."""
    sys.path.insert(0, str(REPO))
    from pipelines.loader import load_pipeline
    from pipelines.refs import resolve
    from steps.training import _hp_text

    spec = load_pipeline(REPO / "configs" / "fraud-detection.yaml", params=[f"rows={rows}"])
    value = lambda v: resolve(v, lambda ref: spec.param_values[ref.name])  # noqa: E731
    args = {name: [str(a) for a in value(spec.step(name).arguments)] for name in ("ingest", "preprocess", "evaluate")}
    hps = value(spec.step("train").hyperparameters)
    args["train"] = [a for k, v in hps.items() for a in (f"--{k}", _hp_text(v))]
    return args


def run_scripts_directly(work: Path, rows: int) -> float:
    """The same scripts, same arguments, same folder layout, same MLflow logging — without sagepipe."""
    py = sys.executable
    tracking = f"sqlite:///{work}/mlflow.db"
    work.mkdir(parents=True)
    create_store(tracking)
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
    args = config_arguments(rows)
    commands = [
        ({"SAGEPIPE_PROCESSING_DIR": str(proc("ingest"))}, [CODE / "ingest.py", *args["ingest"]]),
        ({"SAGEPIPE_PROCESSING_DIR": str(proc("preprocess"))}, [CODE / "preprocess.py", *args["preprocess"]]),
        (train_env, [CODE / "train_lightgbm.py", *args["train"]]),
        ({"SAGEPIPE_PROCESSING_DIR": str(proc("evaluate"))}, [CODE / "evaluate.py", *args["evaluate"]]),
    ]
    start = time.perf_counter()
    for env, argv in commands:
        # in work: a store without an artifact location puts artifacts in ./mlruns
        subprocess.run([py, *map(str, argv)], env={**os.environ, "MLFLOW_TRACKING_URI": tracking, **env},
                       check=True, capture_output=True, cwd=work)
    return time.perf_counter() - start


def measure_small(work: Path) -> tuple[dict, list[tuple]]:
    """5,000 rows: wall time, overhead against the bare scripts, and a cached re-run."""
    (work / "state").mkdir(parents=True)
    create_store(f"sqlite:///{work}/state/mlflow.db")
    first, summary = run_pipeline(work / "state", [], no_cache=True)
    wait_for_writers(work / "state")
    cached, _ = run_pipeline(work / "state", [], no_cache=False)
    wait_for_writers(work / "state")
    untracked, _ = run_pipeline(work / "state", [], no_cache=False, MLFLOW_TRACKING_URI="none")
    direct = run_scripts_directly(work / "direct", 5000)
    result = {
        "rows_5000": {"pipeline_wall_s": round(first, 2), "direct_scripts_wall_s": round(direct, 2),
                      "overhead_ratio": round(first / direct, 3), "cached_rerun_wall_s": round(cached, 2),
                      "cached_rerun_fraction": round(cached / first, 3),
                      "cached_rerun_untracked_wall_s": round(untracked, 2),
                      "cached_rerun_tracked_over_untracked": round(cached / untracked, 2),
                      "steps": {s["name"]: s["duration_s"] for s in summary["steps"]}},
        "targets": {"pipeline_wall_s": 60, "overhead_ratio": 1.3, "cached_rerun_fraction": 0.05,
                    "cached_rerun_wall_s": 1.0},
    }
    rows = [("pipeline wall s (5,000 rows)", f"{first:.1f}", "< 60"),
            ("direct scripts wall s", f"{direct:.1f}", ""), ("overhead ratio", f"{first / direct:.2f}x", "<= 1.3x"),
            ("cached re-run s", f"{cached:.2f}", "<= 1"), ("cached / first", f"{cached / first:.1%}", "<= 5%"),
            ("cached re-run untracked s", f"{untracked:.2f}", ""),
            ("cached tracked / untracked", f"{cached / untracked:.2f}x", "")]
    return result, rows


def measure_scale(work: Path, sizes: list[int]) -> tuple[dict, list[tuple]]:
    """Each size: wall time, and every step's time and peak RSS (target: under 8 GB at 5M rows)."""
    result: dict = {"targets": {"peak_step_rss_mb_at_5M": 8192}}
    rows: list[tuple] = []
    for n in sizes:
        wall, scaled = run_pipeline(work / f"state-{n}", [f"rows={n}"], no_cache=True)
        steps = {s["name"]: {"duration_s": s["duration_s"], "peak_rss_mb": s["peak_rss_mb"]}
                 for s in scaled["steps"] if s["status"] == "succeeded"}
        peak = max((s["peak_rss_mb"] or 0 for s in steps.values()), default=0)
        result[f"rows_{n}"] = {"wall_s": round(wall, 1), "status": scaled["status"], "steps": steps,
                               "peak_step_rss_mb": peak, "seconds_per_million_rows": round(wall / n * 1e6, 1)}
        rows.append((f"{n:,} rows: wall s / max step RSS MB", f"{wall:.1f}", f"{peak:.0f}"))
        for name, step in steps.items():
            if step["peak_rss_mb"]:
                rows.append((f"    {name}: s / RSS MB", f"{step['duration_s']:.1f}", f"{step['peak_rss_mb']:.0f}"))
    return result, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="*", default=[], help="scale points, e.g. 50000 500000 5000000")
    parser.add_argument("--scale-only", action="store_true", help="skip the 5,000-row measurements")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sagepipe-speed-"))
    try:
        if not args.scale_only:
            result, rows = measure_small(work)
            print("Example pipeline speed (wall seconds on this machine)")
            write("pipeline_speed", result, [("measure", "value", "target"), *rows])
        if args.rows:
            result, rows = measure_scale(work, args.rows)
            print("Example pipeline at scale (generated rows)")
            write("pipeline_scale", result, [("measure", "wall s", "RSS MB"), *rows])
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
