"""The local runner on tiny scripts: order, parallelism, references, cache, retries, failures, resume, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from pipelines.loader import load_pipeline
from pipelines.local.runner import LocalRunner
from pipelines.local.state import RunState
from pipelines.registry import LocalRegistry
from tests.conftest import FIXTURES, run_cli

EMIT = FIXTURES / "scripts" / "emit.py"


def write_pipeline(folder: Path, body: str) -> Path:
    (folder / "pyproject.toml").touch()
    scripts = folder / "scripts"
    if not scripts.exists():
        scripts.mkdir()
        for name in ("emit.py", "score.py"):
            (scripts / name).write_text((FIXTURES / "scripts" / name).read_text())
        # a folder of its own: a script's cache key covers the Python files beside it
        (folder / "trainer").mkdir()
        (folder / "trainer" / "train.py").write_text((FIXTURES / "scripts" / "train.py").read_text())
    path = folder / "pipeline.yaml"
    path.write_text(body)
    return path


LINEAR = """
name: linear
parameters:
  text: {type: string, default: one}
steps:
  - name: a
    type: processing
    code: scripts/emit.py
    arguments: [--text, "${params.text}"]
    outputs: [data]
  - name: b
    type: processing
    code: scripts/emit.py
    inputs: {data: "${steps.a.outputs.data}"}
    arguments: [--text, two]
    outputs: [data]
  - name: c
    type: training
    code: trainer/train.py
    inputs: {train: "${steps.b.outputs.data}"}
    hyperparameters: {epochs: 4}
"""


def run(path: Path, home: Path, params: tuple = (), **kwargs) -> RunState:
    return LocalRunner(load_pipeline(path, params=params), home, **kwargs).run()


def test_linear_order_and_reference_resolution(tmp_path: Path, home: Path) -> None:
    state = run(write_pipeline(tmp_path, LINEAR), home)
    steps = state.data["steps"]
    assert state.data["status"] == "succeeded"
    assert steps["a"]["ended_at"] <= steps["b"]["started_at"] <= steps["b"]["ended_at"] <= steps["c"]["started_at"]
    assert Path(steps["b"]["outputs"]["data"], "out.txt").read_text() == "one\ntwo\n"
    with tarfile.open(steps["c"]["outputs"]["model"]) as archive:  # SM_MODEL_DIR packed, as on SageMaker
        model = json.load(archive.extractfile("model.json"))
    assert model == {"epochs": 4, "hps": {"epochs": 4}, "lines": 2}


def test_independent_steps_run_in_parallel(tmp_path: Path, home: Path) -> None:
    body = "name: par\nsteps:\n" + "".join(
        f"  - {{name: s{i}, type: processing, code: scripts/emit.py, arguments: [--sleep, '1'], outputs: [data]}}\n"
        for i in range(2))
    steps = run(write_pipeline(tmp_path, body), home, max_parallel=2).data["steps"]
    assert steps["s0"]["started_at"] < steps["s1"]["ended_at"] and steps["s1"]["started_at"] < steps["s0"]["ended_at"]
    serial = run(write_pipeline(tmp_path, body), home, max_parallel=1, use_cache=False).data["steps"]
    first, second = sorted(serial.values(), key=lambda s: s["started_at"])
    assert second["started_at"] >= first["ended_at"]


def test_cache_hits_and_misses(tmp_path: Path, home: Path) -> None:
    path = write_pipeline(tmp_path, LINEAR)
    statuses = lambda state: {n: s["status"] for n, s in state.data["steps"].items()}  # noqa: E731
    assert set(statuses(run(path, home)).values()) == {"succeeded"}
    assert set(statuses(run(path, home)).values()) == {"cached"}
    # a parameter change re-runs the step that uses it and everything downstream of its output
    assert statuses(run(path, home, params=("text=other",))) == {"a": "succeeded", "b": "succeeded", "c": "succeeded"}
    # a code change to the training script re-runs only that step
    train = tmp_path / "trainer" / "train.py"
    train.write_text(train.read_text() + "\n# changed\n")
    assert statuses(run(path, home)) == {"a": "cached", "b": "cached", "c": "succeeded"}
    # --no-cache runs everything
    assert set(statuses(run(path, home, use_cache=False)).values()) == {"succeeded"}


def test_input_content_change_misses_cache(tmp_path: Path, home: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "out.txt").write_text("seed\n")
    body = ("name: inp\nsteps:\n  - {name: a, type: processing, code: scripts/emit.py, inputs: {data: data}, "
            "outputs: [data]}\n")
    path = write_pipeline(tmp_path, body)
    assert run(path, home).data["steps"]["a"]["status"] == "succeeded"
    assert run(path, home).data["steps"]["a"]["status"] == "cached"
    (data / "out.txt").write_text("changed\n")
    state = run(path, home)
    assert state.data["steps"]["a"]["status"] == "succeeded"
    assert Path(state.data["steps"]["a"]["outputs"]["data"], "out.txt").read_text() == "changed\nhello\n"


def test_retries_then_success(tmp_path: Path, home: Path) -> None:
    counter = tmp_path / "counter"
    body = ("name: flaky\nsteps:\n  - name: a\n    type: processing\n    code: scripts/emit.py\n"
            f"    arguments: [--fail-times, '2', --counter, '{counter}']\n    outputs: [data]\n"
            "    retry: {attempts: 3, backoff_s: 0.05}\n")
    state = run(write_pipeline(tmp_path, body), home)
    assert state.data["steps"]["a"]["status"] == "succeeded"
    assert state.data["steps"]["a"]["attempts"] == 3


def test_failure_skips_downstream_and_resume_finishes(tmp_path: Path, home: Path) -> None:
    counter = tmp_path / "counter"
    body = LINEAR.replace("arguments: [--text, two]", f"arguments: [--text, two, --fail-times, '1', --counter, '{counter}']")
    path = write_pipeline(tmp_path, body)
    done = run_cli("run", str(path), "--json", home=home, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    summary = json.loads(done.stdout)
    assert [s["status"] for s in summary["steps"]] == ["succeeded", "failed", "skipped"]
    assert "failing on purpose" in done.stderr and "Traceback" not in done.stderr
    a_ended = RunState.load(home / "runs" / summary["run_id"]).step("a")["ended_at"]
    resumed = run_cli("resume", summary["run_id"], "--json", home=home, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    after = RunState.load(home / "runs" / summary["run_id"])
    assert [after.status(n) for n in "abc"] == ["succeeded", "succeeded", "succeeded"]
    assert after.step("a")["ended_at"] == a_ended  # not run again


def test_condition_branches(home: Path) -> None:
    gated = FIXTURES / "valid" / "gated.yaml"
    passed = LocalRunner(load_pipeline(gated), home).run()
    assert passed.status("register") == "succeeded" and passed.status("too-low") == "skipped"
    assert LocalRegistry(home / "registry").latest("gated-models")["status"] == "PendingManualApproval"
    failed = LocalRunner(load_pipeline(gated, params=["min_auc=0.95"]), home).run()
    assert failed.data["status"] == "failed"
    assert failed.status("register") == "skipped"
    assert failed.step("too-low")["error"] == "AUC 0.8 is below 0.95"
    assert failed.step("gate")["note"] == "0.8 >= 0.95 is false"
    from steps.condition import _shown

    assert [_shown(v) for v in (0.8444301543332015, 0.75, 3, "a")] == ["0.8444", "0.75", "3", "'a'"]


def test_sigterm_stops_children_and_leaves_no_cache_entry(tmp_path: Path, home: Path) -> None:
    pid_file = tmp_path / "child.pid"
    script = tmp_path / "scripts" / "slow.py"
    path = write_pipeline(tmp_path, "name: slow\nsteps:\n  - {name: wait, type: processing, code: scripts/slow.py, "
                                    "outputs: [data]}\n")
    script.write_text(f"import os, time, pathlib\npathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()))\n"
                      "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", str(path), "--json"], cwd=tmp_path,
                            env={**os.environ, "SAGEPIPE_HOME": str(home)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while not pid_file.exists() and time.time() < deadline:
        time.sleep(0.05)
    child = int(pid_file.read_text())
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert json.loads(out)["status"] == "interrupted"
    with pytest.raises(ProcessLookupError):
        for _ in range(50):
            os.kill(child, 0)
            time.sleep(0.1)
    assert not [p for p in (home / "cache").glob("*") if not p.name.startswith(".")]
    assert json.loads(out)["steps"][0]["status"] == "interrupted"


def test_runs_list_and_show(tmp_path: Path, home: Path) -> None:
    state = run(write_pipeline(tmp_path, LINEAR), home)
    listing = run_cli("runs", "list", "--json", home=home)
    assert [r["run_id"] for r in json.loads(listing.stdout)] == [state.data["run_id"]]
    shown = run_cli("runs", "show", state.data["run_id"], home=home)
    assert "succeeded" in shown.stdout and "linear" in shown.stdout
    missing = run_cli("runs", "show", "nope", home=home)
    assert missing.returncode == 3 and state.data["run_id"] in missing.stderr  # not found, not a config error
    assert "no run 'nope'" in missing.stderr and "invalid pipeline config" not in missing.stderr


def test_graph_formats(home: Path) -> None:
    gated = str(FIXTURES / "valid" / "gated.yaml")
    mermaid = run_cli("graph", gated, home=home).stdout
    assert "s_gate -->|if_true| s_register" in mermaid
    dot = run_cli("graph", gated, "--format", "dot", home=home).stdout
    assert '"gate" -> "too-low" [label="if_false"];' in dot
