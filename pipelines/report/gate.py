"""The gate decision in words: what the condition step compared, with the values, and what followed.

Everything comes from the run's state: the decision a gate recorded (step_api.decision_record) and the versions
register steps recorded. A run recorded before gates kept their decision shows less: the branch it skipped, and
its note as written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

SYMBOL = {">=": "≥", ">": ">", "<=": "≤", "<": "<", "==": "=", "!=": "≠", "in": "in"}
NEGATION = {">=": "<", ">": "≤", "<=": ">", "<": "≥", "==": "≠", "!=": "=", "in": "not in"}
METRIC_LABELS = {"auc": "ROC AUC", "pr_auc": "PR AUC", "f1": "F1", "log_loss": "log loss", "rmse": "RMSE"}
# an emulated condition recorded before decisions had `op`: its definition Type
DEFINITION_OPS = {"GreaterThanOrEqualTo": ">=", "GreaterThan": ">", "LessThanOrEqualTo": "<=", "LessThan": "<",
                  "Equals": "==", "In": "in"}
DONE_OK = ("succeeded", "cached")


@dataclass(frozen=True)
class Gate:
    step: str
    sentence: str
    passed: bool | None
    change: str = ""


def gate_decision(state: dict[str, Any], specs: dict[str, Any], registered: list[Any]) -> Gate | None:
    """The first gate's decision (a step that recorded one, or that branches), or None when the run has none."""
    for name, record in state.get("steps", {}).items():
        decision = recorded_decision(record)
        if decision is None and not _branches(specs.get(name)):
            continue
        return _gate(name, record, decision, specs.get(name), state, registered)
    return None


def recorded_decision(record: dict[str, Any]) -> dict[str, Any] | None:
    """A step record's decision (an emulated condition recorded before decisions were kept: from its emulated
    record), or None."""
    decision = record.get("decision")
    if isinstance(decision, dict) and "outcome" in decision:
        return decision
    emulated = record.get("emulated") or {}
    if isinstance(emulated, dict) and "outcome" in emulated:
        conditions = [{**c, "op": c.get("op") or DEFINITION_OPS.get(str(c.get("type")), str(c.get("type")))}
                      for c in emulated.get("conditions") or [] if isinstance(c, dict)]
        return {"outcome": bool(emulated["outcome"]), "conditions": conditions}
    return None


def decision_words(decision: dict[str, Any]) -> str:
    """'ROC AUC (evaluate) 0.776 ≥ min_auc 0.75' — the comparison as it came out, values filled in."""
    conditions = [c for c in decision.get("conditions") or [] if isinstance(c, dict)]
    shape = decision.get("expression")
    if shape is None:  # recorded without its shape: the conditions are all of a definition's Conditions
        shape = 0 if len(conditions) == 1 else {"and": list(range(len(conditions)))}
    if isinstance(shape, int) and 0 <= shape < len(conditions):
        return _comparison(conditions[shape], bool(conditions[shape].get("holds")))
    text = _combined(shape, conditions)
    return f"{text} {'holds' if decision.get('outcome') else 'does not hold'}" if text else ""


def _combined(shape: Any, conditions: list[dict[str, Any]]) -> str:
    """An expression with each comparison as written (values filled in); its truth is said once, after it."""
    if isinstance(shape, int):
        return _comparison(conditions[shape], True) if 0 <= shape < len(conditions) else "?"
    if not isinstance(shape, dict) or len(shape) != 1:
        return ""
    ((op, operands),) = shape.items()
    parts = [_combined(o, conditions) for o in operands or []]
    if op == "not" and parts:
        return f"not ({parts[0]})"
    return f" {op} ".join(f"({p})" for p in parts)


def _comparison(c: dict[str, Any], holds: bool) -> str:
    op = str(c.get("op"))
    left, right = _source_label(str(c.get("left_from") or "")), _source_label(str(c.get("right_from") or ""))
    shown = SYMBOL.get(op, op) if holds else NEGATION.get(op, f"not {op}")
    if op == "in":
        return f"{left}{c.get('left')!r} {shown} {c.get('right')!r}"
    lv, rv = _shown(c.get("left"), c.get("right"))
    return f"{left}{lv} {shown} {right}{rv}"


def _gate(name: str, record: dict[str, Any], decision: dict[str, Any] | None, spec: Any, state: dict[str, Any],
          registered: list[Any]) -> Gate:
    if record.get("status") not in DONE_OK:
        why = record.get("reason") or record.get("error") or "it did not run"
        return Gate(name, f"The gate '{name}' was not reached ({why}), so nothing was decided.", None)
    branches = (decision or {}).get("branches") or _branches(spec)
    if_true = list(branches.get("if_true") or [])
    if decision is not None:
        holds: bool | None = bool(decision["outcome"])
        compared = decision_words(decision) or str(record.get("note") or "")
    else:  # recorded before gates kept their decision: the branch it skipped says which way it went
        holds = _taken(record, branches)
        compared = str(record.get("note") or f"gate '{name}'")
    if holds is None:
        return Gate(name, f"{compared}.", None)
    version = next((r for r in registered if r.step in if_true), None) or (registered[0] if registered else None)
    if holds:
        outcome = "the model passed the gate"
        failed = [t for t in if_true if state.get("steps", {}).get(t, {}).get("status") in ("failed", "interrupted")]
        if version is not None:
            outcome += f" and was registered as {version.group} version {version.version} ({version.status})"
        elif failed:
            outcome += ", but " + ", ".join(f"step '{t}'" for t in failed) + " did not succeed"
        return Gate(name, f"{compared}: {outcome}.", True)
    outcome = "the model did not pass the gate" + ("" if version is not None else "; it was not registered")
    return Gate(name, f"{compared}: {outcome}.", False, _change(decision, state))


def _branches(spec: Any) -> dict[str, list[str]]:
    targets = getattr(spec, "branch_targets", None)
    return targets() if callable(targets) else {}


def _taken(record: dict[str, Any], branches: dict[str, list[str]]) -> bool | None:
    skipped = set(record.get("skip") or [])
    if_true, if_false = set(branches.get("if_true") or []), set(branches.get("if_false") or [])
    if if_true:
        return not if_true & skipped
    if if_false:
        return bool(if_false & skipped)
    return None


def _source_label(source: str) -> str:
    """'evaluate report: binary_classification_metrics.auc.value' -> 'ROC AUC (evaluate) '."""
    if source.startswith("parameter "):
        return source[len("parameter "):] + " "
    step, found, path = source.partition(" report: ")
    if not found:
        return ""
    parts = [p for p in path.split(".") if p not in ("value", "standard_deviation")]
    return f"{METRIC_LABELS.get(parts[-1], parts[-1].replace('_', ' ')) if parts else path} ({step}) "


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
    return "?" if value is None else repr(value) if isinstance(value, str) else str(value)


def _change(decision: dict[str, Any] | None, state: dict[str, Any]) -> str:
    """A command that resumes the run with the gate's parameter set to let this model through (a gate of one
    comparison of a number with a parameter)."""
    conditions = (decision or {}).get("conditions") or []
    if len(conditions) != 1 or (decision or {}).get("expression", 0) != 0 or state.get("execution_arn"):
        return ""
    c = conditions[0]
    left, op, right_from = c.get("left"), c.get("op"), str(c.get("right_from") or "")
    if not right_from.startswith("parameter ") or op not in (">=", ">", "<=", "<") \
            or isinstance(left, bool) or not isinstance(left, (int, float)) or not math.isfinite(left):
        return ""
    bar = math.floor(left * 100) / 100 if op in (">=", ">") else math.ceil(left * 100) / 100
    return f"sagepipe resume {state.get('run_id')} --param {right_from[len('parameter '):]}={bar:.2f}"
