"""The framework type-checks: mypy (pyproject's [tool.mypy], check_untyped_defs) over pipelines/ and steps/."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO


def test_mypy_is_clean() -> None:
    pytest.importorskip("mypy", reason="mypy is a dev dependency (requirements.lock)")
    done = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary"], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr
