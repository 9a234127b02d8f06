"""Semantics emulate honours (parallelism limits, multi-instance processing with sharded inputs, /opt/ml/config,
CurrentDateTime, job names new in every execution), and the one warning line for each one it does not."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipelines.emulate.execution import steps_at_once
from pipelines.emulate.unemulated import unemulated
from pipelines.errors import ConfigError
from tests.conftest import run_cli
from tests.emulate.test_emulate import BUCKET, _emulate, _output, _processing, aws  # noqa: F401  (fixture)
from tests.sagemaker.test_aws import moto_server  # noqa: F401  (fixture)
from tests.tuning.test_tuning import TUNING, tiny_project

SLEEP = """import json, pathlib, sys, time
started = time.time()
time.sleep(1.0)
pathlib.Path("/opt/ml/processing/output/out/times.json").write_text(json.dumps([started, time.time()]))
"""
SHARDS = """import json, pathlib
config = json.loads(pathlib.Path("/opt/ml/config/resourceconfig.json").read_text())
seen = {name: sorted(p.name for p in pathlib.Path(f"/opt/ml/processing/input/{name}").iterdir())
        for name in ("shard", "whole", "code")}
out = pathlib.Path("/opt/ml/processing/output/out") / f"{config['current_host']}.json"
out.write_text(json.dumps({"hosts": config["hosts"], **seen}))
"""
CONFIG = """import json, os, pathlib, sys
config = pathlib.Path("/opt/ml/config")
job = json.loads((config / "processingjobconfig.json").read_text())
code = job["ProcessingInputs"][0]["S3Input"]["LocalPath"]
pathlib.Path("/opt/ml/processing/output/out/seen.json").write_text(json.dumps({
    "job": job, "resources": json.loads((config / "resourceconfig.json").read_text()), "argv": sys.argv[1:],
    "code_is_here": os.path.isfile(os.path.join(code, "config.py"))}))
"""
TIMES = """import json, pathlib, sys, time
pathlib.Path("/opt/ml/processing/output/out/times.json").write_text(json.dumps(sys.argv[1:]))
time.sleep(1.5)
"""


def _definition(tmp_path: Path, steps: list, name: str, **top: object) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"Version": "2020-12-01", "Metadata": {}, "Parameters": [], "Steps": steps, **top}))
    return path


def _put(s3: object, key: str, text: str) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=text.encode())  # type: ignore[attr-defined]


def _read(s3: object, key: str) -> object:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())  # type: ignore[attr-defined]


# --- ParallelismConfiguration -------------------------------------------------------------------------
def test_max_parallel_execution_steps_keeps_independent_steps_from_overlapping(aws: dict, tmp_path: Path) -> None:
    """Three independent steps of ~1 s each, --max-parallel 3, and the pipeline's ParallelismConfiguration of 1
    (describe-pipeline output): they run one after another. Before, all three ran at once."""
    _put(aws["s3"], "code/sleep.py", SLEEP)
    steps = [_processing(n, "sleep.py", [], [], [_output("out", f"s3://{BUCKET}/times/{n}")], cache=False)
             for n in ("a", "b", "c")]
    steps[0]["Arguments"]["NetworkConfig"] = steps[2]["Arguments"]["NetworkConfig"] = {"EnableNetworkIsolation": True}
    described = tmp_path / "described.json"
    described.write_text(json.dumps({"PipelineName": "one-at-a-time", "ParallelismConfiguration": {
        "MaxParallelExecutionSteps": 1}, "PipelineDefinition": json.dumps({
            "Version": "2020-12-01", "Metadata": {}, "Parameters": [], "Steps": steps})}))
    code, summary, err = _emulate(tmp_path / "home", "--definition", str(described), "--max-parallel", "3")
    assert code == 0, err
    spans = sorted(tuple(_read(aws["s3"], f"times/{n}/times.json")) for n in ("a", "b", "c"))
    assert all(before[1] <= after[0] for before, after in zip(spans, spans[1:])), spans
    execution = aws["sm"].describe_pipeline_execution(PipelineExecutionArn=summary["execution_arn"])
    assert execution["ParallelismConfiguration"] == {"MaxParallelExecutionSteps": 1}
    # what it does not honour: one line per kind, before the execution starts
    warning = ("warning: emulate does not honour NetworkConfig (steps: a, c): jobs run with this machine's network")
    assert err.count(warning) == 1, err
    assert err.count("does not honour VolumeSizeInGB (steps: a, b, c)") == 1, err
    assert err.index(warning) < err.index("emulating SageMaker pipeline execution")


def test_the_limit_is_the_smaller_of_the_definition_and_max_parallel() -> None:
    definition = {"Steps": [], "ParallelismConfiguration": {"MaxParallelExecutionSteps": 2}}
    assert steps_at_once("d.json", definition, None) == 2
    assert steps_at_once("d.json", definition, 5) == 2 and steps_at_once("d.json", definition, 1) == 1
    assert steps_at_once("d.json", {"Steps": []}, 4) == 4 and steps_at_once("d.json", {"Steps": []}, None) is None
    with pytest.raises(ConfigError, match="MaxParallelExecutionSteps: 0 is not a whole number of steps"):
        steps_at_once("d.json", {"Steps": [], "ParallelismConfiguration": {"MaxParallelExecutionSteps": 0}}, None)


# --- processing: instances, shards, /opt/ml/config ----------------------------------------------------
def test_sharded_processing_runs_one_container_per_instance_with_its_shard(aws: dict, tmp_path: Path) -> None:
    """InstanceCount 2 and four objects ShardedByS3Key: algo-1 gets the 1st and 3rd (by key), algo-2 the 2nd and
    4th; a FullyReplicated input goes whole to both; both instances' outputs land under the one output URI.
    Before, one container ran with all four."""
    _put(aws["s3"], "code/shards.py", SHARDS)
    for i in range(4):
        _put(aws["s3"], f"parts/part-{i}.csv", f"{i}\n")
    inputs = [{"InputName": name, "S3Input": {"S3Uri": f"s3://{BUCKET}/parts", "LocalPath": f"/opt/ml/processing/input/{name}",
                                              "S3DataType": "S3Prefix", "S3InputMode": "File",
                                              "S3DataDistributionType": kind}}
              for name, kind in (("shard", "ShardedByS3Key"), ("whole", "FullyReplicated"))]
    step = _processing("split", "shards.py", [], inputs, [_output("out", f"s3://{BUCKET}/sharded/out")], cache=False)
    step["Arguments"]["ProcessingResources"]["ClusterConfig"]["InstanceCount"] = 2
    code, _, err = _emulate(tmp_path / "home", "--definition", str(_definition(tmp_path, [step], "sharded")))
    assert code == 0, err
    listed = aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix="sharded/out/")["Contents"]
    assert sorted(item["Key"] for item in listed) == ["sharded/out/algo-1.json", "sharded/out/algo-2.json"]
    seen = {host: _read(aws["s3"], f"sharded/out/{host}.json") for host in ("algo-1", "algo-2")}
    assert seen["algo-1"]["shard"] == ["part-0.csv", "part-2.csv"]
    assert seen["algo-2"]["shard"] == ["part-1.csv", "part-3.csv"]
    for host in seen.values():
        assert host["whole"] == [f"part-{i}.csv" for i in range(4)] and "shards.py" in host["code"]
        assert host["hosts"] == ["algo-1", "algo-2"]


def test_a_processing_script_reads_its_job_config_and_resource_config(aws: dict, tmp_path: Path) -> None:
    """/opt/ml/config/processingjobconfig.json is the CreateProcessingJob request (resolved, with the service's
    defaults) and resourceconfig.json names the host; before, neither file existed."""
    _put(aws["s3"], "code/config.py", CONFIG)
    step = _processing("configured", "config.py", ["--job", {"Get": "Execution.ProcessingJobName"}], [],
                       [_output("out", {"Std:Join": {"On": "/", "Values": [
                           "s3:/", BUCKET, {"Get": "Execution.PipelineExecutionId"}, "out"]}})], cache=False)
    step["Arguments"]["Environment"] = {"MODE": "test"}
    code, summary, err = _emulate(tmp_path / "home", "--definition", str(_definition(tmp_path, [step], "configured")))
    assert code == 0, err
    execution = summary["execution_arn"].rsplit("/", 1)[-1]
    seen = _read(aws["s3"], f"{execution}/out/seen.json")
    job = seen["job"]
    assert seen["argv"] == ["--job", job["ProcessingJobName"]] and execution[-12:] in job["ProcessingJobName"]
    assert job["ProcessingJobArn"] == ("arn:aws:sagemaker:us-east-1:123456789012:processing-job/"
                                       + job["ProcessingJobName"].lower())
    assert job["Environment"] == {"MODE": "test"} and job["RoleArn"] == "arn:aws:iam::123456789012:role/x"
    assert job["AppSpecification"]["ImageUri"].endswith("/any-python:1")
    assert job["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] == f"s3://{BUCKET}/{execution}/out"
    assert job["ProcessingInputs"][0]["S3Input"]["S3DataDistributionType"] == "FullyReplicated"
    assert job["ProcessingResources"]["ClusterConfig"]["InstanceType"] == "ml.m5.large"
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400}
    assert seen["code_is_here"] is True  # its LocalPaths name the container's folders
    assert seen["resources"] == {"current_host": "algo-1", "hosts": ["algo-1"]}


# --- Execution.CurrentDateTime -------------------------------------------------------------------------
def test_current_date_time_is_the_time_a_step_reads_it(aws: dict, tmp_path: Path) -> None:
    """first reads StartDateTime and CurrentDateTime, then sleeps 1.5 s; second (after it) reads them again: the
    start is the same, the current time is later. Before, CurrentDateTime was the start, frozen."""
    _put(aws["s3"], "code/times.py", TIMES)
    arguments = [{"Get": "Execution.StartDateTime"}, {"Get": "Execution.CurrentDateTime"}]
    steps = [_processing(n, "times.py", arguments, [], [_output("out", f"s3://{BUCKET}/now/{n}")], cache=False)
             for n in ("first", "second")]
    steps[1]["DependsOn"] = ["first"]
    code, _, err = _emulate(tmp_path / "home", "--definition", str(_definition(tmp_path, steps, "clock")))
    assert code == 0, err
    (start_1, now_1), (start_2, now_2) = (_read(aws["s3"], f"now/{n}/times.json") for n in ("first", "second"))
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", v) for v in (start_1, now_1, start_2, now_2))
    assert start_1 == start_2 <= now_1 < now_2


# --- job names ------------------------------------------------------------------------------------------
def test_two_executions_name_their_jobs_apart(aws: dict, tmp_path: Path) -> None:
    """The same tuning pipeline emulated twice with caching off: its tuning job, trials (training jobs) and
    processing job have new names in the second execution (tuning job and trial names used to repeat)."""
    pipeline = (TUNING.replace("      random_seed: 3\n", "").replace("max_jobs: 4", "max_jobs: 1")
                .replace("max_parallel_jobs: 2", "max_parallel_jobs: 1")
                .replace("    code: scripts/train.py\n", "    code: scripts/train.py\n    cache: false\n")
                .replace("    report: {output: report, path: report.json}\n",
                         "    report: {output: report, path: report.json}\n    cache: false\n"))
    config = tiny_project(tmp_path / "p", pipeline)
    home = tmp_path / "home"
    names = []
    for _ in range(2):
        done = run_cli("emulate", str(config), "--env", "dev", "--param", f"data={tmp_path / 'p' / 'data'}",
                       "--json", home=home, cwd=config.parents[1])
        assert done.returncode == 0, done.stderr
        run = home / "runs" / json.loads(done.stdout)["run_id"]
        state = json.loads((run / "state.json").read_text())["steps"]
        assert not state["tune"].get("cached") and not state["use"].get("cached")
        trials = [line.split()[3] for line in (run / "tune" / "log.txt").read_text().splitlines()
                  if "] training job " in line]
        names.append({"tuning": state["tune"]["note"], "processing": state["use"]["note"], "training": trials})
    first, second = names
    assert first["tuning"].startswith("tuning job ") and first["processing"].startswith("processing job ")
    assert len(first["training"]) == 1
    for kind in ("tuning", "processing"):
        assert first[kind] != second[kind], kind
    assert not set(first["training"]) & set(second["training"])


# --- what is not honoured -------------------------------------------------------------------------------
def _step(name: str, kind: str, arguments: dict, **extra: object) -> dict:
    return {"Name": name, "Type": kind, "Arguments": arguments, **extra}


def test_each_unhonoured_kind_is_one_line_naming_its_steps() -> None:
    processing = {"NetworkConfig": {"EnableNetworkIsolation": True},
                  "ProcessingInputs": [{"InputName": "x", "S3Input": {"S3InputMode": "Pipe"}}],
                  "ProcessingOutputConfig": {"KmsKeyId": "key", "Outputs": [
                      {"OutputName": "o", "S3Output": {"S3UploadMode": "Continuous"}}]}}
    training = {"VpcConfig": {"Subnets": ["s"], "SecurityGroupIds": ["g"]}, "EnableManagedSpotTraining": True,
                "InputDataConfig": [{"ChannelName": "train", "InputMode": "FastFile"}],
                "OutputDataConfig": {"CompressionType": "NONE"}}
    gate = _step("gate", "Condition", {"Conditions": [], "ElseSteps": [], "IfSteps": [
        _step("late", "Processing", {"NetworkConfig": {"VpcConfig": {"Subnets": ["s"]}}})]})
    definition = {"Steps": [_step("prep", "Processing", processing), _step("train", "Training", training, RetryPolicies=[
        {"ExceptionType": ["SageMaker.CAPACITY_ERROR"], "MaxAttempts": 3}]), gate],
        "PipelineExperimentConfig": {"ExperimentName": "e"}}
    lines = unemulated(definition)
    kinds = [re.match(r"warning: emulate does not honour (.+?)(?: \(steps: (.*)\))?: ", line).groups()
             for line in lines]
    assert dict(kinds) == {
        "PipelineExperimentConfig": None, "NetworkConfig": "prep, late", "VpcConfig": "train, late",
        "EnableNetworkIsolation": "prep", "EnableManagedSpotTraining": "train", "RetryPolicies": "train",
        "KmsKeyId": "prep", "S3UploadMode Continuous": "prep", "S3InputMode Pipe/FastFile": "prep",
        "InputMode Pipe/FastFile": "train", "OutputDataConfig.CompressionType NONE": "train"}
    assert len(kinds) == len(dict(kinds))  # one line per kind


def test_what_asks_for_nothing_is_not_warned_about() -> None:
    quiet = {"NetworkConfig": {"EnableNetworkIsolation": False, "EnableInterContainerTrafficEncryption": False},
             "EnableManagedSpotTraining": False, "InputDataConfig": [{"ChannelName": "c", "InputMode": "File"}],
             "OutputDataConfig": {"KmsKeyId": "", "CompressionType": "GZIP"}}
    assert unemulated({"Steps": [_step("train", "Training", quiet)], "PipelineExperimentConfig": None}) == []


def test_a_processing_input_that_is_not_in_s3_is_refused_before_anything_runs() -> None:
    from pipelines.emulate.launch import refuse

    step = _processing("query", "q.py", [], [{"InputName": "rows", "DatasetDefinition": {
        "AthenaDatasetDefinition": {}, "LocalPath": "/opt/ml/processing/input/rows"}}], [], cache=False)
    with pytest.raises(ConfigError, match="processing input 'rows' is not an S3Input"):
        refuse("d.json", {"Version": "2020-12-01", "Parameters": [], "Steps": [step]})
