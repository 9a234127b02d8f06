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


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    """Poll url until it answers 200; fail the test with the process's output if it dies or times out."""
    import time
    import urllib.request

    deadline = time.time() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            output = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"{url} never answered 200:\n{str(output)[-3000:]}")
        time.sleep(0.3)
