"""The suite runs on its own state: a user's `.sagepipe/` or MLflow settings never change a test's outcome."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.hermetic import unwatch, watch


def test_a_test_that_asks_for_no_home_still_gets_a_private_state_folder(tmp_path: Path) -> None:
    # the compile test that once passed against a user's .sagepipe/compiled/ asked for no `home`
    from pipelines.loader import find_repo_root

    home = Path(os.environ["SAGEPIPE_HOME"])
    assert home == tmp_path / "state"
    assert REPO not in home.parents and home != find_repo_root(REPO / "sagepipe.yaml") / ".sagepipe"
    assert os.environ["MLFLOW_TRACKING_URI"] == "none"  # untracked unless marked, never a user's server


@pytest.mark.tracked
def test_a_tracked_test_gets_the_default_store_not_a_users_server() -> None:
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_REGISTRY_URI" not in os.environ


def test_the_guard_sees_a_read_in_this_process_and_a_write_by_a_subprocess(tmp_path: Path) -> None:
    state = tmp_path / "repo" / ".sagepipe"
    (state / "compiled").mkdir(parents=True)
    (state / "compiled" / "entry.json").write_text("{}")
    guard = watch(state)
    try:
        (tmp_path / "elsewhere.txt").write_text("not watched")
        assert guard.touched == [] and guard.changes() == []
        (state / "compiled" / "entry.json").read_text()
        assert any(t.startswith("open ") and t.endswith("entry.json") for t in guard.touched)
        subprocess.run([sys.executable, "-c", f"open({str(state / 'new.json')!r}, 'w').write('x')"], check=True)
        assert guard.changes() == ["added new.json"]
    finally:
        unwatch(guard)
    (state / "after.json").write_text("{}")  # unwatched: no longer recorded
    assert not any("after.json" in t for t in guard.touched)
