"""compile refuses what CreatePipeline refuses (pipelines/sagemaker/definition_checks.py), with or without ../shared."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.errors import ConfigError
from pipelines.loader import load_pipeline
from pipelines.sagemaker.definition_checks import check_definition
from tests.conftest import GOLDEN, REPO

EXAMPLE = GOLDEN / "fraud-detection.dev.json"


@pytest.fixture
def definition() -> dict:
    return json.loads(EXAMPLE.read_text())


def _step(definition: dict, name: str) -> dict:
    from pipelines.sagemaker.definition_checks import all_steps

    return next(s for s in all_steps(definition["Steps"]) if s["Name"] == name)


def test_the_example_definitions_pass() -> None:
    for golden in sorted(GOLDEN.glob("*.json")):
        assert check_definition(json.loads(golden.read_text())) == [], golden.name


def test_a_numeric_parameter_in_a_string_field(definition: dict) -> None:
    train = _step(definition, "train")
    train["Arguments"]["HyperParameters"]["seed"] = {"Get": "Parameters.seed"}
    _step(definition, "ingest")["Arguments"]["AppSpecification"]["ContainerArguments"][1] = {"Get": "Parameters.rows"}
    found = check_definition(definition)
    assert {(step, path) for step, path, _ in found} == {
        ("train", "Arguments.HyperParameters.seed"), ("ingest", "Arguments.AppSpecification.ContainerArguments[1]")}
    message = next(m for s, _, m in found if s == "train")
    assert "Integer parameter 'seed' is used directly in a String field" in message
    assert '{"Std:Join": {"On": "", "Values": [{"Get": "Parameters.seed"}]}}' in message


def test_numbers_are_fine_where_the_service_takes_numbers(definition: dict) -> None:
    condition = _step(definition, "check-auc")["Arguments"]["Conditions"][0]
    assert condition["RightValue"] == {"Get": "Parameters.min_auc"}  # a Float parameter compared: allowed
    _step(definition, "train")["Arguments"]["ResourceConfig"]["InstanceCount"] = {"Get": "Parameters.rows"}
    assert check_definition(definition) == []


def test_a_jsonget_of_an_undeclared_property_file(definition: dict) -> None:
    _step(definition, "evaluate")["PropertyFiles"][0]["PropertyFileName"] = "metrics"
    found = check_definition(definition)
    assert found and all(step in ("check-auc", "auc-too-low") for step, _, _ in found)
    assert "step 'evaluate' declares property files ['metrics']" in found[0][2]


def test_a_property_file_over_a_missing_output(definition: dict) -> None:
    _step(definition, "evaluate")["PropertyFiles"][0]["OutputName"] = "report"
    assert check_definition(definition) == [("evaluate", "PropertyFiles[0].OutputName",
                                              "'report' is not an output of this step; use one of ['evaluation']")]


def test_missing_steps_parameters_and_execution_variables(definition: dict) -> None:
    register = _step(definition, "register")
    register["Arguments"]["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] = {
        "Get": "Steps.trian.ModelArtifacts.S3ModelArtifacts"}
    register["Arguments"]["ModelApprovalStatus"] = {"Get": "Parameters.status"}
    _step(definition, "train")["Arguments"]["OutputDataConfig"]["S3OutputPath"]["Std:Join"]["Values"][3] = {
        "Get": "Execution.RunId"}
    messages = [m for _, _, m in check_definition(definition)]
    assert any("names step 'trian', which does not exist" in m for m in messages)
    assert any("parameter 'status' is not declared" in m for m in messages)
    assert any("'RunId' is not an execution variable" in m for m in messages)


def test_duplicate_names_across_branches_and_bad_dependencies(definition: dict) -> None:
    clash = copy.deepcopy(_step(definition, "register"))
    definition["Steps"].append(clash)
    _step(definition, "evaluate")["DependsOn"] = ["evaluate", "nowhere"]
    found = check_definition(definition)
    assert ("register", "Name") in {(s, p) for s, p, _ in found}
    dependencies = [m for s, p, m in found if p.startswith("DependsOn")]
    assert dependencies[0].startswith("names itself") and "'nowhere', which does not exist" in dependencies[1]


def test_compile_refuses_with_exit_2_naming_step_field_and_fix(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture) -> None:
    """A compiler that forgot .to_string() (the old defect) is stopped before anything reaches AWS."""
    from pipelines.sagemaker.compiler import CompileContext, compile_pipeline

    monkeypatch.setattr(CompileContext, "text", lambda self, value: self.value(value) if not isinstance(
        self.value(value), (int, float)) else str(value))
    with pytest.raises(ConfigError) as raised:
        compile_pipeline(load_pipeline(REPO / "configs" / "fraud-detection.yaml", "dev"))
    shown = str(raised.value)
    assert "steps.train (compiled: Arguments.HyperParameters.seed)" in shown
    assert "the Integer parameter 'seed' is used directly in a String field" in shown
    assert main(["compile", str(REPO / "configs" / "fraud-detection.yaml"), "--env", "dev"]) == 2
    err = capsys.readouterr().err
    assert "steps.ingest (compiled: Arguments.AppSpecification.ContainerArguments[1])" in err
    assert "Traceback" not in err


def test_nested_conditions_are_refused_at_validate(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "configs" / "nested.yaml"
    (tmp_path / "configs" / "env").mkdir(parents=True)
    (tmp_path / "pyproject.toml").touch()
    (tmp_path / "configs" / "env" / "dev.yaml").write_text(
        "sagemaker: {region: us-east-1, role: 'arn:aws:iam::111122223333:role/x', bucket: my-bucket}\n")
    config.write_text("""
name: nested
parameters: {go: {type: boolean, default: true}, also: {type: boolean, default: true}}
steps:
  - {name: outer, type: condition, condition: {left: "${params.go}", op: "==", right: true}, if_true: [inner]}
  - {name: inner, type: condition, condition: {left: "${params.also}", op: "==", right: true}, if_false: [stop]}
  - {name: stop, type: fail, message: no}
""")
    assert main(["validate", str(config), "--env", "local"]) == 0
    capsys.readouterr()
    assert main(["validate", str(config), "--env", "dev"]) == 2
    err = capsys.readouterr().err
    assert "steps.outer.if_true: 'inner' is a condition, and SageMaker runs no condition inside another's branch" in err
