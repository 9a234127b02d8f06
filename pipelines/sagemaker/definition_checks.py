"""What CreatePipeline refuses in a definition, checked here so that every user gets it (stdlib only).

Each check is one function over the definition JSON and yields (step, field path, message with the fix):
- a numeric or boolean parameter referenced directly in a String field (the service: "Cannot assign
  property reference ... to argument of type [String]"; the fix is `Std:Join`, the SDK's `.to_string()`);
- a `Get` of a step that does not exist (or of the step itself), a `Std:JsonGet` of a property file the
  step does not declare, a property file over an output the step does not have;
- a `Get` of an undeclared parameter or an unknown execution variable;
- duplicate step names (condition branches included); `DependsOn` naming a missing step.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

EXECUTION_VARIABLES = {"StartDateTime", "CurrentDateTime", "PipelineName", "PipelineArn", "PipelineExecutionId",
                       "PipelineExecutionArn", "TrainingJobName", "ProcessingJobName"}
# Fields that take a number or a boolean: everything else a typed parameter may reach is a String field.
TYPED_FIELDS = {"LeftValue", "RightValue", "QueryValue", "Values", "InstanceCount", "VolumeSizeInGB",
                "MaxRuntimeInSeconds", "MaxWaitTimeInSeconds", "KeepAlivePeriodInSeconds", "MaxAttempts",
                "IntervalSeconds", "BackoffRate", "Enabled", "EnableManagedSpotTraining", "EnableNetworkIsolation",
                "EnableInterContainerTrafficEncryption", "InitialInstanceCount", "MaxConcurrentTransforms",
                "MaxPayloadInMB", "MaxNumberOfTrainingJobs", "MaxParallelTrainingJobs", "MinValue", "MaxValue"}
STEP_REF = re.compile(r"^Steps\.([A-Za-z0-9_-]+)(?:[.\[]|$)")
PROPERTY_FILE = re.compile(r"^Steps\.([A-Za-z0-9_-]+)\.PropertyFiles\.(.+)$")
Finding = tuple[str, str, str]  # (step name, field path inside the step, message)


def check_definition(definition: dict[str, Any]) -> list[Finding]:
    """Every problem CreatePipeline (or the first execution) would stop at, in a stable order."""
    steps = list(all_steps(definition.get("Steps", [])))
    parameters = {p["Name"]: p.get("Type", "String") for p in definition.get("Parameters", [])}
    return [*duplicate_names(steps), *missing_dependencies(steps), *bad_references(steps, parameters),
            *property_files_without_output(steps)]


def all_steps(steps: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every step, the ones inside condition branches included."""
    for step in steps:
        yield step
        if step.get("Type") == "Condition":
            for branch in ("IfSteps", "ElseSteps"):
                yield from all_steps(step.get("Arguments", {}).get(branch, []))


def duplicate_names(steps: list[dict[str, Any]]) -> Iterator[Finding]:
    seen: set[str] = set()
    for step in steps:
        if step["Name"] in seen:
            yield step["Name"], "Name", "another step has this name; step names must be unique (condition " \
                                        "branches included): rename one"
        seen.add(step["Name"])


def missing_dependencies(steps: list[dict[str, Any]]) -> Iterator[Finding]:
    names = {s["Name"] for s in steps}
    for step in steps:
        for i, other in enumerate(step.get("DependsOn") or []):
            if other == step["Name"] or other not in names:
                why = "itself" if other == step["Name"] else f"'{other}', which does not exist"
                yield step["Name"], f"DependsOn[{i}]", f"names {why}; depend on one of {sorted(names - {step['Name']})}"


def bad_references(steps: list[dict[str, Any]], parameters: dict[str, str]) -> Iterator[Finding]:
    by_name = {s["Name"]: s for s in steps}
    for step in steps:
        for get, path, context in own_gets(step):
            yield from _check_get(step, get, path, context, by_name, parameters)


def property_files_without_output(steps: list[dict[str, Any]]) -> Iterator[Finding]:
    for step in steps:
        outputs = {o.get("OutputName") for o in
                   (step.get("Arguments") or {}).get("ProcessingOutputConfig", {}).get("Outputs", [])}
        for i, declared in enumerate(step.get("PropertyFiles") or []):
            if declared.get("OutputName") not in outputs:
                yield step["Name"], f"PropertyFiles[{i}].OutputName", \
                    f"'{declared.get('OutputName')}' is not an output of this step; use one of {sorted(outputs)}"


def _check_get(step: dict[str, Any], get: str, path: str, context: str, by_name: dict[str, Any],
               parameters: dict[str, str]) -> Iterator[Finding]:
    name = step["Name"]
    if get.startswith("Steps."):
        match = STEP_REF.match(get)
        target = match.group(1) if match else None
        if target not in by_name or target == name:
            why = "this step itself" if target == name else f"step '{target}', which does not exist"
            yield name, path, f"{get!r} names {why}; reference one of {sorted(set(by_name) - {name})}"
            return
        if context == "jsonget":
            pf = PROPERTY_FILE.match(get)
            declared = {f.get("PropertyFileName") for f in by_name[target].get("PropertyFiles") or []}
            if not pf or pf.group(2) not in declared:
                yield name, path, f"Std:JsonGet reads {get!r}, but step '{target}' declares property files " \
                                  f"{sorted(declared) or 'none'}; declare it on that step (PropertyFiles)"
    elif get.startswith("Parameters."):
        param = get.split(".", 1)[1]
        if param not in parameters:
            yield name, path, f"parameter '{param}' is not declared; declare it under Parameters " \
                              f"(declared: {sorted(parameters)})"
        elif parameters[param] != "String" and context == "direct" and path.rsplit(".", 1)[-1].split("[")[0] \
                not in TYPED_FIELDS:
            yield name, path, f"the {parameters[param]} parameter '{param}' is used directly in a String field, " \
                              "which CreatePipeline rejects; wrap it as {\"Std:Join\": {\"On\": \"\", \"Values\": " \
                              f"[{{\"Get\": \"Parameters.{param}\"}}]}}}} (the SDK's .to_string())"
    elif get.startswith("Execution."):
        variable = get.split(".", 1)[1]
        if variable not in EXECUTION_VARIABLES:
            yield name, path, f"'{variable}' is not an execution variable; use one of {sorted(EXECUTION_VARIABLES)}"


def own_gets(step: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(Get string, field path, context) for the references a step makes itself, not its condition branches'."""
    own = {k: v for k, v in step.items() if k != "Arguments"}
    own["Arguments"] = {k: v for k, v in (step.get("Arguments") or {}).items()
                        if not (step.get("Type") == "Condition" and k in ("IfSteps", "ElseSteps"))}
    return _gets(own, "")


def _gets(node: Any, path: str, context: str = "direct") -> Iterator[tuple[str, str, str]]:
    """(Get string, field path, 'direct' | 'join' | 'jsonget') for every {"Get": ...} below node."""
    if isinstance(node, dict):
        if set(node) == {"Get"} and isinstance(node["Get"], str):
            yield node["Get"], path, context
            return
        for key, value in node.items():
            inner = {"Std:Join": "join", "Std:JsonGet": "jsonget"}.get(key, context if key in ("Values",
                                                                                          "PropertyFile") else "direct")
            yield from _gets(value, f"{path}.{key}" if path else key, inner)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _gets(value, f"{path}[{i}]", context)
