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
from tests.conftest import REPO, make_project, run_cli

SCHEMA = REPO.parent / "shared" / "reference" / "sagemaker-pipeline-definition.schema.json"
GOLDEN = REPO / "tests" / "golden"
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
    if_true: [gate]
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
    return {"compiled": compiled, "steps": {s["Name"]: s for s in compiled.definition["Steps"]}}


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
    assert args["AppSpecification"]["ContainerArguments"] == ["--text", {"Get": "Parameters.epochs"}]
    assert args["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] == \
        "s3://every-step-bucket/every-step/outputs/prepare/data"
    assert args["ProcessingResources"]["ClusterConfig"] == {
        "InstanceCount": 2, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 50,
        "VolumeKmsKeyId": "arn:aws:kms:eu-west-1:111122223333:key/abc"}
    assert args["NetworkConfig"]["VpcConfig"] == {"SecurityGroupIds": ["sg-1"], "Subnets": ["subnet-1"]}
    assert args["RoleArn"] == "arn:aws:iam::111122223333:role/exec"
    assert "sagemaker-scikit-learn" in args["AppSpecification"]["ImageUri"]
    kinds = [p.get("ExceptionType") for p in step["RetryPolicies"]]
    assert kinds == ["Step.SERVICE_FAULT", "Step.THROTTLING", "SageMaker.JOB_INTERNAL_ERROR",
                     "SageMaker.CAPACITY_ERROR"]
    assert all(p["MaxAttempts"] == 2 and p["IntervalSeconds"] == 5 for p in step["RetryPolicies"])


def test_training_step_request(every_step: dict) -> None:
    step = every_step["steps"]["train"]
    args = step["Arguments"]
    hps = args["HyperParameters"]
    assert hps["epochs"] == {"Get": "Parameters.epochs"} and hps["lr"] == "0.1"
    # torchrun on every host through our launcher, packed into the code archive beside the script
    assert hps["sagemaker_program"] == "sagepipe_torchrun.py"
    assert (hps["sagepipe_entry_point"], hps["sagepipe_processes_per_host"]) == ("train.py", "1")
    assert hps["sagemaker_submit_directory"].endswith("/sourcedir.tar.gz")
    import io
    import tarfile

    compiled = every_step["compiled"]
    archive = compiled.artifacts[hps["sagemaker_submit_directory"].split(f"s3://{compiled.bucket}/", 1)[1]]
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert {"sagepipe_torchrun.py", "train.py"} <= set(tar.getnames())
    assert args["ResourceConfig"]["InstanceType"] == "ml.g5.xlarge" and args["ResourceConfig"]["InstanceCount"] == 2
    assert args["ResourceConfig"]["KeepAlivePeriodInSeconds"] == 600
    assert args["EnableManagedSpotTraining"] is True
    assert args["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert args["CheckpointConfig"] == {"LocalPath": "/opt/ml/checkpoints",
                                        "S3Uri": "s3://every-step-bucket/every-step/checkpoints/train"}
    (channel,) = args["InputDataConfig"]
    assert channel["ChannelName"] == "train"
    assert channel["DataSource"]["S3DataSource"]["S3Uri"] == {
        "Get": "Steps.prepare.ProcessingOutputConfig.Outputs['data'].S3Output.S3Uri"}
    assert args["AlgorithmSpecification"] == {
        "TrainingImage": "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-training:2.5-gpu-py311",
        "TrainingInputMode": "File"}


def test_conditions_register_fail_and_deploy(every_step: dict) -> None:
    steps = every_step["steps"]
    switch = steps["switch"]
    assert switch["Type"] == "Condition"
    assert switch["Arguments"]["Conditions"] == [{"Type": "Equals", "LeftValue": {"Get": "Parameters.run_gate"},
                                                  "RightValue": True}]
    (fail,) = switch["Arguments"]["ElseSteps"]
    assert fail == {"Name": "switched-off", "Type": "Fail", "Arguments": {"ErrorMessage": "gate switched off"}}
    (gate,) = switch["Arguments"]["IfSteps"]  # a condition over metrics: a gate job
    assert gate["Name"] == "gate" and gate["Type"] == "Processing"
    gate_args = gate["Arguments"]["AppSpecification"]["ContainerArguments"]
    assert json.loads(gate_args[1]) == {"left": {"metric": ["evaluate", "binary_classification_metrics.auc.value"]},
                                        "op": ">=", "right": {"param": "min_auc"}}
    assert gate_args[3] == "AUC <evaluate.binary_classification_metrics.auc.value> < <min_auc>"
    register = steps["register"]
    assert register["Type"] == "RegisterModel" and register["DependsOn"] == ["gate"]
    args = register["Arguments"]
    assert args["ModelPackageGroupName"] == "every-step-models"
    assert args["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == {
        "Get": "Steps.train.ModelArtifacts.S3ModelArtifacts"}
    # an inference image that runs the code/inference.py packed into model.tar.gz (model_io.pack_serving_code)
    assert args["InferenceSpecification"]["Containers"][0]["Image"].endswith("/pytorch-inference:2.6.0-cpu-py312")
    assert args["ModelMetrics"]["ModelQuality"]["Statistics"] == {
        "ContentType": "application/json",
        "S3Uri": "s3://every-step-bucket/every-step/outputs/evaluate/evaluation/evaluation.json"}
    assert "too-low" not in steps  # folded into the gate
    deploy = steps["deploy"]  # a job that deploys the newest Approved version (pipelines/sagemaker/deploy_job.py)
    assert deploy["Type"] == "Processing" and deploy["DependsOn"] == ["register"]
    app = deploy["Arguments"]["AppSpecification"]
    assert app["ContainerEntrypoint"] == ["python3", "/opt/ml/processing/input/code/deploy_job.py"]
    argv = dict(zip(app["ContainerArguments"][::2], app["ContainerArguments"][1::2]))
    assert (argv["--model-group"], argv["--endpoint-name"], argv["--region"]) == ("every-step-models", "every-dev",
                                                                                   "eu-west-1")
    assert json.loads(argv["--variant"]) == {"InstanceType": "ml.m5.large", "InitialInstanceCount": 1,
                                             "InitialVariantWeight": 1}
    assert json.loads(argv["--config-extra"]) == {"KmsKeyId": "arn:aws:kms:eu-west-1:111122223333:key/abc"}
    assert json.loads(argv["--deployment"])["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["CanarySize"] \
        == {"Type": "CAPACITY_PERCENT", "Value": 10}
    prod = json.loads((GOLDEN / "fraud-detection.prod.json").read_text())
    assert "deploy" not in {s["Name"] for s in prod["Steps"]}  # enabled: false there; an approval deploys
    assert every_step["compiled"].definition["MlflowConfig"] == {
        "MlflowResourceArn": "arn:aws:sagemaker:eu-west-1:111122223333:mlflow-tracking-server/team",
        "MlflowExperimentName": "every-step"}


def test_the_gate_job_stops_with_the_fail_message(tmp_path: Path, every_step: dict) -> None:
    gate = every_step["steps"]["switch"]["Arguments"]["IfSteps"][0]
    argv = gate["Arguments"]["AppSpecification"]["ContainerArguments"]
    argv = [a if isinstance(a, str) else "0.9" for a in argv]  # min_auc = 0.9 at run time
    root = tmp_path / "opt" / "ml" / "processing"
    (root / "input" / "evaluate").mkdir(parents=True)
    (root / "input" / "evaluate" / "evaluation.json").write_text(json.dumps(
        {"binary_classification_metrics": {"auc": {"value": 0.8}}}))
    script = REPO / "pipelines" / "sagemaker" / "gate.py"
    code = f"import runpy, sys, pathlib; sys.argv = ['gate.py', *{argv!r}]; " \
           f"mod = runpy.run_path({str(script)!r}, run_name='gate'); mod['ROOT'] = pathlib.Path({str(root)!r}); " \
           "mod['main'].__globals__['ROOT'] = mod['ROOT']; mod['main']()"
    failed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert failed.returncode == 1 and "gate: AUC 0.8 < 0.9" in failed.stderr
    passed = subprocess.run([sys.executable, "-c", code.replace("'0.9'", "'0.75'")], capture_output=True, text=True)
    assert passed.returncode == 0 and "the condition holds" in passed.stdout


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


@pytest.mark.parametrize("name, env", [("fraud-detection", "dev"), ("fraud-detection", "prod"),
                                       ("fraud-detection-torch", "dev")])
def test_example_pipeline_matches_its_golden_definition(name: str, env: str) -> None:
    compiled = compile_pipeline(load_pipeline(REPO / "configs" / f"{name}.yaml", env))
    golden = GOLDEN / f"{name}.{env}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(compiled.json())
    assert compiled.json() == golden.read_text(), f"definition changed; review, then UPDATE_GOLDEN=1 pytest {__file__}"


@pytest.mark.skipif(not SCHEMA.exists(), reason="../shared/reference is not present")
@pytest.mark.parametrize("name", ["fraud-detection.dev.json", "fraud-detection.prod.json",
                                  "fraud-detection-torch.dev.json", "every-step"])
def test_definitions_validate_against_the_published_schema(name: str, every_step: dict) -> None:
    import jsonschema

    definition = every_step["compiled"].definition if name == "every-step" else json.loads((GOLDEN / name).read_text())
    # The schema predates these two top-level keys of SDK v3 (../shared/reference/README.md).
    trimmed = {k: v for k, v in definition.items() if k not in ("PipelineExperimentConfig", "MlflowConfig")}
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    if name == "every-step":
        # The one gap: opt-in warm-pool keep-alive is newer than the schema (spot max-wait is in it).
        assert every_step["compiled"].beyond_schema == ["train"]
        assert list(validator.iter_errors(trimmed))
        trimmed = copy.deepcopy(trimmed)
        train = next(s for s in trimmed["Steps"] if s["Name"] == "train")
        assert train["Arguments"]["StoppingCondition"]["MaxWaitTimeInSeconds"] == 7200
        del train["Arguments"]["ResourceConfig"]["KeepAlivePeriodInSeconds"]
    errors = list(validator.iter_errors(trimmed))
    assert not errors, [e.message[:300] for e in errors[:5]]


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
