"""What CreatePipeline refuses in a definition, checked here so that every user gets it (no AWS, no SDK).

Each check is one function over the definition JSON and yields (step, field path, message with the fix):
- a numeric or boolean parameter referenced directly in a String field (the service: "Cannot assign
  property reference ... to argument of type [String]"; the fix is `Std:Join`, the SDK's `.to_string()`);
- a `Get` of a step that does not exist (or of the step itself), a `Std:JsonGet` of a property file the
  step does not declare, a property file over an output the step does not have;
- a `Get` of an undeclared parameter or an unknown execution variable;
- duplicate step names (condition branches included); `DependsOn` naming a missing step;
- steps that wait for each other (`DependsOn`, `Get "Steps.X..."` and condition branches form a cycle);
- what the API refuses in a job's own fields (pipelines/sagemaker/service_limits.py).
"""

from __future__ import annotations

import re
from typing import Any, Iterator

from pipelines.sagemaker.service_limits import check_service_limits

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
IN_BRANCH = "Name"  # a branch step waits for its condition: no field of its own says so


def check_definition(definition: dict[str, Any]) -> list[Finding]:
    """Every problem CreatePipeline (or the first execution) would stop at, in a stable order."""
    steps = list(all_steps(definition.get("Steps", [])))
    parameters = {p["Name"]: p.get("Type", "String") for p in definition.get("Parameters", [])}
    defaults = {p["Name"]: p.get("DefaultValue") for p in definition.get("Parameters", [])}
    return [*duplicate_names(steps), *missing_dependencies(steps), *bad_references(steps, parameters),
            *property_files_without_output(steps), *cycles(steps), *check_service_limits(steps, defaults)]


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


def cycles(steps: list[dict[str, Any]]) -> Iterator[Finding]:
    """One finding per group of steps that wait for each other, at the field where the first waits for the next."""
    waits = {step["Name"]: _waits_for(step, steps) for step in steps}
    edges = {name: sorted(w) for name, w in waits.items()}
    reported: set[str] = set()
    for name in waits:
        cycle = None if name in reported else _cycle_from(name, edges)
        if cycle:
            reported |= _reachable(name, edges) & _reachable(name, _reversed(edges))  # all of its group
            first = next((i for i in range(len(cycle) - 1) if waits[cycle[i]][cycle[i + 1]] != IN_BRANCH), 0)
            cycle = [*cycle[first:-1], *cycle[:first], cycle[first]]  # start where a field of its own says so
            yield cycle[0], waits[cycle[0]][cycle[1]], f"steps wait for each other in a cycle: {' -> '.join(cycle)} " \
                                                      "(each waits for the next), so none of them can start; " \
                                                      "remove one of these dependencies"


def _waits_for(step: dict[str, Any], steps: list[dict[str, Any]]) -> dict[str, str]:
    """The steps this one waits for, each with the field that says so (DependsOn, a Get, a condition's branch)."""
    names = {s["Name"] for s in steps}
    found: dict[str, str] = {}
    for i, other in enumerate(step.get("DependsOn") or []):
        found.setdefault(other, f"DependsOn[{i}]")
    for get, path, _ in own_gets(step):
        match = STEP_REF.match(get)
        if match:
            found.setdefault(match.group(1), path)
    for condition in steps:
        for branch in ("IfSteps", "ElseSteps") if condition.get("Type") == "Condition" else ():
            if step["Name"] in [s.get("Name") for s in (condition.get("Arguments") or {}).get(branch, [])]:
                found.setdefault(condition["Name"], IN_BRANCH)
    return {other: path for other, path in found.items() if other in names and other != step["Name"]}


def _cycle_from(start: str, waits: dict[str, list[str]]) -> list[str] | None:
    """A path start -> ... -> start along waits, found depth first in a stable order, or None."""
    trail, on_trail, done = [start], {start}, set()

    def visit(name: str) -> list[str] | None:
        for other in waits[name]:
            if other == start:
                return [*trail, start]
            if other not in on_trail and other not in done:
                trail.append(other)
                on_trail.add(other)
                found = visit(other)
                if found:
                    return found
                on_trail.discard(trail.pop())
                done.add(other)
        return None

    return visit(start)


def _reachable(start: str, edges: dict[str, list[str]]) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for other in edges[todo.pop()]:
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return seen


def _reversed(edges: dict[str, list[str]]) -> dict[str, list[str]]:
    back: dict[str, list[str]] = {name: [] for name in edges}
    for name, others in edges.items():
        for other in others:
            back[other].append(name)
    return back


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
