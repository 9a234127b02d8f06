"""Shared fixtures: a private state folder per test and a way to run the real CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.netutil import free_port  # noqa: F401  (re-exported for the tests)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "insurance-claims"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh SAGEPIPE_HOME for this test."""
    state = tmp_path / "state"
    monkeypatch.setenv("SAGEPIPE_HOME", str(state))
    return state


def run_cli(*args: str, home: Path, cwd: Path = REPO, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `sagepipe ARGS` as a user would, in a subprocess."""
    env = {**os.environ, "SAGEPIPE_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def wait_for_http(url: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    """netutil.wait_for_http, failing the test with the tail of the process's output."""
    from pipelines.netutil import wait_for_http as wait

    try:
        wait(url, proc, seconds)
    except RuntimeError as exc:
        proc.kill()
        output = proc.stdout.read() if proc.stdout else ""
        pytest.fail(f"{exc}\n{str(output)[-3000:]}")


def make_project(folder: Path, name: str, pipeline: str, envs: dict[str, str], scripts: tuple[str, ...],
                 files: dict[str, str] | None = None) -> Path:
    """A small repository: configs/<name>.yaml, configs/env/<env>.yaml, and fixture scripts in scripts/.

    Returns the pipeline file; `files` are extra files (relative path: text)."""
    (folder / "scripts").mkdir(parents=True)
    (folder / "configs" / "env").mkdir(parents=True)
    (folder / "pyproject.toml").touch()
    for script in scripts:
        shutil.copy(REPO / "tests" / "fixtures" / "scripts" / script, folder / "scripts" / script)
    for relative, text in (files or {}).items():
        (folder / relative).write_text(text)
    for env, text in envs.items():
        (folder / "configs" / "env" / f"{env}.yaml").write_text(text)
    config = folder / "configs" / f"{name}.yaml"
    config.write_text(pipeline)
    return config
