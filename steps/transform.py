"""`type: transform` — batch inference inside the pipeline with the model's own inference handlers.

Locally: the chunked, bounded-memory engine of `sagepipe transform` in its own process (the command the
runner's serving service gives), over every CSV (with a header) or Parquet file of `input`, one output file each. On
SageMaker: a ModelStep creating a model with the inference image and environment the register step uses,
then a TransformStep whose batch job sends the input's lines to that model's handlers.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from pipelines.errors import RegistryError, StepFailed
from pipelines.fsutil import fresh_dir
from pipelines.refs import OutputRef, ParamRef, Template
from pipelines.spec import CloudSettings, IoName, Resources
from pipelines.step_api import CompileContext, LocalResult, Step, StepContext

REGISTRY_REF = re.compile(r"^(?P<group>[A-Za-z0-9](-*[A-Za-z0-9]){0,62})@(?P<version>\d+|approved)$")
DATA_SUFFIXES = (".csv", ".parquet", ".pq")
MODEL_STEP_SUFFIX = "-model"  # the ModelStep that creates the model this step's batch job uses


class TransformCloud(CloudSettings):
    """`sagemaker:` of a transform step (framework_image: the serving image, as for register)."""

    batch_strategy: Literal["MultiRecord", "SingleRecord"] = "MultiRecord"
    max_payload_mb: int | None = Field(None, ge=0, le=100)
    max_concurrent_transforms: int | None = Field(None, ge=1, le=1000)


class TransformStep(Step):
    """SageMaker ModelStep (create model) + TransformStep: score `input` with `model`, write `output`."""

    type: Literal["transform"] = "transform"
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,57}$")  # + "-model" stays within 64 characters
    model: Any
    input: Any
    output: IoName = "predictions"
    content_type: Literal["text/csv", "application/json"] = "text/csv"
    split: Literal["line", "none"] = "line"
    accept: Literal["text/csv", "application/json"] = "text/csv"
    threshold: Any = 0.5
    chunk_rows: int = Field(200_000, ge=1, le=10_000_000)
    output_format: Literal["csv", "parquet"] = "csv"
    resources: Resources | None = None
    inference: dict[str, Any] = {}
    sagemaker: TransformCloud = TransformCloud()

    @field_validator("model")
    @classmethod
    def _model_reference(cls, value: Any) -> Any:
        if isinstance(value, OutputRef) or (isinstance(value, str) and REGISTRY_REF.match(value)):
            return value
        raise ValueError(f"{value!r} is not a model: use a training or tuning step's model output "
                         "(${steps.train.outputs.model}) or a registered version, GROUP@VERSION or GROUP@approved")

    @field_validator("input")
    @classmethod
    def _input_value(cls, value: Any) -> Any:
        if isinstance(value, (str, ParamRef, OutputRef, Template)):
            return value
        raise ValueError("input is a file or folder: a path, ${params.NAME} or ${steps.STEP.outputs.NAME}")

    def output_names(self) -> list[str]:
        return [self.output]

    def settled_resources(self) -> Resources:
        return self.resources or Resources()

    def local_fingerprint(self, ctx: StepContext) -> dict[str, Any]:
        return {"model": str(ctx.resolve(self.model)), "input": str(ctx.resolve(self.input)),
                "threshold": ctx.resolve(self.threshold), "output_format": self.output_format}

    # --- local run ----------------------------------------------------------------------------
    def run_local(self, ctx: StepContext) -> LocalResult:
        source = self._input_files(ctx)
        model, shown = self._model_path(ctx)
        out = ctx.step_dir / "output" / self.output
        fresh_dir(out, ctx.run_dir)
        threshold = float(ctx.resolve(self.threshold))
        for file in source:
            target = out / f"{file.stem}.{self.output_format}"
            argv, env = ctx.services.serving.scoring_command(model, file, target, threshold, self.chunk_rows)
            code = ctx.run_process(argv, env, ctx.step_dir)
            if code != 0:
                raise StepFailed(f"scoring {file.name} with {shown} failed (exit code {code}); see its log")
        return LocalResult(outputs={self.output: out}, note=f"{len(source)} file(s) scored with {shown}")

    def _input_files(self, ctx: StepContext) -> list[Path]:
        value = ctx.resolve(self.input)
        if value in ("", None):
            raise StepFailed("input is empty: give the file or folder to score")
        if "://" in str(value):
            raise StepFailed(f"input {value} is a URI; the local backend reads local paths")
        path = Path(str(value)) if Path(str(value)).is_absolute() else ctx.repo_root / str(value)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in DATA_SUFFIXES)
            if not files:
                raise StepFailed(f"input {value} holds no .csv or .parquet file")
            return files
        if not path.is_file():
            raise StepFailed(f"input {value} does not exist")
        return [path]

    def _model_path(self, ctx: StepContext) -> tuple[Path, str]:
        """A model.tar.gz (a training or tuning output) or a registered version's model folder."""
        if isinstance(self.model, OutputRef):
            return Path(ctx.resolve(self.model)), f"the model of step '{self.model.step}'"
        match = REGISTRY_REF.match(self.model)
        assert match is not None
        group, which = match.group("group"), match.group("version")
        try:
            registry = ctx.services.registry
            package = registry.approved(group) if which == "approved" else registry.show(group, int(which))
            if package is None:
                raise RegistryError(f"{group} has no approved version; approve one with: "
                                    f"sagepipe models approve {group} VERSION")
            return Path(registry.model_path(package)), f"{group} version {package['version']}"
        except RegistryError as exc:
            raise StepFailed(str(exc)) from None

    # --- SageMaker ----------------------------------------------------------------------------
    def sagemaker_output(self, compiled: Any, output: str) -> Any:
        return compiled[-1].properties.TransformOutput.S3OutputPath

    def compile_sagemaker(self, cc: CompileContext) -> Any:
        """A ModelStep that creates the model (the register step's inference image and environment), then a
        TransformStep: the input's records (split by line) go to the model's handlers; output under this
        execution."""
        from sagemaker.core.transformer import Transformer
        from sagemaker.core.workflow.pipeline_context import _ModelStepArguments
        from sagemaker.mlops.workflow import ModelStep
        from sagemaker.mlops.workflow import TransformStep as SdkTransformStep

        from steps.register import INFERENCE_IMAGE, SERVING_ENVIRONMENT, _SessionHolder

        if not isinstance(self.model, OutputRef):
            raise self.config_error("model", f"{self.model!r} names a version in the local registry; on SageMaker "
                                    "give a training or tuning step's model output")
        resources = cc.resources(self)
        image = self.inference.get("image") or cc.framework_image(self.name, INFERENCE_IMAGE, resources.instance_type,
                                                                 self.sagemaker.framework_image)
        environment = {**SERVING_ENVIRONMENT, "SAGEMAKER_REGION": cc.region,
                       **{str(k): cc.text(v) for k, v in self.inference.get("environment", {}).items()}}
        session, model_name = cc.session, f"{self.name}{MODEL_STEP_SUFFIX}"
        session.context = _ModelStepArguments(_SessionHolder(session))
        session.create_model(model_name, role=cc.role, container_defs={
            "Image": image, "ModelDataUrl": cc.value(self.model), "Environment": environment})
        model_step = ModelStep(name=model_name, step_args=session.context, depends_on=cc.depends_on(self),
                               retry_policies=cc.retry_policies(self, job=False) or None)
        cloud = self.sagemaker
        transformer = Transformer(
            model_name=model_step.properties.ModelName, instance_count=resources.instance_count,
            instance_type=resources.instance_type, strategy=cloud.batch_strategy,
            assemble_with="Line" if self.split == "line" else None, accept=self.accept,
            output_path=cc.execution_uri(self.name, self.output), max_payload=cloud.max_payload_mb,
            max_concurrent_transforms=cloud.max_concurrent_transforms, sagemaker_session=session,
            volume_kms_key=cc.kms_key(), output_kms_key=cc.kms_key())
        step_args = transformer.transform(data=cc.input_source(self.input), content_type=self.content_type,
                                          split_type="Line" if self.split == "line" else None)
        transform = SdkTransformStep(name=self.name, step_args=step_args, description=self.description or None,
                                     cache_config=cc.cache_config(self), retry_policies=cc.retry_policies(self) or None)
        return [model_step, transform]
