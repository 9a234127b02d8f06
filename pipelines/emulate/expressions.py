"""Pipeline functions and references as the service evaluates them: Get, Std:Join, Std:JsonGet."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from pipelines.errors import StepFailed
from pipelines.values import value_text

# Execution variables that name the job of the step that uses them, by the step's Type
JOB_NAME_VARIABLES = {"Processing": "ProcessingJobName", "Training": "TrainingJobName"}
_PART = re.compile(r"\.?([A-Za-z0-9_]+)|\[['\"]([^'\"]+)['\"]\]|\[(\d+)\]")


@dataclass
class Scope:
    """What references resolve against: parameter values, execution variables, finished steps' properties."""

    parameters: dict[str, Any]
    execution: dict[str, Any]
    properties: dict[str, dict[str, Any]] = field(default_factory=dict)
    read_property_file: Callable[[str, str], Any] = lambda step, name: {}

    def evaluate(self, value: Any) -> Any:
        """A definition value with every function and reference replaced by its value."""
        if isinstance(value, dict):
            if set(value) == {"Get"}:
                return self.get(value["Get"])
            if set(value) == {"Std:Join"}:
                join = value["Std:Join"]
                return str(join["On"]).join(_text(self.evaluate(v)) for v in join["Values"])
            if set(value) == {"Std:JsonGet"}:
                return self.json_get(value["Std:JsonGet"])
            return {k: self.evaluate(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.evaluate(v) for v in value]
        return value

    def for_job(self, kind: str, job: str) -> Scope:
        """This scope as a step of that Type sees it: Execution.ProcessingJobName (or TrainingJobName) is its job."""
        variable = JOB_NAME_VARIABLES.get(kind)
        return replace(self, execution={**self.execution, variable: job}) if variable else self

    def get(self, path: str) -> Any:
        head, _, rest = path.partition(".")
        if path == "Execution.CurrentDateTime":  # the time it is read, not the start (StartDateTime)
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if head == "Parameters" and rest in self.parameters:
            return self.parameters[rest]
        if head == "Execution" and rest in self.execution:
            return self.execution[rest]
        if head == "Execution" and rest in JOB_NAME_VARIABLES.values():
            kind = next(k for k, v in JOB_NAME_VARIABLES.items() if v == rest)
            raise StepFailed(f"Execution.{rest} is the name of the job a {kind} step runs; use it in a {kind} "
                             "step's arguments")
        if head == "Steps":
            step, _, prop = rest.partition(".")
            return property_value(self.properties.get(step, {}), prop, f"Steps.{step}")
        raise StepFailed(f"cannot resolve {{'Get': {path!r}}}")

    def json_get(self, spec: dict[str, Any]) -> Any:
        ref = spec["PropertyFile"]["Get"] if isinstance(spec["PropertyFile"], dict) else spec["PropertyFile"]
        _, step, _, name = ref.split(".", 3)
        document = self.read_property_file(step, name)
        return json_path(document, self.evaluate(spec["Path"]), f"{ref} at {spec['Path']!r}")


def property_value(properties: dict[str, Any], path: str, shown: str) -> Any:
    """`ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri` in a step's properties."""
    value: Any = properties
    for match in _PART.finditer(path):
        key = match.group(1) or match.group(2) or int(match.group(3))
        if isinstance(key, int) and isinstance(value, dict):  # Outputs[0]: by position, as well as by name
            value = list(value.values())
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            raise StepFailed(f"{shown}.{path}: the step has no such property") from None
    return value


def json_path(document: Any, path: str, shown: str) -> Any:
    """A dotted path (with [n] indexes) into a JSON document, as Std:JsonGet reads a property file."""
    value = document
    for match in _PART.finditer(path):
        key = match.group(1) or match.group(2) or int(match.group(3))
        if isinstance(value, list) and str(key).isdigit():
            key = int(key)
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            raise StepFailed(f"Std:JsonGet {shown}: the file has no such value") from None
    return value


def _text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return value_text(value)
