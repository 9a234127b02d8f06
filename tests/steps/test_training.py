"""`type: training`: config, references, compiled TrainingStep; its model output is ModelArtifacts."""

from __future__ import annotations

from pathlib import Path

from pipelines.refs import ParamRef
from tests.steps.conftest import config_error, load

STEP = """
  - name: train
    type: training
    code: scripts/train.py
    inputs: {train: "${params.data}"}
    hyperparameters: {x: 0.3}
"""


def test_unknown_cloud_key_is_rejected_with_its_line(tmp_path: Path) -> None:
    message = config_error(tmp_path, STEP + "    sagemaker: {spto: true}\n")
    assert "step-types.yaml:13" in message and "steps.train.sagemaker.spto" in message
    assert "did you mean 'spot'" in message


def test_spot_wait_covers_the_runtime(tmp_path: Path) -> None:
    message = config_error(tmp_path, STEP + "    sagemaker: {spot: true, max_runtime_s: 3600, max_wait_s: 60}\n")
    assert "max_wait_s (60) is below max_runtime_s (3600)" in message


def test_refs_and_outputs(tmp_path: Path) -> None:
    step = load(tmp_path, STEP).step("train")
    assert step.refs() == [ParamRef("data")] and step.output_names() == ["model", "output"]
    assert step.runs_script and step.code_path() == "scripts/train.py"


def test_compiled_form(compiled: dict) -> None:
    step = compiled["train"]
    args = step["Arguments"]
    assert step["Type"] == "Training" and args["EnableManagedSpotTraining"] is True
    assert args["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    register = compiled["register"]["Arguments"]["InferenceSpecification"]["Containers"][0]
    assert register["ModelDataUrl"] == {"Get": "Steps.train.ModelArtifacts.S3ModelArtifacts"}
