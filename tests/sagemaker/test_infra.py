"""CloudFormation templates pass cfn-lint, and the endpoint parameters fill infra/endpoint.yaml exactly."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.loader import load_pipeline
from pipelines.sagemaker.endpoint_params import endpoint_parameters
from tests.conftest import REPO, run_cli

TEMPLATES = sorted((REPO / "infra").glob("*.yaml"))
PACKAGE = "arn:aws:sagemaker:us-east-1:444455556666:model-package/fraud-detection/3"


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation YAML: short-form intrinsics (!Ref, !If, ...) become plain values."""


_CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def cicd_template() -> dict:
    """infra/cicd.yaml as data (intrinsic functions read as None)."""
    return yaml.load((REPO / "infra" / "cicd.yaml").read_text(), Loader=_CfnLoader)


@pytest.mark.parametrize("template", TEMPLATES, ids=[t.name for t in TEMPLATES])
def test_cfn_lint_reports_nothing(template: Path) -> None:
    done = subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), str(template)], capture_output=True,
                          text=True)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_endpoint_parameters_fit_the_template(env: str) -> None:
    declared = yaml.load((REPO / "infra" / "endpoint.yaml").read_text(), Loader=_CfnLoader)["Parameters"]
    config = endpoint_parameters(load_pipeline(REPO / "configs" / "fraud-detection.yaml", env), PACKAGE)
    assert set(config["Parameters"]) == set(declared)
    for name, value in config["Parameters"].items():
        rules = declared[name]
        if "AllowedValues" in rules:
            assert value in [str(v) for v in rules["AllowedValues"]], name
        if "AllowedPattern" in rules:
            assert re.fullmatch(rules["AllowedPattern"], value), name
        if rules["Type"] == "Number":
            assert rules.get("MinValue", float("-inf")) <= float(value) <= rules.get("MaxValue", float("inf")), name
    assert config["Tags"]["stage"] == env


def test_prod_endpoint_scales_captures_data_and_deploys_blue_green() -> None:
    params = endpoint_parameters(load_pipeline(REPO / "configs" / "fraud-detection.yaml", "prod"), PACKAGE)["Parameters"]
    assert params["EndpointName"] == "fraud-detection-prod" and params["Mode"] == "RealTime"
    assert (params["InstanceType"], params["InstanceCount"]) == ("ml.m5.xlarge", "2")
    assert (params["MinCapacity"], params["MaxCapacity"], params["TargetInvocationsPerInstance"]) == ("2", "6", "200")
    assert (params["DataCaptureEnabled"], params["DataCapturePercent"]) == ("true", "20")
    assert params["DataCaptureDestination"] == "s3://sagepipe-prod-artifacts/fraud-detection/data-capture/"
    assert (params["CanaryPercent"], params["CanaryWaitSeconds"]) == ("10", "600")


@pytest.mark.parametrize("endpoint, expected", [
    ("{mode: realtime, autoscaling: {min: 4, max: 2}}", "autoscaling.min (4) is above autoscaling.max (2)"),
    ("{mode: serverless, data_capture: {enabled: true}}", "serverless endpoints cannot capture data"),
    ("{mode: serverless, serverless: {memory_mb: 1500}}", "memory_mb"),
    ("{mode: batch}", "endpoint.mode"),
])
def test_bad_endpoint_settings_are_config_errors(endpoint: str, expected: str, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").touch()
    config = tmp_path / "p.yaml"
    config.write_text(f"name: p\nsteps:\n  - name: deploy\n    type: deploy\n    model_group: g\n"
                      f"    endpoint_name: e\n    endpoint: {endpoint}\n")
    done = run_cli("validate", str(config), home=tmp_path / "state", cwd=tmp_path)
    assert done.returncode == 2 and expected in done.stderr and "p.yaml:7" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_endpoint_params_command_prints_a_template_configuration() -> None:
    done = run_cli("endpoint-params", "configs/fraud-detection.yaml", "--env", "dev", "--model-package", PACKAGE,
                   home=REPO / ".sagepipe")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["Parameters"]["EndpointName"] == "fraud-detection-dev"
    bad = run_cli("endpoint-params", "configs/fraud-detection.yaml", "--env", "dev", "--model-package", "v3",
                  home=REPO / ".sagepipe")
    assert bad.returncode == 2 and "is not a model package ARN" in bad.stderr


def _statements(node):
    if isinstance(node, dict):
        if "Effect" in node and "Action" in node:
            yield node
        for value in node.values():
            yield from _statements(value)
    elif isinstance(node, list):
        for value in node:
            yield from _statements(value)


@pytest.mark.parametrize("template", TEMPLATES, ids=[t.name for t in TEMPLATES])
def test_no_policy_allows_every_action_on_every_resource(template: Path) -> None:
    body = yaml.load(template.read_text(), Loader=_CfnLoader)
    for statement in _statements(body):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement.get("Resource")
        resources = resources if isinstance(resources, list) else [resources]
        wildcard_action = any(a == "*" or str(a).endswith(":*") for a in actions)
        assert not (wildcard_action and "*" in resources), statement


def test_the_deploy_rule_is_the_approval_pattern_for_the_group() -> None:
    from pipelines.approvals import DEPLOY_ON_APPROVAL

    pattern = cicd_template()["Resources"]["DeployOnApprovalRule"]["Properties"]["EventPattern"]
    assert pattern["source"] == DEPLOY_ON_APPROVAL["source"]
    assert pattern["detail-type"] == DEPLOY_ON_APPROVAL["detail-type"]
    assert pattern["detail"]["ModelApprovalStatus"] == ["Approved"]  # never Rejected or Pending
    assert set(pattern["detail"]) == {"ModelPackageGroupName", "ModelApprovalStatus"}


# What deploying an endpoint takes; only the deploy pipeline's CloudFormation role may do it. (The execution role
# creates models: a pipeline's Model step, for its batch transform; it never deletes one.)
ENDPOINT_ACTION = re.compile(r"sagemaker:(\*|\w*Endpoint\w*|DeleteModel)", re.IGNORECASE)


def _actions(resource: dict) -> set[str]:
    found: set[str] = set()
    for statement in _statements(resource):
        found.update(statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])
    return found


def test_only_the_deploy_pipeline_may_deploy_endpoints() -> None:
    resources = cicd_template()["Resources"]
    execution = _actions(resources["SageMakerExecutionRole"])
    assert execution and not [a for a in execution if ENDPOINT_ACTION.fullmatch(a)], sorted(execution)
    deployer = _actions(resources["CloudFormationRole"])
    assert {"sagemaker:CreateModel", "sagemaker:CreateEndpointConfig", "sagemaker:CreateEndpoint",
            "sagemaker:UpdateEndpoint", "sagemaker:DeleteEndpoint"} <= deployer


def _deploys(stage: dict) -> list[str]:
    """The endpoint template configurations a deploy-pipeline stage deploys."""
    return [a["Configuration"]["TemplateConfiguration"] for a in stage["Actions"]
            if a and a["ActionTypeId"]["Provider"] == "CloudFormation"]


def test_an_approval_deploys_dev_at_once_then_staging_and_after_a_person_prod() -> None:
    resources = cicd_template()["Resources"]
    stages = resources["ModelDeployPipeline"]["Properties"]["Stages"]
    assert [d for stage in stages for d in _deploys(stage)] == [
        "Endpoint::dev.json", "Endpoint::staging.json", "Endpoint::prod.json"]
    (dev,) = [i for i, stage in enumerate(stages) if _deploys(stage) == ["Endpoint::dev.json"]]
    gates = [i for i, stage in enumerate(stages) for a in stage["Actions"]
             if a and a["ActionTypeId"]["Category"] == "Approval"]
    assert gates and all(i > dev for i in gates)  # nothing waits for a person before dev
    (production,) = [stage for stage in stages if "Endpoint::prod.json" in _deploys(stage)]
    order = [a["ActionTypeId"]["Category"] for a in sorted(production["Actions"], key=lambda a: a["RunOrder"])]
    assert order == ["Approval", "Deploy"]
    prepare = yaml.safe_load(resources["DeployPrepareProject"]["Properties"]["Source"]["BuildSpec"])
    assert {"dev.json", "staging.json", "prod.json"} <= set(prepare["artifacts"]["files"])


def test_a_deploy_step_compiles_to_no_sagemaker_step() -> None:
    from pipelines.sagemaker.compiler import compile_pipeline

    spec = load_pipeline(REPO / "configs" / "fraud-detection.yaml", "dev")
    assert any(step.type == "deploy" and step.enabled for step in spec.steps)
    definition = compile_pipeline(spec).definition

    def names(steps: list[dict]) -> list[str]:
        args = [s.get("Arguments", {}) for s in steps]
        return [s["Name"] for s in steps] + [n for a in args for n in names(a.get("IfSteps", []) + a.get("ElseSteps", []))]

    compiled = names(definition["Steps"])
    assert any(n.startswith("register") for n in compiled) and "deploy" not in compiled
    assert "deploy" not in {d for step in definition["Steps"] for d in step.get("DependsOn", [])}
