"""Local hyperparameter tuning: the fraud example's tuning step (8 LightGBM trials at 50k rows) with
max_parallel_jobs 1 and 2, against the same 8 trainings run one after another by hand (what the step adds:
its scheduling, per-trial folders, logs and archives). The search is the example's ranges with the random
strategy, so that both runs train the same 8 models (a Bayesian search's later suggestions depend on which
trials finished first); the load average is recorded, since other work on the machine slows trials."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import write

REPO = Path(__file__).resolve().parents[1]
ROWS = 50_000


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="sagepipe-tuning-"))
    env = {**os.environ, "SAGEPIPE_HOME": str(work / "state")}
    env.pop("MLFLOW_TRACKING_URI", None)
    try:
        subprocess.run([sys.executable, str(REPO / "model_code" / "generate_data.py"), "--rows", str(ROWS), "--seed",
                        "1", "--out", str(work / "data")], check=True, capture_output=True)
        project = _project(work)
        results: dict = {"rows": ROWS, "trials": 8, "strategy": "random", "load_average_before": os.getloadavg()}
        runs = {}
        for parallel in (1, 2):
            done = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", f"configs/tune-p{parallel}.yaml",
                                   "--param", f"input_data={work / 'data'}", "--json"], cwd=project, env=env,
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"the tuning run failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
            run = work / "state" / "runs" / json.loads(done.stdout)["run_id"]
            runs[parallel] = run
            state = json.loads((run / "state.json").read_text())["steps"]["tune"]
            trials = _trials(run)
            results[f"max_parallel_jobs_{parallel}"] = {
                "tune_wall_s": state["duration_s"], "best_validation_auc": max(t["auc"] for t in trials),
                "mean_trial_s": round(sum(t["duration_s"] for t in trials) / len(trials), 2)}
        results["by_hand_sequential"] = _by_hand(runs[1], work / "by-hand", env, os.cpu_count() or 1)
        # the same, each training on one thread: what parallel trials gain beyond LightGBM's own threads
        results["by_hand_sequential_one_thread"] = _by_hand(runs[1], work / "by-hand-1", env, 1)
        results["load_average_after"] = os.getloadavg()
        one, two, hand = (results["max_parallel_jobs_1"], results["max_parallel_jobs_2"],
                          results["by_hand_sequential"])
        results["speedup_parallel_2_over_1"] = round(one["tune_wall_s"] / two["tune_wall_s"], 2)
        results["step_overhead_parallel_1_over_by_hand"] = round(one["tune_wall_s"] / hand["wall_s"], 3)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"Local tuning: 8 LightGBM trials at {ROWS:,} rows on this {os.cpu_count()}-CPU machine")
    write("tuning_speed", results, [
        ("", "wall s", "best val AUC"),
        ("max_parallel_jobs 1", one["tune_wall_s"], one["best_validation_auc"]),
        ("max_parallel_jobs 2", two["tune_wall_s"], two["best_validation_auc"]),
        ("by hand, one after another", hand["wall_s"], hand["best_validation_auc"]),
        ("by hand, one thread each", results["by_hand_sequential_one_thread"]["wall_s"], ""),
        ("parallel 2 / 1", f"{results['speedup_parallel_2_over_1']}x", ""),
        ("step (1) / by hand", f"{results['step_overhead_parallel_1_over_by_hand']}x", "")])


def _project(work: Path) -> Path:
    """A repository holding the example's ingest, preprocess and tune steps, in two variants."""
    project = work / "project"
    (project / "configs").mkdir(parents=True)
    (project / "pyproject.toml").touch()
    shutil.copytree(REPO / "model_code", project / "model_code", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "configs" / "expectations", project / "configs" / "expectations")
    config = yaml.safe_load((REPO / "configs" / "fraud-detection-hpo.yaml").read_text())
    config["steps"] = [s for s in config["steps"] if s["name"] in ("ingest", "preprocess", "tune")]
    config["parameters"] = {k: v for k, v in config["parameters"].items() if k in ("input_data", "rows", "seed",
                                                                                     "class_imbalance")}
    for parallel in (1, 2):
        config["name"] = f"tune-p{parallel}"
        config["steps"][2]["tuning"].update(max_parallel_jobs=parallel, strategy="random")
        (project / "configs" / f"tune-p{parallel}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return project


def _trials(run: Path) -> list[dict]:
    with open(run / "tune" / "output" / "trials" / "trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    return [{**row, "auc": float(row["validation:auc"]), "duration_s": float(row["duration_s"])} for row in rows]


def _by_hand(run: Path, folder: Path, env: dict, threads: int) -> dict:
    """The sequential run's 8 trials again, each `python train_lightgbm.py --name value ...` in turn, with
    SM_NUM_CPUS threads."""
    channels = run / "preprocess" / "processing" / "output"
    trials = json.loads((run / "tune" / "output" / "trials" / "trials.json").read_text())
    config = yaml.safe_load((run.parents[2] / "project" / "configs" / "tune-p1.yaml").read_text())
    defaults = {f"${{params.{k}}}": v["default"] for k, v in config["parameters"].items()}
    static = {k: defaults.get(v, v) for k, v in config["steps"][2]["hyperparameters"].items()}
    started, aucs = time.perf_counter(), []
    for trial in trials:
        out = folder / str(trial["number"])
        for name in ("model", "output"):
            (out / name).mkdir(parents=True)
        hps = {**static, **trial["hyperparameters"]}
        run_env = {**env, "SM_MODEL_DIR": str(out / "model"), "SM_OUTPUT_DATA_DIR": str(out / "output"),
                   "SM_NUM_CPUS": str(threads),
                   **{f"SM_CHANNEL_{c.upper()}": str(channels / c) for c in ("train", "validation", "transform")}}
        argv = [sys.executable, str(run.parents[2] / "project" / "model_code" / "train_lightgbm.py")]
        argv += [item for k, v in hps.items() for item in (f"--{k}", str(v))]
        done = subprocess.run(argv, env=run_env, capture_output=True, text=True, check=True)
        aucs.append(float(done.stdout.strip().splitlines()[-1].split("validation auc ")[1].split()[0]))
    return {"wall_s": round(time.perf_counter() - started, 1), "best_validation_auc": max(aucs)}


if __name__ == "__main__":
    main()
