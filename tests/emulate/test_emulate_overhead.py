"""What keeps `emulate` close to `run`: the container's pip fast path, property files read once per job, one
botocore loader per process, the SDK schema checked once, and a moto server started ahead of compile."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.emulate import container_pip
from tests.conftest import REPO

SHIM = REPO / "pipelines" / "emulate" / "container_pip.py"


def _dist(site: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
             *(f"Requires-Dist: {r}" for r in requires)]
    (info / "METADATA").write_text("\n".join(lines) + "\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Installed distributions: alpha 1.0 needs beta>=2 (and gamma only with its [extra]); beta 2.1 needs nothing."""
    site = tmp_path / "site"
    _dist(site, "sp-alpha", "1.0", ("sp-beta>=2", 'sp-gamma==9; extra == "more"', 'sp-delta; python_version < "3"'))
    _dist(site, "sp-beta", "2.1")
    monkeypatch.syspath_prepend(str(site))
    return site


def test_a_quiet_install_of_what_is_installed_is_recognised_down_the_dependency_tree(site: Path,
                                                                                      tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# pinned\nsp-alpha==1.0  # the model\n\nsp-beta>=2\nsp-zeta==1; python_version < '3'\n")
    lines, quiet = container_pip._install_requirements(["install", "--quiet", "-r", str(requirements)])
    assert lines == ["sp-alpha==1.0", "sp-beta>=2", "sp-zeta==1; python_version < '3'"] and quiet
    assert container_pip._all_installed(lines)


@pytest.mark.parametrize("line", ["sp-alpha==1.1", "sp-alpha[more]==1.0", "sp-omega", "sp-alpha @ file:///x"])
def test_anything_not_installed_goes_to_pip(site: Path, line: str) -> None:
    """A wrong version, an extra whose dependency is missing, an unknown package, a URL."""
    assert not container_pip._all_installed([line])


def test_a_missing_dependency_of_a_dependency_goes_to_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    _dist(site, "sp-top", "1.0", ("sp-middle",))
    _dist(site, "sp-middle", "1.0", ("sp-bottom>=3",))
    _dist(site, "sp-bottom", "2.0")
    monkeypatch.syspath_prepend(str(site))
    assert not container_pip._all_installed(["sp-top"])


@pytest.mark.parametrize("argv", [["install", "-q", "-e", "."], ["uninstall", "-q", "x"],
                                  ["install", "-q", "--index-url", "http://x", "y"], ["install", "-q", "-r", "nowhere"]])
def test_other_calls_go_to_pip(argv: list[str]) -> None:
    assert container_pip._install_requirements(argv) is None


def test_the_shim_ends_at_once_or_runs_pip(site: Path, tmp_path: Path) -> None:
    """A stand-in `pip` module (exit 3) tells whether the shim handed the call to pip."""
    fake = tmp_path / "fake" / "pip"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text("import sys; print('pip ran', sys.argv[1:]); sys.exit(3)\n")
    env = {**os.environ, "PYTHONPATH": f"{fake.parent}{os.pathsep}{site}"}
    (tmp_path / "ok.txt").write_text("sp-alpha==1.0\n")
    (tmp_path / "missing.txt").write_text("sp-alpha==1.0\nsp-omega==1\n")
    ok = subprocess.run([sys.executable, str(SHIM), "install", "--quiet", "-r", str(tmp_path / "ok.txt")],
                        env=env, capture_output=True, text=True)
    assert (ok.returncode, ok.stdout) == (0, "")
    missing = subprocess.run([sys.executable, str(SHIM), "install", "-q", "-r", str(tmp_path / "missing.txt")],
                             env=env, capture_output=True, text=True)
    assert missing.returncode == 3 and "pip ran ['install', '-q', '-r'" in missing.stdout


def test_a_verdict_is_remembered_until_a_distribution_is_installed_or_removed(site: Path, tmp_path: Path) -> None:
    fake = tmp_path / "fake" / "pip"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text("import sys; sys.exit(3)\n")
    verdicts = tmp_path / "verdicts"
    env = {**os.environ, "PYTHONPATH": f"{fake.parent}{os.pathsep}{site}", "SAGEPIPE_PIP_VERDICTS": str(verdicts)}
    (tmp_path / "r.txt").write_text("sp-alpha==1.0\n")

    def shim() -> int:
        argv = [sys.executable, str(SHIM), "install", "-q", "-r", str(tmp_path / "r.txt")]
        return subprocess.run(argv, env=env, capture_output=True, text=True).returncode

    assert shim() == 0 and len(list(verdicts.iterdir())) == 1
    # edited in place (pip never does this), beta no longer satisfies alpha: the remembered verdict still answers
    (site / "sp_beta-2.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: sp-beta\nVersion: 1.0\n")
    assert shim() == 0
    _dist(site, "sp-other", "1.0")  # an install changes site-packages: the check runs again and finds beta 1.0
    assert shim() == 3


def test_container_pip_shims_use_the_fast_path(tmp_path: Path) -> None:
    from pipelines.emulate.container import Container

    box = Container(tmp_path / "box", tmp_path / "verdicts")
    env = box.environment({})
    assert env["SAGEPIPE_PIP_VERDICTS"] == str(tmp_path / "verdicts")
    assert "container_pip.py" in (box.bin / "pip").read_text()
    assert env["PIP_NO_INDEX"] == "1" and env["PATH"].startswith(str(box.bin))


def test_a_property_file_is_read_once_per_job() -> None:
    import io
    import json

    from pipelines.emulate.expressions import Scope
    from pipelines.emulate.emulation import Emulation

    class S3:
        def __init__(self) -> None:
            self.reads, self.body = 0, {"auc": 0.8}

        def get_object(self, Bucket: str, Key: str) -> dict:  # noqa: N803 - boto3's names
            self.reads += 1
            return {"Body": io.BytesIO(json.dumps(self.body).encode())}

    s3 = S3()
    emulation = Emulation("p", "arn:x/execution/e1", s3, None, Scope({}, {}), Path("."))
    emulation.scope.read_property_file = emulation.read_property_file  # as the emulate command wires it
    emulation.steps = {"evaluate": {"PropertyFiles": [{"PropertyFileName": "report", "OutputName": "evaluation",
                                                       "FilePath": "evaluation.json"}]}}
    output = {"Outputs": {"evaluation": {"S3Output": {"S3Uri": "s3://b/e1/evaluate/evaluation"}}}}
    emulation.scope.properties["evaluate"] = {"ProcessingOutputConfig": output}
    assert emulation.read_property_file("evaluate", "report") == {"auc": 0.8}
    assert emulation.scope.evaluate({"Std:JsonGet": {"PropertyFile": {"Get": "Steps.evaluate.PropertyFiles.report"},
                                                     "Path": "auc"}}) == 0.8
    assert s3.reads == 1
    s3.body = {"auc": 0.9}  # the step runs again (a retry): its new job's file is read
    emulation.scope.properties["evaluate"] = {"ProcessingOutputConfig": output}
    assert emulation.read_property_file("evaluate", "report") == {"auc": 0.9} and s3.reads == 2


def test_botocore_sessions_share_one_loader_in_the_block() -> None:
    import boto3

    from pipelines.sagemaker.offline import shared_botocore_loader

    loader = lambda: boto3.Session(region_name="us-east-1")._session.get_component("data_loader")  # noqa: E731
    with shared_botocore_loader():
        assert loader() is loader()
    assert loader() is not loader()


def test_the_sdk_schema_is_checked_once_and_every_config_still_validated() -> None:
    from unittest import mock

    import jsonschema

    from pipelines.sagemaker.offline import SDK_DEFAULTS, _schema_checked_once

    schema = {"type": "object", "properties": {"SchemaVersion": {"type": "string"}}, "required": ["SchemaVersion"]}
    kind = jsonschema.validators.validator_for(schema)
    with _schema_checked_once(), mock.patch.object(kind, "check_schema", wraps=kind.check_schema) as check:
        for _ in range(3):
            jsonschema.validate(SDK_DEFAULTS, schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"SchemaVersion": 1}, schema)
    assert check.call_count == 1


def test_the_emulated_aws_starts_before_it_is_needed_and_ends_with_the_block(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.emulate.server import emulated_aws
    from pipelines.netutil import unreachable

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with emulated_aws(tmp_path) as connect:
        assert "AWS_ENDPOINT_URL" not in os.environ  # nothing points at it until the block asks
        url = connect("eu-west-1")
        assert os.environ["AWS_ENDPOINT_URL"] == url and os.environ["AWS_DEFAULT_REGION"] == "eu-west-1"
        assert unreachable(url) is None
    assert "AWS_ENDPOINT_URL" not in os.environ
    assert unreachable(url, timeout=0.5)


def test_the_sdk_training_driver_installs_requirements_through_container_pip(tmp_path: Path) -> None:
    """ModelTrainer copies sagemaker-core's install_requirements.py into sm_drivers; its `python -m pip` call
    is routed to the shim. Worded differently in a new SDK, this fails (and real pip, slower, would run)."""
    import shutil

    import sagemaker.core.utils.install_requirements as sdk_script

    from pipelines.emulate.container import CONTAINER_PIP, Container

    drivers = tmp_path / "sm_drivers"
    (drivers / "scripts").mkdir(parents=True)
    shutil.copy(sdk_script.__file__, drivers / "scripts" / "install_requirements.py")
    Container(tmp_path / "box", tmp_path / "verdicts").route_pip(drivers)
    text = (drivers / "scripts" / "install_requirements.py").read_text()
    assert f'[python_executable, {str(CONTAINER_PIP)!r}, "install", "-r", requirements_file]' in text
    assert '"-m", "pip"' not in text
