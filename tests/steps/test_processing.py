"""`type: processing`: config, references, compiled ProcessingStep."""

from __future__ import annotations

from pathlib import Path

from pipelines.refs import OutputRef, ParamRef
from tests.steps.conftest import config_error, load

STEP = """
  - name: prepare
    type: processing
    code: scripts/emit.py
    inputs: {data: "${params.data}"}
    arguments: [--text, "${params.min_auc}"]
    outputs: [data]
"""


def test_sagemaker_block_is_typed(tmp_path: Path) -> None:
    message = config_error(tmp_path, STEP + "    sagemaker: {shard_input: [data]}\n")
    assert "step-types.yaml:" in message and "steps.prepare.sagemaker.shard_input" in message
    assert "did you mean 'shard_inputs'" in message
    assert "max_runtime_s" in config_error(tmp_path / "b", STEP + "    sagemaker: {max_runtime_s: 0}\n")


def test_refs_and_settled_defaults(tmp_path: Path) -> None:
    spec = load(tmp_path, STEP + "    retry: {attempts: 3}\n")
    step = spec.step("prepare")
    assert step.refs() == [ParamRef("data"), ParamRef("min_auc")]
    assert step.runs_script and step.output_names() == ["data"]
    assert step.settled_retry().attempts == 3 and step.settled_cache() == spec.defaults.cache
    assert step.settled_resources() == spec.defaults.resources  # the default, settled at load
    assert OutputRef("prepare", "data") not in step.refs()


def test_compiled_form(compiled: dict) -> None:
    step = compiled["prepare"]
    args = step["Arguments"]
    assert step["Type"] == "Processing"
    inputs = {i["InputName"]: i["S3Input"] for i in args["ProcessingInputs"]}
    assert inputs["data"]["S3DataDistributionType"] == "ShardedByS3Key"
    assert args["StoppingCondition"] == {"MaxRuntimeInSeconds": 1800}
    assert args["ProcessingOutputConfig"]["Outputs"][0]["OutputName"] == "data"
