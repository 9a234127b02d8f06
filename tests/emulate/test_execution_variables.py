"""Valid SDK input runs without internal errors: every execution variable the SDK defines, and a definition
that names no bucket at all."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipelines.errors import StepFailed
from pipelines.sagemaker.definition_checks import EXECUTION_VARIABLES, check_definition
from tests.conftest import run_cli

ARN = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/variables/execution/0123456789abcdef"
VARIABLES_SCRIPT = """import json, pathlib, sys
names = sys.argv[1::2]
values = sys.argv[2::2]
pathlib.Path("/opt/ml/processing/output/out/vars.json").write_text(json.dumps(dict(zip(names, values))))
"""


def _sdk_execution_variables() -> set[str]:
    from sagemaker.core.workflow.execution_variables import ExecutionVariable, ExecutionVariables

    return {v.name for v in vars(ExecutionVariables).values() if isinstance(v, ExecutionVariable)}


def _every_variable() -> list[Any]:
    arguments: list[Any] = []
    for name in sorted(EXECUTION_VARIABLES):
        arguments += [name, {"Get": f"Execution.{name}"}] if name != "TrainingJobName" else []
    return arguments


def _steps_of(definition: dict, tmp_path: Path) -> dict[str, Any]:
    from pipelines.emulate.execution import Execution, runnable

    execution = Execution("variables", ARN, definition, {}, "variables.json", "us-east-1", "2026-01-01T00:00:00Z")
    spec = runnable(None, execution, None, None, tmp_path)
    return {step.name: step for step in spec.steps}


def test_the_checks_know_every_variable_the_sdk_defines() -> None:
    assert EXECUTION_VARIABLES == _sdk_execution_variables()


@pytest.mark.parametrize("kind, own", [("Processing", "ProcessingJobName"), ("Training", "TrainingJobName")])
def test_every_execution_variable_evaluates_in_a_job_step(kind: str, own: str, tmp_path: Path) -> None:
    definition = {"Version": "2020-12-01", "Parameters": [], "Steps": [
        {"Name": "job", "Type": kind, "Arguments": {}},
        {"Name": "gate", "Type": "Condition", "Arguments": {"Conditions": [], "IfSteps": [], "ElseSteps": []}}]}
    steps = _steps_of(definition, tmp_path)
    job = steps["job"]
    scope = job.emulation.scope.for_job(kind, job.job_name)
    values = {name: scope.get(f"Execution.{name}") for name in sorted(_sdk_execution_variables() - {
        "ProcessingJobName", "TrainingJobName"} | {own})}
    assert values[own] == job.job_name == "pipelines-456789abcdef-job"
    assert values["PipelineExecutionId"] == "0123456789abcdef" and values["PipelineName"] == "variables"
    assert values["PipelineExecutionArn"] == ARN and values["PipelineArn"].endswith(":pipeline/variables")
    assert all(isinstance(v, str) and v for v in values.values()), values
    other = ({"ProcessingJobName", "TrainingJobName"} - {own}).pop()
    with pytest.raises(StepFailed, match=f"Execution.{other} is the name of the job a "):
        scope.get(f"Execution.{other}")  # the other kind's job: a clear step failure, not a KeyError
    with pytest.raises(StepFailed, match=f"Execution.{own} is the name of the job a {kind} step runs"):
        job.emulation.scope.get(f"Execution.{own}")  # outside the job (a condition, say)


def test_a_definition_without_a_bucket_runs_and_a_job_sees_its_own_name(tmp_path: Path) -> None:
    """No s3:// string anywhere (the code and the output location are parameters): emulate runs it (it used to
    stop at next(iter(buckets)) with a traceback), and Execution.ProcessingJobName is the job's name (it used to be
    an internal error)."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "variables.py").write_text(VARIABLES_SCRIPT)
    step = {"Name": "variables", "Type": "Processing", "CacheConfig": {"Enabled": True, "ExpireAfter": "pt1h"},
            "PropertyFiles": [{"PropertyFileName": "vars", "OutputName": "out", "FilePath": "vars.json"}],
            "Arguments": {
                "AppSpecification": {"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/any-python:1",
                                     "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/variables.py"],
                                     "ContainerArguments": _every_variable()},
                "ProcessingInputs": [{"InputName": "code", "S3Input": {
                    "S3Uri": {"Get": "Parameters.code"}, "LocalPath": "/opt/ml/processing/input/code",
                    "S3DataType": "S3Prefix", "S3InputMode": "File"}}],
                "ProcessingOutputConfig": {"Outputs": [{"OutputName": "out", "S3Output": {
                    "S3Uri": {"Std:Join": {"On": "/", "Values": [{"Get": "Parameters.out"},
                                                                 {"Get": "Execution.ProcessingJobName"}]}},
                    "LocalPath": "/opt/ml/processing/output/out", "S3UploadMode": "EndOfJob"}}]},
                "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large",
                                                          "VolumeSizeInGB": 30}},
                "RoleArn": "arn:aws:iam::123456789012:role/x"}}
    definition = {"Version": "2020-12-01", "Metadata": {}, "Steps": [step], "Parameters": [
        {"Name": "code", "Type": "String", "DefaultValue": "code"},
        {"Name": "out", "Type": "String", "DefaultValue": "outputs"}]}
    assert "s3:" not in json.dumps(definition) and check_definition(definition) == []
    path = tmp_path / "no-bucket.json"
    path.write_text(json.dumps(definition))
    done = run_cli("emulate", "--definition", str(path), "--param", f"code={code}",
                   "--param", "out=s3://sagepipe-emulate/variables", "--json", home=tmp_path / "home")
    assert "Traceback" not in done.stderr and "internal error" not in done.stdout + done.stderr, done.stderr
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads(done.stdout)["metrics"]["variables"]
    execution_id = seen["PipelineExecutionId"]
    assert seen["ProcessingJobName"] == f"pipelines-{execution_id[-12:]}-variables"
    assert seen["PipelineName"] == "no-bucket" and seen["PipelineExecutionArn"].endswith(f"/{execution_id}")
    assert seen["StartDateTime"] and seen["CurrentDateTime"] and seen["PipelineArn"]
