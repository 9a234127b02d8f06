"""`type: transform`: model references, typed cloud settings, compiled ModelStep + TransformStep."""

from __future__ import annotations

from pathlib import Path

from pipelines.refs import OutputRef, ParamRef
from tests.steps.conftest import config_error, load

STEPS = """
  - {name: train, type: training, code: scripts/train.py}
  - {name: score, type: transform, model: "${steps.train.outputs.model}", input: "${params.data}"}
"""


def test_cloud_settings_are_typed(tmp_path: Path) -> None:
    message = config_error(tmp_path, STEPS.replace('"${params.data}"', '"${params.data}", '
                                                   'sagemaker: {batch_strategy: Multi}'))
    assert "steps.score.sagemaker.batch_strategy" in message
    assert "did you mean" in config_error(tmp_path / "b", STEPS.replace('"${params.data}"', '"${params.data}", '
                                                                       'sagemaker: {max_payload: 6}'))


def test_refs(tmp_path: Path) -> None:
    step = load(tmp_path, STEPS).step("score")
    assert step.refs() == [OutputRef("train", "model"), ParamRef("data")]
    assert step.output_names() == ["predictions"] and not step.runs_script


def test_compiled_form(compiled: dict) -> None:
    model, transform = compiled["score-model"], compiled["score"]
    assert model["Type"] == "Model" and transform["Type"] == "Transform"
    args = transform["Arguments"]
    assert args["BatchStrategy"] == "SingleRecord" and args["MaxPayloadInMB"] == 6
    assert args["ModelName"] == {"Get": "Steps.score-model.ModelName"}
