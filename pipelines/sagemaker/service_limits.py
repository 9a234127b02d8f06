"""What the SageMaker API refuses in a job's own fields, checked before anything runs.

Each check is one function over the steps and yields (step, field path, message with the fix):
- duplicate processing input or output names, duplicate training channel names;
- an output location (processing output, training output or checkpoint, transform output) that is not an
  S3 URI, where it is a literal (a string, or a Std:Join that starts with one);
- a spot wait (`MaxWaitTimeInSeconds`) without managed spot training, or shorter than the runtime;
- an instance count below one, an instance type that is not in the API's list for that kind of job;
- a runtime over the API's maximum (training 28 days, processing the service model's maximum);
- a tuning job that runs more trials at once than in all, a tuned hyperparameter that is also static;
- a CacheConfig.ExpireAfter that is not an ISO 8601 duration;
- a step name, channel name or processing LocalPath that could reach outside its folder (the API's patterns:
  names of letters, digits, '-', '_' (and '.' in a channel), LocalPath under /opt/ml/processing, no '..').

Values given by a parameter are checked against its default where that is a literal; other expressions are
left to the service. The API's lists and maxima come from botocore's service model (loaded once, only here).
"""

from __future__ import annotations

import functools
import itertools
import re
from typing import Any, Iterator

from pipelines.errors import did_you_mean

Finding = tuple[str, str, str]  # (step name, field path inside the step, message)
TRAINING_MAX_RUNTIME = 28 * 86400  # API reference, StoppingCondition.MaxRuntimeInSeconds: "at most 28 days"
S3_URI = re.compile(r"^(https|s3)://[^/]+")  # the API's pattern for output locations
INSTANCE_TYPE_SHAPES = {"Processing": "ProcessingInstanceType", "Training": "TrainingInstanceType",
                        "Transform": "TransformInstanceType"}


def check_service_limits(steps: list[dict[str, Any]], defaults: dict[str, Any]) -> list[Finding]:
    """Every job field the API would refuse, in a stable order (steps: all of them, branches included)."""
    checks = (duplicate_input_names, duplicate_output_names, duplicate_channel_names, non_s3_output_locations,
              spot_wait_without_spot, spot_wait_below_runtime, no_instances, unknown_instance_types,
              runtime_over_the_maximum, more_parallel_trials_than_trials, tuned_and_static_hyperparameters,
              bad_cache_expiry, paths_outside_the_container)
    return [finding for check in checks for finding in check(steps, defaults)]


STEP_NAME = re.compile(r"^[A-Za-z0-9\-_]{1,64}$")  # the pipeline-definition schema's pattern for a step name
CHANNEL_NAME = re.compile(r"^[A-Za-z0-9.\-_]{1,64}$")  # CreateTrainingJob's pattern for ChannelName


# --- the checks ---------------------------------------------------------------------------------
def paths_outside_the_container(steps: list[dict[str, Any]], defaults: dict[str, Any]) -> Iterator[Finding]:
    """Names and paths that end up as folders: a '..' in one would reach outside the job's container (or the
    run's state folder)."""
    for step in steps:
        if not STEP_NAME.match(str(step.get("Name", ""))):
            yield str(step.get("Name")), "Name", "a step name is 1-64 letters, digits, '-' or '_': rename the step"
    for step in _of_type(steps, "Processing"):
        args = _args(step)
        items = [("ProcessingInputs", i, item.get("S3Input") or {}) for i, item in
                 enumerate(args.get("ProcessingInputs") or [])]
        items += [("ProcessingOutputConfig.Outputs", i, item.get("S3Output") or {}) for i, item in
                  enumerate((args.get("ProcessingOutputConfig") or {}).get("Outputs") or [])]
        for where, i, item in items:
            local = item.get("LocalPath")
            if isinstance(local, str) and (not local.startswith("/opt/ml/processing/") or ".." in local.split("/")):
                kind = "S3Input" if where == "ProcessingInputs" else "S3Output"
                yield step["Name"], f"Arguments.{where}[{i}].{kind}.LocalPath", \
                    f"{local!r} is not a folder under /opt/ml/processing/: name one there, without '..'"
    for step, prefix, spec in training_specs(steps):
        for i, channel in enumerate(spec.get("InputDataConfig") or []):
            name = channel.get("ChannelName")
            if isinstance(name, str) and (not CHANNEL_NAME.match(name) or name in (".", "..")):
                yield step["Name"], f"{prefix}.InputDataConfig[{i}].ChannelName", \
                    f"{name!r} is not a channel name (1-64 letters, digits, '.', '-' or '_'; not '.' or '..')"


def duplicate_input_names(steps: list[dict[str, Any]], defaults: dict[str, Any]) -> Iterator[Finding]:
    for step in _of_type(steps, "Processing"):
        for path, name in _repeated(_args(step).get("ProcessingInputs"), "Arguments.ProcessingInputs", "InputName"):
            yield step["Name"], path, f"another input of this job is also named {name!r}; CreateProcessingJob " \
                                      "needs unique input names: rename one"


def duplicate_output_names(steps: list[dict[str, Any]], defaults: dict[str, Any]) -> Iterator[Finding]:
    for step in _of_type(steps, "Processing"):
        outputs = (_args(step).get("ProcessingOutputConfig") or {}).get("Outputs")
        for path, name in _repeated(outputs, "Arguments.ProcessingOutputConfig.Outputs", "OutputName"):
            yield step["Name"], path, f"another output of this job is also named {name!r}; CreateProcessingJob " \
                                      "needs unique output names: rename one"


def duplicate_channel_names(steps: list[dict[str, Any]], defaults: dict[str, Any]) -> Iterator[Finding]:
    for step, prefix, spec in training_specs(steps):
        for path, name in _repeated(spec.get("InputDataConfig"), f"{prefix}.InputDataConfig", "ChannelName"):
            yield step["Name"], path, f"another channel of this job is also named {name!r}; CreateTrainingJob " \
                                      "needs unique channel names: rename one"


def non_s3_output_locations(steps: list[dict[str, Any]], defaults: dict[str, Any]) -> Iterator[Finding]:
    for step, path, value in _output_locations(steps):
        prefix, complete = _literal_prefix(value), isinstance(value, str)
        if prefix is not None and not _may_be_s3(prefix, complete):
            shown = repr(prefix) if complete else f"'{prefix}...' (the Std:Join's start)"
            yield step["Name"], path, f"{shown} is not an S3 URI; a job writes its outputs to S3: use " \
                                      "s3://bucket/prefix (or a Std:Join that starts with \"s3:/\", bucket)"


def spot_wait_without_spot(steps: list[dict[str, Any]], defaults: dict[str, Any]) -> Iterator[Finding]:
    for step, prefix, spec in training_specs(steps):
        wait = (spec.get("StoppingCondition") or {}).get("MaxWaitTimeInSeconds")
        spot = _literal(spec.get("EnableManagedSpotTraining", False), defaults)
        if wait is not None and spot is False:
            yield step["Name"], f"{prefix}.StoppingCondition.MaxWaitTimeInSeconds", \
                "is set, but EnableManagedSpotTraining is not true; a maximum wait applies only to managed spot " \
                "training: set EnableManagedSpotTraining: true, or remove MaxWaitTimeInSeconds"


def spot_wait_below_runtime(steps: list[dict[str, Any]], defaults: dict[str, Any]) -> Iterator[Finding]:
    for step, prefix, spec in training_specs(steps):
        stopping = spec.get("StoppingCondition") or {}
        wait = _number(stopping.get("MaxWaitTimeInSeconds"), defaults)
        runtime = _number(stopping.get("MaxRuntimeInSeconds"), defaults)
        if wait is not None and runtime is not None and wait < runtime:
            yield step["Name"], f"{prefix}.StoppingCondition.MaxWaitTimeInSeconds", \
                f"{wait} is less than MaxRuntimeInSeconds ({runtime}); the wait includes the runtime, so it must be " \
                "equal to it or greater: raise MaxWaitTimeInSeconds"


def no_instances(steps: list[dict[str, Any]], defaults: dict[str, Any]) -> Iterator[Finding]:
    for step, path, resources, _ in _resources(steps):
        count = _number(resources.get("InstanceCount"), defaults)
        if count is not None and count < 1 and not resources.get("InstanceGroups"):
            yield step["Name"], f"{path}.InstanceCount", f"is {count}; a job runs on at least one instance: " \
                                                         "set it to 1 or more"


def unknown_instance_types(steps: list[dict[str, Any]], defaults: dict[str, Any]) -> Iterator[Finding]:
    for step, path, resources, kind in _resources(steps):
        value = _literal(resources.get("InstanceType"), defaults)
        known = instance_types(kind)
        if isinstance(value, str) and known and value not in known:
            yield step["Name"], f"{path}.InstanceType", f"{value!r} is not a {kind.lower()} instance type the " \
                                                        f"API accepts{did_you_mean(value, known)}"


def runtime_over_the_maximum(steps: list[dict[str, Any]], defaults: dict[str, Any]) -> Iterator[Finding]:
    limits = [(step, prefix, spec, TRAINING_MAX_RUNTIME, "a training job") for step, prefix, spec in
              training_specs(steps)]
    processing_max = shape_maximum("ProcessingMaxRuntimeInSeconds")
    if processing_max:
        limits += [(step, "Arguments", _args(step), processing_max, "a processing job")
                   for step in _of_type(steps, "Processing")]
    for step, prefix, spec, limit, what in limits:
        runtime = _number((spec.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds"), defaults)
        if runtime is not None and runtime > limit:
            yield step["Name"], f"{prefix}.StoppingCondition.MaxRuntimeInSeconds", \
                f"{runtime} s is more than {what} may run ({limit} s, {limit / 86400:g} days): lower it"


def more_parallel_trials_than_trials(steps: list[dict[str, Any]], defaults: dict[str, Any]) -> Iterator[Finding]:
    for step in _of_type(steps, "Tuning"):
        limits = (_args(step).get("HyperParameterTuningJobConfig") or {}).get("ResourceLimits") or {}
        parallel = _number(limits.get("MaxParallelTrainingJobs"), defaults)
        total = _number(limits.get("MaxNumberOfTrainingJobs"), defaults)
        if parallel is not None and total is not None and parallel > total:
            yield step["Name"], "Arguments.HyperParameterTuningJobConfig.ResourceLimits.MaxParallelTrainingJobs", \
                f"{parallel} trials at once is more than the {total} of MaxNumberOfTrainingJobs: lower it to {total}"


def tuned_and_static_hyperparameters(steps: list[dict[str, Any]], defaults: dict[str, Any]) -> Iterator[Finding]:
    for step, prefix, spec in training_specs(steps):
        if step.get("Type") != "Tuning":
            continue
        ranges = spec.get("HyperParameterRanges") or \
            (_args(step).get("HyperParameterTuningJobConfig") or {}).get("ParameterRanges") or {}
        tuned = {r.get("Name") for kind in ranges.values() if isinstance(kind, list) for r in kind}
        for name in spec.get("StaticHyperParameters") or {}:
            if name in tuned:
                yield step["Name"], f"{prefix}.StaticHyperParameters.{name}", \
                    f"'{name}' is also tuned (ParameterRanges), and the tuning job sets it for each trial: remove " \
                    "it from StaticHyperParameters"


def bad_cache_expiry(steps: list[dict[str, Any]], defaults: dict[str, Any]) -> Iterator[Finding]:
    from pipelines.values import duration_seconds

    for step in steps:
        expire = (step.get("CacheConfig") or {}).get("ExpireAfter")
        if expire is None:
            continue
        try:
            duration_seconds(expire)
        except ValueError as exc:
            yield step["Name"], "CacheConfig.ExpireAfter", f"{exc}; write how long a cached result may be " \
                                                           "reused, e.g. P30D (30 days) or PT12H (12 hours)"


# --- where the fields are -----------------------------------------------------------------------
def training_specs(steps: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], str, dict[str, Any]]]:
    """(step, field path, training job fields) for training steps and each of a tuning job's definitions."""
    for step in steps:
        args = _args(step)
        if step.get("Type") == "Training":
            yield step, "Arguments", args
        elif step.get("Type") == "Tuning":
            if isinstance(args.get("TrainingJobDefinition"), dict):
                yield step, "Arguments.TrainingJobDefinition", args["TrainingJobDefinition"]
            for i, spec in enumerate(args.get("TrainingJobDefinitions") or []):
                if isinstance(spec, dict):
                    yield step, f"Arguments.TrainingJobDefinitions[{i}]", spec


def _resources(steps: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], str, dict[str, Any], str]]:
    """(step, field path, resource fields, job kind) wherever a job names its instances."""
    for step in _of_type(steps, "Processing"):
        cluster = (_args(step).get("ProcessingResources") or {}).get("ClusterConfig")
        if isinstance(cluster, dict):
            yield step, "Arguments.ProcessingResources.ClusterConfig", cluster, "Processing"
    for step, prefix, spec in training_specs(steps):
        for key in ("ResourceConfig", "HyperParameterTuningResourceConfig"):
            if isinstance(spec.get(key), dict):
                yield step, f"{prefix}.{key}", spec[key], "Training"
    for step in _of_type(steps, "Transform"):
        if isinstance(_args(step).get("TransformResources"), dict):
            yield step, "Arguments.TransformResources", _args(step)["TransformResources"], "Transform"


def _output_locations(steps: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], str, Any]]:
    for step in _of_type(steps, "Processing"):
        outputs = (_args(step).get("ProcessingOutputConfig") or {}).get("Outputs") or []
        for i, output in enumerate(outputs):
            if isinstance(output, dict) and "S3Uri" in (output.get("S3Output") or {}):
                path = f"Arguments.ProcessingOutputConfig.Outputs[{i}].S3Output.S3Uri"
                yield step, path, output["S3Output"]["S3Uri"]
    for step, prefix, spec in training_specs(steps):
        for key, field in (("OutputDataConfig", "S3OutputPath"), ("CheckpointConfig", "S3Uri")):
            if field in (spec.get(key) or {}):
                yield step, f"{prefix}.{key}.{field}", spec[key][field]
    for step in _of_type(steps, "Transform"):
        if "S3OutputPath" in (_args(step).get("TransformOutput") or {}):
            yield step, "Arguments.TransformOutput.S3OutputPath", _args(step)["TransformOutput"]["S3OutputPath"]


# --- values -------------------------------------------------------------------------------------
def _literal(value: Any, defaults: dict[str, Any]) -> Any:
    """The value, or a parameter's default; None for any other expression."""
    if isinstance(value, dict):
        get = value.get("Get") if set(value) == {"Get"} else None
        if isinstance(get, str) and get.startswith("Parameters."):
            return defaults.get(get.split(".", 1)[1])
        return None
    return value


def _number(value: Any, defaults: dict[str, Any]) -> float | int | None:
    found = _literal(value, defaults)
    return found if isinstance(found, (int, float)) and not isinstance(found, bool) else None


def _literal_prefix(value: Any) -> str | None:
    """A literal string, or the literal start of a Std:Join (None when it starts with an expression)."""
    if isinstance(value, str):
        return value
    join = value.get("Std:Join") if isinstance(value, dict) and set(value) == {"Std:Join"} else None
    if not isinstance(join, dict) or not isinstance(join.get("Values"), list):
        return None
    values, separator = join["Values"], str(join.get("On", ""))
    leading = [str(v) for v in itertools.takewhile(lambda v: isinstance(v, (str, int, float)), values)]
    if not leading:
        return None
    return separator.join(leading) + (separator if len(leading) < len(values) else "")


def _may_be_s3(prefix: str, complete: bool) -> bool:
    """A complete value must match the API's pattern; the start of a Join must only not contradict it."""
    if complete:
        return bool(S3_URI.match(prefix))
    return any(scheme.startswith(prefix) or prefix.startswith(scheme) for scheme in ("s3://", "https://"))


def _repeated(items: Any, path: str, key: str) -> Iterator[tuple[str, str]]:
    """(field path, name) for each item whose literal name an earlier item already has."""
    seen: set[str] = set()
    for i, item in enumerate(items if isinstance(items, list) else []):
        name = item.get(key) if isinstance(item, dict) else None
        if isinstance(name, str):
            if name in seen:
                yield f"{path}[{i}].{key}", name
            seen.add(name)


def _of_type(steps: list[dict[str, Any]], kind: str) -> Iterator[dict[str, Any]]:
    return (step for step in steps if step.get("Type") == kind)


def _args(step: dict[str, Any]) -> dict[str, Any]:
    args = step.get("Arguments")
    return args if isinstance(args, dict) else {}


# --- the API's lists and limits (botocore's service model) ------------------------------------------
def instance_types(kind: str) -> frozenset[str]:
    """The instance types the API accepts for a kind of job; empty when botocore cannot say."""
    return _enum(INSTANCE_TYPE_SHAPES[kind])


@functools.cache
def _enum(shape: str) -> frozenset[str]:
    model = _service_model()
    return frozenset(model.shape_for(shape).enum or ()) if model else frozenset()


@functools.cache
def shape_maximum(shape: str) -> int | None:
    model = _service_model()
    return model.shape_for(shape).metadata.get("max") if model else None


@functools.cache
def _service_model() -> Any:
    try:
        import botocore.session

        return botocore.session.get_session().get_service_model("sagemaker")
    except Exception:  # noqa: BLE001 - no botocore, no model: the service checks these itself
        return None
