"""Tuning and Transform steps as SageMaker runs them, with S3 and the control plane in moto.

A tuning job runs its trials as training jobs (the framework image's training-toolkit form, as the SDK's
HyperparameterTuner defines them), up to MaxParallelTrainingJobs at once, reads each one's objective with
the metric definition's regex over its log, and answers DescribeHyperParameterTuningJob's and
ListTrainingJobsForHyperParameterTuningJob's properties (BestTrainingJob, TrainingJobSummaries best first).
A transform job runs the model's own inference handlers over the input, split and batched as SageMaker's
batch transform does, and writes `<input>.out` under S3OutputPath.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pipelines.emulate import jobs
from pipelines.errors import StepFailed
from pipelines.fsutil import fresh_dir
from pipelines.local.context import StepContext
from pipelines.tuning import (EarlyStopper, Range, Search, Trial, best_trial, cpus_per_trial, elapsed,
                              local_parallelism,
                              logged_argv, objective_values, ranked, run_search)

STRATEGIES = {"Bayesian": "bayesian", "Random": "random", "Grid": "grid"}
SCALING = {"Auto": "auto", "Linear": "linear", "Logarithmic": "log"}
TOOLKIT = ("sagemaker_program", "sagemaker_submit_directory")


def cannot_emulate(kind: str, args: dict[str, Any]) -> str | None:
    """Why a Tuning step cannot run here (None when it can)."""
    if kind != "Tuning":
        return None
    definition = args.get("TrainingJobDefinition") or {}
    algorithm = definition.get("AlgorithmSpecification") or {}
    static = definition.get("StaticHyperParameters") or {}
    if algorithm.get("AlgorithmName") or not all(k in static for k in TOOLKIT):
        return (f"the tuning job's training image {algorithm.get('TrainingImage') or algorithm.get('AlgorithmName')} "
                "does not run a script (StaticHyperParameters sagemaker_program and sagemaker_submit_directory, as "
                "SDK v3's HyperparameterTuner over a ModelTrainer with SourceCode sets them); emulate runs that form")
    if int((definition.get("ResourceConfig") or {}).get("InstanceCount", 1)) != 1:
        return "emulate runs tuning trials on one instance each; set resources.instance_count: 1 for emulate"
    if (args.get("HyperParameterTuningJobConfig") or {}).get("Strategy") not in STRATEGIES:
        return f"emulate runs {', '.join(STRATEGIES)} tuning strategies"
    return None


def tuning_job(emulation: Any, step: str, args: dict[str, Any], key: str, ctx: StepContext) -> dict[str, Any]:
    """Run a tuning job's trials; its properties (Describe... and ListTrainingJobsFor... HyperParameterTuningJob)."""
    config, definition = args["HyperParameterTuningJobConfig"], args["TrainingJobDefinition"]
    objective = config["HyperParameterTuningJobObjective"]
    maximize = objective["Type"] == "Maximize"
    regex = _objective_regex(definition, objective["MetricName"])
    limits = config.get("ResourceLimits") or {}
    search = Search(STRATEGIES[config["Strategy"]], _space(config.get("ParameterRanges") or {}), maximize,
                    limits.get("MaxNumberOfTrainingJobs"), int(config.get("RandomSeed") or 0))
    parallel = min(local_parallelism(int(limits.get("MaxParallelTrainingJobs", 1))), search.total)
    # a tuning job name has at most 32 characters, and is new in every execution (as the service names them)
    name = f"{step[:10]}-{emulation.execution_id[-8:]}-{key[:12]}".lower()
    arn_prefix = emulation.execution_arn.split(":pipeline/")[0]
    curves: list[list[float]] = []
    lock = threading.Lock()
    stops_early = config.get("TrainingJobEarlyStoppingType") == "Auto"

    def completed() -> list[list[float]]:
        with lock:
            return list(curves) if stops_early else []

    def run_trial(trial: Trial) -> Trial:
        trial.job = f"{name}-{trial.number:03d}-{key[14:22]}"
        folder = ctx.step_dir / "trials" / f"{trial.number:03d}"
        fresh_dir(folder, ctx.run_dir)
        log, pid_file, returned = folder / "log.txt", folder / "pid", []

        def run(argv: list[str], env: dict[str, str], cwd: Path) -> int:
            env = {**env, "SM_NUM_CPUS": str(cpus_per_trial(parallel))}  # trials share this machine
            code = ctx.run_process(logged_argv(argv, log, pid_file), env, cwd)
            returned.append(code)
            return code

        request = _training_request(definition, trial)
        trial_image = (definition.get("AlgorithmSpecification") or {}).get("TrainingImage")
        started = time.time()
        with EarlyStopper(log, pid_file, regex, maximize, completed) as stopper, \
                jobs.fresh_container(emulation.container_root(step) / f"{trial.number:03d}", emulation.pip_verdicts) as box:
            box.image = emulation.image_env(step, trial_image)
            try:
                jobs.training_job(emulation.s3, request, trial.job, box, folder, run)
                failure = ""
            except StepFailed as exc:
                if not returned:  # the run was interrupted, or the job could not start: not a trial's failure
                    raise
                failure = str(exc)
        trial.duration_s = elapsed(started)
        trial.intermediate = objective_values(log.read_text(errors="replace") if log.exists() else "", regex)
        trial.objective = trial.intermediate[-1] if trial.intermediate else None
        if stopper.stopped:
            trial.status, trial.error = "Stopped", "stopped early: worse than the median of earlier trials"
        elif failure:
            trial.status, trial.error = "Failed", failure
        elif trial.objective is None:
            trial.status, trial.error = "Failed", f"the metric definition's regex {regex!r} matched nothing in the log"
        else:
            trial.status = "Completed"
        return trial

    def finished(trial: Trial) -> None:
        with lock:
            if trial.status == "Completed":
                curves.append(trial.intermediate)
        ctx.log(f"[sagepipe] training job {trial.job} {trial.status}: {objective['MetricName']} {trial.objective} "
                f"{json.dumps(trial.hyperparameters)}" + (f" ({trial.error})" if trial.error else ""))

    trials = run_search(search, parallel, run_trial, [], finished)
    best = best_trial(trials, maximize)
    if best is None:
        raise StepFailed(f"tuning job {name} failed: none of its {len(trials)} training jobs completed with an "
                         f"objective ({trials[0].error if trials else 'no trials'})")

    def summary(trial: Trial) -> dict[str, Any]:
        return {"TrainingJobName": trial.job, "TrainingJobArn": f"{arn_prefix}:training-job/{trial.job}",
                "TrainingJobStatus": trial.status, "TunedHyperParameters": _text(trial.hyperparameters),
                "ObjectiveStatus": "Succeeded" if trial.status == "Completed" else "Failed",
                **({"FailureReason": trial.error} if trial.error else {}),
                "FinalHyperParameterTuningJobObjectiveMetric": {
                    "Type": objective["Type"], "MetricName": objective["MetricName"],
                    **({"Value": trial.objective} if trial.objective is not None else {})}}

    counts = {status: sum(t.status == status for t in trials) for status in ("Completed", "Failed", "Stopped")}
    return {"HyperParameterTuningJobName": name, "HyperParameterTuningJobArn": f"{arn_prefix}:hyper-parameter-tuning-job/"
            f"{name}", "HyperParameterTuningJobStatus": "Completed", "HyperParameterTuningJobConfig": config,
            "TrainingJobDefinition": definition, "BestTrainingJob": summary(best),
            "TrainingJobStatusCounters": {"Completed": counts["Completed"], "InProgress": 0, "RetryableError": 0,
                                          "NonRetryableError": counts["Failed"], "Stopped": counts["Stopped"]},
            "ObjectiveStatusCounters": {"Succeeded": counts["Completed"], "Pending": 0,
                                        "Failed": counts["Failed"] + counts["Stopped"]},
            "TrainingJobSummaries": [summary(t) for t in ranked(trials, maximize)]}


def _objective_regex(definition: dict[str, Any], metric: str) -> str:
    for item in (definition.get("AlgorithmSpecification") or {}).get("MetricDefinitions") or []:
        if item.get("Name") == metric:
            return item["Regex"]
    raise StepFailed(f"the objective metric {metric!r} has no metric definition (Name and Regex) in the training "
                     "job definition's AlgorithmSpecification.MetricDefinitions")


def _space(ranges: dict[str, Any]) -> list[Range]:
    space = [Range(r["Name"], "integer", int(r["MinValue"]), int(r["MaxValue"]), SCALING.get(r.get("ScalingType"), "auto"))
             for r in ranges.get("IntegerParameterRanges", [])]
    space += [Range(r["Name"], "continuous", float(r["MinValue"]), float(r["MaxValue"]),
                    SCALING.get(r.get("ScalingType"), "auto")) for r in ranges.get("ContinuousParameterRanges", [])]
    space += [Range(r["Name"], "categorical", values=tuple(r["Values"]))
              for r in ranges.get("CategoricalParameterRanges", [])]
    if not space:
        raise StepFailed("the tuning job has no ParameterRanges")
    return space


def _training_request(definition: dict[str, Any], trial: Trial) -> dict[str, Any]:
    """The CreateTrainingJob request the tuning job makes for one trial."""
    algorithm = {k: v for k, v in definition["AlgorithmSpecification"].items() if k != "MetricDefinitions"}
    request = {"AlgorithmSpecification": algorithm, "RoleArn": definition.get("RoleArn"),
               "HyperParameters": {**definition.get("StaticHyperParameters", {}), **_text(trial.hyperparameters)},
               "InputDataConfig": definition.get("InputDataConfig", []), "OutputDataConfig": definition["OutputDataConfig"],
               "ResourceConfig": definition["ResourceConfig"], "StoppingCondition": definition.get("StoppingCondition")}
    for optional in ("CheckpointConfig", "Environment", "VpcConfig", "EnableManagedSpotTraining"):
        if optional in definition:
            request[optional] = definition[optional]
    return request


def _text(values: dict[str, Any]) -> dict[str, str]:
    return {k: (json.dumps(v) if isinstance(v, bool) else str(v)) for k, v in values.items()}


def transform_job(emulation: Any, step: str, args: dict[str, Any], job: str, ctx: StepContext) -> dict[str, Any]:
    """Run a batch transform job with the model's inference handlers; its DescribeTransformJob properties."""
    from pipelines.model_archive import unpack

    model = emulation.sagemaker.describe_model(ModelName=args["ModelName"])
    container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
    source = args["TransformInput"]["DataSource"]["S3DataSource"]
    if source.get("S3DataType", "S3Prefix") != "S3Prefix":
        raise StepFailed(f"transform input {source.get('S3DataType')}: emulate reads S3Prefix inputs")
    inputs, outputs = ctx.step_dir / "input", ctx.step_dir / "output"
    for folder in (inputs, outputs):
        fresh_dir(folder, ctx.run_dir)
    jobs.download(emulation.s3, source["S3Uri"], inputs)
    with jobs.fresh_container(emulation.container_root(step), emulation.pip_verdicts) as box:
        archive = ctx.step_dir / "model.tar.gz"
        bucket, key = jobs.split_uri(container["ModelDataUrl"])
        emulation.s3.download_file(bucket, key, str(archive))
        unpack(archive, box.path("/opt/ml/model"))
        box.rewrite_files(box.path("/opt/ml/model"))
        spec = {"model_dir": str(box.path("/opt/ml/model")), "inputs": str(inputs), "outputs": str(outputs),
                "content_type": args["TransformInput"].get("ContentType", ""),
                "split": args["TransformInput"].get("SplitType", "None"),
                "accept": args["TransformOutput"].get("Accept", ""),
                "assemble_with": args["TransformOutput"].get("AssembleWith", "None"),
                "strategy": args.get("BatchStrategy", "MultiRecord"),
                "max_payload_bytes": int(args.get("MaxPayloadInMB", 6)) * 1024 * 1024}
        (ctx.step_dir / "transform.json").write_text(json.dumps(spec))
        env = box.environment({k: box.rewrite(str(v)) for k, v in {**container.get("Environment", {}),
                                                                   **args.get("Environment", {})}.items()})
        argv = [sys.executable, str(Path(__file__).with_name("batch.py")), str(ctx.step_dir / "transform.json")]
        code = ctx.run_process(argv, env, box.root)
    if code != 0:
        raise StepFailed(f"transform job {job} failed: the model's handlers exited with code {code} (see the log)")
    jobs.upload(emulation.s3, outputs, args["TransformOutput"]["S3OutputPath"])
    return {"TransformJobName": job, "TransformJobStatus": "Completed", "ModelName": args["ModelName"],
            "TransformInput": args["TransformInput"], "TransformOutput": args["TransformOutput"],
            "TransformResources": args.get("TransformResources", {})}
