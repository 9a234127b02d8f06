"""buildspec.yml, run the way CodeBuild runs it, against a moto server: it upserts and starts the pipeline,
and a failing command fails the build."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from pipelines.cli.cloud import execution_status
from pipelines.sagemaker import aws as aws_api
from tests.conftest import REPO, STRAY
from tests.sagemaker.test_aws import REGION, aws, moto_server  # noqa: F401  (fixtures)

MARKER = "echo 'make test ran (replaced by a marker in this test)'"
PHASES = ("install", "pre_build", "build", "post_build")


def codebuild(buildspec: dict, env: dict[str, str], workdir: Path) -> tuple[int, str]:
    """Run the phases' commands in order in one shell (buildspec 0.2: variables and `cd` carry over); the first
    failing command ends the build."""
    lines = ["cd " + shlex.quote(str(workdir))]
    for key, value in buildspec.get("env", {}).get("variables", {}).items():
        lines.append(f"export {key}={shlex.quote(str(value))}")
    for phase in PHASES:
        for command in buildspec.get("phases", {}).get(phase, {}).get("commands", []):
            command = MARKER if command.startswith("make test") else command
            shown = shlex.quote(command[:60])
            lines.append(f"echo [{phase}] {shown}")
            lines.append(f"{{ {command}\n}} || {{ rc=$?; echo BUILD FAILED in {phase}: {shown}; exit $rc; }}")
    done = subprocess.run(["bash", "-c", "\n".join(lines)], env=env, capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout + done.stderr


@pytest.fixture
def build_env(aws: dict, home: Path) -> dict[str, str]:  # noqa: F811
    import os

    return {**os.environ, "SAGEPIPE_HOME": str(home), "CODEBUILD_BUILD_ID": "model-build:1",
            "CODEBUILD_SRC_DIR": str(REPO), "CODEBUILD_RESOLVED_SOURCE_VERSION": "abc123", "AWS_REGION": REGION}


def build_source(folder: Path, configs: tuple[str, ...]) -> Path:
    """CODEBUILD_SRC_DIR: the repository (links to its files) with only `configs` in configs/, and its own build/,
    so the buildspec's relative paths write here and its `configs/*.yaml` loops see just these."""
    folder.mkdir()
    for entry in REPO.iterdir():
        if entry.name not in {"configs", "build", "reports", ".sagepipe", ".git", *STRAY}:
            (folder / entry.name).symlink_to(entry)
    (folder / "configs").mkdir()
    for entry in (REPO / "configs").iterdir():
        if entry.suffix != ".yaml" or entry.name in configs:
            (folder / "configs" / entry.name).symlink_to(entry)
    return folder


@pytest.mark.slow  # emulates a config, then upserts and runs it
def test_the_build_upserts_and_starts_the_pipeline(build_env: dict, aws: dict, tmp_path: Path) -> None:  # noqa: F811
    """The whole build on a source folder with configs/fraud-detection.yaml only: the emulation loop runs the
    same for every config (test_one_failed_emulation_fails_the_build_before_the_upsert), and the other configs'
    emulations are their own tests (tests/model_code/test_torch.py, tests/emulate/test_emulated_aws.py)."""
    spec = yaml.safe_load((REPO / "buildspec.yml").read_text())
    assert spec["version"] == 0.2 and spec["reports"]["unit-tests"]["file-format"] == "JUNITXML"
    assert any(c.startswith("make test") and "--junitxml=reports/junit.xml" in c
               for c in spec["phases"]["pre_build"]["commands"])
    source = build_source(tmp_path / "src", (Path(spec["env"]["variables"]["PIPELINE_CONFIG"]).name,))
    rc, log = codebuild(spec, {**build_env, "CODEBUILD_SRC_DIR": str(source)}, source)
    assert rc == 0, log
    assert "make test ran" in log
    pipeline = aws["sm"].describe_pipeline(PipelineName="fraud-detection")
    built = json.loads((source / "build" / "pipeline-definition.json").read_text())
    assert json.loads(pipeline["PipelineDefinition"]) == built
    execution = json.loads((source / "build" / "execution.json").read_text())
    assert execution["status"] == "Succeeded" and ":pipeline/fraud-detection/execution/" in execution["arn"]
    listed = aws["sm"].list_pipeline_executions(PipelineName="fraud-detection")["PipelineExecutionSummaries"]
    assert [e["PipelineExecutionArn"] for e in listed] == [execution["arn"]]  # the emulation used its own AWS
    assert len(sorted(REPO.glob("configs/*.yaml"))) >= 3  # fraud-detection, -torch and -hpo: the loop takes each
    configs = sorted(source.glob("configs/*.yaml"))
    assert [c.name for c in configs] == ["fraud-detection.yaml"]
    assert sorted(p.name for p in (source / "build").glob("emulation-*.json")) == [
        f"emulation-{config.stem}.json" for config in configs]  # one per config, written by the loop
    for config in configs:
        emulated = json.loads((source / "build" / f"emulation-{config.stem}.json").read_text())
        assert emulated["status"] == "succeeded" and emulated["execution_arn"] != execution["arn"], config.name
        assert f":pipeline/{yaml.safe_load(config.read_text())['name']}/execution/" in emulated["execution_arn"]
        assert {s["name"]: s["status"] for s in emulated["steps"]}["register"] == "succeeded", config.name
    assert sorted(spec["artifacts"]["files"]) == sorted(["build/pipeline-definition.json", "build/emulation-*.json",
                                                         "build/execution.json"])
    assert all(list(source.glob(pattern)) for pattern in spec["artifacts"]["files"])  # in the source folder
    build = spec["phases"]["build"]["commands"]  # one shell, in order: each emulation has ended before the upsert
    (emulate,) = [i for i, c in enumerate(build) if "sagepipe emulate" in c]
    (upsert,) = [i for i, c in enumerate(build) if "sagepipe upsert" in c]
    assert emulate < upsert and "for config in configs/*.yaml" in build[emulate]


def test_a_failing_command_fails_the_build(build_env: dict, tmp_path: Path) -> None:
    spec = yaml.safe_load((REPO / "buildspec.yml").read_text())
    spec["env"]["variables"]["PIPELINE_CONFIG"] = "configs/nope.yaml"
    source = build_source(tmp_path / "src", ("fraud-detection.yaml",))
    env = {**build_env, "CODEBUILD_SRC_DIR": str(source)}
    rc, log = codebuild(spec, env, source)
    assert rc != 0 and "BUILD FAILED in build" in log and "sagepipe compile" in log.split("BUILD FAILED")[1]
    broken = yaml.safe_load((REPO / "buildspec.yml").read_text())
    broken["phases"]["install"]["commands"].append("false")
    rc, log = codebuild(broken, env, source)
    assert rc == 1 and "BUILD FAILED in install" in log and "[build]" not in log


def _build_command(spec: dict, verb: str) -> str:
    (command,) = [c for c in spec["phases"]["build"]["commands"] if f"sagepipe {verb}" in c]
    return command


def test_every_pipeline_config_takes_the_parameters_the_build_emulates_it_with() -> None:
    spec = yaml.safe_load((REPO / "buildspec.yml").read_text())
    given = set(re.findall(r"--param (\w+)=", _build_command(spec, "emulate")))
    assert given == {"input_data", "min_auc"}
    for config in sorted(REPO.glob("configs/*.yaml")):
        assert given <= set(yaml.safe_load(config.read_text())["parameters"]), config.name


def test_one_failed_emulation_fails_the_build_before_the_upsert(build_env: dict, tmp_path: Path) -> None:
    """Not only the last config's emulation counts: the middle one fails here (a stand-in sagepipe)."""
    spec = yaml.safe_load((REPO / "buildspec.yml").read_text())
    (tmp_path / "configs").mkdir()
    for name in ("a", "b", "c"):
        (tmp_path / "configs" / f"{name}.yaml").write_text(f"name: {name}\n")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    fake = tmp_path / ".venv" / "bin" / "sagepipe"
    fake.write_text('#!/bin/bash\necho "$1 $2" >> calls.txt\n[ "$2" = configs/b.yaml ] && exit 3\necho "{}"\n')
    fake.chmod(0o755)
    (tmp_path / "build").mkdir()
    only = {"version": 0.2, "env": spec["env"], "phases": {"build": {"commands": [
        _build_command(spec, "emulate"), _build_command(spec, "upsert")]}}}
    rc, log = codebuild(only, build_env, tmp_path)
    assert rc != 0 and "sagepipe upsert" not in log, log  # the loop's `exit` ends the build's shell at once
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert calls[:2] == ["emulate configs/a.yaml", "emulate configs/b.yaml"] and not [c for c in calls if "upsert" in c]


def test_a_failed_execution_exits_non_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    arn = "arn:aws:sagemaker:us-east-1:111122223333:pipeline/fraud-detection/execution/abc"
    answers = iter([{"arn": arn, "status": "Executing", "failure": None, "steps": []},
                    {"arn": arn, "status": "Failed", "failure": "step train failed", "steps": []}])
    monkeypatch.setattr(aws_api, "describe", lambda _: next(answers))
    monkeypatch.setattr(aws_api.time, "sleep", lambda _: None)
    assert execution_status(arn, wait=True, as_json=True) == 1


def test_the_deploy_pipeline_prepares_every_stage_for_one_approved_package(build_env: dict, aws: dict,  # noqa: F811
                                                                           tmp_path: Path) -> None:
    """The deploy CodePipeline's prepare build (infra/cicd.yaml): dev, staging and prod get the same package."""
    from tests.sagemaker.test_infra import cicd_template

    sm = aws["sm"]
    sm.create_model_package_group(ModelPackageGroupName="fraud-detection")
    arns = [sm.create_model_package(
        ModelPackageGroupName="fraud-detection", ModelApprovalStatus=status,
        InferenceSpecification={"Containers": [{"Image": "img", "ModelDataUrl": "s3://b/model.tar.gz"}],
                                "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
    )["ModelPackageArn"] for status in ("Approved", "Approved", "PendingManualApproval")]
    for name in (".venv", "configs", "infra", "Makefile", "pyproject.toml", "requirements.lock"):
        (tmp_path / name).symlink_to(REPO / name)
    spec = yaml.safe_load(cicd_template()["Resources"]["DeployPrepareProject"]["Properties"]["Source"]["BuildSpec"])
    rc, log = codebuild(spec, build_env, tmp_path)
    assert rc == 0, log
    assert all((tmp_path / f).is_file() for f in spec["artifacts"]["files"])
    configs = {env: json.loads((tmp_path / f"{env}.json").read_text())["Parameters"] for env in ("dev", "staging", "prod")}
    assert {env: (p["EndpointName"], p["ModelPackageArn"]) for env, p in configs.items()} == {
        env: (f"fraud-detection-{env}", arns[1]) for env in configs}
