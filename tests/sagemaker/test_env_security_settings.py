"""Each security setting of an env file is in the compiled definition, in every job and model that takes it.

One pipeline with every kind of job (processing, training, tuning, a transform with its model, a registration),
compiled with and without the settings: with them, each field the SageMaker API has for the setting holds it;
without them, none is there (nothing is invented)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipelines.errors import ConfigError
from pipelines.loader import load_pipeline
from pipelines.sagemaker.compiler import Compiled, compile_pipeline
from pipelines.sagemaker.definition_checks import all_steps
from pipelines.sagemaker.endpoint_params import endpoint_parameters
from pipelines.sagemaker.security import FIELDS, where_settings_go
from tests.conftest import CHECKER, make_project
from tests.tuning.test_tuning import INFERENCE, TRAIN

KEY = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ROLE = "arn:aws:iam::111122223333:role/secure-exec"
VPC = {"SecurityGroupIds": ["sg-0a1b", "sg-2c3d"], "Subnets": ["subnet-0a1b", "subnet-2c3d"]}
ACCOUNT = f"""sagemaker:
  region: us-east-1
  role: {ROLE}
  bucket: secure-bucket
  tags: {{team: fraud}}
parameters: {{data: "s3://secure-bucket/data/"}}
"""
SECURE = ACCOUNT.replace("  tags:", f"""  kms_key: {KEY}
  vpc:
    subnets: [subnet-0a1b, subnet-2c3d]
    security_group_ids: [sg-0a1b, sg-2c3d]
  tags:""")
PIPELINE = """
name: secure
parameters:
  data: {type: string, default: data}
  score: {type: string, default: ""}
steps:
  - name: prepare
    type: processing
    code: scripts/emit.py
    inputs: {data: "${params.data}"}
    outputs: [data]
  - name: train
    type: training
    code: scripts/train.py
    inputs: {train: "${steps.prepare.outputs.data}"}
    hyperparameters: {x: 0.3, depth: 2}
  - name: tune
    type: tuning
    code: scripts/train.py
    inputs: {train: "${steps.prepare.outputs.data}"}
    hyperparameters: {x: 0.5, depth: 1}
    tuning:
      strategy: random
      max_jobs: 2
      objective: {metric: score, regex: "score=([-0-9.]+)"}
      ranges: {x: {continuous: [0.0, 1.0]}}
  - {name: register, type: register, model: "${steps.train.outputs.model}", model_group: secure}
  - name: has-data
    type: condition
    condition: {left: "${params.score}", op: "!=", right: ""}
    if_true: [score]
  - name: score
    type: transform
    model: ${steps.tune.outputs.model}
    input: ${params.score}
  - {name: deploy, type: deploy, depends_on: [register], model_group: secure, endpoint_name: secure-dev}
"""
JOB_TYPES = {"Processing", "Training", "Tuning", "Transform", "Model"}


def _compile(folder: Path, env: str) -> Compiled:
    config = make_project(folder, "secure", PIPELINE, {"dev": env}, ("emit.py",),
                          {"scripts/train.py": TRAIN, "scripts/inference.py": INFERENCE})
    return compile_pipeline(load_pipeline(config, "dev"))


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Compiled]:
    return {"secure": _compile(tmp_path_factory.mktemp("secure"), SECURE),
            "plain": _compile(tmp_path_factory.mktemp("plain"), ACCOUNT)}


def _steps(compiled: Compiled) -> dict[str, dict[str, Any]]:
    return {s["Name"]: s for s in all_steps(compiled.definition["Steps"])}


def _at(step: dict[str, Any], *path: str) -> Any:
    node: Any = step["Arguments"]
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def test_every_kind_of_job_is_compiled(compiled: dict[str, Compiled]) -> None:
    kinds = {s["Type"] for s in _steps(compiled["secure"]).values()}
    assert JOB_TYPES | {"RegisterModel"} <= kinds, kinds


KMS_FIELDS = {  # step -> where the API takes the key
    "prepare": [("ProcessingResources", "ClusterConfig", "VolumeKmsKeyId"), ("ProcessingOutputConfig", "KmsKeyId")],
    "train": [("ResourceConfig", "VolumeKmsKeyId"), ("OutputDataConfig", "KmsKeyId")],
    "tune": [("TrainingJobDefinition", "ResourceConfig", "VolumeKmsKeyId"),
             ("TrainingJobDefinition", "OutputDataConfig", "KmsKeyId")],
    "score": [("TransformResources", "VolumeKmsKeyId"), ("TransformOutput", "KmsKeyId")],
}
VPC_FIELDS = {
    "prepare": [("NetworkConfig", "VpcConfig")],
    "train": [("VpcConfig",)],
    "tune": [("TrainingJobDefinition", "VpcConfig")],
    "score-model": [("VpcConfig",)],  # the transform job runs in its model's VPC
}


@pytest.mark.parametrize("step, path", [(s, p) for s, paths in KMS_FIELDS.items() for p in paths],
                         ids=lambda v: v if isinstance(v, str) else ".".join(v))
def test_kms_key_encrypts_every_volume_and_output(compiled: dict[str, Compiled], step: str, path: tuple) -> None:
    assert _at(_steps(compiled["secure"])[step], *path) == KEY
    assert not _at(_steps(compiled["plain"])[step], *path)


@pytest.mark.parametrize("step, path", [(s, p) for s, paths in VPC_FIELDS.items() for p in paths],
                         ids=lambda v: v if isinstance(v, str) else ".".join(v))
def test_vpc_holds_every_job_and_model(compiled: dict[str, Compiled], step: str, path: tuple) -> None:
    assert _at(_steps(compiled["secure"])[step], *path) == VPC
    assert _at(_steps(compiled["plain"])[step], *path) is None


ROLE_FIELDS = {"prepare": ("RoleArn",), "train": ("RoleArn",), "tune": ("TrainingJobDefinition", "RoleArn"),
               "score-model": ("ExecutionRoleArn",)}


@pytest.mark.parametrize("step", sorted(ROLE_FIELDS))
def test_role_runs_every_job_and_model(compiled: dict[str, Compiled], step: str) -> None:
    assert _at(_steps(compiled["secure"])[step], *ROLE_FIELDS[step]) == ROLE
    assert compiled["secure"].role == ROLE


@pytest.mark.parametrize("setting", sorted(FIELDS))
def test_no_job_that_takes_a_setting_is_left_without_it(compiled: dict[str, Compiled], setting: str) -> None:
    """The other way round: every field of every job type that takes the setting (security.FIELDS) holds it, and
    each of those job types is in this pipeline, so a step type that drops a setting fails here."""
    found = list(where_settings_go(compiled["secure"].definition, setting))
    assert found and all(value not in (None, "", {}) for _, _, value in found), found
    assert {step for step, _, _ in found} == set(KMS_FIELDS if setting == "kms_key" else VPC_FIELDS)
    kinds = {s["Type"] for s in _steps(compiled["secure"]).values()}
    assert set(FIELDS[setting]) <= kinds


def test_nothing_is_invented_without_the_settings(compiled: dict[str, Compiled]) -> None:
    assert KEY in compiled["secure"].json() and "subnet-0a1b" in compiled["secure"].json()
    assert not any(word in compiled["plain"].json() for word in ("Kms", "VpcConfig", "subnet-", "sg-"))


def test_tags_go_with_the_pipeline_and_the_endpoint(compiled: dict[str, Compiled], tmp_path: Path) -> None:
    assert compiled["secure"].tags == {"team": "fraud"}
    keyed = ACCOUNT.replace("  tags:", f"  kms_key: {KEY}\n  tags:")
    config = make_project(tmp_path / "p", "secure", PIPELINE, {"dev": keyed}, ("emit.py",),
                          {"scripts/train.py": TRAIN, "scripts/inference.py": INFERENCE})
    arn = "arn:aws:sagemaker:us-east-1:111122223333:model-package/secure/1"
    params = endpoint_parameters(load_pipeline(config, "dev"), arn)
    assert params["Tags"] == {"team": "fraud"}
    assert params["Parameters"]["KmsKeyId"] == KEY and params["Parameters"]["ExecutionRoleArn"] == ROLE


def test_an_endpoint_is_not_deployed_outside_the_vpc(tmp_path: Path) -> None:
    """infra/endpoint.yaml takes no VPC settings: endpoint-params refuses rather than serve outside the VPC."""
    config = make_project(tmp_path / "p", "secure", PIPELINE, {"dev": SECURE}, ("emit.py",),
                          {"scripts/train.py": TRAIN, "scripts/inference.py": INFERENCE})
    with pytest.raises(ConfigError) as caught:
        endpoint_parameters(load_pipeline(config, "dev"), "arn:aws:sagemaker:us-east-1:111122223333:model-package/s/1")
    assert any(p.path == "sagemaker.vpc" and "outside this VPC" in p.message for p in caught.value.problems)


@pytest.mark.skipif(not CHECKER.exists(), reason="../shared/reference is not present")
def test_both_definitions_pass_the_reference_checks(compiled: dict[str, Compiled], tmp_path: Path) -> None:
    files = []
    for name, done in compiled.items():
        files.append(tmp_path / f"{name}.json")
        files[-1].write_text(done.json())
    checked = subprocess.run([sys.executable, str(CHECKER), *map(str, files)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("0 error(s) OK") == 2
