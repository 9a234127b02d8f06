"""`type: training` — a training script that sees SageMaker's training-container contract."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from pipelines.errors import StepFailed
from pipelines.local.context import LocalResult, StepContext
from pipelines.netutil import free_port
from pipelines.spec import Strict
from steps.base import ScriptStep, link_input

OUTPUTS = ("model", "output")


class Distribution(Strict):
    """torchrun: processes_per_host processes on each of resources.instance_count hosts."""

    type: Literal["torchrun"] = "torchrun"
    processes_per_host: int = Field(1, ge=1, le=64)


class TrainingStep(ScriptStep):
    """SageMaker TrainingStep: channels, SM_MODEL_DIR, hyperparameters as arguments and SM_HPS."""

    type: Literal["training"] = "training"
    hyperparameters: dict[str, Any] = {}
    distribution: Distribution | None = None

    def output_names(self) -> list[str]:
        return list(OUTPUTS)

    def local_output_dirs(self, step_dir: Path) -> dict[str, Path]:
        return {"model": step_dir / "model", "output": step_dir / "output" / "data"}

    def local_fingerprint(self, ctx: StepContext) -> dict[str, Any]:
        return {"hyperparameters": ctx.resolve(self.hyperparameters),
                "environment": ctx.resolve(self.environment),
                "distribution": self.distribution.model_dump() if self.distribution else None}

    def run_local(self, ctx: StepContext, inputs: dict[str, Path]) -> LocalResult:
        channels = {name: ctx.step_dir / "input" / "data" / name for name in inputs}
        for name, source in inputs.items():
            link_input(source, channels[name])
        outputs = self.local_output_dirs(ctx.step_dir)
        for folder in outputs.values():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
        checkpoints = ctx.step_dir / "checkpoints"
        checkpoints.mkdir(exist_ok=True)
        hps = ctx.resolve(self.hyperparameters)
        env = {str(k): str(v) for k, v in ctx.resolve(self.environment).items()}
        env.update(training_env(channels, outputs, hps, checkpoints))
        argv = [sys.executable, *self._launcher(ctx), str(ctx.repo_path(self.code))]
        for key, value in hps.items():
            argv += [f"--{key}", _hp_text(value)]
        code = ctx.run_process(argv, env, ctx.step_dir)
        if code != 0:
            raise StepFailed(f"script {self.code} exited with code {code}")
        return LocalResult(outputs=outputs)


    def compile_sagemaker(self, cc: Any) -> Any:
        """A TrainingStep from ModelTrainer: the code folder as source, channels from the inputs."""
        from sagemaker.core.shapes import StoppingCondition
        from sagemaker.core.training.configs import CheckpointConfig, Compute, InputData
        from sagemaker.mlops.workflow import TrainingStep as SdkTrainingStep
        from sagemaker.train import ModelTrainer

        code = cc.repo_path(self.code)
        resources = cc.resources(self)
        cloud = self.sagemaker
        spot = bool(cloud.get("spot"))
        compute = Compute(instance_type=resources.instance_type, instance_count=resources.instance_count,
                          volume_size_in_gb=resources.volume_gb, enable_managed_spot_training=spot or None,
                          keep_alive_period_in_seconds=cloud.get("keep_alive_s"), volume_kms_key_id=cc.kms_key())
        max_run = int(cloud.get("max_runtime_s", 86400))
        stopping = StoppingCondition(max_runtime_in_seconds=max_run,
                                     max_wait_time_in_seconds=int(cloud.get("max_wait_s", 2 * max_run)) if spot else None)
        checkpoints = CheckpointConfig(s3_uri=f"s3://{cc.bucket}/{cc.spec.name}/checkpoints/{self.name}",
                                       local_path="/opt/ml/checkpoints")
        # Script mode of the framework container (it installs requirements.txt from the archive): the
        # SDK's driver launch (ContainerEntrypoint) is newer than the published definition schema.
        program, launcher, extra = self._program(code)
        script_mode = {"sagemaker_program": program, "sagemaker_submit_directory": cc.code_archive(code.parent, extra),
                       "sagemaker_region": cc.region, **launcher}
        trainer = ModelTrainer(
            training_image=cc.image(self), role=cc.role, base_job_name=self.name, sagemaker_session=cc.session,
            compute=compute, stopping_condition=stopping, checkpoint_config=checkpoints,
            hyperparameters={**{k: cc.text(v) for k, v in self.hyperparameters.items()}, **script_mode},
            environment={str(k): cc.text(v) for k, v in self.environment.items()}, networking=cc.networking(),
        )
        channels = [InputData(channel_name=name, data_source=cc.input_source(value))
                    for name, value in self.inputs.items()]
        return SdkTrainingStep(name=self.name, step_args=trainer.train(input_data_config=channels),
                               description=self.description or None, cache_config=cc.cache_config(self),
                               retry_policies=cc.retry_policies(self) or None, depends_on=cc.depends_on(self))

    def _launcher(self, ctx: StepContext) -> list[str]:
        """torchrun on this one machine: processes_per_host x instance_count processes (gloo, or nccl on GPUs)."""
        if self.distribution is None:
            return []
        resources = self.resources or ctx.pipeline.defaults.resources
        processes = self.distribution.processes_per_host * resources.instance_count
        return ["-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(processes),
                "--master_addr", "127.0.0.1", "--master_port", str(free_port())]

    def _program(self, code: Path) -> tuple[str, dict[str, str], dict[str, bytes] | None]:
        """(script mode program, its hyperparameters, files to add to the archive): with a distribution,
        our torchrun launcher (pipelines/sagemaker/torchrun_launcher.py) starts the script on every host."""
        if self.distribution is None:
            return code.name, {}, None
        from pipelines.sagemaker import torchrun_launcher

        launcher = Path(torchrun_launcher.__file__)
        return (LAUNCHER, {"sagepipe_entry_point": code.name,
                           "sagepipe_processes_per_host": str(self.distribution.processes_per_host)},
                {LAUNCHER: launcher.read_bytes()})


LAUNCHER = "sagepipe_torchrun.py"


def training_env(channels: dict[str, Path], outputs: dict[str, Path], hps: dict[str, Any],
                 checkpoints: Path) -> dict[str, str]:
    """The SM_* variables a SageMaker training container sets, pointing at local folders."""
    env = {f"SM_CHANNEL_{name.upper().replace('-', '_')}": str(path) for name, path in channels.items()}
    env.update({
        "SM_CHANNELS": json.dumps(sorted(channels)),
        "SM_MODEL_DIR": str(outputs["model"]),
        "SM_OUTPUT_DATA_DIR": str(outputs["output"]),
        "SM_HPS": json.dumps(hps, sort_keys=True),
        "SM_HOSTS": json.dumps(["algo-1"]),
        "SM_CURRENT_HOST": "algo-1",
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
        "SM_NUM_GPUS": str(_gpu_count()),
        "SAGEPIPE_CHECKPOINT_DIR": str(checkpoints),
    })
    return env


def _hp_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _gpu_count() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    return len(list(Path("/dev").glob("nvidia[0-9]*")))
