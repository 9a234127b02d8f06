"""The live view and the terminal around a run (issue 18): width, colour, a spinner while waiting, a log tail,
"cached from run X", `sagepipe logs`, what comes next, `runs show` / `runs list`."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.cli.runs import run_pipeline
from pipelines.loader import load_pipeline
from pipelines.local.progress import LineReporter, make_reporter
from pipelines.local.runner import LocalRunner
from tests.conftest import FIXTURES, run_cli

GATED = FIXTURES / "valid" / "gated.yaml"
COLOUR = re.compile(r"\x1b\[[0-9;]*3[0-7]m")  # a foreground colour in an SGR sequence


class Terminal(io.StringIO):
    """What the live view writes, as a terminal would receive it."""

    def isatty(self) -> bool:
        return True


def last_frame(text: str) -> str:
    """The last drawing of the live view, escape sequences removed."""
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    return plain.split("\r")[-1]


@pytest.fixture(autouse=True)
def untracked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "none")
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")


def test_live_view_uses_the_terminal_width_and_marks_a_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    screen = Terminal()
    view = make_reporter(["prepare", "train"], screen)
    view("prepare", "failed", {"duration_s": 1.5, "error": "the data holds a bad row " + "x" * 300})
    view.close()
    (line,) = [line for line in last_frame(screen.getvalue()).splitlines() if "prepare" in line]
    assert len(line.rstrip()) == 160  # the whole width, not 70 characters of detail
    assert line.rstrip().endswith("…") and "the data holds a bad row xxxxxxxxxx" in line


def test_live_view_colours_by_status_unless_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    for no_color, expect_colour in ((None, True), ("1", False)):
        if no_color:
            monkeypatch.setenv("NO_COLOR", no_color)
        screen = Terminal()
        view = make_reporter(["a"], screen)
        view("a", "failed", {"duration_s": 0.1, "error": "boom"})
        view.close()
        assert bool(COLOUR.search(screen.getvalue())) is expect_colour, screen.getvalue()
        assert "✗ a" in last_frame(screen.getvalue())


def test_a_spinner_while_the_tracking_store_opens_then_the_steps() -> None:
    screen = Terminal()
    view = make_reporter(["a"], screen)
    view.waiting("opening the tracking store sqlite:///x.db …")
    time.sleep(0.3)
    assert "opening the tracking store sqlite:///x.db" in last_frame(screen.getvalue())
    view("a", "running", {})
    view("a", "succeeded", {"duration_s": 0.2})
    view.close()
    assert "opening the tracking store" not in last_frame(screen.getvalue())
    assert "✓ a" in last_frame(screen.getvalue())


def test_tail_shows_the_last_lines_of_the_running_step(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    log.write_text("[sagepipe] $ python train.py\nepoch 1\nepoch 2\nepoch 3\n")
    screen = Terminal()
    view = make_reporter(["train"], screen, tail=2)
    view("train", "running", {"log": str(log)})
    time.sleep(0.3)
    frame = last_frame(screen.getvalue())
    view.close()
    assert "│ epoch 2" in frame and "│ epoch 3" in frame
    assert "epoch 1" not in frame and "[sagepipe]" not in frame


def test_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    view = make_reporter(["prepare"], out)
    assert isinstance(view, LineReporter)
    view.waiting("opening the tracking store sqlite:///x.db …")
    view("prepare", "running", {})
    view("prepare", "failed", {"duration_s": 1.0, "error": "e" * 120})
    view.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "\x1b" not in out.getvalue()
    assert lines[2].endswith("e" * 120)  # nothing cut


def _project(tmp_path: Path, script: str = "emit.py", arguments: str = "[--text, one]") -> Path:
    (tmp_path / "pyproject.toml").touch()
    (tmp_path / "scripts").mkdir(exist_ok=True)
    shutil.copy(FIXTURES / "scripts" / script, tmp_path / "scripts" / script)
    path = tmp_path / "pipeline.yaml"
    path.write_text(f"name: tiny\nsteps:\n  - {{name: a, type: processing, code: scripts/{script}, "
                    f"arguments: {arguments}, outputs: [data]}}\n")
    return path


def test_a_cache_hit_says_which_run_it_came_from(tmp_path: Path, home: Path) -> None:
    path = _project(tmp_path)
    first = LocalRunner(load_pipeline(path), home).run()
    out = io.StringIO()
    second = LocalRunner(load_pipeline(path), home, report=make_reporter(["a"], out)).run()
    assert second.status("a") == "cached"
    assert second.step("a")["cached_from"] == first.data["run_id"]
    assert f"cached from run {first.data['run_id']}" in out.getvalue()
    shown = run_cli("runs", "show", second.data["run_id"], home=home)
    assert f"cached from run {first.data['run_id']}" in shown.stdout


def test_after_a_run_the_next_commands(home: Path, capsys: pytest.CaptureFixture) -> None:
    spec = load_pipeline(GATED)
    assert run_pipeline(spec, home, True, None, False) == 0
    out = capsys.readouterr().out
    run_id = json.loads(run_cli("runs", "list", "--json", home=home).stdout)[0]["run_id"]
    assert "next:" in out
    assert "sagepipe models approve gated-models 1" in out
    assert f"sagepipe report {run_id}" in out


def test_runs_show_in_pipeline_order_and_runs_list_counts_skips(home: Path) -> None:
    state = LocalRunner(load_pipeline(GATED), home).run()
    assert state.data["status"] == "succeeded"
    shown = run_cli("runs", "show", state.data["run_id"], home=home).stdout
    names = [line.split()[0] for line in shown.splitlines() if line.startswith("  ")]
    assert names == ["prepare", "train", "evaluate", "gate", "register", "too-low"]
    listing = run_cli("runs", "list", home=home).stdout
    assert "5 done, 1 skipped" in listing and "5/6" not in listing


def test_logs_prints_a_step_log_and_names_a_typo(tmp_path: Path, home: Path) -> None:
    state = LocalRunner(load_pipeline(_project(tmp_path)), home).run()
    run_id = state.data["run_id"]
    shown = run_cli("logs", run_id, "a", home=home)
    assert shown.returncode == 0 and "wrote " in shown.stdout
    typo = run_cli("logs", run_id, "b", home=home)
    assert typo.returncode == 3 and "has no step 'b'" in typo.stderr and "Traceback" not in typo.stderr
    missing = run_cli("logs", "no-such-run", "a", home=home)
    assert missing.returncode == 3 and run_id in missing.stderr


def test_logs_follow_until_the_step_ends(tmp_path: Path, home: Path) -> None:
    path = _project(tmp_path, "check.py", "[--lines, '6', --sleep, '0.3']")
    runner = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", str(path)], cwd=tmp_path,
                              env={**os.environ, "SAGEPIPE_HOME": str(home)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        deadline = time.time() + 60
        while not list((home / "runs").glob("*/a/log.txt")) and time.time() < deadline:
            time.sleep(0.05)
        run_id = next((home / "runs").glob("*/a/log.txt")).parent.parent.name
        followed = run_cli("logs", run_id, "a", "-f", home=home, timeout=60)
    finally:
        runner.communicate(timeout=60)
    assert followed.returncode == 0, followed.stderr
    lines = followed.stdout.splitlines()
    assert [line for line in lines if line.startswith("progress line")] == [f"progress line {i}" for i in
                                                                          range(1, 7)]
    assert lines[-1].startswith("checked ")  # it ran until the step ended


def test_a_dumb_terminal_gets_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "dumb")
    assert isinstance(make_reporter(["a"], Terminal()), LineReporter)
