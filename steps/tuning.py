"""`type: tuning` — a training step's script run as many trials, SageMaker automatic model tuning's way.

Locally each trial is a training process with its own folders and the training-container contract, up to
`max_parallel_jobs` at once (never more than this machine's CPUs); its objective is the regex over its own
log. Outputs: `model`, the best trial's model.tar.gz, and `trials`, a table of every trial. A retried or
resumed step keeps the trials that finished. On SageMaker: a TuningStep from SDK v3's HyperparameterTuner
over the same ModelTrainer.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from pipelines.errors import StepFailed, did_you_mean
from pipelines.fsutil import atomic_write_json, fresh_dir, hash_json, remove_inside
from pipelines.model_archive import ARCHIVE, pack
from pipelines.refs import refs_in
from pipelines.spec import Strict
from pipelines.step_api import CompileContext, LocalResult, StepContext, StepTracker
from pipelines.tuning import (FINISHED, SCALING, STRATEGIES, EarlyStopper, Range, Search, Trial, best_trial,
                              cpus_per_trial, elapsed, finished_trials, grid_size, local_parallelism, logged_argv,
                              objective_values, run_search, write_trials_table)
from steps.base import stage_input
from steps.training import TrainingStep, _hp_text, training_env

OUTPUTS = ("model", "trials")
MAX_JOBS, MAX_PARALLEL, MAX_RANGES, MAX_VALUES = 750, 100, 30, 30  # SageMaker's automatic model tuning limits
TUNING_JOB_NAME = 32  # characters; SageMaker names the tuning job after the step


class Objective(Strict):
    """The metric to optimise, read from each trial's log with a regex whose one group is the value."""

    metric: str = Field(min_length=1, max_length=255)
    type: Literal["maximize", "minimize"] = "maximize"
    regex: str = Field(min_length=1, max_length=500)

    @field_validator("regex")
    @classmethod
    def _one_group(cls, value: str) -> str:
        try:
            groups = re.compile(value).groups
        except re.error as exc:
            raise ValueError(f"{value!r} is not a valid regex: {exc}") from None
        if groups != 1:
            raise ValueError(f"the regex has {groups} groups; it needs exactly one, around the number, "
                             "e.g. 'validation auc ([0-9.]+)' (write other groups as (?:...))")
        return value


class ParameterRange(Strict):
    """`{continuous: [lo, hi]}`, `{integer: [lo, hi]}` (with `scaling: auto|linear|log`) or `{categorical: [...]}`."""

    continuous: tuple[float, float] | None = None
    integer: tuple[int, int] | None = None
    categorical: list[str | int | float | bool] | None = None
    scaling: Literal["auto", "linear", "log"] = "auto"

    @model_validator(mode="after")
    def _one_kind(self) -> "ParameterRange":
        kinds = [k for k in ("continuous", "integer", "categorical") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of continuous: [lo, hi], integer: [lo, hi] or categorical: [...]")
        bounds = self.continuous or self.integer
        if bounds is not None:
            low, high = bounds
            if not low < high:
                raise ValueError(f"{kinds[0]}: [{low}, {high}]: the lower bound must be below the upper one")
            if self.scaling == "log" and low <= 0:
                raise ValueError(f"scaling: log needs a range above 0 (got [{low}, {high}])")
        else:
            if self.scaling != "auto":
                raise ValueError("scaling applies to continuous and integer ranges, not categorical ones")
            values = self.categorical or []
            if not values or len(values) > MAX_VALUES or len({str(v) for v in values}) != len(values):
                raise ValueError(f"categorical takes 1 to {MAX_VALUES} distinct values (got {len(values)})")
        return self

    def search_range(self, name: str) -> Range:
        if self.categorical is not None:
            return Range(name, "categorical", values=tuple(_hp_text(v) for v in self.categorical))
        kind = "integer" if self.integer is not None else "continuous"
        low, high = self.integer or self.continuous  # type: ignore[misc]
        return Range(name, kind, low, high, self.scaling)


class Tuning(Strict):
    """How to search: strategy, limits, objective and the ranges of tuned hyperparameters."""

    strategy: Literal["bayesian", "random", "grid"] = "bayesian"
    max_jobs: int | None = Field(None, ge=1, le=MAX_JOBS)
    max_parallel_jobs: int = Field(1, ge=1, le=MAX_PARALLEL)
    early_stopping: bool | Literal["auto", "off"] = False
    random_seed: int = Field(0, ge=0)
    objective: Objective
    ranges: dict[str, ParameterRange]

    @model_validator(mode="after")
    def _limits(self) -> "Tuning":
        if not self.ranges or len(self.ranges) > MAX_RANGES:
            raise ValueError(f"ranges: give 1 to {MAX_RANGES} hyperparameters to tune (got {len(self.ranges)})")
        if self.strategy == "grid":
            loose = [n for n, r in self.ranges.items() if r.categorical is None]
            if loose:
                raise ValueError(f"grid search takes categorical ranges only; {', '.join(loose)} is not "
                                 "(list its values: categorical: [...])")
            size = grid_size(self.space())
            if self.max_jobs is not None and self.max_jobs != size:
                raise ValueError(f"a grid of these ranges has {size} combinations; max_jobs must be {size} or "
                                 "left out")
            if size > MAX_JOBS:
                raise ValueError(f"a grid of these ranges has {size} combinations; SageMaker runs at most {MAX_JOBS}")
        elif self.max_jobs is None:
            raise ValueError(f"max_jobs is required for {self.strategy} search: how many trials to run")
        if self.max_parallel_jobs > self.total_jobs():
            raise ValueError(f"max_parallel_jobs ({self.max_parallel_jobs}) is more than max_jobs "
                             f"({self.total_jobs()}); lower it")
        return self

    def space(self) -> list[Range]:
        return [r.search_range(name) for name, r in self.ranges.items()]

    def total_jobs(self) -> int:
        return self.max_jobs or grid_size(self.space())

    @property
    def maximize(self) -> bool:
        return self.objective.type == "maximize"

    @property
    def stops_early(self) -> bool:
        return self.early_stopping in (True, "auto")


class TuningStep(TrainingStep):
    """SageMaker TuningStep: the training script's trials, and the best one's model."""

    type: Literal["tuning"] = "tuning"  # type: ignore[assignment]
    tuning: Tuning

    @field_validator("name")
    @classmethod
    def _tuning_job_name(cls, value: str) -> str:
        if len(value) > TUNING_JOB_NAME:
            raise ValueError(f"'{value}' is {len(value)} characters; a tuning step's name is its tuning job's "
                             f"name, which SageMaker limits to {TUNING_JOB_NAME}: shorten it, e.g. "
                             f"'{value[:TUNING_JOB_NAME].rstrip('-_')}'")
        return value

    @field_validator("tuning")
    @classmethod
    def _ranges_are_hyperparameters(cls, value: Tuning, info: ValidationInfo) -> Tuning:
        declared = info.data.get("hyperparameters")
        if declared is None:  # hyperparameters themselves are invalid; that error is reported
            return value
        for name in value.ranges:
            if name not in declared:
                raise ValueError(f"ranges.{name}: '{name}' is not one of this step's hyperparameters"
                                 f"{did_you_mean(name, declared)}; declare it under hyperparameters with its "
                                 "untuned default")
            if refs_in(declared[name]):
                raise ValueError(f"ranges.{name}: hyperparameter '{name}' is a reference ({declared[name]}); "
                                 "a tuned hyperparameter's default is a literal")
        return value

    def output_names(self) -> list[str]:
        return list(OUTPUTS)

    def local_output_dirs(self, step_dir: Path) -> dict[str, Path]:
        return {"model": step_dir / "output" / ARCHIVE, "trials": step_dir / "output" / "trials"}

    def local_fingerprint(self, ctx: StepContext) -> dict[str, Any]:
        return {**super().local_fingerprint(ctx), "tuning": self.tuning.model_dump(mode="json")}

    # --- local run ----------------------------------------------------------------------------
    def run_local(self, ctx: StepContext) -> LocalResult:
        tuning = self.tuning
        inputs = ctx.inputs
        trials_dir = ctx.step_dir / "trials"
        fingerprint = self._resume_key(ctx)
        finished = finished_trials(trials_dir, fingerprint, ctx.run_dir)
        search = Search(tuning.strategy, tuning.space(), tuning.maximize, tuning.max_jobs, tuning.random_seed)
        parallel = min(local_parallelism(tuning.max_parallel_jobs), tuning.total_jobs())
        reused = f", {len(finished)} finished earlier and kept" if finished else ""
        ctx.log(f"[sagepipe] {tuning.strategy} search: {tuning.total_jobs()} trials, {parallel} at a time{reused}")
        tracker = ctx.services.tracker
        lock = threading.Lock()
        curves = [t.intermediate for t in finished if t.status == "Completed"]

        def completed_curves() -> list[list[float]]:
            with lock:
                return list(curves)

        def run_trial(trial: Trial) -> Trial:
            return self._trial(ctx, inputs, trial, parallel, fingerprint, tracker, completed_curves)

        def on_finished(trial: Trial) -> None:
            with lock:
                if trial.status == "Completed":
                    curves.append(trial.intermediate)
            shown = f"{trial.objective:.6g}" if trial.objective is not None else "-"
            ctx.log(f"[sagepipe] trial {trial.number} {trial.status}: {tuning.objective.metric} {shown} "
                    f"{json.dumps(trial.hyperparameters)}" + (f" ({trial.error})" if trial.error else ""))

        trials = run_search(search, parallel, run_trial, finished, on_finished)
        return self._outcome(ctx, trials)

    def _trial(self, ctx: StepContext, inputs: dict[str, Path], trial: Trial, parallel: int, fingerprint: str,
               tracker: StepTracker, completed: Any) -> Trial:
        """One training job: its own channels, model, output and checkpoint folders, and log."""
        folder = ctx.step_dir / "trials" / f"{trial.number:03d}"
        fresh_dir(folder, ctx.run_dir)
        channels = {name: folder / "input" / "data" / name for name in inputs}
        for name, source in inputs.items():
            stage_input(source, channels[name], ctx.run_dir)
        model_dir, output_dir, checkpoints = folder / "model", folder / "output" / "data", folder / "checkpoints"
        for path in (model_dir, output_dir, checkpoints):
            path.mkdir(parents=True)
        trial.job = f"{self.name}-{trial.number:03d}"
        hps = {**ctx.resolve(self.hyperparameters), **trial.hyperparameters}
        env = {str(k): str(v) for k, v in ctx.resolve(self.environment).items()}
        env.update(training_env(channels, model_dir, output_dir, hps, checkpoints))
        env.update({"SM_NUM_CPUS": str(cpus_per_trial(parallel)), "TRAINING_JOB_NAME": trial.job,
                    **self._track_start(tracker, trial)})
        argv = [sys.executable, *self._launcher(ctx), str(ctx.repo_path(self.code))]
        for key, value in hps.items():
            argv += [f"--{key}", _hp_text(value)]
        log, pid_file = folder / "log.txt", folder / "pid"
        started = time.time()
        peers = completed if self.tuning.stops_early else (lambda: [])  # no peers: the median rule never fires
        with EarlyStopper(log, pid_file, self.tuning.objective.regex, self.tuning.maximize, peers) as stopper:
            code = ctx.run_process(logged_argv(argv, log, pid_file), env, folder)
        trial.duration_s = elapsed(started)
        text = log.read_text(errors="replace") if log.exists() else ""
        trial.intermediate = objective_values(text, self.tuning.objective.regex)
        trial.objective = trial.intermediate[-1] if trial.intermediate else None
        if stopper.stopped:
            trial.status, trial.error = "Stopped", "stopped early: worse than the median of earlier trials"
        elif code != 0:
            last = [line for line in text.splitlines() if line.strip()][-1:] or [""]
            trial.status, trial.error = "Failed", f"exited with code {code}: {last[0][:300]}"
        elif trial.objective is None or not math.isfinite(trial.objective):
            trial.status = "Failed"
            trial.error = f"the objective regex {self.tuning.objective.regex!r} matched no number in the log"
        else:
            trial.status = "Completed"
            pack(model_dir, folder / "output" / ARCHIVE)
        self._track_end(tracker, trial, log)
        atomic_write_json(folder / "trial.json", {"fingerprint": fingerprint, **trial.record()})
        return trial

    def _track_start(self, tracker: StepTracker, trial: Trial) -> dict[str, str]:
        """The trial's own MLflow run, nested under the step's: the environment that points the trial at it."""
        tags = {"sagepipe.step": self.name, "sagepipe.kind": "trial", "sagepipe.trial": str(trial.number)}
        run_id = tracker.start_child(trial.job, tags)
        if run_id is None:
            return {}
        trial.extra["mlflow_run_id"] = run_id
        return {"MLFLOW_RUN_ID": run_id}

    def _track_end(self, tracker: StepTracker, trial: Trial, log: Path) -> None:
        run_id = trial.extra.get("mlflow_run_id")
        if not run_id:
            return
        metrics = {"duration_s": float(trial.duration_s or 0)}
        if trial.objective is not None and math.isfinite(trial.objective):
            metrics[self.tuning.objective.metric] = trial.objective
        tracker.finish_child(run_id, trial.status, {f"tuned.{k}": v for k, v in trial.hyperparameters.items()},
                             metrics, {"sagepipe.status": trial.status, "sagepipe.error": trial.error or ""},
                             {"logs": log})

    def _outcome(self, ctx: StepContext, trials: list[Trial]) -> LocalResult:
        tuning = self.tuning
        outputs = self.local_output_dirs(ctx.step_dir)
        fresh_dir(outputs["trials"], ctx.run_dir)
        write_trials_table(outputs["trials"], trials, tuning.objective.metric, list(tuning.ranges))
        best = best_trial(trials, tuning.maximize)
        if best is None:
            errors = "; ".join(f"trial {t.number}: {t.error}" for t in trials[:3])
            raise StepFailed(f"all {len(trials)} trials failed ({errors}); see {ctx.step_dir / 'trials'}/*/log.txt")
        remove_inside(outputs["model"], ctx.run_dir)
        shutil.copyfile(ctx.step_dir / "trials" / f"{best.number:03d}" / "output" / ARCHIVE, outputs["model"])
        counts = {status: sum(t.status == status for t in trials) for status in FINISHED}
        metrics = {"tuning_metrics": {
            "best_objective": {"value": best.objective, "metric": tuning.objective.metric},
            "best_trial": {"value": best.number}, **{s.lower(): {"value": n} for s, n in counts.items()}}}
        note = (f"best of {len(trials)} trials: #{best.number} {tuning.objective.metric} {best.objective:.6g} "
                f"{json.dumps(best.hyperparameters)}")
        return LocalResult(outputs=outputs, metrics=metrics, note=note)

    def _resume_key(self, ctx: StepContext) -> str:
        """What a finished trial must share with this attempt to be kept: config, code and input data."""
        record = ctx.step_record(self.name)
        return hash_json({"config": self.local_fingerprint(ctx), "code": record.get("code_hash"),
                          "inputs": record.get("input_digests")})

    # --- SageMaker ----------------------------------------------------------------------------
    def sagemaker_output(self, compiled: Any, output: str) -> Any:
        if output == "model":
            return compiled.top_model_uri
        raise self.config_error("outputs", f"output '{output}' exists only locally; on SageMaker the tuning job "
                                "lists its training jobs (ListTrainingJobsForHyperParameterTuningJob)")

    def compile_sagemaker(self, cc: CompileContext) -> Any:
        """A TuningStep from SDK v3's HyperparameterTuner over this step's ModelTrainer; the model output is the
        best training job's model.tar.gz under the tuning job's own output path."""
        from sagemaker.core.parameter import CategoricalParameter, ContinuousParameter, IntegerParameter
        from sagemaker.core.workflow.functions import Join
        from sagemaker.mlops.workflow import TuningStep as SdkTuningStep
        from sagemaker.train.tuner import HyperparameterTuner

        from pipelines.archives import reproducible_targz

        # HyperParameterTuningJob definitions take no container entrypoint: the framework image's training
        # toolkit runs sagemaker_program from sagemaker_submit_directory, an archive of the script's folder.
        # Staged here, reproducibly, so that compiles stay byte-identical (the SDK's own archive has mtimes).
        if self.distribution is not None:
            raise self.config_error("distribution", "on SageMaker a tuning job's trials run through the framework "
                                    "image's training toolkit (a tuning job definition takes no container "
                                    "entrypoint), which starts no torchrun; tune without distribution there, or "
                                    "tune locally")
        if self.environment:
            raise self.config_error("environment", "a tuning job's training job definition takes no environment "
                                    "here (the pipeline-definition schema lacks TrainingJobDefinition.Environment); "
                                    "pass these settings as hyperparameters")
        key = f"staging/{self.name}/sourcedir.tar.gz"  # content-addressed with the rest at the end of compile
        # the training toolkit installs the archive's requirements.txt: the step's requirements file goes there
        requirements = self.requirements_file(cc.spec.repo_root) if self.shipped_requirements(cc) else None
        extra = {"requirements.txt": requirements.read_bytes()} if requirements else None
        cc.s3.put_object(Bucket=cc.bucket, Key=key, Body=reproducible_targz(cc.repo_path(self.code).parent, extra))
        trainer, channels = self.model_trainer(cc, source_dir=f"s3://{cc.bucket}/{key}")
        trainer.output_data_config.compression_type = None  # GZIP is the API default; tuning's schema lacks it
        if not self.sagemaker.spot:
            trainer.checkpoint_config = None  # trials would otherwise share one checkpoint location
        ranges: dict[str, Any] = {}
        for name, item in self.tuning.ranges.items():
            if item.categorical is not None:
                ranges[name] = CategoricalParameter([_hp_text(v) for v in item.categorical])
            elif item.integer is not None:
                ranges[name] = IntegerParameter(*item.integer, scaling_type=SCALING[item.scaling])
            elif item.continuous is not None:
                ranges[name] = ContinuousParameter(*item.continuous, scaling_type=SCALING[item.scaling])
        objective = self.tuning.objective
        tuner = HyperparameterTuner(
            trainer, objective.metric, ranges, metric_definitions=[{"Name": objective.metric, "Regex": objective.regex}],
            strategy=STRATEGIES[self.tuning.strategy], objective_type=objective.type.capitalize(),
            max_jobs=self.tuning.max_jobs, max_parallel_jobs=self.tuning.max_parallel_jobs,
            early_stopping_type="Auto" if self.tuning.stops_early else "Off", base_tuning_job_name=self.name)
        step = SdkTuningStep(name=self.name, step_args=tuner.tune(inputs=channels),
                             description=self.description or None, cache_config=cc.cache_config(self),
                             retry_policies=cc.retry_policies(self) or None, depends_on=cc.depends_on(self))
        # The best trial's model.tar.gz, from the tuning job's own properties: a cache hit hands back the earlier
        # job's, whose trials wrote under that job's output path, not this execution's (the SDK's
        # get_top_model_s3_uri rebuilds the path from this execution and so names a model that does not exist).
        step.top_model_uri = Join(on="/", values=[step.properties.TrainingJobDefinition.OutputDataConfig.S3OutputPath,
                                                  step.properties.TrainingJobSummaries[0].TrainingJobName,
                                                  "output/model.tar.gz"])
        return step
