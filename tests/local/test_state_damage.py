"""A run's state that cannot be read, or a run folder that cannot be written: one clear line and an exit code,
never a traceback, and the damaged file left as it is for a person to look at."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.local.test_run_safety import READ_ONLY_RUN, cli, only_run, unprivileged
from tests.local.test_runner import LINEAR, write_pipeline

DAMAGE = {
    "truncated": b'{"run_id": "r1", "pipeline": "p", "sta',
    "empty": b"",
    "a list": b"[]",
    "binary": bytes(range(256)),
    "no steps": b'{"run_id": "r1", "pipeline": "p", "status": "failed", "params": {}}',
    "steps not a mapping": b'{"run_id": "r1", "pipeline": "p", "status": "failed", "params": {}, "steps": [1]}',
    "a step not a mapping": b'{"run_id": "r1", "pipeline": "p", "status": "failed", "params": {}, "steps": {"a": 1}}',
}


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("command", ["show", "resume", "logs", "report"])
def test_a_damaged_state_file_is_one_line_and_an_exit_code(tmp_path: Path, home: Path, damage: str,
                                                           command: str) -> None:
    """`runs show`, `resume` and `logs` of a state.json that is truncated, empty, `[]`, binary or without its
    steps: they gave tracebacks (JSONDecodeError, AttributeError, KeyError, UnicodeDecodeError)."""
    run_dir = home / "runs" / "r1"
    run_dir.mkdir(parents=True)
    (run_dir / "state.json").write_bytes(DAMAGE[damage])
    args = {"show": ["runs", "show", "r1"], "resume": ["resume", "r1"], "logs": ["logs", "r1", "a"],
            "report": ["report", "r1"]}[command]
    result = run_cli(*args, home=home, cwd=tmp_path)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert f"{run_dir / 'state.json'} is not a readable run state" in result.stderr
    assert (run_dir / "state.json").read_bytes() == DAMAGE[damage]  # left for a person to look at
    listed = run_cli("runs", "list", home=home, cwd=tmp_path)  # the other runs still list
    assert listed.returncode == 0 and "Traceback" not in listed.stderr


@pytest.mark.tracked
def test_a_run_folder_turning_read_only_mid_run_with_tracking_on(tmp_path: Path, home: Path) -> None:
    """With MLflow tracking on, the runner's journal write into the read-only folder ended the run in an
    OSError traceback; now the run ends failed with one warning for the journal."""
    prefix = unprivileged()
    path = write_pipeline(tmp_path, LINEAR.replace("code: scripts/emit.py\n    arguments: [--text, \"${params.text}\"]",
                                                   "code: scripts/lock_out.py"))
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "local.yaml").write_text(f"tracking_uri: sqlite:///{tmp_path / 'mlflow.db'}\n")
    (tmp_path / "scripts" / "lock_out.py").write_text(READ_ONLY_RUN.replace(
        "run_dir.chmod(0o555)", "[[pathlib.Path(d, f).chmod(0o444) for f in fs] + [pathlib.Path(d).chmod(0o555)]\n"
        " for d, _, fs in os.walk(run_dir)]"))
    proc = cli("run", str(path), home=home, cwd=tmp_path, prefix=prefix)
    out, err = proc.communicate(timeout=120)
    run_dir = home / "runs" / only_run(home)
    for folder, _, files in os.walk(run_dir):
        Path(folder).chmod(0o755)
        for name in files:
            Path(folder, name).chmod(0o644)
    assert proc.returncode == 1, out + err
    assert "Traceback" not in err, err
    assert "cannot write the run's MLflow journal" in err, err
    shown = run_cli("runs", "show", run_dir.name, "--json", home=home, cwd=tmp_path)
    assert shown.returncode == 0 and "Traceback" not in shown.stderr
    assert json.loads(shown.stdout)["status"] == "interrupted"  # the file could not be changed: never `running`
