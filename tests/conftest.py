"""Shared fixtures: a private state folder per test and a way to run the real CLI."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from pipelines.netutil import free_port  # noqa: F401  (re-exported for the tests)

pytest_plugins = ["tests.example_run"]  # the example pipeline run once per session: `example_run`

# Paths every test module takes from here, never from its own __file__, so a module can move between folders.
REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
GOLDEN = REPO / "tests" / "golden"
SHARED = REPO.parent / "shared"
SHARED_DATA = SHARED / "data" / "insurance-claims"
CHECKER = SHARED / "reference" / "check_definitions.py"


# No network beyond loopback: a compile's requirements check would ask the package index; the tests that hold the
# check turn it on themselves, over a local folder of wheels.
os.environ.setdefault("SAGEPIPE_REQUIREMENTS_CHECK", "off")
if "SAGEPIPE_REQUIREMENTS_CACHE" not in os.environ:  # not ~/.cache
    os.environ["SAGEPIPE_REQUIREMENTS_CACHE"] = tempfile.mkdtemp(prefix="sagepipe-verdicts-")
    atexit.register(shutil.rmtree, os.environ["SAGEPIPE_REQUIREMENTS_CACHE"], True)

# A user's own settings never change a test's outcome: no tracking server, experiment or state folder of theirs.
for _name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID",
              "SAGEPIPE_HOME"):
    os.environ.pop(_name, None)
# Anything that runs before a test's own folder exists (session fixtures, collection) gets a private one too.
os.environ["SAGEPIPE_HOME"] = tempfile.mkdtemp(prefix="sagepipe-session-home-")
atexit.register(shutil.rmtree, os.environ["SAGEPIPE_HOME"], True)

STRAY = ("mlflow.db", "mlruns", "mlartifacts")  # what MLflow writes into the working folder without a store URI


@pytest.fixture(autouse=True, scope="session")
def nothing_written_into_the_repository() -> Any:
    """The suite leaves no MLflow store or artifacts in the repository (a test must keep them in its tmp_path)."""
    before = {name for name in STRAY if (REPO / name).exists()}
    yield
    added = sorted(name for name in STRAY if (REPO / name).exists() and name not in before)
    assert not added, f"the tests left {added} in {REPO}: keep MLflow stores and artifacts under tmp_path"


@pytest.fixture(autouse=True, scope="session")
def the_repository_state_untouched() -> Any:
    """No test reads or writes the repository's own `.sagepipe/` (a user's compiled cache once made a test pass
    that should have failed): in this process by an audit hook, in subprocesses by comparing the folder after."""
    from tests.hermetic import unwatch, watch

    guard = watch(REPO / ".sagepipe")
    yield
    unwatch(guard)
    found = guard.touched[:5] + guard.changes()[:5]
    assert not found, f"the tests used the repository's own state folder {REPO / '.sagepipe'}: {found}; " \
        "every test runs on its own SAGEPIPE_HOME (the `home` fixture)"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Path:
    """A fresh SAGEPIPE_HOME for every test (autouse: a test that forgets it still never sees a user's state).

    Runs are untracked (MLFLOW_TRACKING_URI=none, so the registry is the file registry) unless the test is marked
    `tracked`: tracking doubles a run's CPU (the model logged by the training job, the registry's MLflow import,
    the journal writer), and most tests are about something else. Tracking and the MLflow registry have their
    own tests, which are marked."""
    state = tmp_path / "state"
    monkeypatch.setenv("SAGEPIPE_HOME", str(state))
    if request.node.get_closest_marker("tracked") is None:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", "none")
    return state


def run_cli(*args: str, home: Path, cwd: Path = REPO, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `sagepipe ARGS` as a user would, in a subprocess."""
    env = {**os.environ, "SAGEPIPE_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def run_cli_here(*args: str, home: Path, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """`sagepipe ARGS` in this process, its output captured as run_cli captures it. For a scenario's many short
    commands whose subprocess would mostly import MLflow again; the scenario's runs still go through run_cli."""
    import contextlib
    import io
    import logging

    from pipelines.cli import main

    out, err = io.StringIO(), io.StringIO()
    loggers = [logging.getLogger("sagepipe"), logging.getLogger()]  # main() sets up both
    saved_loggers = [(logger, list(logger.handlers), logger.level, logger.propagate) for logger in loggers]
    saved_home, saved_cwd = os.environ.get("SAGEPIPE_HOME"), os.getcwd()
    os.environ["SAGEPIPE_HOME"] = str(home)
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        os.chdir(saved_cwd)
        if saved_home is None:
            os.environ.pop("SAGEPIPE_HOME", None)
        else:
            os.environ["SAGEPIPE_HOME"] = saved_home
        for logger, handlers, level, propagate in saved_loggers:  # a handler made here writes to this call's
            logger.handlers[:] = handlers                           # stderr, which is gone after it
            logger.setLevel(level)
            logger.propagate = propagate
    return subprocess.CompletedProcess(["sagepipe", *args], code, out.getvalue(), err.getvalue())


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
        shutil.copy(FIXTURES / "scripts" / script, folder / "scripts" / script)
    for relative, text in (files or {}).items():
        (folder / relative).write_text(text)
    for env, text in envs.items():
        (folder / "configs" / "env" / f"{env}.yaml").write_text(text)
    config = folder / "configs" / f"{name}.yaml"
    config.write_text(pipeline)
    return config
