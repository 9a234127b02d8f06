"""`type: register`: approval status, references, compiled RegisterModel step."""

from __future__ import annotations

from pathlib import Path

from pipelines.refs import OutputRef
from tests.steps.conftest import config_error, load

STEPS = """
  - {name: train, type: training, code: scripts/train.py}
  - {name: register, type: register, model: "${steps.train.outputs.model}", model_group: step-types}
"""


def test_status_and_cloud_block_are_checked(tmp_path: Path) -> None:
    message = config_error(tmp_path, STEPS.replace("model_group: step-types", "model_group: step-types, "
                                                   "approval_status: Approve"))
    assert "'Approve' is not an approval status" in message
    message = config_error(tmp_path / "b", STEPS.replace("model_group: step-types", "model_group: step-types, "
                                                         "sagemaker: {framework_imag: {}}"))
    assert "steps.register.sagemaker.framework_imag" in message and "did you mean 'framework_image'" in message


def test_refs(tmp_path: Path) -> None:
    step = load(tmp_path, STEPS).step("register")
    assert step.refs() == [OutputRef("train", "model")] and step.output_names() == []


def test_compiled_form(compiled: dict) -> None:
    step = compiled["register"]
    args = step["Arguments"]
    assert step["Type"] == "RegisterModel" and args["ModelApprovalStatus"] == "PendingManualApproval"
    assert args["ModelPackageGroupName"] == "step-types"
