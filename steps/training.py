"""`type: training` — a training script that sees SageMaker's training-container contract."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from pipelines.errors import StepFailed
from pipelines.fsutil import fresh_dir, inside, remove_inside
from pipelines.model_archive import ARCHIVE, pack
from pipelines.netutil import free_port
from pipelines.spec import CloudSettings, Strict
from pipelines.step_api import CompileContext, LocalResult, StepContext
from pipelines.values import value_text
from steps.base import MODEL_IMAGE, ScriptStep, stage_input

OUTPUTS = ("model", "output")


class Distribution(Strict):
    """torchrun: processes_per_host processes on each of resources.instance_count hosts."""

    type: Literal["torchrun"] = "torchrun"
    processes_per_host: int = Field(1, ge=1, le=64)


class TrainingCloud(CloudSettings):
    """`sagemaker:` of a training (or tuning) step."""

    spot: bool = False  # managed spot training; checkpoints let an interrupted job resume
    max_runtime_s: int = Field(86400, ge=1, le=2419200)
    max_wait_s: int | None = Field(None, ge=1, le=2419200)  # spot only: runtime plus waiting (default: twice it)
    keep_alive_s: int | None = Field(None, ge=0, le=3600)  # warm pool

    @model_validator(mode="after")
    def _wait_covers_runtime(self) -> "TrainingCloud":
        if self.max_wait_s is not None and self.max_wait_s < self.max_runtime_s:
            raise ValueError(f"max_wait_s ({self.max_wait_s}) is below max_runtime_s ({self.max_runtime_s}); "
                             "it counts the runtime too")
        return self


class TrainingStep(ScriptStep):
    """SageMaker TrainingStep: channels, SM_MODEL_DIR, hyperparameters as arguments and SM_HPS."""

    type: Literal["training"] = "training"
    default_image: ClassVar[dict[str, str]] = MODEL_IMAGE
    hyperparameters: dict[str, Any] = {}
    distribution: Distribution | None = None
    sagemaker: TrainingCloud = TrainingCloud()

    def output_names(self) -> list[str]:
        return list(OUTPUTS)

    def local_output_dirs(self, step_dir: Path) -> dict[str, Path]:
        """`model` is a file, as on SageMaker: SM_MODEL_DIR (<step>/model) packed into output/model.tar.gz."""
        return {"model": step_dir / "output" / ARCHIVE, "output": step_dir / "output" / "data"}

    def local_fingerprint(self, ctx: StepContext) -> dict[str, Any]:
        return {"hyperparameters": ctx.resolve(self.hyperparameters),
                "environment": ctx.resolve(self.environment),
                "distribution": self.distribution.model_dump() if self.distribution else None}

    def run_local(self, ctx: StepContext) -> LocalResult:
        channels = {name: ctx.step_dir / "input" / "data" / name for name in ctx.inputs}
        for name, source in ctx.inputs.items():
            stage_input(source, channels[name], ctx.run_dir)
        outputs = self.local_output_dirs(ctx.step_dir)
        model_dir = ctx.step_dir / "model"
        remove_inside(outputs["model"], ctx.run_dir)
        for folder in (model_dir, outputs["output"]):
            fresh_dir(folder, ctx.run_dir)
        checkpoints = ctx.step_dir / "checkpoints"
        inside(checkpoints, ctx.run_dir, follow=True).mkdir(exist_ok=True)
        hps = ctx.resolve(self.hyperparameters)
        env = {str(k): str(v) for k, v in ctx.resolve(self.environment).items()}
        env.update(training_env(channels, model_dir, outputs["output"], hps, checkpoints))
        argv = [sys.executable, *self._launcher(ctx), str(ctx.repo_path(self.code))]
        for key, value in hps.items():
            argv += [f"--{key}", _hp_text(value)]
        code = ctx.run_process(argv, env, ctx.step_dir)
        if code != 0:
            raise StepFailed(f"script {self.code} exited with code {code}")
        pack(model_dir, outputs["model"])
        return LocalResult(outputs=outputs)

    def sagemaker_output(self, compiled: Any, output: str) -> Any:
        if output == "model":
            return compiled.properties.ModelArtifacts.S3ModelArtifacts
        return compiled.properties.OutputDataConfig.S3OutputPath

    def compile_sagemaker(self, cc: CompileContext) -> Any:
        """A TrainingStep from ModelTrainer with SourceCode (and Torchrun for a distribution); output and
        checkpoints under this execution's prefix, so no execution resumes from another's checkpoint."""
        from sagemaker.mlops.workflow import TrainingStep as SdkTrainingStep

        trainer, channels = self.model_trainer(cc)
        step_args = trainer.train(input_data_config=channels)  # runs at definition time, in the repo root
        return SdkTrainingStep(name=self.name, step_args=step_args,
                               description=self.description or None, cache_config=cc.cache_config(self),
                               retry_policies=cc.retry_policies(self) or None, depends_on=cc.depends_on(self))

    def model_trainer(self, cc: CompileContext, source_dir: str | None = None) -> tuple[Any, list[Any]]:
        """SDK v3's ModelTrainer for this step and its input channels (a tuning step tunes the same trainer);
        source_dir replaces the script's folder (an S3 URI of its archive)."""
        from sagemaker.core.shapes import StoppingCondition
        from sagemaker.core.training.configs import (CheckpointConfig, Compute, InputData, OutputDataConfig,
                                                     SourceCode)
        from sagemaker.train import ModelTrainer
        from sagemaker.train.distributed import Torchrun

        code = cc.repo_path(self.code)
        resources = cc.resources(self)
        cloud = self.sagemaker
        spot = cloud.spot
        compute = Compute(instance_type=resources.instance_type, instance_count=resources.instance_count,
                          volume_size_in_gb=resources.volume_gb, enable_managed_spot_training=spot or None,
                          keep_alive_period_in_seconds=cloud.keep_alive_s, volume_kms_key_id=cc.kms_key())
        max_run = cloud.max_runtime_s
        stopping = StoppingCondition(max_runtime_in_seconds=max_run,
                                     max_wait_time_in_seconds=(cloud.max_wait_s or 2 * max_run) if spot else None)
        requirements = self.shipped_requirements(cc)  # a source_dir archive holds it as requirements.txt (tuning)
        requirements = "requirements.txt" if requirements and source_dir else requirements
        channels = [InputData(channel_name=name, data_source=cc.input_source(value))
                    for name, value in self.inputs.items()]
        trainer = ModelTrainer(
            training_image=self.container_image(cc), role=cc.role, base_job_name=self.name, sagemaker_session=cc.session,
            source_code=SourceCode(source_dir=source_dir or os.path.relpath(code.parent,
                                                                            Path(cc.spec.repo_root).resolve()),
                                   entry_script=code.name, requirements=requirements),
            distributed=Torchrun(process_count_per_node=self.distribution.processes_per_host)
            if self.distribution else None,
            compute=compute, stopping_condition=stopping,
            output_data_config=OutputDataConfig(s3_output_path=cc.execution_uri(self.name, "output"),
                                                kms_key_id=cc.kms_key()),
            checkpoint_config=CheckpointConfig(s3_uri=self.checkpoint_uri(cc), local_path="/opt/ml/checkpoints"),
            hyperparameters={k: cc.text(v) for k, v in self.hyperparameters.items()},
            environment={str(k): cc.text(v) for k, v in self.environment.items()}, networking=cc.networking(),
        )
        return trainer, channels

    def checkpoint_uri(self, cc: CompileContext) -> str:
        """`s3://<bucket>/<pipeline>/checkpoints/<step>/<digest of this step's config>`. CheckpointConfig is part of
        a training step's cache key on SageMaker, so a URI scoped to the execution would never let the step be a
        cache hit; one of its own per configuration keeps other configurations' checkpoints apart, and the
        scripts' checkpoint guard (model_code/checkpoint_guard.py) resumes only a checkpoint written with the same
        arguments, data and code (a parameter's value or an upstream output that differs is refused there)."""
        from pipelines.fsutil import hash_json

        digest = hash_json(self.model_dump(mode="json", exclude={"description", "retry", "cache"}))[:16]
        return f"s3://{cc.bucket}/{cc.spec.name}/checkpoints/{self.name}/{digest}"

    def _launcher(self, ctx: StepContext) -> list[str]:
        """torchrun on this one machine: processes_per_host x instance_count processes (gloo, or nccl on GPUs)."""
        if self.distribution is None:
            return []
        resources = self.settled_resources()
        processes = self.distribution.processes_per_host * resources.instance_count
        return ["-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(processes),
                "--master_addr", "127.0.0.1", "--master_port", str(free_port())]


def training_env(channels: dict[str, Path], model_dir: Path, output_dir: Path, hps: dict[str, Any],
                 checkpoints: Path) -> dict[str, str]:
    """The SM_* variables a SageMaker training container sets, pointing at local folders."""
    env = {f"SM_CHANNEL_{name.upper().replace('-', '_')}": str(path) for name, path in channels.items()}
    env.update({
        "SM_CHANNELS": json.dumps(sorted(channels)),
        "SM_MODEL_DIR": str(model_dir),
        "SM_OUTPUT_DATA_DIR": str(output_dir),
        "SM_HPS": json.dumps(hps, sort_keys=True),
        "SM_HOSTS": json.dumps(["algo-1"]),
        "SM_CURRENT_HOST": "algo-1",
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
        "SM_NUM_GPUS": str(_gpu_count()),
        "SAGEPIPE_CHECKPOINT_DIR": str(checkpoints),
    })
    return env


def _hp_text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (dict, list)) else value_text(value)


def _gpu_count() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    return len(list(Path("/dev").glob("nvidia[0-9]*")))
