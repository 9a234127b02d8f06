"""Input names a script step may not use: ones the job already has, and ones that collide in the container.

A script step's inputs become a processing job's inputs (`/opt/ml/processing/input/<name>`) or a training job's
channels (`SM_CHANNEL_<NAME>`, the name upper-cased with `-` as `_`). The compiled job adds inputs of its own,
and two names that differ only in case or in `-`/`_` are one environment variable in a training container (and
one folder on a case-insensitive disk), so the script would silently read one of them. Both are refused at load.
"""

from __future__ import annotations

from typing import Iterator

from pipelines.errors import Problem
from pipelines.spec import PipelineSpec
from pipelines.yamlsource import SourceMap

# what the compiled job itself takes: the script's folder (a processing input and a training channel `code`)
# and the SDK's training drivers (channel `sm_drivers`)
RESERVED = {"code": "the script's folder", "sm_drivers": "the SageMaker SDK's training drivers"}


def channel_variable(name: str) -> str:
    """The environment variable a training container gives a channel: SM_CHANNEL_TRAIN_DATA for train-data."""
    return "SM_CHANNEL_" + name.upper().replace("-", "_")


def check_input_names(spec: PipelineSpec, smap: SourceMap) -> Iterator[Problem]:
    """A problem at each reserved input name, and at the second of two names that collide."""
    for index, step in enumerate(spec.steps):
        if not step.runs_script:
            continue
        seen: dict[str, str] = {}
        for name in step.input_values():
            where = ("steps", index, "inputs", name)
            shown = f"steps.{step.name}.inputs.{name}"
            own = _reserved(name)
            if own is not None and own == name:
                yield smap.problem(where, f"'{name}' is a name the job uses itself: SageMaker gives the job "
                                          f"{RESERVED[own]} as input '{own}', so two inputs would have that name; "
                                          f"rename this one, e.g. '{name}_data'", shown)
            elif own is not None:
                yield smap.problem(where, f"'{name}' collides with the job's own input '{own}' ({RESERVED[own]}): "
                                          f"a training container gives both as {channel_variable(own)}; rename "
                                          f"this one, e.g. '{name}_data'", shown)
            variable = channel_variable(name)
            first = seen.setdefault(variable, name)
            if first != name:
                _, line = smap.locate(("steps", index, "inputs", first))
                at = f" (line {line})" if line else ""
                yield smap.problem(where, f"inputs '{first}'{at} and '{name}' differ only in case or '-'/'_': a "
                                          f"training container gives both as {variable} (and a case-insensitive "
                                          f"disk stages both in one folder), so the script would read only one; "
                                          f"rename one of them, e.g. '{name}_2'", shown)


def _reserved(name: str) -> str | None:
    """The job's own input that name is, or collides with; None when it is free."""
    return next((own for own in RESERVED if channel_variable(own) == channel_variable(name)), None)
