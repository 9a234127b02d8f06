"""`type: deploy`: endpoint settings, no compiled step, the endpoint request it builds."""

from __future__ import annotations

from pathlib import Path

from pipelines.loader import load_pipeline
from tests.steps.conftest import EVERY_TYPE, config_error, load, project

STEP = "  - {name: deploy, type: deploy, model_group: step-types, endpoint_name: step-types-dev}\n"


def test_endpoint_settings_are_checked(tmp_path: Path) -> None:
    message = config_error(tmp_path, STEP.replace("}", ", endpoint: {autoscaling: {min: 3, max: 2}}}"))
    assert "autoscaling.min (3) is above autoscaling.max (2)" in message
    assert "steps.deploy.sagemaker" in config_error(tmp_path / "b", STEP.replace("}", ", sagemaker: {}}"))


def test_deployed_group_and_no_refs(tmp_path: Path) -> None:
    step = load(tmp_path, STEP).step("deploy")
    assert step.deployed_group() == "step-types" and step.refs() == []


def test_not_compiled_but_asks_for_an_endpoint(compiled: dict, tmp_path: Path) -> None:
    assert "deploy" not in compiled  # on AWS an approval deploys (the deploy pipeline)
    spec = load_pipeline(project(tmp_path, EVERY_TYPE), "dev")
    arn = "arn:aws:sagemaker:us-east-1:111122223333:model-package/step-types/1"
    request = spec.step("deploy").endpoint_request(spec, arn)
    assert request is not None
    assert request["ModelPackageArn"] == arn and request["Mode"] == "RealTime"
    assert request["InstanceType"] == spec.defaults.resources.instance_type
    assert request["AsyncOutputPath"] == "s3://step-types-bucket/step-types/async-output/"
