"""Env files are typed like step settings: an unknown or malformed key is an error at its file and line, with a
did-you-mean; input names that collide, that the job uses itself, and non-finite numbers are refused at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.errors import ConfigError, Problem
from pipelines.loader import load_env_settings, load_pipeline
from tests.conftest import REPO, run_cli

PIPELINE = "name: p\nsteps:\n  - name: stop\n    type: fail\n"
ACCOUNT = """sagemaker:
  region: us-east-1
  role: arn:aws:iam::111122223333:role/exec
  bucket: my-bucket
"""


def _problems(tmp_path: Path, env_text: str, pipeline: str = PIPELINE) -> list[Problem]:
    (tmp_path / "env").mkdir(exist_ok=True)
    (tmp_path / "p.yaml").write_text(pipeline)
    (tmp_path / "env" / "dev.yaml").write_text(env_text)
    with pytest.raises(ConfigError) as caught:
        load_pipeline(tmp_path / "p.yaml", env="dev")
    return caught.value.problems


def _one(problems: list[Problem], expected: str) -> Problem:
    matching = [p for p in problems if expected in str(p)]
    assert matching, [str(p) for p in problems]
    return matching[0]


TYPOS = {  # env text appended to ACCOUNT, expected message, line in the env file
    "kms_kye": ("  kms_kye: arn:aws:kms:us-east-1:111122223333:key/abc\n",
                "sagemaker.kms_kye: unknown key 'kms_kye' — did you mean 'kms_key'?", 5),
    "vcp": ("  vcp: {subnets: [subnet-1], security_group_ids: [sg-1]}\n",
            "sagemaker.vcp: unknown key 'vcp' — did you mean 'vpc'?", 5),
    "subnet": ("  vpc:\n    subnet: [subnet-1]\n    security_group_ids: [sg-1]\n",
               "sagemaker.vpc.subnet: unknown key 'subnet' — did you mean 'subnets'?", 6),
    "security_groups": ("  vpc:\n    subnets: [subnet-1]\n    security_groups: [sg-1]\n",
                        "sagemaker.vpc.security_groups: unknown key 'security_groups' — did you mean "
                        "'security_group_ids'?", 7),
    "regoin": ("  regoin: us-east-2\n", "sagemaker.regoin: unknown key 'regoin' — did you mean 'region'?", 5),
}


@pytest.mark.parametrize("case", sorted(TYPOS))
def test_a_misspelt_sagemaker_key_is_an_error_at_its_line(case: str, tmp_path: Path) -> None:
    text, expected, line = TYPOS[case]
    problem = _one(_problems(tmp_path, ACCOUNT + text), expected)
    assert problem.file.endswith("dev.yaml") and problem.line == line, str(problem)


BAD_VALUES = {
    "role": ("role: arn:aws:iam::111122223333:role/exec", "role: exec-role", "'exec-role' is not an IAM role ARN", 3),
    "bucket": ("bucket: my-bucket", "bucket: My_Bucket", "'My_Bucket' is not a valid S3 bucket name", 4),
    "region": ("region: us-east-1", "region: useast1", "'useast1' is not an AWS region", 2),
    "kms_key": ("bucket: my-bucket", "bucket: my-bucket\n  kms_key: my key",
                "'my key' is not a KMS key id, alias or ARN", 5),
    "subnet": ("bucket: my-bucket", "bucket: my-bucket\n  vpc: {subnets: [vpc-1], security_group_ids: [sg-1]}",
               "'vpc-1' is not a subnet id", 5),
    "no_subnets": ("bucket: my-bucket", "bucket: my-bucket\n  vpc: {subnets: [], security_group_ids: [sg-1]}",
                   "sagemaker.vpc.subnets: List should have at least 1 item", 5),
    "no_groups": ("bucket: my-bucket", "bucket: my-bucket\n  vpc: {subnets: [subnet-1]}",
                  "sagemaker.vpc.security_group_ids: required field is missing", 5),
    "tag": ("bucket: my-bucket", "bucket: my-bucket\n  tags: {'aws:stage': dev}", "tag 'aws:stage'", 5),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_a_malformed_sagemaker_value_is_an_error_at_its_line(case: str, tmp_path: Path) -> None:
    old, new, expected, line = BAD_VALUES[case]
    problem = _one(_problems(tmp_path, ACCOUNT.replace(old, new)), expected)
    assert problem.file.endswith("dev.yaml") and problem.line == line, str(problem)


def test_registry_is_refused_with_what_chooses_the_registry(tmp_path: Path) -> None:
    problem = _one(_problems(tmp_path, ACCOUNT + "registry: {model_package_group: fraud}\n"), "unknown key 'registry'")
    assert problem.file.endswith("dev.yaml") and problem.line == 5
    assert "follows the env" in problem.message and "model_group" in problem.message


def test_an_unknown_top_level_key_has_a_did_you_mean(tmp_path: Path) -> None:
    problem = _one(_problems(tmp_path, ACCOUNT + "tracking_url: http://mlflow:5000\n"), "unknown key 'tracking_url'")
    assert problem.line == 5 and "did you mean 'tracking_uri'?" in problem.message


def test_env_settings_without_a_pipeline_are_checked_the_same_way(tmp_path: Path) -> None:
    """`sagepipe models --env dev` reads the env file alone: the same typed settings, the same errors."""
    (tmp_path / "dev.yaml").write_text(ACCOUNT + "  kms_kye: alias/ml\nregistry: {}\nparameters: {rows: 5}\n")
    with pytest.raises(ConfigError) as caught:
        load_env_settings("dev", tmp_path)
    shown = [str(p) for p in caught.value.problems]
    assert len(shown) == 2, shown  # parameters: belongs to a pipeline overlay, and is no error here
    assert any("dev.yaml:5: sagemaker.kms_kye: unknown key 'kms_kye' — did you mean 'kms_key'?" in s for s in shown)
    assert any("dev.yaml:6: registry: unknown key 'registry'" in s for s in shown)


def test_the_settings_are_typed_and_read_as_before(tmp_path: Path) -> None:
    (tmp_path / "dev.yaml").write_text(ACCOUNT + "  kms_key: alias/ml\n  vpc: {subnets: [subnet-1, subnet-2], "
                                                 "security_group_ids: [sg-1]}\n  tags: {stage: 1, shared: true}\n")
    cloud = load_env_settings("dev", tmp_path).sagemaker
    assert cloud.kms_key == "alias/ml" and cloud.vpc is not None and cloud.vpc.subnets == ["subnet-1", "subnet-2"]
    assert cloud.tags == {"stage": "1", "shared": "true"}
    assert cloud["region"] == cloud.get("region") == "us-east-1" and cloud.get("missing", 3) == 3
    assert bool(cloud) and not load_env_settings("local", tmp_path / "nowhere").sagemaker


@pytest.mark.parametrize("env", ["local", "dev", "staging", "prod"])
def test_the_example_env_files_load(env: str) -> None:
    spec = load_pipeline(REPO / "configs" / "fraud-detection.yaml", env=env)
    assert bool(spec.settings.sagemaker) == (env != "local")


def test_validate_names_the_env_file_line_and_exits_2(tmp_path: Path) -> None:
    (tmp_path / "env").mkdir()
    (tmp_path / "p.yaml").write_text(PIPELINE)
    (tmp_path / "env" / "dev.yaml").write_text(ACCOUNT + "  vcp: {subnets: [subnet-1], security_group_ids: [sg-1]}\n")
    done = run_cli("validate", str(tmp_path / "p.yaml"), "--env", "dev", home=tmp_path / "home", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "dev.yaml:5: sagemaker.vcp: unknown key 'vcp' — did you mean 'vpc'?" in done.stderr, done.stderr


# --- input names (issue 26, item 16) -------------------------------------------------------------------------
TRAINING = """name: p
steps:
  - name: train
    type: {kind}
    code: tests/fixtures/scripts/train.py
    inputs:
      {first}: s3://b/one/
      {second}: s3://b/two/
"""


def _load_inputs(tmp_path: Path, first: str, second: str, kind: str = "training") -> list[Problem]:
    (tmp_path / "p.yaml").write_text(TRAINING.format(kind=kind, first=first, second=second))
    try:
        load_pipeline(tmp_path / "p.yaml")
    except ConfigError as exc:
        return [p for p in exc.problems if ".inputs." in p.path]
    return []


@pytest.mark.parametrize("first, second", [("train", "Train"), ("train-data", "train_data"), ("a-B", "A_b")])
def test_inputs_that_collide_in_sm_channel_are_refused(first: str, second: str, tmp_path: Path) -> None:
    (problem,) = _load_inputs(tmp_path, first, second)
    variable = "SM_CHANNEL_" + first.upper().replace("-", "_")
    assert problem.line == 8 and problem.path == f"steps.train.inputs.{second}"
    assert f"inputs '{first}' (line 7) and '{second}' differ only in case or '-'/'_'" in problem.message
    assert variable in problem.message and "rename one of them" in problem.message


def test_distinct_inputs_still_load(tmp_path: Path) -> None:
    assert _load_inputs(tmp_path, "train", "validation") == []
    assert _load_inputs(tmp_path, "train", "train2") == []


@pytest.mark.parametrize("kind", ["training", "processing"])
@pytest.mark.parametrize("name, own", [("code", "code"), ("sm_drivers", "sm_drivers"), ("CODE", "code"),
                                       ("sm-drivers", "sm_drivers")])
def test_an_input_named_like_the_jobs_own_is_refused(kind: str, name: str, own: str, tmp_path: Path) -> None:
    (problem,) = _load_inputs(tmp_path, "train", name, kind)
    assert problem.line == 8 and problem.path == f"steps.train.inputs.{name}"
    assert f"input '{own}'" in problem.message and "rename this one" in problem.message


@pytest.mark.parametrize("bounds", ["[0.1, .inf]", "[-.inf, 1.0]", "[.nan, 1.0]", "[0.1, .NaN]"])
def test_a_tuning_range_must_be_finite(bounds: str, tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(f"""name: p
steps:
  - name: tune
    type: tuning
    code: tests/fixtures/scripts/train.py
    hyperparameters: {{lr: 0.5}}
    tuning:
      strategy: random
      max_jobs: 2
      objective: {{metric: auc, regex: "auc=([0-9.]+)"}}
      ranges:
        lr: {{continuous: {bounds}}}
""")
    with pytest.raises(ConfigError) as caught:
        load_pipeline(tmp_path / "p.yaml")
    (problem,) = caught.value.problems
    assert problem.line == 12 and problem.path.startswith("steps.tune.tuning.ranges.lr.continuous[")
    assert "finite number" in problem.message


def test_a_float_parameter_must_be_finite(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("name: p\nparameters:\n  floor: {type: float, default: .inf}\n" + PIPELINE[8:])
    with pytest.raises(ConfigError) as caught:
        load_pipeline(tmp_path / "p.yaml")
    problem = _one(caught.value.problems, "is not a finite number")
    assert problem.line == 3
    (tmp_path / "p.yaml").write_text("name: p\nparameters:\n  floor: {type: float, default: 0.5}\n" + PIPELINE[8:])
    with pytest.raises(ConfigError) as caught:
        load_pipeline(tmp_path / "p.yaml", params=["floor=nan"])
    assert "is not a finite number" in str(caught.value)
