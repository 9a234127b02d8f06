"""`sagepipe compile`: every step type's compiled request, determinism, golden files, AWS's schema, cloud errors."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.loader import load_pipeline
from pipelines.sagemaker.compiler import compile_pipeline
from tests.conftest import CHECKER, GOLDEN, REPO, make_project, run_cli

DEV = """
tracking_uri: arn:aws:sagemaker:eu-west-1:111122223333:mlflow-tracking-server/team
sagemaker:
  region: eu-west-1
  role: arn:aws:iam::111122223333:role/exec
  bucket: every-step-bucket
  kms_key: arn:aws:kms:eu-west-1:111122223333:key/abc
  vpc: {subnets: [subnet-1], security_group_ids: [sg-1]}
parameters:
  data: s3://every-step-bucket/data/
"""
EVERY_STEP = """
name: every-step
parameters:
  data: {type: string, default: ""}
  min_auc: {type: float, default: 0.7}
  epochs: {type: integer, default: 3}
  run_gate: {type: boolean, default: true}
defaults:
  retry: {attempts: 3, backoff_s: 5, backoff_rate: 2}
steps:
  - name: prepare
    type: processing
    code: scripts/emit.py
    inputs: {data: "${params.data}", settings: settings.yaml}
    arguments: [--text, "${params.epochs}"]
    outputs: [data]
    resources: {instance_type: ml.m5.xlarge, instance_count: 2, volume_gb: 50}
    sagemaker: {shard_inputs: [data]}
  - name: train
    type: training
    code: scripts/train.py
    inputs: {train: "${steps.prepare.outputs.data}"}
    hyperparameters: {epochs: "${params.epochs}", lr: 0.1}
    image: 763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-training:2.5-gpu-py311
    resources: {instance_type: ml.g5.xlarge, instance_count: 2}
    distribution: {type: torchrun, processes_per_host: 1}
    sagemaker: {spot: true, max_runtime_s: 3600, max_wait_s: 7200, keep_alive_s: 600}
  - name: evaluate
    type: evaluation
    code: scripts/score.py
    inputs: {model: "${steps.train.outputs.model}"}
    arguments: [--auc, "0.8"]
    outputs: [evaluation]
  - name: switch
    type: condition
    condition: {left: "${params.run_gate}", op: "==", right: true}
    if_false: [switched-off]
  - {name: switched-off, type: fail, message: "gate switched off"}
  - name: gate
    type: condition
    condition: {left: "${steps.evaluate.metrics.binary_classification_metrics.auc.value}", op: ">=",
                right: "${params.min_auc}"}
    if_true: [register]
    if_false: [too-low]
  - {name: too-low, type: fail, message: "AUC ${steps.evaluate.metrics.binary_classification_metrics.auc.value} < ${params.min_auc}"}
  - {name: register, type: register, model: "${steps.train.outputs.model}", model_group: every-step-models,
     metrics: "${steps.evaluate.outputs.evaluation}"}
  - {name: deploy, type: deploy, depends_on: [register], model_group: every-step-models, endpoint_name: every-dev}
"""


def _project(folder: Path, pipeline: str = EVERY_STEP, dev: str = DEV) -> Path:
    return make_project(folder, "every-step", pipeline, {"dev": dev}, ("emit.py", "score.py", "train.py"),
                        {"settings.yaml": "threshold: 0.5\n"})


@pytest.fixture(scope="module")
def every_step(tmp_path_factory: pytest.TempPathFactory) -> dict:
    config = _project(tmp_path_factory.mktemp("every-step"))
    compiled = compile_pipeline(load_pipeline(config, "dev"))
    return {"compiled": compiled, "steps": {s["Name"]: s for s in check_steps(compiled.definition)}}


def _join(*values: object, on: str = "") -> dict:
    return {"Std:Join": {"On": on, "Values": list(values)}}


def _in_execution(*parts: str) -> dict:
    return _join("s3:/", "every-step-bucket", "every-step", {"Get": "Execution.PipelineExecutionId"}, *parts, on="/")


def test_processing_step_request(every_step: dict) -> None:
    step = every_step["steps"]["prepare"]
    args = step["Arguments"]
    assert step["Type"] == "Processing" and step["CacheConfig"] == {"Enabled": True, "ExpireAfter": "P30D"}
    inputs = {i["InputName"]: i["S3Input"] for i in args["ProcessingInputs"]}
    assert inputs["data"]["S3Uri"] == {"Get": "Parameters.data"}
    assert inputs["data"]["S3DataDistributionType"] == "ShardedByS3Key"
    assert inputs["settings"]["S3Uri"].startswith("s3://every-step-bucket/every-step/artifacts/")
    assert inputs["settings"]["S3Uri"].endswith("/settings.yaml")
    assert inputs["code"]["LocalPath"] == "/opt/ml/processing/input/code"
    assert args["AppSpecification"]["ContainerEntrypoint"] == ["python3", "/opt/ml/processing/input/code/emit.py"]
    # an Integer parameter in a String field goes through .to_string(); bare, CreatePipeline rejects it
    assert args["AppSpecification"]["ContainerArguments"] == ["--text", _join({"Get": "Parameters.epochs"})]
    # outputs live under the execution: a cache hit returns that execution's files, never a later one's
    assert args["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] == _in_execution("prepare", "data")
    assert args["ProcessingResources"]["ClusterConfig"] == {
        "InstanceCount": 2, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 50,
        "VolumeKmsKeyId": "arn:aws:kms:eu-west-1:111122223333:key/abc"}
    assert args["NetworkConfig"]["VpcConfig"] == {"SecurityGroupIds": ["sg-1"], "Subnets": ["subnet-1"]}
    assert args["RoleArn"] == "arn:aws:iam::111122223333:role/exec"
    assert "sagemaker-scikit-learn" in args["AppSpecification"]["ImageUri"]
    kinds = [p["ExceptionType"] for p in step["RetryPolicies"]]
    assert kinds == [["Step.SERVICE_FAULT", "Step.THROTTLING"], ["SageMaker.JOB_INTERNAL_ERROR",
                                                                 "SageMaker.CAPACITY_ERROR"]]
    assert all(p["MaxAttempts"] == 2 and p["IntervalSeconds"] == 5 for p in step["RetryPolicies"])


def test_parameters_carry_their_types_and_allowed_values(tmp_path: Path) -> None:
    pipeline = EVERY_STEP.replace("  data: {type: string, default: \"\"}",
                                  "  data: {type: string, default: \"\"}\n"
                                  "  flavour: {type: string, default: plain, allowed: [plain, spicy]}")
    compiled = compile_pipeline(load_pipeline(_project(tmp_path / "p", pipeline), "dev"))
    params = {p["Name"]: p for p in compiled.definition["Parameters"]}
    assert params["flavour"] == {"Name": "flavour", "Type": "String", "DefaultValue": "plain",
                                 "EnumValues": ["plain", "spicy"]}
    assert params["epochs"] == {"Name": "epochs", "Type": "Integer", "DefaultValue": 3}
    assert params["min_auc"]["Type"] == "Float" and params["run_gate"]["Type"] == "Boolean"


def test_training_step_request(every_step: dict) -> None:
    step = every_step["steps"]["train"]
    args = step["Arguments"]
    hps = args["HyperParameters"]
    assert hps == {"epochs": _join({"Get": "Parameters.epochs"}), "lr": "0.1"}
    # SDK v3's ModelTrainer with SourceCode: its driver runs the script (torchrun for a distribution)
    assert args["AlgorithmSpecification"] == {
        "TrainingImage": "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-training:2.5-gpu-py311",
        "TrainingInputMode": "File", "ContainerEntrypoint": ["/bin/bash"],
        "ContainerArguments": ["-c", "chmod +x /opt/ml/input/data/sm_drivers/sm_train.sh "
                                     "&& /opt/ml/input/data/sm_drivers/sm_train.sh"]}
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in args["InputDataConfig"]}
    assert channels["train"] == {"Get": "Steps.prepare.ProcessingOutputConfig.Outputs['data'].S3Output.S3Uri"}
    compiled = every_step["compiled"]

    def files(uri: str) -> dict[str, bytes]:
        prefix = uri.split(f"s3://{compiled.bucket}/", 1)[1] + "/"
        return {k[len(prefix):]: v for k, v in compiled.artifacts.items() if k.startswith(prefix)}

    assert set(files(channels["code"])) == {"emit.py", "score.py", "train.py"}
    drivers = files(channels["sm_drivers"])
    assert json.loads(drivers["distributed.json"]) == {"process_count_per_node": 1, "smp": None}
    source = json.loads(drivers["sourcecode.json"])
    assert (source["source_dir"], source["entry_script"]) == ("scripts", "train.py")  # repo-relative: reproducible
    assert "distributed_drivers/torchrun_driver.py" in drivers
    assert args["ResourceConfig"]["InstanceType"] == "ml.g5.xlarge" and args["ResourceConfig"]["InstanceCount"] == 2
    assert args["ResourceConfig"]["KeepAlivePeriodInSeconds"] == 600
    assert args["EnableManagedSpotTraining"] is True
    assert args["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    # the model belongs to this execution; checkpoints to this configuration (CheckpointConfig is in training's
    # cache key, so a URI scoped to the execution would make every execution a cache miss)
    checkpoints = args["CheckpointConfig"]
    assert checkpoints["LocalPath"] == "/opt/ml/checkpoints"
    assert checkpoints["S3Uri"].startswith(f"s3://{compiled.bucket}/{compiled.name}/checkpoints/train/")
    assert args["OutputDataConfig"]["S3OutputPath"] == _in_execution("train", "output")


def test_conditions_read_reports_through_property_files(every_step: dict) -> None:
    steps = every_step["steps"]
    assert steps["evaluate"]["PropertyFiles"] == [{"PropertyFileName": "evaluate-report", "OutputName": "evaluation",
                                                   "FilePath": "evaluation.json"}]
    switch = steps["switch"]
    assert switch["Type"] == "Condition"
    assert switch["Arguments"]["Conditions"] == [{"Type": "Equals", "LeftValue": {"Get": "Parameters.run_gate"},
                                                  "RightValue": True}]
    (fail,) = switch["Arguments"]["ElseSteps"]
    assert fail == {"Name": "switched-off", "Type": "Fail", "Arguments": {"ErrorMessage": "gate switched off"}}
    assert switch["Arguments"]["IfSteps"] == []
    gate = steps["gate"]
    auc = {"Std:JsonGet": {"PropertyFile": {"Get": "Steps.evaluate.PropertyFiles.evaluate-report"},
                           "Path": "binary_classification_metrics.auc.value"}}
    assert gate["Type"] == "Condition" and gate["Arguments"]["Conditions"] == [
        {"Type": "GreaterThanOrEqualTo", "LeftValue": auc, "RightValue": {"Get": "Parameters.min_auc"}}]
    (too_low,) = gate["Arguments"]["ElseSteps"]  # the fail message carries the values it was decided on
    assert too_low == {"Name": "too-low", "Type": "Fail", "Arguments": {
        "ErrorMessage": _join("AUC ", auc, " < ", {"Get": "Parameters.min_auc"})}}
    (register,) = gate["Arguments"]["IfSteps"]
    assert register["Name"] == "register" and register["Type"] == "RegisterModel"
    assert "deploy" not in steps  # on AWS an approval deploys (EventBridge -> the deploy pipeline)


def test_register_request(every_step: dict) -> None:
    register = every_step["steps"]["register"]
    args = register["Arguments"]
    assert args["ModelPackageGroupName"] == "every-step-models"
    assert args["ModelApprovalStatus"] == "PendingManualApproval"
    (container,) = args["InferenceSpecification"]["Containers"]
    assert container["ModelDataUrl"] == {"Get": "Steps.train.ModelArtifacts.S3ModelArtifacts"}
    # an inference image that runs the code/inference.py packed into model.tar.gz (model_io.pack_serving_code)
    assert container["Image"].endswith("/pytorch-inference:2.6.0-cpu-py312")
    assert container["Environment"] == {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_REGION": "eu-west-1",
                                        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                                        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20"}
    # the metrics of this execution's report, not whichever execution wrote last
    assert args["ModelMetrics"]["ModelQuality"]["Statistics"] == {"ContentType": "application/json", "S3Uri": _join(
        {"Get": "Steps.evaluate.ProcessingOutputConfig.Outputs['evaluation'].S3Output.S3Uri"}, "evaluation.json",
        on="/")}
    assert every_step["compiled"].definition["MlflowConfig"] == {
        "MlflowResourceArn": "arn:aws:sagemaker:eu-west-1:111122223333:mlflow-tracking-server/team",
        "MlflowExperimentName": "every-step"}


def test_approval_status_may_be_a_parameter(tmp_path: Path) -> None:
    pipeline = EVERY_STEP.replace("  data: {type: string, default: \"\"}", "  data: {type: string, default: \"\"}\n"
                                  "  status: {type: string, default: Approved, allowed: [PendingManualApproval, Approved]}")
    pipeline = pipeline.replace("model_group: every-step-models,\n", "model_group: every-step-models, "
                                "approval_status: \"${params.status}\",\n", 1)
    compiled = compile_pipeline(load_pipeline(_project(tmp_path / "p", pipeline), "dev"))
    register = next(s for s in check_steps(compiled.definition) if s["Name"] == "register")
    assert register["Arguments"]["ModelApprovalStatus"] == {"Get": "Parameters.status"}


def check_steps(definition: dict) -> list[dict]:
    from pipelines.sagemaker.definition_checks import all_steps

    return list(all_steps(definition["Steps"]))


def test_code_artifacts_are_content_addressed_and_compiles_are_byte_identical(tmp_path: Path) -> None:
    config = _project(tmp_path / "p")
    first = compile_pipeline(load_pipeline(config, "dev"))
    second = compile_pipeline(load_pipeline(config, "dev"))
    assert first.json() == second.json() and first.artifacts == second.artifacts
    assert all(key.startswith("every-step/artifacts/") for key in first.artifacts)
    assert not any("__pycache__" in key for key in first.artifacts)
    (tmp_path / "p" / "scripts" / "train.py").write_text("print('changed')\n")
    changed = compile_pipeline(load_pipeline(config, "dev"))
    before, after = first.definition["Steps"], changed.definition["Steps"]
    assert before[0] != after[0]  # the processing code folder holds train.py too
    assert json.dumps(before[2]) != json.dumps(after[2])


@pytest.mark.parametrize("name, env", [("fraud-detection", "dev"), ("fraud-detection", "staging"),
                                       ("fraud-detection", "prod"), ("fraud-detection-torch", "dev"),
                                       ("fraud-detection-hpo", "dev")])
def test_example_pipeline_matches_its_golden_definition(name: str, env: str) -> None:
    compiled = compile_pipeline(load_pipeline(REPO / "configs" / f"{name}.yaml", env))
    golden = GOLDEN / f"{name}.{env}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(compiled.json())
    assert compiled.json() == golden.read_text(), f"definition changed; review, then UPDATE_GOLDEN=1 pytest {__file__}"


@pytest.mark.skipif(not CHECKER.exists(), reason="../shared/reference is not present")
def test_every_definition_passes_the_reference_checks(every_step: dict, tmp_path: Path) -> None:
    every = tmp_path / "every-step.json"
    every.write_text(every_step["compiled"].json())
    goldens = sorted(GOLDEN.glob("*.json"))
    assert len(goldens) == 5
    done = subprocess.run([sys.executable, str(CHECKER), *map(str, goldens), str(every)], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("0 error(s) OK") == 6


BAD_ENVS = {
    "missing_role": (DEV.replace("  role: arn:aws:iam::111122223333:role/exec\n", ""), "sagemaker.role: missing"),
    "bad_role": (DEV.replace("arn:aws:iam::111122223333:role/exec", "exec-role"), "is not an IAM role ARN"),
    "local_path_input": (DEV.replace("  data: s3://every-step-bucket/data/", "  data: /home/me/data"),
                         "parameters.data: is '/home/me/data', a local path, but steps.prepare.inputs.data"),
}


@pytest.mark.parametrize("case", sorted(BAD_ENVS) + ["unknown_instance_type"])
def test_cloud_only_config_errors_are_caught_at_compile_time(case: str, tmp_path: Path) -> None:
    if case == "unknown_instance_type":
        config = _project(tmp_path / "p", EVERY_STEP.replace("ml.g5.xlarge", "ml.g5.xlarg"))
        expected = "steps.train.resources.instance_type: 'ml.g5.xlarg' is not a SageMaker instance type — " \
                   "did you mean 'ml.g5.xlarge'?"
    else:
        dev, expected = BAD_ENVS[case]
        config = _project(tmp_path / "p", dev=dev)
    done = run_cli("compile", str(config), "--env", "dev", home=tmp_path / "state", cwd=tmp_path / "p")
    assert done.returncode == 2 and expected in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_validate_never_imports_the_sdk() -> None:
    code = ("import sys; from pipelines.cli import main; rc = main(['validate', 'configs/fraud-detection.yaml', "
            "'--env', 'dev']); heavy = [m for m in ('sagemaker', 'boto3', 'mlflow', 'moto') if m in sys.modules]; "
            "print(heavy); sys.exit(rc or bool(heavy))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
