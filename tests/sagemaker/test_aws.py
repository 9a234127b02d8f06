"""The AWS control plane against a real moto server process on loopback, driven through the CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import GOLDEN, free_port, run_cli

CONFIG = "configs/fraud-detection.yaml"
REGION, BUCKET = "us-east-1", "sagepipe-dev-artifacts"  # configs/env/dev.yaml


@pytest.fixture(scope="module")
def moto_server(tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
    server = Path(__file__).with_name("moto_process.py")  # moto.server, with ListPipelineExecutionSteps answered
    proc = subprocess.Popen([sys.executable, str(server), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                pytest.fail("moto server did not start")
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)
    log.close()


@pytest.fixture
def aws(moto_server: str, monkeypatch: pytest.MonkeyPatch):
    """boto3 (in tests and in the CLI processes) pointed at the moto server, with a fresh bucket."""
    for key, value in {"AWS_ENDPOINT_URL": moto_server, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(key, value)
    import boto3

    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    sm = boto3.client("sagemaker", region_name=REGION)
    yield {"s3": s3, "sm": sm}
    for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        s3.delete_object(Bucket=BUCKET, Key=item["Key"])
    s3.delete_bucket(Bucket=BUCKET)


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    done = run_cli(*args, home=home)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_upsert_start_status_and_list_executions(aws: dict, home: Path) -> None:
    created = _cli(home, "upsert", CONFIG, "--env", "dev")
    assert created.returncode == 0, created.stderr
    assert "created pipeline arn:aws:sagemaker:us-east-1:" in created.stdout
    keys = [o["Key"] for o in aws["s3"].list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys and all(k.startswith("fraud-detection/artifacts/") for k in keys)
    stored = json.loads(aws["sm"].describe_pipeline(PipelineName="fraud-detection")["PipelineDefinition"])
    golden = json.loads((GOLDEN / "fraud-detection.dev.json").read_text())
    assert stored == golden
    again = _cli(home, "upsert", CONFIG, "--env", "dev")
    assert again.returncode == 0 and "updated pipeline" in again.stdout and "code: 0 new" in again.stdout

    started = _cli(home, "start", CONFIG, "--env", "dev", "--param", "min_auc=0.8", "--json")
    assert started.returncode == 0, started.stderr
    arn = json.loads(started.stdout)["arn"]
    assert ":pipeline/fraud-detection/execution/" in arn
    status = json.loads(_cli(home, "status", arn, "--json").stdout)
    assert status["arn"] == arn and status["status"] in ("Executing", "Succeeded")
    listed = json.loads(_cli(home, "executions", "list", CONFIG, "--env", "dev", "--json").stdout)
    assert [e["arn"] for e in listed] == [arn]
    bad = _cli(home, "status", "not-an-arn")
    assert bad.returncode == 2 and "is not a pipeline execution ARN" in bad.stderr


def test_models_commands_act_on_the_sagemaker_model_registry(aws: dict, home: Path) -> None:
    sm, s3 = aws["sm"], aws["s3"]
    sm.create_model_package_group(ModelPackageGroupName="fraud-detection")
    report = {"binary_classification_metrics": {"auc": {"value": 0.83, "standard_deviation": 0.02}}}
    s3.put_object(Bucket=BUCKET, Key="eval/evaluation.json", Body=json.dumps(report).encode())
    for _ in range(2):  # what the pipeline's RegisterModel step creates
        sm.create_model_package(
            ModelPackageGroupName="fraud-detection", ModelApprovalStatus="PendingManualApproval",
            InferenceSpecification={"Containers": [{"Image": "img", "ModelDataUrl": f"s3://{BUCKET}/model.tar.gz"}],
                                    "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
            ModelMetrics={"ModelQuality": {"Statistics": {"ContentType": "application/json",
                                                          "S3Uri": f"s3://{BUCKET}/eval/evaluation.json"}}})
    listed = json.loads(_cli(home, "models", "list", "--env", "dev", "--json").stdout)
    assert [(p["group"], p["version"], p["status"]) for p in listed] == [
        ("fraud-detection", 1, "PendingManualApproval"), ("fraud-detection", 2, "PendingManualApproval")]
    assert listed[0]["metrics"]["auc"] == 0.83

    approved = _cli(home, "models", "approve", "fraud-detection", "1", "--env", "dev", "--note", "good")
    assert approved.returncode == 0 and "PendingManualApproval -> Approved" in approved.stdout
    assert "EventBridge rule starts the deploy pipeline" in approved.stdout
    rejected = _cli(home, "models", "reject", "fraud-detection", "2", "--env", "dev", "--note", "worse")
    assert rejected.returncode == 0
    statuses = {p["ModelPackageVersion"]: p["ModelApprovalStatus"] for p in
                [sm.describe_model_package(ModelPackageName=s["ModelPackageArn"]) for s in
                 sm.list_model_packages(ModelPackageGroupName="fraud-detection")["ModelPackageSummaryList"]]}
    assert statuses == {1: "Approved", 2: "Rejected"}
    shown = json.loads(_cli(home, "models", "show", "fraud-detection", "1", "--env", "dev", "--json").stdout)
    assert shown["history"][-1]["previous"] == "PendingManualApproval" and shown["history"][-1]["note"] == "good"
    refused = _cli(home, "models", "approve", "fraud-detection", "2", "--env", "dev")
    assert refused.returncode == 5 and "needs --force" in refused.stderr  # a registry refusal
    typo = _cli(home, "models", "list", "fraud-detectoin", "--env", "dev")
    assert typo.returncode == 5 and "did you mean 'fraud-detection'" in typo.stderr


def test_a_group_with_more_versions_than_one_page_lists_them_all(aws: dict) -> None:
    from pipelines.registry.sagemaker_backend import SageMakerRegistry

    sm = aws["sm"]
    sm.create_model_package_group(ModelPackageGroupName="many-versions")
    for _ in range(103):  # ListModelPackages answers at most 100 per page
        sm.create_model_package(ModelPackageGroupName="many-versions", ModelApprovalStatus="PendingManualApproval",
                                InferenceSpecification={"Containers": [{"Image": "img"}],
                                                        "SupportedContentTypes": ["text/csv"],
                                                        "SupportedResponseMIMETypes": ["text/csv"]})
    registry = SageMakerRegistry(REGION)
    assert [p["version"] for p in registry.versions("many-versions")] == list(range(1, 104))
    assert registry.latest("many-versions")["version"] == 103


def test_missing_credentials_is_one_clear_line(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    done = _cli(home, "executions", "list", CONFIG, "--env", "dev")
    assert done.returncode == 6 and "no AWS credentials found" in done.stderr  # an AWS error
    assert os.environ.get("AWS_ACCESS_KEY_ID") is None


@pytest.mark.parametrize("code, expected", [
    ("AccessDeniedException", "access denied — User is not authorized; the caller's IAM policy must allow "
                              "StartPipelineExecution"),
    ("ThrottlingException", "AWS kept throttling StartPipelineExecution after retries; try again in a minute"),
    ("ValidationException", "ValidationException: User is not authorized"),
])
def test_aws_errors_become_one_line_that_names_the_fix(code: str, expected: str) -> None:
    from botocore.exceptions import ClientError

    from pipelines.sagemaker.aws import AwsError, explained

    with pytest.raises(AwsError) as caught:
        with explained("starting pipeline p"):
            raise ClientError({"Error": {"Code": code, "Message": "User is not authorized"}}, "StartPipelineExecution")
    assert str(caught.value) == f"starting pipeline p: {expected}"
