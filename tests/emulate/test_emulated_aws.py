"""The emulated AWS is a place: what one emulation leaves in S3 and on the control plane is there for the next,
the step cache lives in it (so it never points at objects that are gone), and a user can list and clean it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli
from tests.tuning.test_tuning import TUNING, tiny_project


@pytest.fixture
def own_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Emulate starts its own server (not a shared test server named by AWS_ENDPOINT_URL)."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


def _emulate(home: Path, *args: str, cwd: Path = REPO) -> tuple[int, dict, str, float]:
    started = time.perf_counter()
    done = run_cli("emulate", *args, "--json", home=home, cwd=cwd)
    took = time.perf_counter() - started
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else {}, done.stderr, took


def test_objects_and_packages_outlive_the_server_and_clean_forgets_them(own_aws: None, tmp_path: Path) -> None:
    import boto3

    from pipelines.emulate.server import emulated_aws

    home = tmp_path / "emulate"
    with emulated_aws(home) as connect:
        connect("us-east-1")
        s3, sm = boto3.client("s3"), boto3.client("sagemaker")
        s3.create_bucket(Bucket="kept-bucket")
        s3.put_object(Bucket="kept-bucket", Key="a/b.txt", Body=b"yesterday")
        sm.create_model_package_group(ModelPackageGroupName="kept-group")
    assert "AWS_ENDPOINT_URL" not in os.environ
    with emulated_aws(home) as connect:
        connect("us-east-1")
        s3, sm = boto3.client("s3"), boto3.client("sagemaker")
        assert s3.get_object(Bucket="kept-bucket", Key="a/b.txt")["Body"].read() == b"yesterday"
        groups = sm.list_model_package_groups()["ModelPackageGroupSummaryList"]
        assert [g["ModelPackageGroupName"] for g in groups] == ["kept-group"]

    listed = run_cli("emulated", "list", "--json", home=tmp_path)
    assert listed.returncode == 0, listed.stderr
    found = json.loads(listed.stdout)
    assert {"name": "kept-bucket", "objects": 1, "bytes": 9} in found["buckets"]
    assert [g["name"] for g in found["model_package_groups"]] == ["kept-group"]
    text = run_cli("emulated", "list", home=tmp_path).stdout
    assert "s3://kept-bucket: 1 objects" in text and "model package group kept-group" in text

    cleaned = run_cli("emulated", "clean", home=tmp_path)
    assert cleaned.returncode == 0 and "removed the emulated AWS" in cleaned.stdout, cleaned.stderr
    assert "is empty" in run_cli("emulated", "clean", home=tmp_path).stdout
    with emulated_aws(home) as connect:
        connect("us-east-1")
        assert boto3.client("s3").list_buckets()["Buckets"] == []


def test_an_unreadable_state_is_kept_aside_and_the_server_starts_empty(own_aws: None, tmp_path: Path) -> None:
    import boto3

    from pipelines.emulate.server import aws_dir, emulated_aws

    home = tmp_path / "emulate"
    aws_dir(home).mkdir(parents=True)
    (aws_dir(home) / "state.pickle").write_bytes(b"not a pickle")
    listed = run_cli("emulated", "list", home=tmp_path)  # listing only reads: the state stays where it is
    assert listed.returncode == 0 and "cannot be read" in listed.stdout, listed.stderr
    assert (aws_dir(home) / "state.pickle").read_bytes() == b"not a pickle"
    with emulated_aws(home) as connect:
        connect("us-east-1")
        assert boto3.client("s3").list_buckets()["Buckets"] == []
    kept = list(aws_dir(home).glob("state.pickle.unreadable-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == b"not a pickle"
    assert "could not be read" in (home / "moto.log").read_text()
    assert (aws_dir(home) / "state.pickle").exists()  # this emulation's (empty) account was saved


@pytest.fixture(scope="module")
def claims(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("claims")
    subprocess.run([sys.executable, str(REPO / "model_code" / "generate_data.py"), "--rows", "2000", "--seed", "3",
                    "--out", str(data)], check=True, capture_output=True)
    return data


def _twice(home: Path, config: str, data: Path, jobs: tuple[str, ...]) -> tuple[dict, dict, float, float]:
    """Emulate config with a gate every model passes, then with one none does: every job step is a cache hit on
    the first execution's objects, which are still in the emulated S3, and the run takes the other branch."""
    args = (config, "--env", "dev", "--param", f"input_data={data}")
    code, first, err, first_s = _emulate(home, *args, "--param", "min_auc=0.5")
    assert code == 0, err
    execution = first["execution_arn"].rsplit("/", 1)[-1]
    assert not any(step["cached"] for step in first["steps"])

    code, second, err, second_s = _emulate(home, *args, "--param", "min_auc=0.99")
    assert code == 1, err
    steps = {step["name"]: step for step in second["steps"]}
    for job in jobs:
        assert steps[job]["status"] == "cached" and steps[job]["cached"] is True, steps[job]
        assert steps[job]["cached_from"] == execution, steps[job]
    assert steps["register"]["status"] == "skipped" and steps["auc-too-low"]["status"] == "failed"
    print(f"{config}: first emulation {first_s:.1f} s, second (every job cached) {second_s:.1f} s")
    return first, second, first_s, second_s


@pytest.mark.slow
def test_lab3_advanced_the_hpo_pipeline_twice(own_aws: None, tmp_path: Path, claims: Path) -> None:
    _twice(tmp_path / "home", "configs/fraud-detection-hpo.yaml", claims, ("ingest", "preprocess", "tune", "evaluate"))


def _local(home: Path, data: Path, min_auc: str) -> subprocess.CompletedProcess:
    return run_cli("run", "configs/fraud-detection.yaml", "--param", f"input_data={data}", "--param",
                   f"min_auc={min_auc}", "--json", home=home)


@pytest.mark.slow
def test_lab3_advanced_a_second_emulation_takes_every_cache_hit_and_the_other_branch(own_aws: None,
                                                                                     tmp_path: Path,
                                                                                     claims: Path) -> None:
    """The workshop's Lab 3 Advanced: execute the pipeline, then again with a stricter gate. The local runner
    runs the same config on the same data both times: the same AUC, branch, registration and gate failure
    (this was test_emulate.py's test_run_and_emulate_agree_on_the_example, which emulated the same two
    executions on the shared test server)."""
    home = tmp_path / "home"
    local = _local(home, claims, "0.5")
    assert local.returncode == 0, local.stderr
    first, second, _, _ = _twice(home, "configs/fraud-detection.yaml", claims, ("ingest", "preprocess", "train",
                                                                                 "evaluate"))
    assert second["metrics"]["evaluate"] == first["metrics"]["evaluate"]
    auc = [s["metrics"]["evaluate"]["binary_classification_metrics"]["auc"]["value"]
           for s in (json.loads(local.stdout), first)]
    assert abs(auc[0] - auc[1]) < 1e-6, auc
    statuses = {s["name"]: s["status"] for s in first["steps"]}
    assert statuses["register"] == "succeeded" and statuses["auc-too-low"] == "skipped"
    # the report explains the decision from what the condition step recorded, not from the YAML
    state = json.loads((home / "runs" / second["run_id"] / "state.json").read_text())
    (compared,) = state["steps"]["check-auc"]["emulated"]["conditions"]
    assert compared["right"] == 0.99 and compared["holds"] is False
    from pipelines.report.collect import collect

    gate = collect(state, home / "runs" / second["run_id"], None).gate
    assert gate is not None and gate.passed is False
    assert gate.sentence.startswith("ROC AUC (evaluate) ") and "< min_auc 0.99: the model did not pass" in gate.sentence
    # the gate fails the local run the same way
    failing = _local(home, claims, "0.99")
    assert failing.returncode == 1, failing.stderr
    local_error = json.loads((home / "runs" / json.loads(failing.stdout)["run_id"] / "state.json").read_text())
    assert local_error["steps"]["auc-too-low"]["error"] == state["steps"]["auc-too-low"]["error"]
    assert "is below min_auc 0.99" in state["steps"]["auc-too-low"]["error"]
    assert state["steps"]["train"]["note"].startswith("cache hit")

    listed = json.loads(run_cli("emulated", "list", "--json", home=home).stdout)
    assert [p["executions"] for p in listed["pipelines"] if p["name"] == "fraud-detection"] == [2]
    (group,) = [g for g in listed["model_package_groups"] if g["name"] == "fraud-detection"]
    assert [v["status"] for v in group["versions"]] == ["PendingManualApproval"]
    import boto3

    from pipelines.emulate.server import emulated_aws

    with emulated_aws(home / "emulate") as connect:  # the registration, as the SageMaker API and the CLI see it
        connect("us-east-1")
        sm = boto3.client("sagemaker")
        (package,) = sm.list_model_packages(ModelPackageGroupName="fraud-detection")["ModelPackageSummaryList"]
        assert package["ModelApprovalStatus"] == "PendingManualApproval"
        described = sm.describe_model_package(ModelPackageName=package["ModelPackageArn"])
        report = described["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
        assert first["execution_arn"].rsplit("/", 1)[-1] in report  # the first execution's own report
        models = run_cli("models", "list", "--env", "dev", "--json", home=home)
        assert models.returncode == 0 and "fraud-detection" in models.stdout, models.stderr


def test_a_tuning_cache_hit_hands_on_the_model_its_own_trials_wrote(own_aws: None,
                                                                    tmp_path: Path) -> None:
    """The best model's URI comes from the tuning job's properties: a cache hit's job wrote its trials under the
    earlier execution, and the step that reads the model (not cached here) finds it there."""
    pipeline = TUNING.replace("      random_seed: 3\n", "")
    config = tiny_project(tmp_path / "p", pipeline)
    home = tmp_path / "home"
    args = (str(config), "--env", "dev", "--param", f"data={tmp_path / 'p' / 'data'}")
    code, first, err, _ = _emulate(home, *args, cwd=config.parents[1])
    assert code == 0, err
    config.write_text(config.read_text().replace("    report: {output: report, path: report.json}\n",
                                                 "    report: {output: report, path: report.json}\n"
                                                 "    cache: false\n"))
    code, second, err, _ = _emulate(home, *args, cwd=config.parents[1])
    assert code == 0, err
    steps = {step["name"]: step for step in second["steps"]}
    assert steps["tune"]["cached"] and steps["tune"]["cached_from"] == first["execution_arn"].rsplit("/", 1)[-1]
    assert steps["use"]["status"] == "succeeded" and not steps["use"]["cached"]
    assert second["metrics"]["use"] == first["metrics"]["use"]


SLOW = """import json, os, pathlib, sys, time
mark = pathlib.Path(sys.argv[1])
if not mark.exists():
    mark.write_text("started")
    time.sleep(120)
seed = pathlib.Path("/opt/ml/processing/input/data/seed.txt").read_text()
pathlib.Path("/opt/ml/processing/output/report/report.json").write_text(json.dumps({"seed": int(seed)}))
"""


def test_an_interrupted_emulation_resumes_the_same_execution(own_aws: None, tmp_path: Path) -> None:
    """Ctrl-C in the second job; `sagepipe resume` continues the same execution: the finished step stays done and
    the next one reads its output through the properties the run recorded."""
    import signal

    from tests.emulate.test_emulate import WRITE, seed_pipeline

    code = tmp_path / "code"
    code.mkdir()
    (code / "write.py").write_text(WRITE)
    (code / "read.py").write_text(SLOW)
    definition = seed_pipeline(scoped=True)
    mark = tmp_path / "started"
    for step in definition["Steps"]:
        for item in step["Arguments"]["ProcessingInputs"]:
            if item["InputName"] == "code":
                item["S3Input"]["S3Uri"] = {"Get": "Parameters.code"}
        for output in step["Arguments"]["ProcessingOutputConfig"]["Outputs"]:
            output["S3Output"]["S3Uri"]["Std:Join"]["Values"][1] = "resume-bucket"
    definition["Steps"][1]["Arguments"]["AppSpecification"]["ContainerArguments"] = [str(mark)]
    definition["Parameters"].append({"Name": "code", "Type": "String"})
    path = tmp_path / "slow.json"
    path.write_text(json.dumps(definition))
    home = tmp_path / "home"
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "emulate", "--definition", str(path), "--param",
                             f"code={code}", "--json"], cwd=REPO, env={**os.environ, "SAGEPIPE_HOME": str(home)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not mark.exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    interrupted = json.loads(out)
    assert {s["name"]: s["status"] for s in interrupted["steps"]} == {"write": "succeeded", "read": "interrupted"}

    done = run_cli("resume", interrupted["run_id"], "--json", home=home)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    resumed = json.loads(done.stdout)
    assert resumed["run_id"] == interrupted["run_id"] and resumed["execution_arn"] == interrupted["execution_arn"]
    assert resumed["metrics"]["read"] == {"seed": 42}
    state = json.loads((home / "runs" / resumed["run_id"] / "state.json").read_text())
    assert state["steps"]["write"]["attempts"] == 1  # not run again
    assert state["steps"]["read"]["emulated"]["type"] == "Processing"
    assert state["steps"]["write"]["emulated"]["properties"]["ProcessingJobName"].startswith("pipelines-")


def test_a_job_says_which_image_it_stands_in_for_and_refuses_what_that_image_cannot_install(
        own_aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The container's pip asks the job's image (Python 3.12 here) before anything is installed."""
    from tests.emulate.test_emulate import _output, _processing
    from tests.sagemaker.test_requirements_check import wheel

    wheels = tmp_path / "wheels"
    wheel(wheels, "newpy", "1.0", ">=3.13")
    monkeypatch.setenv("SAGEPIPE_PIP_INDEX_ARGS", f"--isolated --no-index --find-links {wheels}")
    monkeypatch.delenv("SAGEPIPE_REQUIREMENTS_CHECK", raising=False)
    code = tmp_path / "code"
    code.mkdir()
    (code / "job.txt").write_text("newpy==1.0\n")
    (code / "job.py").write_text("print('ran')\n")
    image = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.9-0-cpu-py3"
    step = _processing("job", "job.py", [], [], [_output("out", "s3://image-bucket/out")], cache=False)
    step["Arguments"]["ProcessingInputs"][0]["S3Input"]["S3Uri"] = {"Get": "Parameters.code"}
    step["Arguments"]["AppSpecification"].update({"ImageUri": image, "ContainerEntrypoint": [
        "/bin/sh", "-c", "pip install -q -r /opt/ml/processing/input/code/job.txt && "
                         "python3 /opt/ml/processing/input/code/job.py"]})
    path = tmp_path / "image.json"
    path.write_text(json.dumps({"Version": "2020-12-01", "Steps": [step],
                                "Parameters": [{"Name": "code", "Type": "String"}]}))
    home = tmp_path / "home"
    code_, summary, err, _ = _emulate(home, "--definition", str(path), "--param", f"code={code}")
    assert code_ == 1, err
    log = (home / "runs" / summary["run_id"] / "job" / "log.txt").read_text()
    assert "emulating image" in log and "sagemaker-scikit-learn" in log and "(Python 3.12" in log, log
    assert "job.txt cannot be installed in the job's image" in log and "newpy" in log, log
    assert "ran" not in log.splitlines()  # the job's script never started


def test_the_image_check_asks_the_index_the_container_pip_may_not(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The container's pip runs with PIP_NO_INDEX (it installs nothing new); the image's check must still reach
    the package index, and the container's setting is back for the pip that follows."""
    import importlib.util

    from pipelines.sagemaker import requirements_check

    seen: list[str | None] = []

    def pip(argv: list[str]) -> subprocess.CompletedProcess:
        seen.append(os.environ.get("PIP_NO_INDEX"))
        return subprocess.CompletedProcess(argv, 0, '{"install": []}', "")

    monkeypatch.setattr(requirements_check, "run_pip", pip)
    spec = importlib.util.spec_from_file_location("container_pip", REPO / "pipelines" / "emulate" / "container_pip.py")
    assert spec and spec.loader
    shim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shim)
    wanted = tmp_path / "job.txt"
    wanted.write_text("fitting==1.0\n")
    for key, value in {"PIP_NO_INDEX": "1", "SAGEPIPE_EMULATED_IMAGE": "sklearn-1.9-0",
                       "SAGEPIPE_REQUIREMENTS_CACHE": str(tmp_path / "verdicts"), "SAGEPIPE_PIP_INDEX_ARGS": ""}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SAGEPIPE_REQUIREMENTS_CHECK", raising=False)
    assert shim._image_refuses(["install", "-q", "-r", str(wanted)]) is None
    assert seen == [None] and os.environ["PIP_NO_INDEX"] == "1"
