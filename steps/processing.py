"""`type: processing` — a script over named input folders that writes named output folders."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from pipelines.errors import StepFailed
from pipelines.fsutil import fresh_dir
from pipelines.spec import CloudSettings, IoName
from pipelines.step_api import CompileContext, LocalResult, StepContext
from pipelines.values import value_text
from steps.base import ScriptStep, stage_input


class ProcessingCloud(CloudSettings):
    """`sagemaker:` of a processing step."""

    shard_inputs: list[IoName] = []  # inputs split across instances (ShardedByS3Key) rather than copied to each
    max_runtime_s: int | None = Field(None, ge=1, le=432000)


class ProcessingStep(ScriptStep):
    """SageMaker ProcessingStep: inputs under /opt/ml/processing/input/<name>, outputs under .../output/<name>."""

    type: Literal["processing"] = "processing"
    outputs: dict[IoName, str | None] = {}
    arguments: list[Any] = []
    sagemaker: ProcessingCloud = ProcessingCloud()

    @field_validator("outputs", mode="before")
    @classmethod
    def _names_only(cls, value: Any) -> Any:
        if isinstance(value, list) and all(isinstance(name, str) for name in value):
            return {name: None for name in value}
        return value

    def output_names(self) -> list[str]:
        return list(self.outputs)

    def local_output_dirs(self, step_dir: Path) -> dict[str, Path]:
        return {name: step_dir / "processing" / "output" / name for name in self.outputs}

    def local_fingerprint(self, ctx: StepContext) -> dict[str, Any]:
        return {"arguments": ctx.resolve(self.arguments), "environment": ctx.resolve(self.environment),
                "outputs": sorted(self.outputs)}

    def run_local(self, ctx: StepContext) -> LocalResult:
        root = ctx.step_dir / "processing"
        for name, source in ctx.inputs.items():
            stage_input(source, root / "input" / name, ctx.run_dir)
        outputs = self.local_output_dirs(ctx.step_dir)
        for folder in outputs.values():
            fresh_dir(folder, ctx.run_dir)
        env = {str(k): str(v) for k, v in ctx.resolve(self.environment).items()}
        env["SAGEPIPE_PROCESSING_DIR"] = str(root)
        argv = [sys.executable, str(ctx.repo_path(self.code)), *map(value_text, ctx.resolve(self.arguments))]
        code = ctx.run_process(argv, env, ctx.step_dir)
        if code != 0:
            raise StepFailed(f"script {self.code} exited with code {code}")
        return LocalResult(outputs=outputs)

    def sagemaker_output(self, compiled: Any, output: str) -> Any:
        return compiled.properties.ProcessingOutputConfig.Outputs[output].S3Output.S3Uri

    def compile_sagemaker(self, cc: CompileContext, property_files: list[Any] | None = None) -> Any:
        """A ProcessingStep: the code folder as input `code`, inputs and outputs as in the container contract,
        outputs under this execution's prefix."""
        from sagemaker.core.processing import Processor
        from sagemaker.core.shapes import ProcessingInput, ProcessingOutput, ProcessingS3Input, ProcessingS3Output
        from sagemaker.mlops.workflow import ProcessingStep as SdkProcessingStep

        sharded = set(self.sagemaker.shard_inputs)
        inputs = [ProcessingInput(input_name=name, s3_input=ProcessingS3Input(
            s3_uri=cc.input_source(value), local_path=f"/opt/ml/processing/input/{name}", s3_data_type="S3Prefix",
            s3_input_mode="File",
            s3_data_distribution_type="ShardedByS3Key" if name in sharded else "FullyReplicated"))
            for name, value in self.inputs.items()]
        code = cc.repo_path(self.code)
        inputs.append(ProcessingInput(input_name="code", s3_input=ProcessingS3Input(
            s3_uri=cc.stage(code.parent), local_path="/opt/ml/processing/input/code", s3_data_type="S3Prefix",
            s3_input_mode="File", s3_data_distribution_type="FullyReplicated")))
        outputs = [ProcessingOutput(output_name=name, s3_output=ProcessingS3Output(
            s3_uri=cc.execution_uri(self.name, name), local_path=f"/opt/ml/processing/output/{name}",
            s3_upload_mode="EndOfJob")) for name in self.outputs]
        resources = cc.resources(self)
        processor = Processor(
            role=cc.role, image_uri=self.container_image(cc), instance_count=resources.instance_count,
            instance_type=resources.instance_type, volume_size_in_gb=resources.volume_gb,
            entrypoint=script_entrypoint(code, self.shipped_requirements(cc)), base_job_name=self.name,
            sagemaker_session=cc.session,
            env={str(k): cc.text(v) for k, v in self.environment.items()} or None,
            volume_kms_key=cc.kms_key(), output_kms_key=cc.kms_key(), network_config=cc.network_config(),
            max_runtime_in_seconds=self.sagemaker.max_runtime_s)
        step_args = processor.run(inputs=inputs, outputs=outputs,
                                  arguments=[cc.text(a) for a in self.arguments] or None)
        return SdkProcessingStep(name=self.name, step_args=step_args, description=self.description or None,
                                 property_files=property_files, cache_config=cc.cache_config(self),
                                 retry_policies=cc.retry_policies(self) or None, depends_on=cc.depends_on(self))


def script_entrypoint(code: Path, requirements: str | None) -> list[str]:
    """Run the script from the code folder; first install its requirements file (a path inside that folder), if any."""
    script = f"/opt/ml/processing/input/code/{code.name}"
    if requirements is None:
        return ["python3", script]
    install = f"pip install --quiet -r /opt/ml/processing/input/code/{requirements}"
    return ["/bin/bash", "-c", f'{install} && exec python3 {script} "$@"', "--"]

