"""Each step of a definition as a step the local runner schedules: its run is what SageMaker would do."""

from __future__ import annotations

import hashlib
import json
import operator
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pipelines.emulate import jobs
from pipelines.emulate.expressions import Scope
from pipelines.errors import StepFailed
from pipelines.step_api import CompileContext, LocalResult, Step, StepContext

EMULATED = ("Processing", "Training", "Tuning", "Transform", "Condition", "Fail", "RegisterModel", "Model",
            "EndpointConfig", "Endpoint")
COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "Equals": operator.eq, "GreaterThan": operator.gt, "GreaterThanOrEqualTo": operator.ge,
    "LessThan": operator.lt, "LessThanOrEqualTo": operator.le}
# Where a job writes: not part of the step cache key, as on SageMaker (a hit hands back the old locations).
NOT_IN_CACHE_KEY = ("ProcessingOutputConfig", "OutputDataConfig", "CheckpointConfig")


@dataclass
class Emulation:
    """One emulated execution: its S3 and control plane (moto), references, and the step cache."""

    pipeline: str
    execution_arn: str
    s3: Any
    sagemaker: Any
    scope: Scope
    home: Path  # <state root>/emulate
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # (step, file) -> (the step's properties when read, the document): read once per job, as the service does
    property_documents: dict[tuple[str, str], tuple[Any, Any]] = field(default_factory=dict)

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache" / self.pipeline

    def container_root(self, step: str) -> Path:
        return self.home / "containers" / self.pipeline / step

    @property
    def pip_verdicts(self) -> Path:
        return self.home / "pip-verdicts"

    @property
    def execution_id(self) -> str:
        return self.execution_arn.rsplit("/", 1)[-1]

    def read_property_file(self, step: str, name: str) -> Any:
        """The step's property file, read from S3 the first time a reference (or its report) asks after the job."""
        properties = self.scope.properties[step]
        known = self.property_documents.get((step, name))
        if known is not None and known[0] is properties:  # same job (a retry or a later execution reads anew)
            return known[1]
        declared = {f["PropertyFileName"]: f for f in self.steps[step].get("PropertyFiles", [])}[name]
        output = properties["ProcessingOutputConfig"]["Outputs"][declared["OutputName"]]
        bucket, key = jobs.split_uri(f"{output['S3Output']['S3Uri'].rstrip('/')}/{declared['FilePath']}")
        try:
            document = json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except Exception as exc:  # missing object or bad JSON: the step that reads it fails, as on SageMaker
            raise StepFailed(f"property file {name} of step '{step}' (s3://{bucket}/{key}) cannot be read: "
                             f"{exc}") from None
        self.property_documents[(step, name)] = (properties, document)
        return document


class EmulatedStep(Step):
    """A definition step; `upstream` holds the steps its references and DependsOn name."""

    raw: dict[str, Any] = {}
    emulation: Any = None
    branches: dict[str, list[str]] = {}

    def branch_targets(self) -> dict[str, list[str]]:
        return self.branches

    def compile_sagemaker(self, cc: CompileContext) -> None:
        raise NotImplementedError("an emulated step is a compiled one already")

    def run_local(self, ctx: StepContext) -> LocalResult:
        kind = self.raw["Type"]
        emulation: Emulation = self.emulation
        if kind == "Condition":
            return self._condition(emulation.scope)
        if kind == "Fail":
            raise StepFailed(str(emulation.scope.evaluate(self.raw["Arguments"].get("ErrorMessage", ""))))
        arguments = emulation.scope.evaluate(self.raw["Arguments"])
        if kind in ("Processing", "Training", "Tuning", "Transform"):
            return self._job(ctx, kind, arguments)
        if kind == "RegisterModel":
            return self._register(arguments)
        if kind == "Model":
            return self._model(arguments)
        return self._endpoint(kind, arguments)

    # --- jobs and the step cache ----------------------------------------------------------------
    def _job(self, ctx: StepContext, kind: str, arguments: dict[str, Any]) -> LocalResult:
        emulation: Emulation = self.emulation
        cache = self.raw.get("CacheConfig") or {}
        key = hashlib.sha256(json.dumps([kind, _without_output_locations(arguments)], sort_keys=True,
                                        default=str).encode()).hexdigest()
        entry_file = emulation.cache_dir / self.name / f"{key}.json"
        if cache.get("Enabled") and (hit := _cache_hit(entry_file, cache.get("ExpireAfter"))):
            emulation.scope.properties[self.name] = hit["properties"]
            return LocalResult(metrics=self._report(), note=f"cache hit: reused execution {hit['execution']}'s "
                                                           "job and its output locations")
        job = f"pipelines-{emulation.execution_id[-12:]}-{self.name[:30]}-{key[:8]}"
        if kind in ("Tuning", "Transform"):
            from pipelines.emulate import tuning

            properties = tuning.tuning_job(emulation, self.name, arguments, key, ctx) if kind == "Tuning" else \
                tuning.transform_job(emulation, self.name, arguments, job, ctx)
            job = properties.get("HyperParameterTuningJobName", job)
        else:
            with jobs.fresh_container(emulation.container_root(self.name), emulation.pip_verdicts) as box:
                properties = (jobs.processing_job if kind == "Processing" else jobs.training_job)(
                    emulation.s3, arguments, job, box, ctx.step_dir, ctx.run_process)
        emulation.scope.properties[self.name] = properties
        if cache.get("Enabled"):
            from pipelines.fsutil import atomic_write_json

            atomic_write_json(entry_file, {"properties": properties, "execution": emulation.execution_id,
                                           "created_at": time.time()})
        return LocalResult(metrics=self._report(), note=f"{kind.lower()} job {job}")

    def _report(self) -> dict[str, Any] | None:
        files = self.raw.get("PropertyFiles") or []
        if not files:
            return None
        return self.emulation.read_property_file(self.name, files[0]["PropertyFileName"])

    # --- the control-plane steps ----------------------------------------------------------------
    def _condition(self, scope: Scope) -> LocalResult:
        holds = all(_holds(c, scope) for c in self.raw["Arguments"]["Conditions"])
        scope.properties[self.name] = {"Outcome": holds}
        skip = self.branches["if_false" if holds else "if_true"]
        return LocalResult(skip=skip, note=f"conditions {'hold' if holds else 'do not hold'}")

    def _register(self, arguments: dict[str, Any]) -> LocalResult:
        emulation: Emulation = self.emulation
        group = arguments["ModelPackageGroupName"]
        sm = emulation.sagemaker
        with emulation.lock:
            known = {g["ModelPackageGroupName"] for g in sm.list_model_package_groups()["ModelPackageGroupSummaryList"]}
            if group not in known:  # the step creates the group on first registration
                sm.create_model_package_group(ModelPackageGroupName=group)
        request = {k: v for k, v in arguments.items() if k not in ("SkipModelValidation",)}
        created = sm.create_model_package(**request)
        arn = created["ModelPackageArn"]
        emulation.scope.properties[self.name] = {"ModelPackageArn": arn}
        status = arguments.get("ModelApprovalStatus", "PendingManualApproval")
        version = int(arn.rsplit("/", 1)[-1])
        return LocalResult(note=f"{group}: {version} version registered ({status})",
                           registered={"group": group, "version": version, "status": status})

    def _model(self, arguments: dict[str, Any]) -> LocalResult:
        emulation: Emulation = self.emulation
        name = f"{self.name[:40]}-{emulation.execution_id[-12:]}"
        created = emulation.sagemaker.create_model(ModelName=name, **arguments)
        emulation.scope.properties[self.name] = {"ModelName": name, "ModelArn": created["ModelArn"]}
        return LocalResult(note=f"model {name}")


    def _endpoint(self, kind: str, arguments: dict[str, Any]) -> LocalResult:
        """EndpointConfig and Endpoint steps: created on the emulated control plane (nothing is served)."""
        sm = self.emulation.sagemaker
        if kind == "EndpointConfig":
            name = arguments.get("EndpointConfigName") or f"{self.name[:40]}-{self.emulation.execution_id[-12:]}"
            created = sm.create_endpoint_config(**{**arguments, "EndpointConfigName": name})
            self.emulation.scope.properties[self.name] = {"EndpointConfigName": name,
                                                          "EndpointConfigArn": created["EndpointConfigArn"]}
            return LocalResult(note=f"endpoint config {name}")
        created = sm.create_endpoint(**arguments)
        self.emulation.scope.properties[self.name] = {"EndpointName": arguments["EndpointName"],
                                                      "EndpointArn": created["EndpointArn"]}
        return LocalResult(note=f"endpoint {arguments['EndpointName']} created")


def _holds(condition: dict[str, Any], scope: Scope) -> bool:
    kind = condition["Type"]
    if kind == "Not":
        return not _holds(condition.get("Condition") or condition["Expression"], scope)  # the SDK writes Condition
    if kind == "Or":
        return any(_holds(c, scope) for c in condition["Conditions"])
    if kind == "In":
        return scope.evaluate(condition["QueryValue"]) in [scope.evaluate(v) for v in condition["Values"]]
    left, right = scope.evaluate(condition["LeftValue"]), scope.evaluate(condition["RightValue"])
    try:
        return bool(COMPARE[kind](left, right))
    except TypeError:
        raise StepFailed(f"condition {kind}: cannot compare {left!r} with {right!r}") from None


def _without_output_locations(arguments: dict[str, Any]) -> dict[str, Any]:
    """A job's arguments as the step cache keys them: where it writes left out (a tuning job's training job
    definition and a transform job's output location included)."""
    kept = {k: v for k, v in arguments.items() if k not in NOT_IN_CACHE_KEY}
    if isinstance(kept.get("TrainingJobDefinition"), dict):
        kept["TrainingJobDefinition"] = {k: v for k, v in kept["TrainingJobDefinition"].items()
                                         if k not in NOT_IN_CACHE_KEY}
    if isinstance(kept.get("TransformOutput"), dict):
        kept["TransformOutput"] = {k: v for k, v in kept["TransformOutput"].items() if k != "S3OutputPath"}
    return kept


def _cache_hit(entry_file: Path, expire_after: str | None) -> dict[str, Any] | None:
    from pipelines.local.cache import duration_seconds

    try:
        entry = json.loads(entry_file.read_text())
    except (OSError, ValueError):
        return None
    if expire_after and time.time() - entry["created_at"] > duration_seconds(expire_after):
        return None
    return entry

