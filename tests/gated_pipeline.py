"""The small gated pipeline several tests run on the fixture scripts (emit.py, train.py, score.py): prepare,
train, evaluate (AUC 0.8125), a condition against `min_auc` (default 0.7), then fail or register."""

from __future__ import annotations

GATED = """
name: NAME
parameters:
  min_auc: {type: float, default: 0.7}
steps:
  - {name: prepare, type: processing, code: scripts/emit.py, outputs: [data]}
  - name: train
    type: training
    code: scripts/train.py
    inputs: {train: "${steps.prepare.outputs.data}"}
  - name: evaluate
    type: evaluation
    code: scripts/score.py
    arguments: [--auc, "0.8125"]
    outputs: [evaluation]
  - name: gate
    type: condition
    condition: {left: "${steps.evaluate.metrics.binary_classification_metrics.auc.value}", op: ">=",
                right: "${params.min_auc}"}
    if_true: [publish]
    if_false: [too-low]
  - {name: too-low, type: fail, message: "too low"}
  - {name: publish, type: register, model: "${steps.train.outputs.model}", model_group: NAME}
"""
SCRIPTS = ("emit.py", "train.py", "score.py")


def gated_pipeline(name: str, approved: bool = False) -> str:
    """The pipeline named `name`, registering into the model group of that name (as Approved when asked)."""
    text = GATED.replace("NAME", name)
    if approved:
        text = text.replace(f"model_group: {name}}}", f"model_group: {name},\n     approval_status: Approved}}")
    return text
