"""Shared fixtures: a private state folder per test and a way to run the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
