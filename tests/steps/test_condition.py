"""`type: condition`: parsed expressions, references inside them, compiled IfSteps/ElseSteps."""

from __future__ import annotations

from pathlib import Path

from pipelines.graph import Graph
from pipelines.refs import MetricRef, ParamRef
from tests.steps.conftest import config_error, load

STEPS = """
  - name: evaluate
    type: evaluation
    code: scripts/score.py
    outputs: [evaluation]
  - name: gate
    type: condition
    condition: {and: [{left: "${steps.evaluate.metrics.auc}", op: ">=", right: "${params.min_auc}"},
                      {not: {left: "${params.data}", op: "==", right: ""}}]}
    if_true: [done]
  - {name: done, type: fail, message: finished}
"""


def test_bad_operator_is_a_config_error(tmp_path: Path) -> None:
    message = config_error(tmp_path, STEPS.replace('op: ">="', 'op: "=>"'))
    assert "unknown operator '=>'" in message and "steps.gate.condition" in message


def test_refs_come_from_the_parsed_expression(tmp_path: Path) -> None:
    spec = load(tmp_path, STEPS)
    gate = spec.step("gate")
    assert gate.refs() == [MetricRef("evaluate", "auc"), ParamRef("min_auc"), ParamRef("data")]
    assert gate.branch_targets() == {"if_true": ["done"], "if_false": []}
    graph = Graph(spec)
    assert graph.upstream["gate"] == {"evaluate"} and graph.upstream["done"] == {"gate"}


def test_compiled_form(compiled: dict) -> None:
    args = compiled["gate"]["Arguments"]
    assert compiled["gate"]["Type"] == "Condition"
    assert [s["Name"] for s in args["IfSteps"]] == ["register"]
    assert [s["Name"] for s in args["ElseSteps"]] == ["too-low"]
    left = args["Conditions"][0]["LeftValue"]
    assert left["Std:JsonGet"]["PropertyFile"] == {"Get": "Steps.evaluate.PropertyFiles.evaluate-report"}
