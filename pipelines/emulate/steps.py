"""Definition steps under the local runner: a node type of emulate's own, and one handler per definition step
`Type` (as the SDK's local executor has), each doing what SageMaker does for that type.

A handler returns the runner's LocalResult with `emulated` filled in: the step's Type and the properties it
produced (what `Get Steps.<name>...` reads); a condition's decision and a registered version are recorded as a
local run records them (step_api.decision_record, registered_record). The run's state keeps that record, so a
resumed emulation knows every finished step's properties and the report explains the decision without the YAML.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Callable

from pipelines.emulate import jobs, processing
from pipelines.emulate.emulation import Emulation
from pipelines.emulate.expressions import Scope
from pipelines.errors import StepFailed
from pipelines.spec import Cache, Retry
from pipelines.step_api import LocalResult, StepContext, decision_record, registered_record

COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "Equals": operator.eq, "GreaterThan": operator.gt, "GreaterThanOrEqualTo": operator.ge,
    "LessThan": operator.lt, "LessThanOrEqualTo": operator.le}
OPERATORS = {"Equals": "==", "GreaterThan": ">", "GreaterThanOrEqualTo": ">=", "LessThan": "<",
             "LessThanOrEqualTo": "<=", "In": "in"}  # as a condition step of ours writes them
JOBS = ("Processing", "Training", "Tuning", "Transform")


@dataclass
class DefinitionStep:
    """One step of a pipeline definition, as the runner schedules it (the part of the step contract the runner
    and the graph read; a definition step has no config of ours to compile or to stage inputs for)."""

    raw: dict[str, Any]
    emulation: Emulation
    depends_on: list[str]
    branches: dict[str, list[str]] = field(default_factory=dict)
    runs_script = False
    retry = None
    cache = None

    @property
    def name(self) -> str:
        return str(self.raw["Name"])

    @property
    def type(self) -> str:
        return f"sagemaker:{self.raw['Type']}"

    @property
    def description(self) -> str:
        return str(self.raw.get("Description", ""))

    @property
    def job_name(self) -> str:
        """The step's job in this execution (what Execution.ProcessingJobName / TrainingJobName evaluate to)."""
        return f"pipelines-{self.emulation.execution_id[-12:]}-{self.name[:30]}"

    def refs(self) -> list[Any]:
        return []  # its edges are depends_on: DependsOn and the steps its Get expressions name

    def output_names(self) -> list[str]:
        return []

    def has_metrics(self) -> bool:
        return bool(self.raw.get("PropertyFiles"))

    def branch_targets(self) -> dict[str, list[str]]:
        return self.branches

    def code_path(self) -> str | None:
        return None

    def input_values(self) -> dict[str, Any]:
        return {}

    def settled_retry(self) -> Retry:
        return Retry()  # RetryPolicies cover service faults, which an emulated job never raises

    def settled_cache(self) -> Cache:
        return Cache(enabled=False)  # the service's own cache applies, in the handlers

    def local_output_dirs(self, step_dir: Any) -> dict[str, Any]:
        return {}

    def local_fingerprint(self, ctx: StepContext) -> dict[str, Any]:
        return {}

    def run_local(self, ctx: StepContext) -> LocalResult:
        kind = self.raw["Type"]
        result = HANDLERS[kind](self, ctx)
        result.emulated = {"type": kind, "properties": self.emulation.scope.properties.get(self.name),
                           **(result.emulated or {})}
        return result


# --- jobs and the step cache --------------------------------------------------------------------
def _job(step: DefinitionStep, ctx: StepContext) -> LocalResult:
    from pipelines.emulate.cache_keys import cache_key

    emulation, kind = step.emulation, step.raw["Type"]
    arguments = emulation.scope.for_job(kind, step.job_name).evaluate(step.raw["Arguments"])
    cache = step.raw.get("CacheConfig") or {}
    key = cache_key(kind, arguments)
    if cache.get("Enabled") and (hit := emulation.cached(step.name, key, cache.get("ExpireAfter"))):
        emulation.scope.properties[step.name] = hit["properties"]
        return LocalResult(metrics=_report(step, ctx), cached_from=hit["execution"],
                           note=f"cache hit: reused execution {hit['execution']}'s job and its output locations")
    job = step.job_name
    image = _image(kind, arguments)
    if image:
        from pipelines.sagemaker.requirements_check import stands_in_for

        ctx.log(stands_in_for(image))
    if kind in ("Tuning", "Transform"):
        from pipelines.emulate import tuning

        properties = tuning.tuning_job(emulation, step.name, arguments, key, ctx) if kind == "Tuning" else \
            tuning.transform_job(emulation, step.name, arguments, job, ctx)
        job = properties.get("HyperParameterTuningJobName", job)
    else:
        with jobs.fresh_container(emulation.container_root(step.name), emulation.pip_verdicts) as box:
            box.image = emulation.image_env(step.name, image)
            properties = (processing.processing_job if kind == "Processing" else jobs.training_job)(
                emulation.s3, arguments, job, box, ctx.step_dir, ctx.run_process)
    emulation.scope.properties[step.name] = properties
    if cache.get("Enabled"):
        emulation.remember(step.name, key, properties)
    return LocalResult(metrics=_report(step, ctx), note=f"{kind.lower()} job {job}")


def _image(kind: str, arguments: dict[str, Any]) -> str | None:
    """The image a job runs in (a tuning job: its trials'); None for a transform (its model's)."""
    if kind == "Processing":
        return (arguments.get("AppSpecification") or {}).get("ImageUri")
    definition = arguments.get("TrainingJobDefinition") or {} if kind == "Tuning" else arguments
    return (definition.get("AlgorithmSpecification") or {}).get("TrainingImage")


def _report(step: DefinitionStep, ctx: StepContext) -> dict[str, Any] | None:
    """The step's report for its metrics, when it wrote one. Read lazily, as the service does: a missing or
    broken report fails the step whose JsonGet reads it, not this one."""
    files = step.raw.get("PropertyFiles") or []
    if not files:
        return None
    try:
        return step.emulation.read_property_file(step.name, files[0]["PropertyFileName"])
    except StepFailed as exc:
        ctx.log(f"[sagepipe] note: {exc}; a step that reads it will fail")
        return None


# --- the control-plane steps --------------------------------------------------------------------
def _condition(step: DefinitionStep, ctx: StepContext) -> LocalResult:
    scope = step.emulation.scope
    compared: list[dict[str, Any]] = []
    parts = [_holds(c, scope, compared) for c in step.raw["Arguments"]["Conditions"]]
    holds = all(part for part, _ in parts)
    shapes = [shape for _, shape in parts]
    scope.properties[step.name] = {"Outcome": holds}
    skip = step.branches["if_false" if holds else "if_true"]
    return LocalResult(skip=skip, note=f"conditions {'hold' if holds else 'do not hold'}",
                       decision=decision_record(holds, compared, shapes[0] if len(shapes) == 1 else {"and": shapes},
                                                step.branches),
                       emulated={"outcome": holds, "conditions": compared})


def _fail(step: DefinitionStep, ctx: StepContext) -> LocalResult:
    raise StepFailed(str(step.emulation.scope.evaluate(step.raw["Arguments"].get("ErrorMessage", ""))))


def _register(step: DefinitionStep, ctx: StepContext) -> LocalResult:
    emulation = step.emulation
    arguments = emulation.scope.evaluate(step.raw["Arguments"])
    group = arguments["ModelPackageGroupName"]
    sm = emulation.sagemaker
    with emulation.lock:
        known = {g["ModelPackageGroupName"] for g in sm.list_model_package_groups()["ModelPackageGroupSummaryList"]}
        if group not in known:  # the step creates the group on first registration
            sm.create_model_package_group(ModelPackageGroupName=group)
    request = {k: v for k, v in arguments.items() if k not in ("SkipModelValidation",)}
    arn = sm.create_model_package(**request)["ModelPackageArn"]
    emulation.scope.properties[step.name] = {"ModelPackageArn": arn}
    status = arguments.get("ModelApprovalStatus", "PendingManualApproval")
    version = int(arn.rsplit("/", 1)[-1])
    return LocalResult(note=f"{group}: {version} version registered ({status})",
                       registered=registered_record(group, version, status, True))


def _model(step: DefinitionStep, ctx: StepContext) -> LocalResult:
    emulation = step.emulation
    name = f"{step.name[:40]}-{emulation.execution_id[-12:]}"
    created = emulation.sagemaker.create_model(ModelName=name, **emulation.scope.evaluate(step.raw["Arguments"]))
    emulation.scope.properties[step.name] = {"ModelName": name, "ModelArn": created["ModelArn"]}
    return LocalResult(note=f"model {name}")


def _endpoint_config(step: DefinitionStep, ctx: StepContext) -> LocalResult:
    """Created on the emulated control plane (nothing is served)."""
    emulation = step.emulation
    arguments = emulation.scope.evaluate(step.raw["Arguments"])
    name = arguments.get("EndpointConfigName") or f"{step.name[:40]}-{emulation.execution_id[-12:]}"
    created = emulation.sagemaker.create_endpoint_config(**{**arguments, "EndpointConfigName": name})
    emulation.scope.properties[step.name] = {"EndpointConfigName": name,
                                             "EndpointConfigArn": created["EndpointConfigArn"]}
    return LocalResult(note=f"endpoint config {name}")


def _endpoint(step: DefinitionStep, ctx: StepContext) -> LocalResult:
    emulation = step.emulation
    arguments = emulation.scope.evaluate(step.raw["Arguments"])
    created = emulation.sagemaker.create_endpoint(**arguments)
    emulation.scope.properties[step.name] = {"EndpointName": arguments["EndpointName"],
                                             "EndpointArn": created["EndpointArn"]}
    return LocalResult(note=f"endpoint {arguments['EndpointName']} created")


HANDLERS: dict[str, Callable[[DefinitionStep, StepContext], LocalResult]] = {
    **{kind: _job for kind in JOBS}, "Condition": _condition, "Fail": _fail, "RegisterModel": _register,
    "Model": _model, "EndpointConfig": _endpoint_config, "Endpoint": _endpoint}
EMULATED = tuple(HANDLERS)


def _holds(condition: dict[str, Any], scope: Scope, compared: list[dict[str, Any]]) -> tuple[bool, Any]:
    """Whether a condition holds, and its shape (step_api.decision_record); each comparison made is added to
    compared, with its values."""
    kind = condition["Type"]
    if kind == "Not":
        holds, shape = _holds(condition.get("Condition") or condition["Expression"], scope, compared)  # SDK: Condition
        return not holds, {"not": [shape]}
    if kind == "Or":
        parts = [_holds(c, scope, compared) for c in condition["Conditions"]]
        return any(holds for holds, _ in parts), {"or": [shape for _, shape in parts]}
    if kind == "In":
        value, allowed = scope.evaluate(condition["QueryValue"]), [scope.evaluate(v) for v in condition["Values"]]
        compared.append({"type": kind, "op": OPERATORS[kind], "left": value, "right": allowed,
                         "holds": value in allowed, "left_from": _source(condition["QueryValue"]), "right_from": ""})
        return value in allowed, len(compared) - 1
    left, right = scope.evaluate(condition["LeftValue"]), scope.evaluate(condition["RightValue"])
    try:
        holds = bool(COMPARE[kind](left, right))
    except TypeError:
        raise StepFailed(f"condition {kind}: cannot compare {left!r} with {right!r}") from None
    compared.append({"type": kind, "op": OPERATORS[kind], "left": left, "right": right, "holds": holds,
                     "left_from": _source(condition["LeftValue"]), "right_from": _source(condition["RightValue"])})
    return holds, len(compared) - 1


def _source(value: Any) -> str:
    """Where a compared value came from, in words: 'evaluate report: binary_classification_metrics.auc.value',
    'parameter min_auc', or '' for a literal."""
    if isinstance(value, dict) and "Std:JsonGet" in value:
        found = value["Std:JsonGet"]
        source = str((found.get("PropertyFile") or {}).get("Get", ""))
        step = source.split(".")[1] if source.startswith("Steps.") else source
        return f"{step} report: {found.get('Path', '')}"
    if isinstance(value, dict) and isinstance(value.get("Get"), str):
        head, _, rest = value["Get"].partition(".")
        return f"parameter {rest}" if head == "Parameters" else value["Get"]
    return ""
