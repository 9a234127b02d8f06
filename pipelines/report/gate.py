"""The gate decision in words: what the condition step compared, with the values, and what followed."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

SYMBOL = {">=": "≥", ">": ">", "<=": "≤", "<": "<", "==": "=", "!=": "≠"}
NEGATION = {">=": "<", ">": "≤", "<=": ">", "<": "≥", "==": "≠", "!=": "="}
METRIC_LABELS = {"auc": "ROC AUC", "pr_auc": "PR AUC", "f1": "F1", "log_loss": "log loss", "rmse": "RMSE"}


@dataclass(frozen=True)
class Gate:
    step: str
    sentence: str
    passed: bool | None
    change: str = ""


def gate_decision(state: dict[str, Any], specs: dict[str, Any], registered: list[Any]) -> Gate | None:
    """The first condition step's decision, or None when the pipeline has no condition."""
    records = state.get("steps", {})
    for name, record in records.items():
        spec = specs.get(name)
        kind = str(getattr(spec, "type", "")) or f"sagemaker:{(record.get('emulated') or {}).get('type', '')}"
        if kind != "condition" and not kind.endswith(":Condition"):
            continue
        return _decision(name, record, spec, state, registered, specs)
    return None


def _decision(name: str, record: dict[str, Any], spec: Any, state: dict[str, Any], registered: list[Any],
              specs: dict[str, Any]) -> Gate:
    status = record.get("status")
    if status not in ("succeeded", "cached"):
        why = record.get("reason") or record.get("error") or "it did not run"
        return Gate(name, f"The gate '{name}' was not reached ({why}), so nothing was decided.", None)
    skipped = set(record.get("skip") or [])
    branches = spec.branch_targets() if hasattr(spec, "branch_targets") else {}
    if_true = list(getattr(spec, "if_true", []) or branches.get("if_true", []))
    if_false = list(getattr(spec, "if_false", []) or branches.get("if_false", []))
    note = str(record.get("note") or "")
    emulated = record.get("emulated") or {}
    expr = getattr(spec, "condition", None)
    if "outcome" in emulated:  # an emulated ConditionStep recorded what it compared
        holds = bool(emulated["outcome"])
        compared = _emulated_words(emulated.get("conditions") or [], holds) or note
    else:
        if if_true or if_false:
            holds = not (set(if_true) & skipped) if if_true else bool(set(if_false) & skipped)
        else:
            holds = note.endswith("is true") or note.endswith("hold") and "do not" not in note
        compared = _words(expr, holds, state) if expr is not None else note
    version = next((r for r in registered if r.step in if_true), None) or (registered[0] if registered else None)
    if holds:
        outcome = "the model passed the gate"
        if version is not None:
            outcome += f" and was registered as {version.group} version {version.version} ({version.status})"
        elif any(_is_register(specs.get(t), t) for t in if_true):
            outcome += ", but its registration did not succeed"
        return Gate(name, f"{compared}: {outcome}.", True)
    registers = [t for t in if_true if _is_register(specs.get(t), t)]
    outcome = "the model did not pass the gate" + ("; it was not registered" if registers or not registered else "")
    return Gate(name, f"{compared}: {outcome}.", False, _change(expr, state))


def _is_register(spec: Any, name: str) -> bool:
    return "regist" in str(getattr(spec, "type", "")).lower() or (spec is None and "regist" in name)


def _words(expr: Any, holds: bool, state: dict[str, Any]) -> str:
    """'ROC AUC (evaluate) 0.776 ≥ min_auc 0.75' — the comparison as it came out, values filled in."""
    from steps.condition import Comparison

    if isinstance(expr, Comparison):
        left, right = _operand(expr.left, state), _operand(expr.right, state)
        lv, rv = _shown(left[1], right[1])
        op = SYMBOL.get(expr.op, expr.op) if holds else NEGATION.get(expr.op, f"not {expr.op}")
        return f"{left[0]}{lv} {op} {right[0]}{rv}"
    parts = [_words(o, holds, state) for o in expr.operands]
    if expr.op == "not":
        return f"not ({parts[0]})"
    return f" {expr.op} ".join(f"({p})" for p in parts) + (" holds" if holds else " does not hold")


DEFINITION_OPS = {"GreaterThanOrEqualTo": ">=", "GreaterThan": ">", "LessThanOrEqualTo": "<=", "LessThan": "<",
                  "Equals": "=="}


def _emulated_words(conditions: list[dict[str, Any]], holds: bool) -> str:
    """What an emulated condition compared, from the run's state: 'ROC AUC (evaluate) 0.749 < min_auc 0.75'."""
    parts = []
    for c in conditions:
        op = DEFINITION_OPS.get(str(c.get("type")))
        left, right = _source_label(str(c.get("left_from") or "")), _source_label(str(c.get("right_from") or ""))
        if op is None:
            parts.append(f"{left}{c.get('left')!r} {'in' if c.get('holds') else 'not in'} {c.get('right')!r}")
            continue
        lv, rv = _shown(c.get("left"), c.get("right"))
        shown = SYMBOL.get(op, op) if c.get("holds") else NEGATION.get(op, f"not {op}")
        parts.append(f"{left}{lv} {shown} {right}{rv}")
    if len(parts) == 1:
        return parts[0]
    return " and ".join(f"({p})" for p in parts) + (" hold" if holds else " do not all hold")


def _source_label(source: str) -> str:
    """'evaluate report: binary_classification_metrics.auc.value' -> 'ROC AUC (evaluate) '."""
    if source.startswith("parameter "):
        return source[len("parameter "):] + " "
    step, found, path = source.partition(" report: ")
    if not found:
        return ""
    parts = [p for p in path.split(".") if p not in ("value", "standard_deviation")]
    return f"{METRIC_LABELS.get(parts[-1], parts[-1].replace('_', ' ')) if parts else path} ({step}) "


def _operand(value: Any, state: dict[str, Any]) -> tuple[str, Any]:
    """(label and a space, value) of one side of a comparison."""
    from pipelines.refs import MetricRef, ParamRef

    if isinstance(value, ParamRef):
        return f"{value.name} ", state.get("params", {}).get(value.name)
    if isinstance(value, MetricRef):
        parts = [p for p in value.key.split(".") if p not in ("value", "standard_deviation")]
        label = METRIC_LABELS.get(parts[-1], parts[-1].replace("_", " ")) if parts else value.key
        found: Any = state.get("steps", {}).get(value.step, {}).get("metrics") or {}
        for part in value.key.split("."):
            found = found.get(part) if isinstance(found, dict) else None
        return f"{label} ({value.step}) ", found
    return "", value


def _shown(left: Any, right: Any) -> tuple[str, str]:
    """Both values rounded alike, with digits enough that different values do not read as equal."""
    for digits in (3, 4, 6):
        lt, rt = _num(left, digits), _num(right, digits)
        if lt != rt or left == right:
            return lt, rt
    return repr(left), repr(right)


def _num(value: Any, digits: int) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return "?" if value is None else str(value)


def _change(expr: Any, state: dict[str, Any]) -> str:
    """A command that resumes the run with the gate's parameter set to let this model through."""
    from pipelines.refs import ParamRef
    from steps.condition import Comparison

    if not isinstance(expr, Comparison) or not isinstance(expr.right, ParamRef) or state.get("execution_arn"):
        return ""
    left = _operand(expr.left, state)[1]
    if not isinstance(left, (int, float)):
        return ""
    bar = math.floor(left * 100) / 100 if expr.op in (">=", ">") else math.ceil(left * 100) / 100
    return f"sagepipe resume {state.get('run_id')} --param {expr.right.name}={bar:.2f}"
