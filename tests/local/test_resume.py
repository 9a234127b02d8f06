"""Resume that does what it says (issue 18): `--param` changes what it must and keeps the rest, a fixed input is
read again, a gate failure says what to change, finished steps show as finished."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipelines.cli.runs import resume_run
from pipelines.errors import ConfigError
from pipelines.loader import load_pipeline
from pipelines.local.runner import LocalRunner
from pipelines.local.state import RunState
from tests.conftest import FIXTURES, run_cli

SCRIPTS = FIXTURES / "scripts"
PIPELINE = """
name: resumable
parameters:
  input_data: {type: string, default: data}
  min_auc: {type: float, default: 0.7}
  greeting: {type: string, default: hello}
steps:
  - name: ingest
    type: processing
    code: scripts/emit.py
    inputs: {data: "${params.input_data}"}
    arguments: [--text, "${params.greeting}"]
    outputs: [data]
  - name: check
    type: processing
    code: scripts/check.py
    inputs: {data: "${steps.ingest.outputs.data}"}
    outputs: [data]
  - name: evaluate
    type: evaluation
    code: scripts/score.py
    inputs: {data: "${steps.check.outputs.data}"}
    arguments: [--auc, "0.8444301543332015"]
    outputs: [evaluation]
  - name: gate
    type: condition
    condition:
      left: ${steps.evaluate.metrics.binary_classification_metrics.auc.value}
      op: ">="
      right: ${params.min_auc}
    if_true: [publish]
    if_false: [too-low]
  - name: publish
    type: processing
    code: scripts/emit.py
    inputs: {data: "${steps.check.outputs.data}"}
    arguments: [--text, published]
    outputs: [data]
  - name: too-low
    type: fail
    message: "AUC ${steps.evaluate.metrics.binary_classification_metrics.auc.value} is below ${params.min_auc}"
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small repository with the pipeline above and an input folder `data` of good rows."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "none")
    (tmp_path / "pyproject.toml").touch()
    (tmp_path / "scripts").mkdir()
    for name in ("emit.py", "check.py", "score.py"):
        shutil.copy(SCRIPTS / name, tmp_path / "scripts" / name)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "out.txt").write_text("good\n")
    (tmp_path / "pipeline.yaml").write_text(PIPELINE)
    return tmp_path / "pipeline.yaml"


def _run(path: Path, home: Path, *params: str) -> RunState:
    return LocalRunner(load_pipeline(path, params=params), home).run()


def _resume(home: Path, run_id: str, *params: str, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = resume_run(home, run_id, None, False, list(params))
    return code, capsys.readouterr().out


def test_gate_failure_says_what_to_change_with_rounded_values(project: Path, home: Path) -> None:
    done = run_cli("run", str(project), "--param", "min_auc=0.95", home=home, cwd=project.parent)
    assert done.returncode == 1, done.stderr
    out = done.stdout
    assert "the model did not pass the gate 'gate': ROC AUC (evaluate) 0.844 < min_auc 0.95" in out
    assert "too-low: AUC 0.8444 is below 0.95" in out
    run_id = json.loads(run_cli("runs", "list", "--json", home=home).stdout)[0]["run_id"]
    assert f"sagepipe resume {run_id} --param min_auc=VALUE" in out
    assert "0.8444301543332015" not in out  # the raw float is never shown
    assert "Traceback" not in out + done.stderr


def test_resume_with_a_changed_param_reruns_only_what_uses_it(project: Path, home: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    failed = _run(project, home, "min_auc=0.95")
    assert failed.data["status"] == "failed" and failed.status("too-low") == "failed"
    run_id = failed.data["run_id"]
    before = {n: s.get("ended_at") for n, s in failed.data["steps"].items()}
    code, out = _resume(home, run_id, "min_auc=0.8", capsys=capsys)
    assert code == 0, out
    after = RunState.load(home / "runs" / run_id)
    assert after.data["params"]["min_auc"] == 0.8
    assert [after.status(n) for n in ("gate", "publish", "too-low")] == ["succeeded", "succeeded", "skipped"]
    assert after.step("gate")["note"] == "0.8444 >= 0.8 is true"
    for name in ("ingest", "check", "evaluate"):  # their inputs did not change: not run again
        assert after.step(name)["ended_at"] == before[name]
    assert "resuming run" in out and "with min_auc=0.8" in out


def test_resume_param_change_reruns_a_finished_step_and_what_follows(project: Path, home: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    failed = _run(project, home, "min_auc=0.95")
    code, _ = _resume(home, failed.data["run_id"], "greeting=bonjour", "min_auc=0.5", capsys=capsys)
    assert code == 0
    after = RunState.load(home / "runs" / failed.data["run_id"])
    assert after.step("ingest")["ended_at"] > failed.step("ingest")["ended_at"]
    assert after.step("check")["ended_at"] > failed.step("check")["ended_at"]
    assert Path(after.step("publish")["outputs"]["data"], "out.txt").read_text() == "good\nbonjour\npublished\n"


def test_resume_command_after_a_data_failure_reads_the_fixed_input(project: Path, home: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    data = project.parent / "data" / "out.txt"
    data.write_text("bad\n")
    failed = _run(project, home)
    assert failed.status("check") == "failed" and failed.status("ingest") == "succeeded"
    data.write_text("fixed\n")  # in place: same file name, new content
    code, out = _resume(home, failed.data["run_id"], capsys=capsys)
    assert code == 0, out
    after = RunState.load(home / "runs" / failed.data["run_id"])
    assert after.step("ingest")["ended_at"] > failed.step("ingest")["ended_at"]
    assert Path(after.step("check")["outputs"]["data"], "out.txt").read_text() == "fixed\nhello\n"


def test_resume_with_another_input_folder(project: Path, home: Path, capsys: pytest.CaptureFixture) -> None:
    (project.parent / "data" / "out.txt").write_text("bad\n")
    failed = _run(project, home)
    other = project.parent / "clean"
    other.mkdir()
    (other / "out.txt").write_text("clean\n")
    code, out = _resume(home, failed.data["run_id"], f"input_data={other}", capsys=capsys)
    assert code == 0, out
    after = RunState.load(home / "runs" / failed.data["run_id"])
    assert Path(after.step("check")["outputs"]["data"], "out.txt").read_text() == "clean\nhello\n"


def test_resume_shows_finished_steps_as_finished(project: Path, home: Path) -> None:
    failed = _run(project, home, "min_auc=0.95")
    events: list[tuple[str, str, dict]] = []
    spec = load_pipeline(project, params=["min_auc=0.95"])
    LocalRunner(spec, home, report=lambda n, s, i: events.append((n, s, i))).resume(failed)
    first_run = next(i for i, (_, status, _) in enumerate(events) if status == "running")
    shown = {name: (status, info) for name, status, info in events[:first_run]}
    for name in ("ingest", "check", "evaluate", "gate"):
        assert shown[name][0] == "succeeded" and shown[name][1]["earlier"], events


def test_resume_refuses_params_for_a_succeeded_run(project: Path, home: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    done = _run(project, home)
    assert done.data["status"] == "succeeded"
    assert resume_run(home, done.data["run_id"], None, False, ["min_auc=0.9"]) == 2
    err = capsys.readouterr().err
    assert "already succeeded" in err and "sagepipe run" in err and "--param min_auc=0.9" in err


def test_resume_names_an_unknown_param(project: Path, home: Path) -> None:
    failed = _run(project, home, "min_auc=0.95")
    with pytest.raises(ConfigError, match="unknown parameter 'min_uac' — did you mean 'min_auc'"):
        resume_run(home, failed.data["run_id"], None, False, ["min_uac=0.5"])


def test_resume_param_on_the_command_line(project: Path, home: Path) -> None:
    failed = _run(project, home, "min_auc=0.95")
    done = run_cli("resume", failed.data["run_id"], "--param", "min_auc=0.5", home=home, cwd=project.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "✓ ingest" in done.stdout and "done before this resume" in done.stdout
