"""References between steps and to parameters, parsed once at load time.

A config string may be a literal, exactly one reference (`${params.min_auc}`), or text with
references inside it (`--threshold=${params.threshold}`). Both backends resolve these objects:
the local runner from recorded outputs, the compiler into SageMaker properties and JsonGets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Union

from pipelines.values import value_text

_REF = re.compile(r"\$\{([^}]*)\}")
_NAME = r"[A-Za-z_][A-Za-z0-9_-]*"


@dataclass(frozen=True)
class ParamRef:
    """`${params.<name>}`."""

    name: str

    def __str__(self) -> str:
        return f"${{params.{self.name}}}"


@dataclass(frozen=True)
class OutputRef:
    """`${steps.<step>.outputs.<output>}`: the folder (or URI) a step wrote."""

    step: str
    output: str

    def __str__(self) -> str:
        return f"${{steps.{self.step}.outputs.{self.output}}}"


@dataclass(frozen=True)
class MetricRef:
    """`${steps.<step>.metrics.<dotted.key>}`: a value in a step's metrics report."""

    step: str
    key: str

    def __str__(self) -> str:
        return f"${{steps.{self.step}.metrics.{self.key}}}"


Ref = Union[ParamRef, OutputRef, MetricRef]


@dataclass(frozen=True)
class Template:
    """Text with references inside: parts alternate between str and Ref."""

    parts: tuple[Union[str, Ref], ...]

    def refs(self) -> list[Ref]:
        return [p for p in self.parts if not isinstance(p, str)]

    def __str__(self) -> str:
        return "".join(str(p) for p in self.parts)


class RefSyntaxError(ValueError):
    """A `${...}` that is not one of the three reference forms."""


def parse_ref(body: str) -> Ref:
    """Parse the inside of `${...}`."""
    body = body.strip()
    if m := re.fullmatch(rf"params\.({_NAME})", body):
        return ParamRef(m.group(1))
    if m := re.fullmatch(rf"steps\.({_NAME})\.outputs\.({_NAME})", body):
        return OutputRef(m.group(1), m.group(2))
    if m := re.fullmatch(rf"steps\.({_NAME})\.metrics\.({_NAME}(?:\.{_NAME})*)", body):
        return MetricRef(m.group(1), m.group(2))
    raise RefSyntaxError(
        f"'${{{body}}}' is not a reference; use ${{params.NAME}}, "
        "${steps.STEP.outputs.NAME} or ${steps.STEP.metrics.KEY}"
    )


def parse_value(value: Any) -> Any:
    """A config value with its references parsed: Ref, Template, or the value unchanged."""
    if not isinstance(value, str) or "${" not in value:
        return value
    parts: list[Union[str, Ref]] = []
    pos = 0
    for m in _REF.finditer(value):
        if m.start() > pos:
            parts.append(value[pos : m.start()])
        parts.append(parse_ref(m.group(1)))
        pos = m.end()
    if pos < len(value):
        parts.append(value[pos:])
    if "${" in "".join(p for p in parts if isinstance(p, str)):
        raise RefSyntaxError(f"unclosed '${{' in {value!r}; write references as ${{...}}")
    if len(parts) == 1 and not isinstance(parts[0], str):
        return parts[0]
    return Template(tuple(parts))


def refs_in(value: Any) -> list[Ref]:
    """Every reference inside a parsed value (recursing into lists and dicts)."""
    if isinstance(value, (ParamRef, OutputRef, MetricRef)):
        return [value]
    if isinstance(value, Template):
        return value.refs()
    if isinstance(value, dict):
        return [r for v in value.values() for r in refs_in(v)]
    if isinstance(value, (list, tuple)):
        return [r for v in value for r in refs_in(v)]
    return []


def resolve(value: Any, lookup: Callable[[Ref], Any]) -> Any:
    """Replace references with what lookup returns; templates become strings."""
    if isinstance(value, (ParamRef, OutputRef, MetricRef)):
        return lookup(value)
    if isinstance(value, Template):
        return "".join(p if isinstance(p, str) else _as_text(lookup(p)) for p in value.parts)
    if isinstance(value, dict):
        return {k: resolve(v, lookup) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [resolve(v, lookup) for v in value]
    return value


def _as_text(value: Any) -> str:
    return value_text(value)
