"""What the service refuses is caught before anything runs: each mutation of a golden definition is named by
compile's checks (step and field), and `sagepipe emulate --definition` exits 2 with it, without a traceback."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from pipelines.emulate.launch import refuse
from pipelines.errors import ConfigError
from pipelines.sagemaker.definition_checks import all_steps, check_definition
from tests.conftest import CHECKER, GOLDEN, run_cli

PLAIN, HPO = "fraud-detection.dev.json", "fraud-detection-hpo.dev.json"


def _golden(name: str) -> dict:
    return json.loads((GOLDEN / name).read_text())


def _step(definition: dict, name: str) -> dict:
    return next(s for s in all_steps(definition["Steps"]) if s["Name"] == name)


def _args(definition: dict, name: str) -> dict:
    return _step(definition, name)["Arguments"]


def depends_on_cycle(d: dict) -> None:
    _step(d, "ingest")["DependsOn"] = ["train"]  # train reads preprocess's outputs, which reads ingest's


def reference_cycle(d: dict) -> None:
    _args(d, "ingest")["AppSpecification"]["ContainerArguments"] += [
        "--report", {"Get": "Steps.evaluate.ProcessingOutputConfig.Outputs['evaluation'].S3Output.S3Uri"}]


def duplicate_input(d: dict) -> None:
    inputs = _args(d, "preprocess")["ProcessingInputs"]
    inputs[1]["InputName"] = inputs[0]["InputName"]


def duplicate_output(d: dict) -> None:
    outputs = _args(d, "preprocess")["ProcessingOutputConfig"]["Outputs"]
    outputs[2]["OutputName"] = outputs[0]["OutputName"]


def duplicate_channel(d: dict) -> None:
    channels = _args(d, "train")["InputDataConfig"]
    channels[1]["ChannelName"] = channels[0]["ChannelName"]


def local_output_path(d: dict) -> None:
    _args(d, "evaluate")["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] = "/tmp/evaluation"


def checkpoint_join_not_s3(d: dict) -> None:
    _args(d, "train")["CheckpointConfig"]["S3Uri"] = {"Std:Join": {"On": "/", "Values": [
        "file:/", "checkpoints", {"Get": "Execution.PipelineExecutionId"}]}}


def spot_wait_without_spot(d: dict) -> None:
    _args(d, "train")["StoppingCondition"]["MaxWaitTimeInSeconds"] = 172800


def spot_wait_below_runtime(d: dict) -> None:
    _args(d, "train")["EnableManagedSpotTraining"] = True
    _args(d, "train")["StoppingCondition"]["MaxWaitTimeInSeconds"] = 3600


def no_instances(d: dict) -> None:
    _args(d, "preprocess")["ProcessingResources"]["ClusterConfig"]["InstanceCount"] = 0


def unknown_instance_type(d: dict) -> None:
    _args(d, "train")["ResourceConfig"]["InstanceType"] = "ml.m5.huge"


def instance_type_parameter(d: dict) -> None:
    d["Parameters"].append({"Name": "evaluate_instance", "Type": "String", "DefaultValue": "ml.m55.xlarge"})
    _args(d, "evaluate")["ProcessingResources"]["ClusterConfig"]["InstanceType"] = {
        "Get": "Parameters.evaluate_instance"}


def training_over_28_days(d: dict) -> None:
    _args(d, "train")["StoppingCondition"]["MaxRuntimeInSeconds"] = 29 * 86400


def processing_over_its_maximum(d: dict) -> None:
    _args(d, "ingest")["StoppingCondition"] = {"MaxRuntimeInSeconds": 10 * 86400}


def more_parallel_than_trials(d: dict) -> None:
    limits = _args(d, "tune")["HyperParameterTuningJobConfig"]["ResourceLimits"]
    limits["MaxParallelTrainingJobs"] = limits["MaxNumberOfTrainingJobs"] + 1


def tuned_and_static(d: dict) -> None:
    _args(d, "tune")["TrainingJobDefinition"]["StaticHyperParameters"]["num_leaves"] = "31"


def bad_expire_after(d: dict) -> None:
    _step(d, "preprocess")["CacheConfig"]["ExpireAfter"] = "30 days"


def unknown_execution_variable(d: dict) -> None:
    _args(d, "train")["OutputDataConfig"]["S3OutputPath"] = {"Std:Join": {"On": "/", "Values": [
        "s3:/", "bucket", {"Get": "Execution.RunId"}]}}


def local_path_climbs_out(d: dict) -> None:
    _args(d, "preprocess")["ProcessingInputs"][1]["S3Input"]["LocalPath"] = "/opt/ml/processing/input/../../../x"


def channel_name_climbs_out(d: dict) -> None:
    _args(d, "train")["InputDataConfig"][0]["ChannelName"] = "../../escape"


def step_name_climbs_out(d: dict) -> None:
    _step(d, "auc-too-low")["Name"] = "../../escape"


# (golden, mutation, step, field path, what the message says)
MUTATIONS: list[tuple[str, Callable[[dict], None], str, str, str]] = [
    (PLAIN, depends_on_cycle, "ingest", "DependsOn[0]", "cycle: ingest -> train -> preprocess -> ingest"),
    (PLAIN, reference_cycle, "ingest", "Arguments.AppSpecification.ContainerArguments[5]",
     "cycle: ingest -> evaluate -> preprocess -> ingest"),
    (PLAIN, duplicate_input, "preprocess", "Arguments.ProcessingInputs[1].InputName",
     "another input of this job is also named 'raw'"),
    (PLAIN, duplicate_output, "preprocess", "Arguments.ProcessingOutputConfig.Outputs[2].OutputName",
     "another output of this job is also named 'train'"),
    (PLAIN, duplicate_channel, "train", "Arguments.InputDataConfig[1].ChannelName",
     "another channel of this job is also named 'train'"),
    (PLAIN, local_output_path, "evaluate", "Arguments.ProcessingOutputConfig.Outputs[0].S3Output.S3Uri",
     "'/tmp/evaluation' is not an S3 URI"),
    (PLAIN, checkpoint_join_not_s3, "train", "Arguments.CheckpointConfig.S3Uri",
     "'file://checkpoints/...' (the Std:Join's start) is not an S3 URI"),
    (PLAIN, spot_wait_without_spot, "train", "Arguments.StoppingCondition.MaxWaitTimeInSeconds",
     "EnableManagedSpotTraining is not true"),
    (PLAIN, spot_wait_below_runtime, "train", "Arguments.StoppingCondition.MaxWaitTimeInSeconds",
     "3600 is less than MaxRuntimeInSeconds (86400)"),
    (PLAIN, no_instances, "preprocess", "Arguments.ProcessingResources.ClusterConfig.InstanceCount",
     "is 0; a job runs on at least one instance"),
    (PLAIN, unknown_instance_type, "train", "Arguments.ResourceConfig.InstanceType",
     "'ml.m5.huge' is not a training instance type the API accepts"),
    (PLAIN, instance_type_parameter, "evaluate", "Arguments.ProcessingResources.ClusterConfig.InstanceType",
     "'ml.m55.xlarge' is not a processing instance type the API accepts"),
    (PLAIN, training_over_28_days, "train", "Arguments.StoppingCondition.MaxRuntimeInSeconds",
     "2505600 s is more than a training job may run (2419200 s, 28 days)"),
    (PLAIN, processing_over_its_maximum, "ingest", "Arguments.StoppingCondition.MaxRuntimeInSeconds",
     "864000 s is more than a processing job may run"),
    (HPO, more_parallel_than_trials, "tune",
     "Arguments.HyperParameterTuningJobConfig.ResourceLimits.MaxParallelTrainingJobs",
     "9 trials at once is more than the 8 of MaxNumberOfTrainingJobs"),
    (HPO, tuned_and_static, "tune", "Arguments.TrainingJobDefinition.StaticHyperParameters.num_leaves",
     "'num_leaves' is also tuned (ParameterRanges)"),
    (PLAIN, bad_expire_after, "preprocess", "CacheConfig.ExpireAfter", "'30 days' is not an ISO 8601 duration"),
    (PLAIN, local_path_climbs_out, "preprocess", "Arguments.ProcessingInputs[1].S3Input.LocalPath",
     "is not a folder under /opt/ml/processing/: name one there, without '..'"),
    (PLAIN, channel_name_climbs_out, "train", "Arguments.InputDataConfig[0].ChannelName",
     "'../../escape' is not a channel name"),
    (PLAIN, step_name_climbs_out, "../../escape", "Name", "a step name is 1-64 letters, digits, '-' or '_'"),
    (PLAIN, unknown_execution_variable, "train", "Arguments.OutputDataConfig.S3OutputPath.Std:Join.Values[2]",
     "'RunId' is not an execution variable"),
]
IDS = [mutation.__name__ for _, mutation, *_ in MUTATIONS]


def _mutated(golden: str, mutation: Callable[[dict], None]) -> dict:
    definition = _golden(golden)
    assert check_definition(copy.deepcopy(definition)) == []
    mutation(definition)
    return definition


@pytest.mark.parametrize("golden, mutation, step, path, says", MUTATIONS, ids=IDS)
def test_compile_checks_name_the_step_and_field(golden: str, mutation: Callable[[dict], None], step: str, path: str,
                                                says: str) -> None:
    found = check_definition(_mutated(golden, mutation))
    assert [(s, p) for s, p, _ in found] == [(step, path)], found
    assert says in found[0][2]


@pytest.mark.parametrize("golden, mutation, step, path, says", MUTATIONS, ids=IDS)
def test_emulate_refuses_before_anything_runs(golden: str, mutation: Callable[[dict], None], step: str, path: str,
                                              says: str) -> None:
    with pytest.raises(ConfigError) as refused:
        refuse("mutated.json", _mutated(golden, mutation))
    shown = str(refused.value)
    assert f"mutated.json: steps.{step} ({path}): CreatePipeline would reject this: " in shown and says in shown


@pytest.mark.parametrize("mutation", [depends_on_cycle, unknown_instance_type, bad_expire_after],
                         ids=lambda m: m.__name__)
def test_the_emulate_command_exits_2_without_a_traceback(mutation: Callable[[dict], None], tmp_path: Path) -> None:
    _, _, step, path, says = next(m for m in MUTATIONS if m[1] is mutation)
    definition = tmp_path / "mutated.json"
    definition.write_text(json.dumps(_mutated(PLAIN, mutation)))
    done = run_cli("emulate", "--definition", str(definition), home=tmp_path / "home")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"steps.{step} ({path}): CreatePipeline would reject this: " in done.stderr and says in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / "home" / "runs").exists()  # no step ran


def test_every_golden_definition_passes() -> None:
    goldens = sorted(GOLDEN.glob("*.json"))
    assert goldens
    for golden in goldens:
        assert check_definition(json.loads(golden.read_text())) == [], golden.name


@pytest.mark.skipif(not CHECKER.exists(), reason="../shared/reference is not present")
def test_the_reference_checks_pass_on_the_goldens() -> None:
    goldens = sorted(GOLDEN.glob("*.json"))
    done = subprocess.run([sys.executable, str(CHECKER), *map(str, goldens)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("0 error(s) OK") == len(goldens)


def test_a_cycle_through_a_condition_branch_is_named_at_a_field_of_its_own() -> None:
    definition = _golden(PLAIN)
    _step(definition, "ingest")["DependsOn"] = ["register"]  # register runs in check-auc's branch
    found = check_definition(definition)
    assert [(s, p) for s, p, _ in found] == [("ingest", "DependsOn[0]")]
    assert "ingest -> register -> check-auc -> evaluate -> preprocess -> ingest" in found[0][2]


def test_join_and_parameter_output_locations_are_left_to_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    definition = _golden(PLAIN)
    outputs = _args(definition, "evaluate")["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]
    for fine in ({"Get": "Parameters.input_data"}, {"Std:Join": {"On": "", "Values": [{"Get": "Parameters.x"}]}},
                 {"Std:Join": {"On": "/", "Values": ["s3:", "", "bucket", "k"]}},
                 {"Std:Join": {"On": "", "Values": ["s3://", {"Get": "Parameters.input_data"}]}},
                 "https://bucket.s3.amazonaws.com/evaluation"):
        outputs["S3Uri"] = fine
        assert [f for f in check_definition(definition) if "S3 URI" in f[2]] == [], fine


def _run_without_checks(definition: dict[str, Any], tmp_path: Path) -> Any:
    from pipelines.emulate.execution import Execution, runnable
    from pipelines.local.runner import LocalRunner

    arn = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/cyclic/execution/abcdef123456"
    execution = Execution("cyclic", arn, definition, {"go": True}, "cyclic.json", "us-east-1", "2026-01-01T00:00:00Z")
    spec = runnable(None, execution, None, None, tmp_path)
    return LocalRunner(spec, tmp_path / "state").run()


def test_a_run_whose_steps_wait_for_each_other_is_never_a_success(tmp_path: Path) -> None:
    """Were a cycle to reach the runner, the steps it never started make the run a failure, not a success."""
    def condition(name: str, depends_on: list[str]) -> dict:
        return {"Name": name, "Type": "Condition", "DependsOn": depends_on, "Arguments": {
            "Conditions": [{"Type": "Equals", "LeftValue": {"Get": "Parameters.go"}, "RightValue": True}],
            "IfSteps": [], "ElseSteps": []}}

    definition = {"Version": "2020-12-01", "Parameters": [{"Name": "go", "Type": "Boolean", "DefaultValue": True}],
                  "Steps": [condition("free", []), condition("a", ["b"]), condition("b", ["a"])]}
    state = _run_without_checks(definition, tmp_path)
    assert state.data["status"] == "failed"
    assert state.status("free") == "succeeded" and state.status("a") == "pending"
    assert "steps never ran" in state.data["error"] and "a, b" in state.data["error"]
