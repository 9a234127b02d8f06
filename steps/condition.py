"""`type: condition` — compare metrics and parameters, then run one branch and skip the other."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable, Literal, Union

from pydantic import field_validator

from pipelines.errors import StepFailed
from pipelines.local.context import LocalResult, StepContext
from pipelines.refs import refs_in
from pipelines.spec import StepSpec

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
    if isinstance(expr, Comparison):
        left, right = resolve(expr.left), resolve(expr.right)
        try:
            return bool(COMPARISONS[expr.op](left, right))
        except TypeError:
            raise StepFailed(f"cannot compare {left!r} {expr.op} {right!r}") from None
    results = [evaluate(operand, resolve) for operand in expr.operands]
    if expr.op == "and":
        return all(results)
    if expr.op == "or":
        return any(results)
    return not results[0]


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


def expr_refs(expr: Expr) -> list:
    if isinstance(expr, Comparison):
        return refs_in([expr.left, expr.right])
    return [r for operand in expr.operands for r in expr_refs(operand)]


class ConditionStep(StepSpec):
    """SageMaker ConditionStep: if_true steps run when the condition holds, if_false otherwise."""

    type: Literal["condition"] = "condition"
    condition: Any
    if_true: list[str] = []
    if_false: list[str] = []

    @field_validator("condition")
    @classmethod
    def _parse(cls, value: Any) -> Expr:
        return value if isinstance(value, (Comparison, Logical)) else parse_expr(value)

    def branch_targets(self) -> dict[str, list[str]]:
        return {"if_true": self.if_true, "if_false": self.if_false}

    def run_local(self, ctx: StepContext, inputs: dict) -> LocalResult:
        holds = evaluate(self.condition, ctx.resolve)
        shown = describe(self.condition, ctx.resolve)
        return LocalResult(skip=self.if_false if holds else self.if_true,
                           note=f"{shown} is {'true' if holds else 'false'}")

    def compile_sagemaker(self, cc: Any) -> Any:
        """A ConditionStep over parameters; over metrics, a gate job (see pipelines/sagemaker/gate.py)."""
        from pipelines.refs import MetricRef

        if any(isinstance(r, MetricRef) for r in expr_refs(self.condition)):
            return self._compile_gate(cc)
        from sagemaker.mlops.workflow import ConditionStep as SdkConditionStep

        expr = self.condition
        conditions = [sdk_condition(e, cc) for e in expr.operands] if isinstance(expr, Logical) and \
            expr.op == "and" else [sdk_condition(expr, cc)]
        cc.held.update(self.if_true + self.if_false)
        return SdkConditionStep(
            name=self.name, conditions=conditions, description=self.description or None,
            if_steps=[cc.steps[n] for n in self.if_true], else_steps=[cc.steps[n] for n in self.if_false],
            depends_on=cc.depends_on(self))

    def _compile_gate(self, cc: Any) -> Any:
        """A small processing job that stops the pipeline (with the fail step's message) when the condition
        does not hold; the true branch runs after it. The published schema has no JsonGet to do otherwise."""
        import json
        from pathlib import Path

        from sagemaker.core.shapes import ProcessingInput, ProcessingS3Input

        from pipelines.refs import MetricRef, OutputRef, ParamRef
        from pipelines.sagemaker import gate

        fails = [cc.spec.step(n) for n in self.if_false]
        if any(step.type != "fail" for step in fails):
            raise ValueError(f"condition '{self.name}': on SageMaker a condition over metrics can only stop the "
                             "pipeline; its if_false steps must be fail steps")
        refs = expr_refs(self.condition)
        reported = sorted({r.step for r in refs if isinstance(r, MetricRef)})
        inputs = [ProcessingInput(input_name=step, s3_input=ProcessingS3Input(
            s3_uri=cc.value(OutputRef(step, cc.spec.step(step).report.output)), s3_data_type="S3Prefix",
            local_path=f"/opt/ml/processing/input/{step}", s3_input_mode="File")) for step in reported]
        arguments = ["--condition", json.dumps(_expr_json(self.condition), sort_keys=True),
                     "--message", cc.plain_text(fails[0].message) if fails else "the condition does not hold"]
        for name in sorted({r.name for r in refs if isinstance(r, ParamRef)}):
            arguments += ["--param", name, cc.parameters[name]]
        for step in reported:
            arguments += ["--report", step, cc.spec.step(step).report.path]
        gate_step = cc.script_job(self, Path(gate.__file__), arguments, inputs)
        cc.held.update(self.if_false)
        for target in self.if_true:
            cc.steps[target].add_depends_on([gate_step])
        return gate_step


def _expr_json(expr: Expr) -> dict:
    """The condition for gate.py: metrics as {"metric": [step, key]}, parameters as {"param": name}."""
    from pipelines.refs import MetricRef, ParamRef

    def operand(value: Any) -> Any:
        if isinstance(value, MetricRef):
            return {"metric": [value.step, value.key]}
        if isinstance(value, ParamRef):
            return {"param": value.name}
        return value
    if isinstance(expr, Comparison):
        return {"left": operand(expr.left), "op": expr.op, "right": operand(expr.right)}
    if expr.op == "not":
        return {"not": _expr_json(expr.operands[0])}
    return {expr.op: [_expr_json(o) for o in expr.operands]}


def sdk_condition(expr: Expr, cc: Any) -> Any:
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
