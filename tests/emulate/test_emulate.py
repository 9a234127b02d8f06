"""`sagepipe emulate`: a definition executed here with SageMaker's semantics, against a real moto server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, REPO, make_project, run_cli
from tests.sagemaker.test_aws import REGION, moto_server  # noqa: F401  (fixture)

BUCKET = "emulate-tests"
WRITE = """import argparse, pathlib
parser = argparse.ArgumentParser()
parser.add_argument("--seed")
args = parser.parse_args()
out = pathlib.Path("/opt/ml/processing/output/out")
(out / "seed.txt").write_text(args.seed)
"""
READ = """import json, pathlib
seed = pathlib.Path("/opt/ml/processing/input/data/seed.txt").read_text()
pathlib.Path("/opt/ml/processing/output/report/report.json").write_text(json.dumps({"seed": int(seed)}))
"""


def _processing(name: str, script: str, arguments: list, inputs: list, outputs: list, cache: bool) -> dict:
    code = {"InputName": "code", "S3Input": {"S3Uri": f"s3://{BUCKET}/code", "LocalPath": "/opt/ml/processing/input/code",
                                             "S3DataType": "S3Prefix", "S3InputMode": "File"}}
    return {"Name": name, "Type": "Processing", "CacheConfig": {"Enabled": cache, "ExpireAfter": "P1D"}, "Arguments": {
        "AppSpecification": {"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/any-python:1",
                             "ContainerEntrypoint": ["python3", f"/opt/ml/processing/input/code/{script}"],
                             "ContainerArguments": arguments},
        "ProcessingInputs": [*inputs, code],
        "ProcessingOutputConfig": {"Outputs": outputs},
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large",
                                                  "VolumeSizeInGB": 30}},
        "RoleArn": "arn:aws:iam::123456789012:role/x"}}


def _output(name: str, uri: object) -> dict:
    return {"OutputName": name, "S3Output": {"S3Uri": uri, "LocalPath": f"/opt/ml/processing/output/{name}",
                                             "S3UploadMode": "EndOfJob"}}


def seed_pipeline(scoped: bool) -> dict:
    """write (cached) puts the seed into its output; read (never cached) reports what it finds there."""
    where: object = f"s3://{BUCKET}/fixed/write/out"
    if scoped:
        where = {"Std:Join": {"On": "/", "Values": ["s3:/", BUCKET, {"Get": "Execution.PipelineExecutionId"},
                                                    "write", "out"]}}
    seed_text = {"Std:Join": {"On": "", "Values": [{"Get": "Parameters.seed"}]}}
    write = _processing("write", "write.py", ["--seed", seed_text], [], [_output("out", where)], cache=True)
    data = {"InputName": "data", "S3Input": {
        "S3Uri": {"Get": "Steps.write.ProcessingOutputConfig.Outputs['out'].S3Output.S3Uri"},
        "LocalPath": "/opt/ml/processing/input/data", "S3DataType": "S3Prefix", "S3InputMode": "File"}}
    report = {"Std:Join": {"On": "/", "Values": ["s3:/", BUCKET, {"Get": "Execution.PipelineExecutionId"}, "read"]}}
    read = _processing("read", "read.py", [], [data], [_output("report", report)], cache=False)
    read["PropertyFiles"] = [{"PropertyFileName": "report", "OutputName": "report", "FilePath": "report.json"}]
    return {"Version": "2020-12-01", "Metadata": {}, "Steps": [write, read],
            "Parameters": [{"Name": "seed", "Type": "Integer", "DefaultValue": 42}]}


@pytest.fixture
def aws(moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict:  # noqa: F811
    for key, value in {"AWS_ENDPOINT_URL": moto_server, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(key, value)
    import boto3

    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    for name, text in (("write.py", WRITE), ("read.py", READ)):
        s3.put_object(Bucket=BUCKET, Key=f"code/{name}", Body=text.encode())
    yield {"s3": s3, "sm": boto3.client("sagemaker", region_name=REGION), "url": moto_server}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=BUCKET, Key=item["Key"])
    s3.delete_bucket(Bucket=BUCKET)


def _emulate(home: Path, *args: str) -> tuple[int, dict, str]:
    done = run_cli("emulate", *args, "--json", home=home)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else {}, done.stderr


@pytest.mark.parametrize("scoped, third_reads", [(False, 7), (True, 42)])
def test_a_cache_hit_serves_the_files_its_output_location_holds(aws: dict, tmp_path: Path, scoped: bool,
                                                                 third_reads: int) -> None:
    """Executions A (seed 42), B (seed 7), C (seed 42): C's write step is a cache hit that hands back A's output
    location. At a fixed path B has overwritten it, so C reads 7; scoped to the execution, C reads A's 42."""
    name = "seeds-scoped" if scoped else "seeds-fixed"
    definition = tmp_path / f"{name}.json"
    definition.write_text(json.dumps(seed_pipeline(scoped)))
    home = tmp_path / "home"
    seen = []
    for seed in (42, 7, 42):
        code, summary, err = _emulate(home, "--definition", str(definition), "--param", f"seed={seed}")
        assert code == 0, err
        assert summary["execution_arn"].startswith("arn:aws:sagemaker:us-east-1:")
        seen.append((summary["metrics"]["read"]["seed"], summary["run_id"]))
    assert [s for s, _ in seen] == [42, 7, third_reads]
    third = json.loads((home / "runs" / seen[-1][1] / "state.json").read_text())["steps"]["write"]
    assert third["note"].startswith("cache hit")
    executions = aws["sm"].list_pipeline_executions(PipelineName=name)["PipelineExecutionSummaries"]
    assert len(executions) == 3  # each emulated execution was started on the (moto) control plane


def test_a_missing_report_fails_the_step_that_reads_it_not_the_one_that_wrote_nothing(aws: dict,
                                                                                     tmp_path: Path) -> None:
    """Property files are read when a JsonGet asks, as the service does: the producing job succeeds, the condition
    that reads its report fails, naming the file and where it looked."""
    definition = seed_pipeline(scoped=True)
    definition["Steps"] = definition["Steps"][:1]  # write: its job writes seed.txt, never report.json
    definition["Steps"][0]["PropertyFiles"] = [{"PropertyFileName": "report", "OutputName": "out",
                                                "FilePath": "report.json"}]
    definition["Steps"].append({"Name": "gate", "Type": "Condition", "Arguments": {
        "Conditions": [{"Type": "GreaterThanOrEqualTo", "LeftValue": {"Std:JsonGet": {
            "PropertyFile": {"Get": "Steps.write.PropertyFiles.report"}, "Path": "auc"}}, "RightValue": 0.5}],
        "IfSteps": [], "ElseSteps": []}})
    path = tmp_path / "lazy.json"
    path.write_text(json.dumps(definition))
    code, summary, err = _emulate(tmp_path / "home", "--definition", str(path))
    assert code == 1, err
    assert {s["name"]: s["status"] for s in summary["steps"]} == {"write": "succeeded", "gate": "failed"}
    assert "property file report of step 'write'" in err and "/write/out/report.json" in err, err


def test_a_bare_integer_parameter_in_a_string_field_fails_like_create_pipeline(aws: dict, tmp_path: Path) -> None:
    broken = seed_pipeline(scoped=True)
    broken["Steps"][0]["Arguments"]["AppSpecification"]["ContainerArguments"] = ["--seed", {"Get": "Parameters.seed"}]
    definition = tmp_path / "broken.json"
    definition.write_text(json.dumps(broken))
    code, _, err = _emulate(tmp_path / "home", "--definition", str(definition))
    assert code == 2
    assert "steps.write (Arguments.AppSpecification.ContainerArguments[1]): CreatePipeline would reject this" in err
    assert not (tmp_path / "home" / "runs").exists()  # nothing ran


def test_steps_it_cannot_emulate_stop_before_anything_runs(aws: dict, tmp_path: Path) -> None:
    definition = seed_pipeline(scoped=True)
    definition["Steps"].append({"Name": "notify", "Type": "Lambda", "Arguments": {}, "FunctionArn": "arn:x"})
    definition["Steps"][0]["Arguments"]["AppSpecification"]["ContainerEntrypoint"] = ["/usr/bin/java", "-jar", "x"]
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(definition))
    code, _, err = _emulate(tmp_path / "home", "--definition", str(path))
    assert code == 2
    assert "steps.notify: a Lambda step cannot be emulated" in err
    assert "steps.write: image 123456789012.dkr.ecr.us-east-1.amazonaws.com/any-python:1 runs ['/usr/bin/java'" in err


def test_an_input_left_in_the_cloud_says_how_to_pass_a_local_copy(aws: dict, tmp_path: Path) -> None:
    definition = seed_pipeline(scoped=True)
    source = {"InputName": "source", "S3Input": {"S3Uri": {"Get": "Parameters.input_data"}, "S3DataType": "S3Prefix",
                                                 "LocalPath": "/opt/ml/processing/input/source", "S3InputMode": "File"}}
    definition["Steps"][0]["Arguments"]["ProcessingInputs"].insert(0, source)
    definition["Parameters"].append({"Name": "input_data", "Type": "String", "DefaultValue": "s3://team-data/claims/"})
    path = tmp_path / "cloud-input.json"
    path.write_text(json.dumps(definition))
    code, _, err = _emulate(tmp_path / "home", "--definition", str(path))
    assert code == 1
    assert "no S3 objects found under s3://team-data/claims/; data in your AWS account is not in it" in err
    assert "--param input_data=path/to/folder (emulate uploads it)" in err and "internal error" not in err


def test_bad_parameters_are_config_errors(aws: dict, tmp_path: Path) -> None:
    path = tmp_path / "seeds.json"
    path.write_text(json.dumps(seed_pipeline(scoped=True)))
    code, _, err = _emulate(tmp_path / "home", "--definition", str(path), "--param", "seed=seven", "--param", "sed=1")
    assert code == 2 and "'seven' is not an integer" in err and "did you mean 'seed'?" in err
    (tmp_path / "bad.json").write_text("{\"Steps\": [}")
    code, _, err = _emulate(tmp_path / "home", "--definition", str(tmp_path / "bad.json"))
    assert code == 2 and "bad.json:1: --definition: not JSON" in err


FLAGGED = """name: flagged
parameters: {flag: {type: boolean, default: false}}
steps:
  - {name: gate, type: condition, condition: {left: "${params.flag}", op: "==", right: true}, if_false: [stop]}
  - {name: stop, type: fail, message: the flag is off}
"""


def test_run_and_emulate_read_a_boolean_param_alike(aws: dict, tmp_path: Path) -> None:
    """One --param parser for every command: the same words are true, false or refused, in the same words."""
    config = make_project(tmp_path / "project", "flagged", FLAGGED, scripts=(), envs={
        "local": "tracking_uri: none\n",
        "dev": "sagemaker: {region: us-east-1, role: 'arn:aws:iam::111122223333:role/x', bucket: flag-bucket}\n"})
    home = tmp_path / "home"
    commands = {"run": ["run", str(config)], "emulate": ["emulate", str(config), "--env", "dev"]}
    refusals = set()
    for command, args in commands.items():
        for word, code in (("YES", 0), ("1", 0), ("no", 1), ("maybe", 2)):
            done = run_cli(*args, "--param", f"flag={word}", home=home, cwd=config.parents[1])
            assert done.returncode == code, (command, word, done.stdout, done.stderr)
            assert "Traceback" not in done.stderr, done.stderr
            if code == 2:
                refusals.add(done.stderr.splitlines()[-1].strip())
    assert refusals == {"configs/flagged.yaml: --param flag: 'maybe' is not a boolean (true/false, yes/no or 1/0)"}


def _sdk_pipeline(s3: object, scripts: Path) -> dict:
    """A pipeline written with SDK v3's own classes (not by sagepipe): processing, a property file, ModelTrainer
    training, a condition over JsonGet, a FailStep with a Join message, and a ModelStep registration."""
    from sagemaker.core.model_registry import create_model_package_from_containers
    from sagemaker.core.processing import Processor
    from sagemaker.core.shapes import ProcessingInput, ProcessingOutput, ProcessingS3Input, ProcessingS3Output
    from sagemaker.core.training.configs import Compute, InputData, SourceCode
    from sagemaker.core.workflow.conditions import ConditionGreaterThanOrEqualTo
    from sagemaker.core.workflow.functions import Join, JsonGet
    from sagemaker.core.workflow.parameters import ParameterFloat
    from sagemaker.core.workflow.pipeline_context import PipelineSession, _ModelStepArguments
    from sagemaker.core.workflow.properties import PropertyFile
    from sagemaker.mlops.workflow import ConditionStep, FailStep, ModelStep, Pipeline, ProcessingStep, TrainingStep
    from sagemaker.train import ModelTrainer

    import boto3

    from pipelines.sagemaker.offline import SDK_DEFAULTS
    from steps.register import _SessionHolder

    session = PipelineSession(boto_session=boto3.Session(region_name=REGION), default_bucket=BUCKET,
                              sagemaker_config=SDK_DEFAULTS)
    role, image = "arn:aws:iam::123456789012:role/x", "123456789012.dkr.ecr.us-east-1.amazonaws.com/python:3"
    for name in ("emit.py", "score.py", "train.py"):
        s3.upload_file(str(scripts / name), BUCKET, f"sdk-code/{name}")
    code = ProcessingInput(input_name="code", s3_input=ProcessingS3Input(
        s3_uri=f"s3://{BUCKET}/sdk-code", local_path="/opt/ml/processing/input/code", s3_data_type="S3Prefix",
        s3_input_mode="File"))

    def processor(script: str) -> Processor:
        return Processor(role=role, image_uri=image, instance_count=1, instance_type="ml.m5.large",
                         entrypoint=["python3", f"/opt/ml/processing/input/code/{script}"], sagemaker_session=session)

    prepare = ProcessingStep(name="Prepare", step_args=processor("emit.py").run(
        inputs=[code], arguments=["--text", "from-the-sdk"], outputs=[ProcessingOutput(
            output_name="data", s3_output=ProcessingS3Output(s3_uri=f"s3://{BUCKET}/sdk/prepare",
                                                             local_path="/opt/ml/processing/output/data",
                                                             s3_upload_mode="EndOfJob"))]))
    trainer = ModelTrainer(training_image=image, role=role, sagemaker_session=session, base_job_name="train",
                           source_code=SourceCode(source_dir=str(scripts), entry_script="train.py"),
                           compute=Compute(instance_type="ml.m5.large", instance_count=1),
                           hyperparameters={"epochs": "2"})
    train = TrainingStep(name="Train", step_args=trainer.train(input_data_config=[InputData(
        channel_name="train", data_source=prepare.properties.ProcessingOutputConfig.Outputs["data"].S3Output.S3Uri)]))
    report = PropertyFile(name="Report", output_name="evaluation", path="evaluation.json")
    score = ProcessingStep(name="Score", property_files=[report], step_args=processor("score.py").run(
        inputs=[code], arguments=["--auc", "0.8"], outputs=[ProcessingOutput(
            output_name="evaluation", s3_output=ProcessingS3Output(
                s3_uri=f"s3://{BUCKET}/sdk/score", local_path="/opt/ml/processing/output/evaluation",
                s3_upload_mode="EndOfJob"))]), depends_on=[train])
    auc = JsonGet(step_name="Score", property_file=report, json_path="binary_classification_metrics.auc.value")
    minimum = ParameterFloat(name="MinAuc", default_value=0.7)
    session.context = _ModelStepArguments(_SessionHolder(session))
    register = ModelStep(name="Register", step_args=create_model_package_from_containers(
        session, containers=[{"Image": image, "ModelDataUrl": train.properties.ModelArtifacts.S3ModelArtifacts}],
        content_types=["text/csv"], response_types=["text/csv"], inference_instances=["ml.m5.large"],
        transform_instances=["ml.m5.large"], model_package_group_name="sdk-models",
        approval_status="PendingManualApproval"))
    fail = FailStep(name="TooLow", error_message=Join(on=" ", values=["AUC", auc, "is below", minimum]))
    gate = ConditionStep(name="Gate", conditions=[ConditionGreaterThanOrEqualTo(left=auc, right=minimum)],
                         if_steps=[register], else_steps=[fail])
    pipeline = Pipeline(name="sdk-built", parameters=[minimum], steps=[prepare, train, score, gate],
                        sagemaker_session=session)
    return json.loads(pipeline.definition())


def test_a_definition_written_with_the_sdk_runs_to_the_end(aws: dict, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
    definition = tmp_path / "sdk-built.json"
    definition.write_text(json.dumps(_sdk_pipeline(aws["s3"], FIXTURES / "scripts")))
    code, summary, err = _emulate(tmp_path / "home", "--definition", str(definition))
    assert code == 0, err
    assert {s["name"]: s["status"] for s in summary["steps"]} == {
        "Prepare": "succeeded", "Train": "succeeded", "Score": "succeeded", "Gate": "succeeded",
        "Register": "succeeded", "TooLow": "skipped"}
    (package,) = aws["sm"].list_model_packages(ModelPackageGroupName="sdk-models")["ModelPackageSummaryList"]
    model_url = aws["sm"].describe_model_package(ModelPackageName=package["ModelPackageArn"])[
        "InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    import io
    import tarfile

    bucket, key = model_url[5:].split("/", 1)
    archive = tarfile.open(fileobj=io.BytesIO(aws["s3"].get_object(Bucket=bucket, Key=key)["Body"].read()))
    model = json.loads(archive.extractfile("model.json").read())
    assert model["epochs"] == 2 and model["lines"] == 1  # trained on Prepare's output, with its hyperparameter
    code, _, err = _emulate(tmp_path / "home", "--definition", str(definition), "--param", "MinAuc=0.9")
    assert code == 1 and "AUC 0.8 is below 0.9" in err


def test_model_endpoint_config_and_endpoint_steps_create_them(aws: dict, tmp_path: Path) -> None:
    definition = {"Version": "2020-12-01", "Metadata": {}, "Parameters": [], "Steps": [
        {"Name": "Model", "Type": "Model", "Arguments": {
            "ExecutionRoleArn": "arn:aws:iam::123456789012:role/x",
            "PrimaryContainer": {"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/serve:1",
                                 "ModelDataUrl": f"s3://{BUCKET}/code/write.py"}}},
        {"Name": "Config", "Type": "EndpointConfig", "Arguments": {"ProductionVariants": [{
            "VariantName": "main", "ModelName": {"Get": "Steps.Model.ModelName"}, "InitialInstanceCount": 1,
            "InstanceType": "ml.m5.large"}]}},
        {"Name": "Serve", "Type": "Endpoint", "Arguments": {
            "EndpointName": "emulated-endpoint", "EndpointConfigName": {"Get": "Steps.Config.EndpointConfigName"}}}]}
    path = tmp_path / "endpoint.json"
    path.write_text(json.dumps(definition))
    code, summary, err = _emulate(tmp_path / "home", "--definition", str(path))
    assert code == 0, err
    endpoint = aws["sm"].describe_endpoint(EndpointName="emulated-endpoint")
    config = aws["sm"].describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    (variant,) = config["ProductionVariants"]
    assert variant["ModelName"].startswith("Model-") and aws["sm"].describe_model(ModelName=variant["ModelName"])


@pytest.mark.slow
def test_the_compiled_checkpoint_uri_outlives_the_execution_and_resumes_no_other_data(aws: dict,
                                                                                    tmp_path: Path) -> None:
    """SageMaker restores CheckpointConfig.S3Uri into every new training job. The compiled URI is one per
    configuration, not per execution (CheckpointConfig is in training's cache key: scoped to the execution, the
    step could never be a cache hit), and the checkpoint guard refuses what other data, arguments or code wrote:
    an execution on other data trains from its first epoch."""
    import subprocess

    from pipelines.loader import load_pipeline
    from pipelines.sagemaker.compiler import compile_pipeline

    compiled = compile_pipeline(load_pipeline(REPO / "configs" / "fraud-detection-torch.yaml", "dev"))
    aws["s3"].create_bucket(Bucket=compiled.bucket)
    for key, body in compiled.artifacts.items():
        if key.endswith("/distributed.json"):  # one torchrun process: checkpoints are the point here, not DDP
            body = json.dumps({**json.loads(body), "process_count_per_node": 1}).encode()
        aws["s3"].put_object(Bucket=compiled.bucket, Key=key, Body=body)
    data = {}
    for seed in (5, 6):
        data[seed] = tmp_path / f"data-{seed}"
        subprocess.run([sys.executable, str(REPO / "model_code" / "generate_data.py"), "--rows", "1500", "--seed",
                        str(seed), "--out", str(data[seed])], check=True, capture_output=True)
    steps = {s["Name"]: s for s in compiled.definition["Steps"]}
    train = steps["train"]
    uri = train["Arguments"]["CheckpointConfig"]["S3Uri"]
    assert isinstance(uri, str) and uri.startswith(f"s3://{compiled.bucket}/fraud-detection-torch/checkpoints/train/")
    train["CacheConfig"] = {"Enabled": False}  # a fresh training job in every execution
    train["Arguments"]["HyperParameters"]["epochs"] = "2"
    path = tmp_path / "torch.json"
    path.write_text(json.dumps({**compiled.definition, "Steps": [steps["ingest"], steps["preprocess"], train]}))
    logs = []
    for seed in (5, 6):
        code, summary, err = _emulate(tmp_path / "home", "--definition", str(path), "--param",
                                      f"input_data={data[seed]}")
        assert code == 0, err
        logs.append((tmp_path / "home" / "runs" / summary["run_id"] / "train" / "log.txt").read_text())
    assert aws["s3"].list_objects_v2(Bucket=compiled.bucket, Prefix=uri[len(f"s3://{compiled.bucket}/"):])["KeyCount"]
    first, second = logs
    assert "epoch 2/2" in first
    assert "resumed from checkpoint" not in second and "epoch 1/2" in second and "epoch 2/2" in second
