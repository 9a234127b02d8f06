"""infra/cicd.yaml fits the configs: the stack's bucket, data bucket and execution role are the env file's, the
execution role may do what every compiled pipeline in configs/ asks of it, and CodeBuild and ECR grants reach
the project's pipelines and the framework images' accounts, nothing wider.

The template is read with cfn-lint's loader and its intrinsics resolved with the parameters' defaults (the stack
as the README deploys it) in the env's region and account; a small IAM evaluator (Allow statements, `*`/`?`
wildcards, StringEquals/StringLike conditions) answers "may this role do ACTION on RESOURCE"."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from pipelines.loader import load_pipeline
from tests.conftest import REPO

TEMPLATE = REPO / "infra" / "cicd.yaml"
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
ENV = "dev"  # the account the stack's defaults describe (staging shares it)
SAGEMAKER = "sagemaker.amazonaws.com"

# What SageMaker Pipelines calls with the pipeline's role for each definition step Type: (resource type, actions).
# AddTags: the pipeline's tags go onto what it creates. A step Type missing here fails the test: add it.
STEP_ACTIONS: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "Processing": [("processing-job", ("CreateProcessingJob", "DescribeProcessingJob", "StopProcessingJob",
                                       "AddTags"))],
    "Training": [("training-job", ("CreateTrainingJob", "DescribeTrainingJob", "StopTrainingJob", "AddTags"))],
    "Tuning": [("hyper-parameter-tuning-job", ("CreateHyperParameterTuningJob", "DescribeHyperParameterTuningJob",
                                               "StopHyperParameterTuningJob",
                                               "ListTrainingJobsForHyperParameterTuningJob", "AddTags")),
               ("training-job", ("DescribeTrainingJob",))],  # the tuning job's trials
    "Model": [("model", ("CreateModel", "DescribeModel", "AddTags"))],
    "Transform": [("transform-job", ("CreateTransformJob", "DescribeTransformJob", "StopTransformJob", "AddTags"))],
    # the group is created on the step's first registration
    "RegisterModel": [("model-package-group/{group}", ("CreateModelPackageGroup", "DescribeModelPackageGroup")),
                      ("model-package/{group}/1", ("CreateModelPackage", "DescribeModelPackage"))],
    "Condition": [],
    "Fail": [],
}
ECR_PULL = ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability")
IMAGE = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com/([^:@]+)")


def _env(name: str = ENV) -> dict[str, Any]:
    return yaml.safe_load((REPO / "configs" / "env" / f"{name}.yaml").read_text())


def _bucket(uri: str) -> str:
    assert uri.startswith("s3://"), uri
    return uri[len("s3://"):].split("/", 1)[0]


class Stack:
    """infra/cicd.yaml with its intrinsics resolved (parameter defaults, the env's region and account)."""

    def __init__(self, region: str, account: str) -> None:
        from cfnlint.decode import cfn_yaml

        self.template = cfn_yaml.load(str(TEMPLATE))
        self.region, self.account = region, account
        self.values = {name: str(p["Default"]) for name, p in self.template["Parameters"].items() if "Default" in p}
        self.values.update({"AWS::Partition": "aws", "AWS::Region": region, "AWS::AccountId": account})

    def resources(self) -> dict[str, Any]:
        return self.template["Resources"]

    def bucket_name(self, logical: str = "ArtifactBucket") -> str | None:
        name = self.resources()[logical]["Properties"].get("BucketName")
        return None if name is None else self.resolve(name)

    def role_arn(self, logical: str) -> str:
        name = self.resources()[logical]["Properties"].get("RoleName")
        return f"arn:aws:iam::{self.account}:role/" + (self.resolve(name) if name else f"{logical}-generated")

    def attribute(self, logical: str, attribute: str) -> str:
        kind = self.resources()[logical]["Type"]
        if (kind, attribute) == ("AWS::S3::Bucket", "Arn"):
            return f"arn:aws:s3:::{self.bucket_name(logical) or 'generated-' + logical.lower()}"
        if (kind, attribute) == ("AWS::IAM::Role", "Arn"):
            return self.role_arn(logical)
        if (kind, attribute) == ("AWS::KMS::Key", "Arn"):
            return f"arn:aws:kms:{self.region}:{self.account}:key/{logical}"
        return f"arn:aws:{kind}:{logical}.{attribute}"  # never matched by the policies the tests read

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.resolve(n) for n in node]
        if not isinstance(node, dict):
            return node
        if set(node) == {"Ref"}:
            name = node["Ref"]
            if name in self.values:
                return self.values[name]
            if self.resources().get(name, {}).get("Type") == "AWS::S3::Bucket":
                return self.bucket_name(name) or f"generated-{name.lower()}"
            return f"{name}-physical-id"
        if set(node) == {"Fn::GetAtt"}:
            target = node["Fn::GetAtt"]
            return self.attribute(*(target if isinstance(target, list) else target.split(".", 1)))
        if set(node) == {"Fn::Sub"}:
            text, local = (node["Fn::Sub"], {}) if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"]
            local = {k: self.resolve(v) for k, v in local.items()}

            def one(match: re.Match) -> str:
                name = match.group(1)
                if name in local:
                    return str(local[name])
                if "." in name and not name.startswith("AWS::"):
                    return self.attribute(*name.split(".", 1))
                return str(self.resolve({"Ref": name}))

            return re.sub(r"\$\{([^}!]+)\}", one, text)
        if set(node) == {"Fn::If"}:
            condition, yes, no = node["Fn::If"]
            return self.resolve(yes if self.resolve(self.template["Conditions"][condition]) else no)
        if set(node) == {"Fn::Equals"}:
            left, right = self.resolve(node["Fn::Equals"])
            return left == right
        if set(node) == {"Fn::Not"}:
            return not self.resolve(node["Fn::Not"][0])
        if any(k.startswith("Fn::") for k in node):
            raise AssertionError(f"the test cannot resolve {node}: teach Stack.resolve")
        return {k: self.resolve(v) for k, v in node.items()}

    def statements(self, logical: str) -> list[dict[str, Any]]:
        found = []
        for policy in self.resources()[logical]["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                statement = self.resolve(statement)
                assert statement["Effect"] == "Allow", statement  # the evaluator reads Allow statements only
                found.append(statement)
        return found

    def allows(self, logical: str, action: str, resource: str, context: dict[str, str] | None = None) -> bool:
        return any(_matches(s, action, resource, context or {}) for s in self.statements(logical))


def _listed(value: Any) -> list[str]:
    return value if isinstance(value, list) else [value]


def _wildcard(pattern: str, text: str, case: bool = True) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, 0 if case else re.IGNORECASE) is not None


def _matches(statement: dict[str, Any], action: str, resource: str, context: dict[str, str]) -> bool:
    if not any(_wildcard(a, action, case=False) for a in _listed(statement["Action"])):
        return False
    if not any(_wildcard(r, resource) for r in _listed(statement.get("Resource", []))):
        return False
    for operator, tests in statement.get("Condition", {}).items():
        assert operator in ("StringEquals", "StringLike"), operator
        for key, wanted in tests.items():
            if key not in context or not any(
                    (w == context[key]) if operator == "StringEquals" else _wildcard(w, context[key])
                    for w in _listed(wanted)):
                return False
    return True


@cache
def stack() -> Stack:
    role = _env()["sagemaker"]["role"]
    return Stack(_env()["sagemaker"]["region"], role.split(":")[4])


@pytest.fixture(scope="module")
def compiled() -> dict[str, Any]:
    """Each pipeline config, compiled once for the env (about 4 s each)."""
    from pipelines.sagemaker.compiler import compile_pipeline

    return {config.name: compile_pipeline(load_pipeline(config, ENV)) for config in CONFIGS}


def _steps(steps: list[dict]) -> Iterator[dict]:
    for step in steps:
        yield step
        arguments = step.get("Arguments", {})
        yield from _steps(arguments.get("IfSteps", []) + arguments.get("ElseSteps", []))


def _strings(node: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """(key, value) for every string in the node, with the dict key it sits under."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v, key)
    elif isinstance(node, str):
        yield key, node


def _buckets(definition: dict) -> set[str]:
    """Every bucket a definition names: s3:// URIs, parameter defaults and Std:Join's ["s3:/", bucket, ...]."""
    found = {_bucket(v) for _, v in _strings(definition) if v.startswith("s3://")}

    def joins(node: Any) -> Iterator[list]:
        if isinstance(node, dict):
            if "Std:Join" in node:
                yield node["Std:Join"]["Values"]
            for v in node.values():
                yield from joins(v)
        elif isinstance(node, list):
            for v in node:
                yield from joins(v)

    found |= {values[1] for values in joins(definition) if values[:1] == ["s3:/"] and isinstance(values[1], str)}
    return found


def _needs(definition: dict, region: str, account: str) -> list[tuple[str, str, str, dict[str, str]]]:
    """(step, action, resource ARN, condition context) for everything running the definition asks of its role."""
    arn = f"arn:aws:sagemaker:{region}:{account}:"
    needs: list[tuple[str, str, str, dict[str, str]]] = []
    for step in _steps(definition["Steps"]):
        assert step["Type"] in STEP_ACTIONS, f"step type {step['Type']} ({step['Name']}): add it to STEP_ACTIONS"
        name = step["Name"]
        arguments = {k: v for k, v in step.get("Arguments", {}).items() if k not in ("IfSteps", "ElseSteps")}
        group = arguments.get("ModelPackageGroupName", "")
        for kind, actions in STEP_ACTIONS[step["Type"]]:
            resource = kind.format(group=group) if "{" in kind else f"{kind}/pipelines-0a1b2c3d4e5f-{name}-6a7b8c9d"
            needs += [(name, f"sagemaker:{action}", arn + resource.lower(), {}) for action in actions]
        for key, value in _strings(arguments):
            if key.endswith("RoleArn"):  # RoleArn, ExecutionRoleArn: the pipeline passes the role on
                needs.append((name, "iam:PassRole", value, {"iam:PassedToService": SAGEMAKER}))
            image = IMAGE.match(value)
            if image:
                repository = f"arn:aws:ecr:{image[2]}:{image[1]}:repository/{image[3]}"
                needs += [(name, action, repository, {}) for action in ECR_PULL]
                needs.append((name, "ecr:GetAuthorizationToken", "*", {}))
    for bucket in _buckets(definition):
        needs += [("(jobs)", "s3:ListBucket", f"arn:aws:s3:::{bucket}", {})]
        needs += [("(jobs)", action, f"arn:aws:s3:::{bucket}/any/key", {}) for action in ("s3:GetObject",
                                                                                            "s3:PutObject")]
    return needs


def test_the_stack_has_the_env_files_bucket_data_bucket_and_role() -> None:
    for env in (ENV, "staging"):  # one account, one stack
        settings = _env(env)
        assert settings["sagemaker"]["bucket"] == stack().bucket_name(), env
        assert _bucket(settings["parameters"]["input_data"]) == stack().values["DataBucketName"], env
        assert settings["sagemaker"]["role"] == stack().role_arn("SageMakerExecutionRole"), env
        assert settings["sagemaker"]["region"] == stack().region


def test_the_prod_env_fits_the_stacks_parameters() -> None:
    """prod is another account: its stack is deployed with the prod file's names as parameter overrides."""
    declared = stack().template["Parameters"]
    settings = _env("prod")
    overrides = {"ArtifactBucketName": settings["sagemaker"]["bucket"],
                 "DataBucketName": _bucket(settings["parameters"]["input_data"]),
                 "ExecutionRoleName": settings["sagemaker"]["role"].rsplit("/", 1)[1]}
    for name, value in overrides.items():
        assert re.fullmatch(declared[name]["AllowedPattern"], value), (name, value)


@pytest.mark.parametrize("config", [c.name for c in CONFIGS])
def test_the_execution_role_may_run_every_compiled_pipeline(config: str, compiled: dict) -> None:
    definition = compiled[config].definition
    types = {step["Type"] for step in _steps(definition["Steps"])}
    assert {"Processing", "RegisterModel"} <= types
    needs = _needs(definition, stack().region, stack().account)
    missing = [n for n in needs if not stack().allows("SageMakerExecutionRole", n[1], n[2], n[3])]
    assert not missing, "\n".join(f"{step}: {action} on {resource}" for step, action, resource, _ in missing)


def test_the_table_covers_tuning_model_and_transform(compiled: dict) -> None:
    """The HPO config exercises the steps the execution role lacked: its definition holds each of them."""
    types = {step["Type"] for c in compiled.values() for step in _steps(c.definition["Steps"])}
    assert {"Tuning", "Model", "Transform", "Training"} <= types <= set(STEP_ACTIONS)


def test_codebuild_reaches_exactly_the_projects_pipelines(compiled: dict) -> None:
    s, arn = stack(), f"arn:aws:sagemaker:{stack().region}:{stack().account}:pipeline/"
    for config in compiled.values():  # `sagepipe upsert` names each pipeline after its config
        pipeline = arn + config.name
        for action in ("CreatePipeline", "UpdatePipeline", "DescribePipeline", "StartPipelineExecution",
                       "ListPipelineExecutions", "AddTags"):
            assert s.allows("CodeBuildRole", f"sagemaker:{action}", pipeline), (action, pipeline)
        for action in ("DescribePipelineExecution", "ListPipelineExecutionSteps"):
            assert s.allows("CodeBuildRole", f"sagemaker:{action}", pipeline + "/execution/abc123"), action
        assert s.allows("CodeBuildRole", "iam:PassRole", config.role)
        assert s.allows("CodeBuildRole", "s3:PutObject", f"arn:aws:s3:::{config.bucket}/{config.name}/code")
    for foreign in ("another-teams-pipeline", "fraud", "fraud-detectionx"):
        for action in ("UpdatePipeline", "StartPipelineExecution"):
            assert not s.allows("CodeBuildRole", f"sagemaker:{action}", arn + foreign), (action, foreign)
    resources = [r for st in s.statements("CodeBuildRole") for r in _listed(st["Resource"])]
    assert not [r for r in resources if r.endswith(":pipeline/*")]


@cache
def _framework_image_accounts(region: str) -> set[str]:
    """Every account the SageMaker SDK's image configs name for the region (its DLC and framework images)."""
    import sagemaker.core.image_uris as image_uris

    accounts: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("registries"), dict) and region in node["registries"]:
                accounts.add(str(node["registries"][region]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in (Path(image_uris.__file__).parent / "image_uri_config").glob("*.json"):
        walk(json.loads(path.read_text()))
    return accounts


def test_ecr_grants_name_the_framework_image_accounts_and_this_one(compiled: dict) -> None:
    s = stack()
    known = _framework_image_accounts(s.region)
    assert {"763104351884", "683313688378"} <= known  # the DLC and scikit-learn accounts in us-east-1
    for logical, resource in s.resources().items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for statement in s.statements(logical):
            for pattern in _listed(statement["Resource"]):
                if not pattern.startswith("arn:aws:ecr:"):
                    continue
                _, _, _, region, account, _ = pattern.split(":", 5)
                assert region == s.region and account in known | {s.account}, (logical, pattern)
    emitted = {m[1] for c in compiled.values() for _, v in _strings(c.definition) if (m := IMAGE.match(v))}
    assert emitted and emitted <= known
    for account in emitted | {s.account}:
        assert s.allows("SageMakerExecutionRole", "ecr:BatchGetImage", f"arn:aws:ecr:{s.region}:{account}:repository/r")
    for account in ("999999999999", "520713654638"):  # another account; one the configs' images never come from
        assert not s.allows("SageMakerExecutionRole", "ecr:BatchGetImage",
                            f"arn:aws:ecr:{s.region}:{account}:repository/pytorch-training")
    assert not s.allows("SageMakerExecutionRole", "ecr:BatchGetImage",
                        "arn:aws:ecr:eu-west-1:763104351884:repository/pytorch-training")


def test_the_evaluator_reads_conditions_and_wildcards() -> None:
    """The IAM evaluator the tests above trust: a wrong answer here would make them pass vacuously."""
    s = stack()
    role = s.role_arn("SageMakerExecutionRole")
    assert s.allows("SageMakerExecutionRole", "iam:PassRole", role, {"iam:PassedToService": SAGEMAKER})
    assert not s.allows("SageMakerExecutionRole", "iam:PassRole", role, {"iam:PassedToService": "ec2.amazonaws.com"})
    assert not s.allows("SageMakerExecutionRole", "iam:PassRole", role)
    assert not s.allows("SageMakerExecutionRole", "sagemaker:CreateEndpoint",
                        f"arn:aws:sagemaker:{s.region}:{s.account}:endpoint/fraud-detection-dev")
    assert not s.allows("SageMakerExecutionRole", "s3:PutObject", "arn:aws:s3:::someone-elses-bucket/key")
    assert _wildcard("arn:aws:s3:::b/*", "arn:aws:s3:::b/a/b") and not _wildcard("arn:aws:s3:::b/*", "arn:aws:s3:::bc")
