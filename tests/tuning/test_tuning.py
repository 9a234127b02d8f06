"""`type: tuning`: the search engine, config errors, local trials (parallel, failures, early stopping, resume,
MLflow), the compiled TuningStep, its emulation, and the fraud example's tuned model against the untuned one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.errors import ConfigError
from pipelines.loader import load_pipeline
from pipelines.tuning import Range, Search, Trial, best_trial, median_rule_stops, objective_values, ranked
from tests.conftest import CHECKER, REPO, make_project, run_cli

# A training script in the container contract: its "score" peaks at x = 0.3; it prints the score `steps` times
# (rising to its final value), saves model.json with its handlers (code/inference.py), and notes each run.
TRAIN = '''import argparse, json, os, pathlib, shutil, sys, time
p = argparse.ArgumentParser()
p.add_argument("--x", type=float, default=0.0)
p.add_argument("--depth", type=int, default=1)
p.add_argument("--kind", default="a")
p.add_argument("--steps", type=int, default=1)
p.add_argument("--sleep", type=float, default=0.0)
p.add_argument("--trial_log", default="")
a, _ = p.parse_known_args()
rows = sum(1 for f in pathlib.Path(os.environ["SM_CHANNEL_TRAIN"]).rglob("*") if f.is_file() for _ in open(f))
if a.trial_log:
    with open(a.trial_log, "a") as log:
        log.write(json.dumps({**vars(a), "cpus": os.environ["SM_NUM_CPUS"], "job": os.environ.get("TRAINING_JOB_NAME")}) + "\\n")
if a.kind == "bad":
    print("kind 'bad' cannot be trained", flush=True)
    sys.exit(3)
score = 1 - (a.x - 0.3) ** 2 - 0.01 * a.depth
for step in range(1, a.steps + 1):
    time.sleep(a.sleep)
    print(f"step {step}: score={score * step / a.steps:.6f}", flush=True)
model = pathlib.Path(os.environ["SM_MODEL_DIR"])
(model / "model.json").write_text(json.dumps({"x": a.x, "depth": a.depth, "score": score, "rows": rows,
                                              "scale": 0.001 * a.depth}))
here = pathlib.Path(__file__).resolve().parent
(model / "code").mkdir()
shutil.copy(here / "inference.py", model / "code" / "inference.py")
'''
# The model's inference handlers (SageMaker's toolkit contract), plus predict_frame for the batch engine.
INFERENCE = '''import csv, io, json, pathlib
import numpy as np

FIELDS = ["amount", "age"]


class InputError(ValueError):
    pass


class Model:
    def __init__(self, folder):
        self.scale = json.loads((pathlib.Path(folder) / "model.json").read_text())["scale"]

    def score(self, amount, age):
        return np.clip(np.asarray(amount, dtype=float) * self.scale + np.asarray(age, dtype=float) / 1000, 0, 1)

    def predict_frame(self, frame):
        missing = [f for f in FIELDS if f not in frame.columns]
        if missing:
            raise InputError("missing column " + ", ".join(missing))
        return self.score(frame["amount"].to_numpy(), frame["age"].to_numpy())


def model_fn(model_dir):
    return Model(model_dir)


def input_fn(body, content_type, fields=FIELDS):
    text = body.decode() if isinstance(body, bytes) else body
    rows = [r for r in csv.reader(io.StringIO(text)) if r]
    if any(len(r) != len(fields) for r in rows):
        raise InputError(f"expected {len(fields)} values per line")
    return [dict(zip(fields, r)) for r in rows]


def predict_fn(records, model):
    return model.score([float(r["amount"]) for r in records], [float(r["age"]) for r in records])


def output_fn(probabilities, accept, threshold=0.5):
    return "".join(f"{p:.6f},{int(p >= threshold)}\\n" for p in probabilities.tolist()).encode(), "text/csv"
'''
USE = '''import json, os, pathlib, tarfile
root = pathlib.Path(os.environ.get("SAGEPIPE_PROCESSING_DIR", "/opt/ml/processing"))
with tarfile.open(root / "input" / "model" / "model.tar.gz") as tar:
    model = json.load(tar.extractfile("model.json"))
(root / "output" / "report" / "report.json").write_text(json.dumps({"model": model}))
'''
TUNING = """
name: tiny-hpo
parameters:
  data: {type: string, default: data}
  seed: {type: integer, default: 7}
steps:
  - name: tune
    type: tuning
    code: scripts/train.py
    inputs: {train: "${params.data}"}
    hyperparameters: {x: 0.0, depth: 1, kind: a, steps: 1, sleep: 0, seed: "${params.seed}", trial_log: TRIAL_LOG_PATH}
    tuning:
      strategy: random
      max_jobs: 4
      max_parallel_jobs: 2
      random_seed: 3
      objective: {metric: "validation:score", type: maximize, regex: "score=([-0-9.]+)"}
      ranges:
        x: {continuous: [0.0, 1.0]}
        depth: {integer: [1, 5], scaling: log}
  - name: use
    type: evaluation
    code: scripts/use.py
    inputs: {model: "${steps.tune.outputs.model}"}
    outputs: [report]
    report: {output: report, path: report.json}
"""
DEV = """
sagemaker: {region: us-east-1, role: "arn:aws:iam::123456789012:role/x", bucket: tiny-hpo-bucket}
parameters: {data: "s3://tiny-hpo-bucket/data/"}
"""


def tiny_project(folder: Path, pipeline: str = TUNING, local: str | None = None) -> Path:
    """A repository with the tiny training script and its handlers, 20 rows of data, a local and a dev env."""
    envs = {"dev": DEV, **({"local": local} if local else {})}
    config = make_project(folder, "tiny-hpo", pipeline.replace("TRIAL_LOG_PATH", str(folder / "trials.log")), envs,
                          (), {"scripts/train.py": TRAIN, "scripts/inference.py": INFERENCE, "scripts/use.py": USE})
    (folder / "data").mkdir()
    (folder / "data" / "rows.csv").write_text("".join(f"{i}\n" for i in range(20)))
    return config


def _run(home: Path, config: Path, *args: str) -> tuple[int, dict, str]:
    done = run_cli("run", str(config), *args, "--json", home=home, cwd=config.parents[1])
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else {}, done.stderr


def _run_dir(home: Path, summary: dict) -> Path:
    return home / "runs" / summary["run_id"]


# --- the search engine ------------------------------------------------------------------------------
def test_grid_search_visits_every_combination_once() -> None:
    space = [Range("kind", "categorical", values=("a", "b")), Range("depth", "categorical", values=("1", "2", "3"))]
    search = Search("grid", space, maximize=True, max_jobs=None)
    asked = [search.ask() for _ in range(7)]
    assert asked[-1] is None and search.total == 6
    assert sorted(tuple(sorted(p.items())) for p in asked[:6]) == sorted(
        tuple(sorted({"kind": k, "depth": d}.items())) for k in "ab" for d in "123")


@pytest.mark.parametrize("strategy", ["random", "bayesian"])
def test_random_and_bayesian_search_stay_in_range_and_repeat_with_a_seed(strategy: str) -> None:
    space = [Range("x", "continuous", 0.01, 1.0, "log"), Range("n", "integer", 2, 9), Range("c", "categorical",
                                                                                        values=("u", "v"))]

    def suggestions(order: list[Range]) -> list[dict]:
        search, out = Search(strategy, order, maximize=False, max_jobs=6, seed=5), []
        while (params := search.ask()) is not None:
            out.append(params)
            search.tell(params, "Completed", (params["x"] - 0.2) ** 2 + params["n"])
        return out

    first = suggestions(space)
    assert len(first) == 6 and first == suggestions(list(reversed(space)))  # declaration order does not matter
    for params in first:
        assert 0.01 <= params["x"] <= 1.0 and isinstance(params["n"], int) and 2 <= params["n"] <= 9
        assert params["c"] in ("u", "v")


SPACE = [Range("x", "continuous", 0.0, 1.0), Range("n", "integer", 1, 20)]


def _search_with(strategy: str, parallel: int, delays: dict[int, float], finished: list[Trial] = (),
                 interrupt_at: int | None = None) -> tuple[list[Trial], list[int]]:
    """A search over SPACE whose trial k takes delays[k] seconds; which trials ran (not reused)."""
    import random
    import threading

    from pipelines.tuning import run_search

    ran: list[int] = []
    lock = threading.Lock()

    def run_trial(trial: Trial) -> Trial:
        with lock:
            ran.append(trial.number)
        time.sleep(delays.get(trial.number, random.uniform(0, 0.02)))
        if trial.number == interrupt_at:
            raise KeyboardInterrupt
        trial.status, trial.objective = "Completed", -(trial.hyperparameters["x"] - 0.3) ** 2 - trial.hyperparameters["n"]
        return trial

    search = Search(strategy, SPACE, maximize=True, max_jobs=8, seed=7)
    return run_search(search, parallel, run_trial, list(finished), lambda t: None), ran


@pytest.mark.parametrize("strategy", ["bayesian", "random"])
def test_a_seeded_search_asks_the_same_trials_whatever_the_timing_and_after_a_resume(strategy: str) -> None:
    """Trial k is asked for once trials up to k - parallel have ended, told in order: the search no longer
    depends on which trial finished first, and a resumed search (which replayed the finished trials into a
    fresh sampler and then asked it afresh: its next trial repeated trial 1) asks what an uninterrupted one asks."""
    fast_first, _ = _search_with(strategy, 2, {1: 0.0, 2: 0.3, 3: 0.0})
    slow_first, _ = _search_with(strategy, 2, {1: 0.3, 2: 0.0, 3: 0.3})
    hyperparameters = [t.hyperparameters for t in fast_first]
    assert [t.hyperparameters for t in slow_first] == hyperparameters and len(hyperparameters) == 8
    assert len({json.dumps(h, sort_keys=True) for h in hyperparameters}) == 8
    with pytest.raises(KeyboardInterrupt):
        _search_with(strategy, 2, {}, interrupt_at=5)
    kept = [Trial(t.number, t.hyperparameters, t.status, t.objective) for t in fast_first if t.number in (1, 2, 3, 4, 6)]
    resumed, ran = _search_with(strategy, 2, {}, finished=kept)
    assert [t.hyperparameters for t in resumed] == hyperparameters and sorted(ran) == [5, 7, 8]
    assert best_trial(resumed, True).hyperparameters == best_trial(fast_first, True).hyperparameters


def test_objective_is_read_from_the_log_and_the_median_rule_stops_laggards() -> None:
    log = "epoch 1 auc=0.61\nnoise auc=oops\nepoch 2 auc=0.70\nbest auc=0.74\n"
    assert objective_values(log, r"auc=([0-9.]+)") == [0.61, 0.70, 0.74]
    done = [[0.6, 0.7, 0.8], [0.62, 0.72, 0.82]]
    assert median_rule_stops([0.3, 0.35], done, maximize=True)
    assert not median_rule_stops([0.7, 0.8], done, maximize=True)
    assert not median_rule_stops([0.3], done, maximize=True)  # too early to judge
    assert not median_rule_stops([0.3, 0.35], done[:1], maximize=True)  # too few completed trials
    assert median_rule_stops([2.0, 2.0], [[1.0, 1.0], [1.1, 1.1]], maximize=False)
    trials = [Trial(1, {}, "Completed", 0.5), Trial(2, {}, "Failed"), Trial(3, {}, "Completed", 0.9),
              Trial(4, {}, "Completed", 0.9)]
    assert best_trial(trials, maximize=True).number == 3
    assert [t.number for t in ranked(trials, maximize=False)] == [1, 3, 4, 2]


# --- config errors ----------------------------------------------------------------------------------
BAD = {
    "range_not_a_hyperparameter": ("        x: {continuous: [0.0, 1.0]}", "        xx: {continuous: [0.0, 1.0]}",
                                   "ranges.xx: 'xx' is not one of this step's hyperparameters — did you mean 'x'?"),
    "parallel_over_max": ("max_parallel_jobs: 2", "max_parallel_jobs: 5",
                          "max_parallel_jobs (5) is more than max_jobs (4)"),
    "two_groups": ('regex: "score=([-0-9.]+)"', 'regex: "(score)=([-0-9.]+)"', "the regex has 2 groups"),
    "no_group": ('regex: "score=([-0-9.]+)"', 'regex: "score=[-0-9.]+"', "the regex has 0 groups"),
    "name_too_long": ("  - name: tune\n", "  - name: tune-the-tiny-model-very-thoroughly\n",
                      "a tuning step's name is its tuning job's name, which SageMaker limits to 32"),
    "grid_of_continuous": ("strategy: random", "strategy: grid", "grid search takes categorical ranges only"),
    "log_from_zero": ("x: {continuous: [0.0, 1.0]}", "x: {continuous: [0.0, 1.0], scaling: log}",
                      "scaling: log needs a range above 0"),
    "empty_range": ("x: {continuous: [0.0, 1.0]}", "x: {continuous: [1.0, 1.0]}", "the lower bound must be below"),
    "too_many_jobs": ("max_jobs: 4", "max_jobs: 751", "less than or equal to 750"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_tuning_config_errors_name_the_line_and_the_fix(case: str, tmp_path: Path) -> None:
    old, new, expected = BAD[case]
    assert old in TUNING
    config = tiny_project(tmp_path / "p", TUNING.replace(old, new))
    with pytest.raises(ConfigError) as caught:
        load_pipeline(config)
    text = str(caught.value)
    assert expected in text, text
    assert "tiny-hpo.yaml:" in text and "steps.tune" in text


# --- local runs -------------------------------------------------------------------------------------
LOCAL_TRACKING = "tracking_uri: sqlite:///.sagepipe/mlflow.db\n"


@pytest.mark.tracked  # each trial's MLflow run is checked
def test_local_trials_run_in_parallel_and_the_best_model_flows_downstream(tmp_path: Path) -> None:
    config = tiny_project(tmp_path / "p", local=LOCAL_TRACKING)
    home = tmp_path / "home"
    code, summary, err = _run(home, config)
    assert code == 0, err
    run = _run_dir(home, summary)
    import csv

    with open(run / "tune" / "output" / "trials" / "trials.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [row["trial"] for row in table] == ["1", "2", "3", "4"]
    assert all(row["status"] == "Completed" and row["job"].startswith("tune-") for row in table)
    scores = {int(row["trial"]): float(row["validation:score"]) for row in table}
    best = max(scores, key=scores.get)
    for row in table:  # the objective is what the script printed for its hyperparameters
        expected = 1 - (float(row["x"]) - 0.3) ** 2 - 0.01 * int(row["depth"])
        assert abs(float(row["validation:score"]) - expected) < 1e-5
    used = summary["metrics"]["use"]["model"]
    assert abs(used["score"] - scores[best]) < 1e-5 and used["rows"] == 20  # the best trial's model, downstream
    tuning = summary["metrics"]["tune"]["tuning_metrics"]
    assert tuning["best_trial"]["value"] == best and tuning["completed"]["value"] == 4
    calls = [json.loads(line) for line in (tmp_path / "p" / "trials.log").read_text().splitlines()]
    assert len(calls) == 4 and {c["kind"] for c in calls} == {"a"} and all(c["steps"] == 1 for c in calls)
    assert {c["cpus"] for c in calls} == {str(max(1, (os.cpu_count() or 1) // min(2, os.cpu_count() or 1)))}
    _check_trial_runs(home, summary["run_id"], scores)
    # unchanged: the whole step comes from the cache, no trial runs again
    code, again, err = _run(home, config)
    assert code == 0 and {s["name"]: s["cached"] for s in again["steps"]}["tune"] is True, err
    assert len((tmp_path / "p" / "trials.log").read_text().splitlines()) == 4


def _check_trial_runs(home: Path, run_id: str, scores: dict[int, float]) -> None:
    """Each trial is a nested MLflow run under the tuning step's run, with its objective."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{home}/mlflow.db")
    experiment = client.get_experiment_by_name("tiny-hpo")
    (parent,) = client.search_runs([experiment.experiment_id], f"tags.`sagepipe.run_id` = '{run_id}'")
    (step,) = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}' "
                                                               "and attributes.run_name = 'tune'")
    trials = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{step.info.run_id}'")
    assert sorted(int(r.data.tags["sagepipe.trial"]) for r in trials) == [1, 2, 3, 4]
    for trial in trials:
        assert trial.info.status == "FINISHED" and "tuned.x" in trial.data.params
        # the objective's own name (MLflow takes "validation:score" as it is, as the step's journal writer does)
        assert abs(trial.data.metrics["validation:score"] - scores[int(trial.data.tags["sagepipe.trial"])]) < 1e-9


def test_a_failed_trial_is_recorded_and_only_all_failing_fails_the_step(tmp_path: Path) -> None:
    grid = TUNING.replace("strategy: random\n      max_jobs: 4", "strategy: grid").replace(
        "        x: {continuous: [0.0, 1.0]}\n        depth: {integer: [1, 5], scaling: log}",
        "        kind: {categorical: [a, bad, c]}")
    code, summary, err = _run(tmp_path / "home", tiny_project(tmp_path / "p", grid))
    assert code == 0, err
    trials = json.loads((_run_dir(tmp_path / "home", summary) / "tune" / "output" / "trials" / "trials.json").read_text())
    assert [(t["hyperparameters"]["kind"], t["status"]) for t in trials] == [
        ("a", "Completed"), ("bad", "Failed"), ("c", "Completed")]
    assert "exited with code 3: kind 'bad' cannot be trained" in trials[1]["error"]
    code, summary, err = _run(tmp_path / "home2", tiny_project(tmp_path / "q", grid.replace("[a, bad, c]", "[bad]").replace("max_parallel_jobs: 2", "max_parallel_jobs: 1")))
    assert code == 1
    assert "all 1 trials failed (trial 1: exited with code 3: kind 'bad' cannot be trained)" in err


def test_early_stopping_stops_a_trial_worse_than_the_median(tmp_path: Path) -> None:
    pipeline = TUNING.replace("strategy: random\n      max_jobs: 4\n      max_parallel_jobs: 2",
                              "strategy: grid\n      max_parallel_jobs: 1\n      early_stopping: auto").replace(
        "        x: {continuous: [0.0, 1.0]}\n        depth: {integer: [1, 5], scaling: log}",
        "        x: {categorical: [0.3, 0.31, 0.29, 3.0]}").replace("steps: 1, sleep: 0", "steps: 8, sleep: 0.4")
    code, summary, err = _run(tmp_path / "home", tiny_project(tmp_path / "p", pipeline))
    assert code == 0, err
    trials = json.loads((_run_dir(tmp_path / "home", summary) / "tune" / "output" / "trials" / "trials.json").read_text())
    assert [t["status"] for t in trials] == ["Completed", "Completed", "Completed", "Stopped"]
    stopped = trials[3]
    assert 2 <= len(stopped["intermediate"]) < 8 and stopped["duration_s"] < 3.2
    assert summary["metrics"]["tune"]["tuning_metrics"]["stopped"]["value"] == 1


def test_an_interrupted_search_resumes_without_rerunning_finished_trials(tmp_path: Path) -> None:
    pipeline = TUNING.replace("max_parallel_jobs: 2", "max_parallel_jobs: 1").replace(
        "max_jobs: 4", "max_jobs: 5").replace("steps: 1, sleep: 0", "steps: 2, sleep: 0.5")
    config = tiny_project(tmp_path / "p", pipeline)
    home = tmp_path / "home"
    env = {**os.environ, "SAGEPIPE_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", str(config), "--json"], cwd=config.parents[1],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while len(list(home.glob("runs/*/tune/trials/*/trial.json"))) < 2 and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    run_id = json.loads(out)["run_id"]
    before = len((tmp_path / "p" / "trials.log").read_text().splitlines())
    done = run_cli("resume", run_id, "--json", home=home, cwd=config.parents[1])
    assert done.returncode == 0, done.stderr
    trials = json.loads((home / "runs" / run_id / "tune" / "output" / "trials" / "trials.json").read_text())
    assert [t["number"] for t in trials] == [1, 2, 3, 4, 5] and {t["status"] for t in trials} == {"Completed"}
    kept = len(list(home.glob(f"runs/{run_id}/tune/trials/*/trial.json")))
    runs = len((tmp_path / "p" / "trials.log").read_text().splitlines())
    assert kept == 5 and runs - before <= 5 - 2  # the trials finished before the interruption did not run again
    whole = run_cli("run", str(config), "--json", "--no-cache", home=tmp_path / "home2", cwd=config.parents[1])
    assert whole.returncode == 0, whole.stderr
    uninterrupted = json.loads((tmp_path / "home2" / "runs" / json.loads(whole.stdout)["run_id"] / "tune" / "output"
                                / "trials" / "trials.json").read_text())
    assert [t["hyperparameters"] for t in trials] == [t["hyperparameters"] for t in uninterrupted]
    assert best_trial([Trial.from_record(t) for t in trials], True).number == \
        best_trial([Trial.from_record(t) for t in uninterrupted], True).number


# --- SageMaker ------------------------------------------------------------------------------------
def _compiled(folder: Path, pipeline: str = TUNING) -> dict:
    from pipelines.sagemaker.compiler import compile_pipeline
    from pipelines.sagemaker.definition_checks import all_steps

    compiled = compile_pipeline(load_pipeline(tiny_project(folder, pipeline), "dev"))
    return {"compiled": compiled, "steps": {s["Name"]: s for s in all_steps(compiled.definition["Steps"])}}


def test_compiled_tuning_step_is_the_sdk_tuner_over_the_model_trainer(tmp_path: Path) -> None:
    result = _compiled(tmp_path / "p")
    step, compiled = result["steps"]["tune"], result["compiled"]
    assert step["Type"] == "Tuning" and step["CacheConfig"] == {"Enabled": True, "ExpireAfter": "P30D"}
    config, definition = step["Arguments"]["HyperParameterTuningJobConfig"], step["Arguments"]["TrainingJobDefinition"]
    assert config["Strategy"] == "Random" and config["TrainingJobEarlyStoppingType"] == "Off"
    assert config["HyperParameterTuningJobObjective"] == {"MetricName": "validation:score", "Type": "Maximize"}
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 4, "MaxParallelTrainingJobs": 2}
    assert config["ParameterRanges"]["ContinuousParameterRanges"] == [
        {"Name": "x", "MinValue": "0.0", "MaxValue": "1.0", "ScalingType": "Auto"}]
    assert config["ParameterRanges"]["IntegerParameterRanges"] == [
        {"Name": "depth", "MinValue": "1", "MaxValue": "5", "ScalingType": "Logarithmic"}]
    assert definition["AlgorithmSpecification"]["MetricDefinitions"] == [
        {"Name": "validation:score", "Regex": "score=([-0-9.]+)"}]
    static = definition["StaticHyperParameters"]
    assert "x" not in static and "depth" not in static and static["kind"] == "a" and "Environment" not in definition
    assert static["seed"] == {"Std:Join": {"On": "", "Values": [{"Get": "Parameters.seed"}]}}  # .to_string()
    assert static["sagemaker_program"] == "train.py"
    archive = static["sagemaker_submit_directory"]
    assert archive.startswith("s3://tiny-hpo-bucket/tiny-hpo/artifacts/") and archive.endswith("/sourcedir.tar.gz")
    assert definition["OutputDataConfig"]["S3OutputPath"]["Std:Join"]["Values"][3] == {
        "Get": "Execution.PipelineExecutionId"}
    assert "CheckpointConfig" not in definition  # trials would share it
    # downstream, the model is the best training job's model.tar.gz under the tuning job's own output path (its
    # properties: on a cache hit, the earlier execution's), not one rebuilt from this execution's id
    model = result["steps"]["use"]["Arguments"]["ProcessingInputs"][0]["S3Input"]["S3Uri"]
    assert model == {"Std:Join": {"On": "/", "Values": [
        {"Get": "Steps.tune.TrainingJobDefinition.OutputDataConfig.S3OutputPath"},
        {"Get": "Steps.tune.TrainingJobSummaries[0].TrainingJobName"}, "output/model.tar.gz"]}}
    from pipelines.sagemaker.compiler import compile_pipeline

    again = compile_pipeline(load_pipeline(tmp_path / "p" / "configs" / "tiny-hpo.yaml", "dev"))
    assert again.json() == compiled.json()  # deterministic: the script archive is content-addressed
    if CHECKER.exists():
        path = tmp_path / "tiny-hpo.json"
        path.write_text(compiled.json())
        done = subprocess.run([sys.executable, str(CHECKER), str(path)], capture_output=True, text=True)
        assert done.returncode == 0 and "0 error(s) OK" in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize("change, expected", [
    (('inputs: {model: "${steps.tune.outputs.model}"}', 'inputs: {model: "${steps.tune.outputs.trials}"}'),
     "output 'trials' exists only locally"),
    (("    hyperparameters: {x", "    environment: {LOG_LEVEL: debug}\n    hyperparameters: {x"),
     "a tuning job's training job definition takes no environment here"),
    (("    hyperparameters: {x", "    distribution: {type: torchrun, processes_per_host: 2}\n    hyperparameters: {x"),
     "which starts no torchrun; tune without distribution there"),
])
def test_what_a_tuning_step_cannot_be_on_sagemaker_is_refused_at_compile(change: tuple, expected: str,
                                                                          tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    """`sagepipe compile`, called in this process (the SDK is imported once, not once per case)."""
    from pipelines.cli import main

    config = tiny_project(tmp_path / "p", TUNING.replace(*change))
    assert main(["compile", str(config), "--env", "dev"]) == 2
    err = capsys.readouterr().err
    assert expected in err, err


# --- emulate ----------------------------------------------------------------------------------------
from tests.sagemaker.test_aws import REGION, moto_server  # noqa: E402,F401  (fixture)


@pytest.fixture
def aws_env(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:  # noqa: F811
    for key, value in {"AWS_ENDPOINT_URL": moto_server, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(key, value)
    return moto_server


def test_emulated_tuning_runs_trials_as_training_jobs_and_hands_on_the_best_model(aws_env: str, tmp_path: Path) -> None:
    pipeline = TUNING.replace("      random_seed: 3\n", "")  # a seed is local only (the schema has no RandomSeed)
    config = tiny_project(tmp_path / "p", pipeline)
    home = tmp_path / "home"
    done = run_cli("emulate", str(config), "--env", "dev", "--param", f"data={tmp_path / 'p' / 'data'}", "--json",
                   home=home, cwd=config.parents[1])
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    state = json.loads((home / "runs" / summary["run_id"] / "state.json").read_text())
    assert state["steps"]["tune"]["note"].startswith("tuning job tune-")
    log = (home / "runs" / summary["run_id"] / "tune" / "log.txt").read_text()
    scores = {}
    for line in log.splitlines():
        if "] training job " in line:
            job, status, value = line.split()[3], line.split()[4], line.split()[6]
            assert status == "Completed:"
            scores[job] = float(value)
    assert len(scores) == 4
    used = summary["metrics"]["use"]["model"]
    assert abs(used["score"] - max(scores.values())) < 1e-5 and used["rows"] == 20
    calls = [json.loads(line) for line in (tmp_path / "p" / "trials.log").read_text().splitlines()]
    assert sorted(c["job"] for c in calls) == sorted(scores)  # TRAINING_JOB_NAME, as SageMaker names trials
    # the same hyperparameters as a local run with the same seed (parallel trials may finish in either order)
    local = _run(tmp_path / "local-home", tiny_project(tmp_path / "q", pipeline))[1]
    local_trials = json.loads((_run_dir(tmp_path / "local-home", local) / "tune" / "output" / "trials" /
                               "trials.json").read_text())
    emulated = sorted((round(c["x"], 9), c["depth"]) for c in calls)
    assert emulated == sorted((round(t["hyperparameters"]["x"], 9), t["hyperparameters"]["depth"])
                              for t in local_trials)


# --- the fraud example ------------------------------------------------------------------------------
@pytest.mark.slow
def test_fraud_hpo_beats_the_untuned_model_and_a_gate_change_reruns_nothing_before_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = run_cli("run", "configs/fraud-detection-hpo.yaml", "--param", "min_auc=0.5", "--json", home=home)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    run = home / "runs" / summary["run_id"]
    best = summary["metrics"]["tune"]["tuning_metrics"]["best_objective"]["value"]
    untuned = _untuned_validation_auc(run, tmp_path / "untuned")
    assert best >= untuned, (best, untuned)
    statuses = {s["name"]: s["status"] for s in summary["steps"]}
    assert statuses["register"] == "succeeded" and statuses["score"] == "skipped"
    again = run_cli("run", "configs/fraud-detection-hpo.yaml", "--param", "min_auc=0.6", "--json", home=home)
    assert again.returncode == 0, again.stderr
    cached = {s["name"]: s["cached"] for s in json.loads(again.stdout)["steps"]}
    assert all(cached[name] for name in ("ingest", "preprocess", "tune", "evaluate")), cached


def _untuned_validation_auc(run: Path, folder: Path) -> float:
    """The tune step's script with its declared (untuned) hyperparameters, on the same split."""
    spec = load_pipeline(REPO / "configs" / "fraud-detection-hpo.yaml", params=["min_auc=0.5"])
    step = spec.step("tune")
    hps = {k: (spec.param_values[v.name] if hasattr(v, "name") else v) for k, v in step.hyperparameters.items()}
    channels = run / "preprocess" / "processing" / "output"
    for name in ("model", "output"):
        (folder / name).mkdir(parents=True)
    env = {**os.environ, "SM_MODEL_DIR": str(folder / "model"), "SM_OUTPUT_DATA_DIR": str(folder / "output"),
           **{f"SM_CHANNEL_{c.upper()}": str(channels / c) for c in ("train", "validation", "transform")}}
    env.pop("MLFLOW_TRACKING_URI", None)
    argv = [sys.executable, str(REPO / step.code)] + [item for k, v in hps.items() for item in (f"--{k}", str(v))]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    return objective_values(done.stdout, step.tuning.objective.regex)[-1]


def test_a_tuning_job_emulate_cannot_run_is_refused_before_anything_runs(aws_env: str, tmp_path: Path) -> None:
    builtin = {"Name": "tune", "Type": "Tuning", "Arguments": {
        "HyperParameterTuningJobConfig": {"Strategy": "Hyperband", "HyperParameterTuningJobObjective": {
            "Type": "Maximize", "MetricName": "validation:auc"}, "ResourceLimits": {
            "MaxNumberOfTrainingJobs": 4, "MaxParallelTrainingJobs": 2}},
        "TrainingJobDefinition": {"AlgorithmSpecification": {"TrainingImage": "xgboost:1", "TrainingInputMode": "File"},
                                  "StaticHyperParameters": {"num_round": "50"}, "RoleArn": "arn:aws:iam::1:role/x",
                                  "OutputDataConfig": {"S3OutputPath": "s3://b/o"},
                                  "ResourceConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large",
                                                     "VolumeSizeInGB": 30}}}}
    path = tmp_path / "builtin.json"
    path.write_text(json.dumps({"Version": "2020-12-01", "Steps": [builtin], "Parameters": []}))
    done = run_cli("emulate", "--definition", str(path), "--json", home=tmp_path / "home")
    assert done.returncode == 2 and "steps.tune: the tuning job's training image xgboost:1 does not run a script" \
        in done.stderr, done.stderr
    assert not (tmp_path / "home" / "runs").exists()
