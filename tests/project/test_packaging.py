"""Packaging: the extras, the lock files, and a core-only install that names the extra it lacks."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO


def pins(path: Path) -> dict[str, str]:
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return {line.split("==")[0].lower().replace("_", "-"): line.split("==")[1] for line in lines}


def test_every_lock_pins_exactly_and_agrees_with_the_full_lock() -> None:
    full = pins(REPO / "requirements.lock")
    for name in ("core.lock", "run.lock"):
        lock = REPO / "requirements" / name
        assert all("==" in line for line in lock.read_text().splitlines() if line and not line.startswith("#"))
        assert {k: v for k, v in pins(lock).items() if full.get(k) != v} == {}, name
    run = pins(REPO / "requirements" / "run.lock")
    assert {"mlflow", "lightgbm", "pandas", "great-expectations", "gunicorn"} <= run.keys()
    assert not {"torch", "sagemaker", "moto", "locust", "cfn-lint", "pytest"} & run.keys()  # no more than it needs
    assert set(pins(REPO / "requirements" / "core.lock")) <= set(run)


def test_extras_pin_the_locked_versions() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert {"ml", "dev", "tracking", "aws", "serve", "torch", "all"} <= extras.keys()
    full = pins(REPO / "requirements.lock")
    for extra, requirements in extras.items():
        for requirement in requirements:
            if requirement.startswith("sagepipe["):
                continue
            name, version = requirement.split("==")
            assert full[name.split("[")[0].lower().replace("_", "-")] == version, (extra, requirement)
    assert extras["all"] == ["sagepipe[ml,tracking,serve,aws,torch,completion]"]


def test_make_run_installs_the_run_set_and_make_test_everything() -> None:
    run = subprocess.run(["make", "-n", "-B", "run"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "-r requirements/run.lock" in run and "-r requirements.lock" not in run
    test = subprocess.run(["make", "-n", "-B", "test"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "-r requirements.lock" in test
    assert "make test" in (REPO / ".ci" / "run").read_text()


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with sagepipe and only its core dependencies (the lock's pins), nothing else."""
    venv = tmp_path_factory.mktemp("core") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps"]
    subprocess.run([*pip, "-r", str(REPO / "requirements" / "core.lock")], check=True, timeout=600)
    subprocess.run([*pip, "-e", str(REPO)], check=True, timeout=600, capture_output=True)
    return venv


def core_cli(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")}
    return subprocess.run([str(venv / "bin" / "sagepipe"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**env, "SAGEPIPE_HOME": str(cwd / "state")})


@pytest.mark.slow
def test_a_core_only_install_validates_and_names_the_missing_extra(core_venv: Path, tmp_path: Path) -> None:
    python = str(core_venv / "bin" / "python")
    assert subprocess.run([python, "-c", "import mlflow"], capture_output=True).returncode != 0
    config = str(REPO / "configs" / "fraud-detection.yaml")
    assert core_cli(core_venv, "validate", config, cwd=tmp_path).returncode == 0
    for args, extra in ((("models", "list"), "tracking"), (("compile", config, "--env", "dev"), "aws"),
                        (("ui",), "tracking")):
        done = core_cli(core_venv, *args, cwd=tmp_path)
        assert done.returncode == 2, (args, done.stderr)  # a setup problem, like a usage error
        assert f"pip install 'sagepipe[{extra}]'" in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr + done.stdout, (args, done.stderr)
