"""`type: condition` — compare metrics and parameters, then run one branch and skip the other."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable, Literal, Union

from pydantic import field_validator

from pipelines.errors import StepFailed
from pipelines.refs import MetricRef, ParamRef, Ref, refs_in
from pipelines.step_api import CompileContext, LocalResult, Step, StepContext, decision_record
from pipelines.values import bool_text

COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt,
    "==": operator.eq, "!=": operator.ne, "in": lambda left, right: left in right,
}


@dataclass(frozen=True)
class Comparison:
    left: Any
    op: str
    right: Any


@dataclass(frozen=True)
class Logical:
    op: str  # "and" | "or" | "not"
    operands: tuple["Expr", ...]


Expr = Union[Comparison, Logical]


def parse_expr(raw: Any) -> Expr:
    """Parse `{left, op, right}` or `{and: [...]}` / `{or: [...]}` / `{not: {...}}`."""
    if not isinstance(raw, dict):
        raise ValueError("a condition is a mapping: {left: ..., op: '>=', right: ...}, "
                         "or {and: [...]}, {or: [...]}, {not: {...}}")
    keys = set(raw)
    if keys <= {"left", "op", "right"}:
        missing = {"left", "op", "right"} - keys
        if missing:
            raise ValueError(f"comparison is missing {', '.join(sorted(missing))}")
        if not isinstance(raw["op"], str) or raw["op"] not in COMPARISONS:
            raise ValueError(f"unknown operator {raw['op']!r}; use one of {' '.join(COMPARISONS)}")
        if raw["op"] == "in" and not isinstance(raw["right"], list):
            raise ValueError("'in' needs a list on the right, e.g. right: [a, b]")
        return Comparison(raw["left"], raw["op"], raw["right"])
    if len(keys) == 1 and keys <= {"and", "or"}:
        (op,) = keys
        items = raw[op]
        if not isinstance(items, list) or not items:
            raise ValueError(f"'{op}' takes a non-empty list of conditions")
        return Logical(op, tuple(parse_expr(item) for item in items))
    if keys == {"not"}:
        return Logical("not", (parse_expr(raw["not"]),))
    unknown = sorted(keys - {"left", "op", "right", "and", "or", "not"})
    hint = f"unknown key(s) {', '.join(map(str, unknown))}; " if unknown else ""
    raise ValueError(hint + "use either left/op/right or exactly one of and/or/not")


def evaluate(expr: Expr, resolve: Callable[[Any], Any]) -> bool:
    """Evaluate an expression after resolving its references."""
    return compare(expr, resolve, [])[0]


def compare(expr: Expr, resolve: Callable[[Any], Any], made: list[dict[str, Any]]) -> tuple[bool, Any]:
    """Whether expr holds, and its shape for the run's record (see step_api.decision_record): each comparison
    is added to made, with the values compared and where they came from."""
    if isinstance(expr, Comparison):
        left, right = resolve(expr.left), resolve(expr.right)
        try:
            holds = bool(COMPARISONS[expr.op](left, right))
        except TypeError:
            raise StepFailed(f"cannot compare {left!r} {expr.op} {right!r}") from None
        made.append({"op": expr.op, "left": left, "right": right, "holds": holds,
                     "left_from": source(expr.left), "right_from": source(expr.right)})
        return holds, len(made) - 1
    parts = [compare(operand, resolve, made) for operand in expr.operands]
    results = [holds for holds, _ in parts]
    holds = all(results) if expr.op == "and" else any(results) if expr.op == "or" else not results[0]
    return holds, {expr.op: [shape for _, shape in parts]}


def source(value: Any) -> str:
    """Where a compared value comes from, in words: 'evaluate report: <json path>', 'parameter <name>', or ''."""
    if isinstance(value, MetricRef):
        return f"{value.step} report: {value.key}"
    if isinstance(value, ParamRef):
        return f"parameter {value.name}"
    return ""


def describe(expr: Expr, resolve: Callable[[Any], Any] | None = None) -> str:
    """The expression as text, with values filled in when resolve is given."""
    if isinstance(expr, Comparison):
        show = (lambda v: _shown(resolve(v))) if resolve else str
        return f"{show(expr.left)} {expr.op} {show(expr.right)}"
    if expr.op == "not":
        return f"not ({describe(expr.operands[0], resolve)})"
    return f" {expr.op} ".join(f"({describe(o, resolve)})" for o in expr.operands)


def _shown(value: Any) -> str:
    """A resolved operand for people: metrics to 4 decimals (0.8444, not 0.8444301543332015)."""
    return f"{value:.4f}".rstrip("0").rstrip(".") if isinstance(value, float) else repr(value)


def expr_refs(expr: Expr) -> list[Ref]:
    if isinstance(expr, Comparison):
        return refs_in([expr.left, expr.right])
    return [r for operand in expr.operands for r in expr_refs(operand)]


class ConditionStep(Step):
    """SageMaker ConditionStep: if_true steps run when the condition holds, if_false otherwise."""

    type: Literal["condition"] = "condition"
    condition: Any
    if_true: list[str] = []
    if_false: list[str] = []

    @field_validator("condition")
    @classmethod
    def _parse(cls, value: Any) -> Expr:
        return value if isinstance(value, (Comparison, Logical)) else parse_expr(value)

    def refs(self) -> list[Ref]:
        return super().refs() + expr_refs(self.condition)

    def branch_targets(self) -> dict[str, list[str]]:
        return {"if_true": self.if_true, "if_false": self.if_false}

    def run_local(self, ctx: StepContext) -> LocalResult:
        made: list[dict[str, Any]] = []
        holds, shape = compare(self.condition, ctx.resolve, made)
        shown = describe(self.condition, ctx.resolve)
        return LocalResult(skip=self.if_false if holds else self.if_true, note=f"{shown} is {bool_text(holds)}",
                           decision=decision_record(holds, made, shape, self.branch_targets()))

    def compile_sagemaker(self, cc: CompileContext) -> Any:
        """A ConditionStep: parameters as they are, report values through JsonGet on the evaluation step's
        PropertyFile; the if_true and if_false steps are its IfSteps and ElseSteps."""
        from sagemaker.mlops.workflow import ConditionStep as SdkConditionStep

        expr = self.condition
        conditions = [sdk_condition(e, cc) for e in expr.operands] if isinstance(expr, Logical) and \
            expr.op == "and" else [sdk_condition(expr, cc)]
        cc.held.update(self.if_true + self.if_false)
        return SdkConditionStep(
            name=self.name, conditions=conditions, description=self.description or None,
            if_steps=_compiled(cc, self.if_true), else_steps=_compiled(cc, self.if_false),
            depends_on=cc.depends_on(self))


def _compiled(cc: CompileContext, names: list[str]) -> list[Any]:
    """The SDK steps of a branch (a step type may compile to several, e.g. transform: model + transform)."""
    steps = [cc.steps[n] for n in names if cc.steps[n] is not None]
    return [s for step in steps for s in (step if isinstance(step, list) else [step])]


def sdk_condition(expr: Expr, cc: CompileContext) -> Any:
    """One SDK condition for an expression (and = several conditions, or = ConditionOr, ...)."""
    from sagemaker.core.workflow import conditions as c

    if isinstance(expr, Logical):
        parts = [sdk_condition(o, cc) for o in expr.operands]
        if expr.op == "not":
            return c.ConditionNot(expression=parts[0])
        if expr.op == "or":
            return c.ConditionOr(conditions=parts)
        return c.ConditionNot(expression=c.ConditionOr(conditions=[c.ConditionNot(expression=p) for p in parts]))
    left, right = cc.value(expr.left), cc.value(expr.right)
    if expr.op == "in":
        return c.ConditionIn(value=left, in_values=right)
    if expr.op == "!=":
        return c.ConditionNot(expression=c.ConditionEquals(left=left, right=right))
    kind = {">=": c.ConditionGreaterThanOrEqualTo, ">": c.ConditionGreaterThan, "<=": c.ConditionLessThanOrEqualTo,
            "<": c.ConditionLessThan, "==": c.ConditionEquals}[expr.op]
    return kind(left=left, right=right)
