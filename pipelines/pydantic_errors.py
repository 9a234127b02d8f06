"""Turn pydantic's validation errors into Problems that name the line and suggest a fix."""

from __future__ import annotations

import re
import types
import typing
from typing import Any, Callable

from pydantic import BaseModel, ValidationError

from pipelines.errors import Problem, did_you_mean
from pipelines.refs import ParamRef, OutputRef, MetricRef, Template

_REF_TYPES = (ParamRef, OutputRef, MetricRef, Template)


def problems_from(exc: ValidationError, model: type[BaseModel], base: tuple,
                  locate: Callable[[tuple, str], Problem]) -> list[Problem]:
    """One Problem per pydantic error; base is where the validated mapping sits in the file."""
    problems = []
    for error in exc.errors():
        loc = tuple(part for part in error["loc"] if not _is_union_tag(part))
        problems.append(locate(base + loc, _message(error, model, loc)))
    return problems


def _message(error: Any, model: type[BaseModel], loc: tuple) -> str:
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        allowed = _fields_at(model, loc[:-1])
        return f"unknown key '{loc[-1]}'{did_you_mean(str(loc[-1]), allowed)}"
    if kind == "missing":
        return "required field is missing; add it"
    if isinstance(value, _REF_TYPES):
        return f"a reference ({value}) is not allowed in this field; write a literal value"
    if kind == "literal_error":
        expected = re.findall(r"'([^']*)'", error.get("ctx", {}).get("expected", ""))
        return f"{value!r} is not allowed{did_you_mean(str(value), expected)}"
    if kind == "string_pattern_mismatch":
        return f"{value!r} does not match the required pattern {error['ctx']['pattern']}"
    message = error["msg"]
    message = message.removeprefix("Value error, ")
    if kind not in {"value_error", "assertion_error"} and not isinstance(value, (dict, list)):
        message += f" (got {value!r})"
    return message


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "float", "bool", "none"})


def _fields_at(model: Any, loc: tuple) -> list[str]:
    """The field names a model accepts at a nested location (for close-match hints)."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return []
            current = field.annotation
        else:
            args = typing.get_args(current)
            current = args[-1] if args else None
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if models else annotation
    return annotation
