"""`type: register` — add the trained model to a model package group, awaiting approval."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from pipelines.errors import RegistryError, StepFailed
from pipelines.fsutil import hash_path
from pipelines.model_archive import ModelArchiveError, model_folder
from pipelines.refs import OutputRef, ParamRef
from pipelines.spec import CloudSettings, RelativePath
from pipelines.step_api import CompileContext, LocalResult, Step, StepContext, registered_record
from steps.evaluation import read_report


class RegisterStep(Step):
    """SageMaker RegisterModel: a model package version with metrics and PendingManualApproval."""

    type: Literal["register"] = "register"
    model: Any
    model_group: str = Field(pattern=r"^[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$")
    metrics: Any = None
    metrics_file: RelativePath = "evaluation.json"
    approval_status: Any = "PendingManualApproval"  # a literal status or ${params.<name>}
    inference: dict[str, Any] = {}
    sagemaker: CloudSettings = CloudSettings()  # framework_image: the serving image (default INFERENCE_IMAGE)

    @field_validator("approval_status")
    @classmethod
    def _known_status(cls, value: Any) -> Any:
        if not isinstance(value, ParamRef) and value not in APPROVAL_STATUSES:
            raise ValueError(f"{value!r} is not an approval status; use one of {', '.join(APPROVAL_STATUSES)} "
                             "or a parameter, e.g. ${params.model_approval_status}")
        return value

    def run_local(self, ctx: StepContext) -> LocalResult:
        status = ctx.resolve(self.approval_status)
        if status not in APPROVAL_STATUSES:
            raise StepFailed(f"approval status {status!r} is not one of {', '.join(APPROVAL_STATUSES)}")
        model = Path(ctx.resolve(self.model))
        metrics: dict[str, Any] = {}
        if self.metrics is not None:
            metrics = read_report(Path(ctx.resolve(self.metrics)) / self.metrics_file, self.metrics_file)
        try:
            registry = ctx.services.registry
            with model_folder(model) as model_dir:
                if not model_dir.is_dir() or not any(model_dir.iterdir()):
                    raise StepFailed(f"model {model} is missing or empty (a model.tar.gz or a model folder)")
                model_hash = hash_path(model_dir)
                # an identical model is its existing version; only a new one waits for this step's MLflow run
                package, created = registry.identical(self.model_group, model_hash), False
                if package is None:
                    lineage = self._lineage(ctx, model_hash)
                    package, created = registry.register(self.model_group, model_dir, metrics, status, lineage,
                                                         run_id=lineage["mlflow_run_id"])
        except (RegistryError, ModelArchiveError) as exc:
            raise StepFailed(str(exc)) from None
        version = package["version"]
        if created:
            note = f"{self.model_group} version {version}: {package['status']}"
        else:
            note = f"identical model already registered as {self.model_group} version {version} ({package['status']})"
        return LocalResult(note=note, registered=registered_record(self.model_group, version, package["status"],
                                                                  created))

    def _lineage(self, ctx: StepContext, model_hash: str) -> dict[str, Any]:
        """Where the model came from: run, commit, config, and the training step's code and data hashes."""
        lineage: dict[str, Any] = {
            "run_id": ctx.run_id, "pipeline": ctx.pipeline.name, "step": self.name, "env": ctx.pipeline.env,
            "config": str(Path(ctx.pipeline.source_file).resolve()), "git_commit": ctx.services.tracker.git_commit(),
            "model_hash": model_hash, "mlflow_run_id": ctx.services.tracker.run_id(),
        }
        if isinstance(self.model, OutputRef):
            trained = ctx.step_record(self.model.step)
            lineage.update(training_step=self.model.step, code_hash=trained.get("code_hash"),
                           data_hashes=trained.get("input_digests"))
            code = ctx.pipeline.step(self.model.step).code_path()
            if code and (ctx.repo_path(code).parent / "inference.py").is_file():
                lineage["inference_code"] = str(ctx.repo_path(code).parent)
        return lineage

    def compile_sagemaker(self, cc: CompileContext) -> Any:
        """A RegisterModel step: a version in the model package group with an explicit approval status (a
        literal or a parameter), this execution's report as its metrics, and the serving container's settings."""
        from sagemaker.core.model_registry import create_model_package_from_containers
        from sagemaker.core.workflow.functions import Join
        from sagemaker.core.workflow.pipeline_context import _ModelStepArguments
        from sagemaker.mlops.workflow import ModelStep

        cc.session.context = _ModelStepArguments(_SessionHolder(cc.session))
        instances = self.inference.get("instance_types", ["ml.m5.large", "ml.m5.xlarge"])
        image = self.inference.get("image") or cc.framework_image(self.name, INFERENCE_IMAGE, instances[0],
                                                                    self.sagemaker.framework_image)
        environment = {**SERVING_ENVIRONMENT, "SAGEMAKER_REGION": cc.region,
                       **{str(k): cc.text(v) for k, v in self.inference.get("environment", {}).items()}}
        container = {"Image": image, "ModelDataUrl": cc.value(self.model), "Environment": environment}
        metrics = None
        if self.metrics is not None:
            report = Join(on="/", values=[cc.value(self.metrics), self.metrics_file])
            metrics = {"ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": report}}}
        step_args = create_model_package_from_containers(
            cc.session, containers=[container], content_types=["text/csv", "application/json"],
            response_types=["text/csv", "application/json"], inference_instances=instances,
            transform_instances=instances, model_package_group_name=self.model_group, model_metrics=metrics,
            approval_status=cc.value(self.approval_status))
        return ModelStep(name=self.name, step_args=step_args, description=self.description or None,
                         depends_on=cc.depends_on(self), retry_policies=cc.retry_policies(self, job=False) or None)


APPROVAL_STATUSES = ("PendingManualApproval", "Approved", "Rejected")
# Serves any model whose archive carries code/inference.py (+ code/requirements.txt), as ours do.
INFERENCE_IMAGE = {"framework": "pytorch", "version": "2.6.0", "py_version": "py312", "scope": "inference"}
# The framework inference containers run code/inference.py from the model archive (model_io.pack_serving_code).
SERVING_ENVIRONMENT = {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                       "SAGEMAKER_CONTAINER_LOG_LEVEL": "20"}


class _SessionHolder:
    """The SDK's ModelStep wants a model object that carries the pipeline session."""

    def __init__(self, session: Any):
        self.sagemaker_session = session
