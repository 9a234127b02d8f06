"""Nothing lost, nothing stale: paths that stay in the run folder, a cache no run can poison, resume that
re-checks what changed, one runner per run, and state that never says `running` after its runner is gone."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.fsutil import UnsafePath, fresh_dir, hash_path, remove_inside
from pipelines.loader import load_pipeline
from pipelines.local import state as state_module
from pipelines.local.processes import identity, stop_leftover
from pipelines.local.runner import LocalRunner
from pipelines.local.state import RunState, RunUnavailable
from steps.base import stage_input
from tests.conftest import run_cli
from tests.local.test_runner import LINEAR, run, write_pipeline

NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner",
          "--inh-caps=-dac_override,-dac_read_search,-fowner", "--"]


def unprivileged() -> list[str]:
    """A prefix that makes file permissions bind (root ignores them unless it drops its capabilities)."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: permissions cannot be made to bind")
    return NO_DAC


def cli(*args: str, home: Path, cwd: Path, prefix: list[str] = ()) -> subprocess.Popen:
    return subprocess.Popen([*prefix, sys.executable, "-m", "pipelines.cli", *args], cwd=cwd,
                            env={**os.environ, "SAGEPIPE_HOME": str(home)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, seconds: float = 60) -> str:
    deadline = time.time() + seconds
    while not (path.exists() and path.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    return path.read_text()


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] not in "ZX"
    except OSError:
        return False


def cache_entries(home: Path) -> dict[str, dict]:
    return {p.name: json.loads((p / "entry.json").read_text())
            for p in (home / "cache").iterdir() if not p.name.startswith(".")}


def mark_failed(run_dir: Path, step: str) -> RunState:
    """The state a failure of `step` would have left (the steps after it in a chain skipped)."""
    data = json.loads((run_dir / "state.json").read_text())
    data["status"] = "failed"
    names = list(data["steps"])
    for name in names[names.index(step):]:
        data["steps"][name]["status"] = "failed" if name == step else "skipped"
    (run_dir / "state.json").write_text(json.dumps(data))
    return RunState.load(run_dir)


# --- nothing outside the run folder is removed or replaced ----------------------------------------------
def test_removals_refuse_paths_that_lead_outside(tmp_path: Path) -> None:
    run_dir, outside = tmp_path / "run", tmp_path / "outside"
    (outside / "data").mkdir(parents=True)
    (outside / "data" / "keep.txt").write_text("precious")
    (run_dir / "step").mkdir(parents=True)
    (run_dir / "step" / "processing").symlink_to(outside)
    (run_dir / "step" / "x").symlink_to(outside)
    for call in (lambda: remove_inside(run_dir / "step" / "processing" / "data", run_dir),
                 lambda: fresh_dir(run_dir / "step" / "processing" / "data", run_dir),
                 lambda: stage_input(tmp_path, run_dir / "step" / "processing" / "data", run_dir),
                 lambda: remove_inside(run_dir / "step" / ".." / ".." / "outside", run_dir)):
        with pytest.raises(UnsafePath, match="outside|plain name"):
            call()
    remove_inside(run_dir / "step" / "x", run_dir)  # a link is removed itself, never followed
    assert not (run_dir / "step" / "x").exists() and (outside / "data" / "keep.txt").read_text() == "precious"


PLANTS = {  # (step, planted link relative to the run folder, files in the folder it points to)
    "step folder": ("b", "b", ["processing/output/data/keep.txt", "processing/input/data/keep.txt"]),
    "processing folder": ("b", "b/processing", ["output/data/keep.txt", "input/data/keep.txt"]),
    "output folder": ("b", "b/processing/output", ["data/keep.txt"]),
    "input mount": ("b", "b/processing/input/data", ["keep.txt"]),
    "training output": ("c", "c/output", ["data/keep.txt", "model.tar.gz"]),
}


@pytest.mark.parametrize("use_cache", [True, False], ids=["cache-restore", "run"])
@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_planted_links_never_lead_a_resume_outside(tmp_path: Path, home: Path, plant: str, use_cache: bool) -> None:
    step, link, files = PLANTS[plant]
    run_dir = home / "runs" / run(write_pipeline(tmp_path, LINEAR), home).data["run_id"]
    outside = tmp_path / "outside"
    for file in files:
        (outside / file).parent.mkdir(parents=True, exist_ok=True)
        (outside / file).write_text("precious")
    planted = run_dir / link
    shutil.rmtree(planted) if planted.is_dir() and not planted.is_symlink() else planted.unlink(missing_ok=True)
    planted.symlink_to(outside)
    state = LocalRunner(load_pipeline(tmp_path / "pipeline.yaml"), home, use_cache=use_cache).resume(
        mark_failed(run_dir, step))
    assert {f: (outside / f).read_text() for f in files} == {f: "precious" for f in files}
    if plant != "input mount":  # a planted input mount is only a link: it is replaced, the step runs
        assert state.status(step) == "failed" and "refusing to touch" in state.step(step)["error"]


# --- the cache: copies, verified on every hit ---------------------------------------------------------
TAMPER = """import os, pathlib
root = pathlib.Path(os.environ["SAGEPIPE_PROCESSING_DIR"])
with open(root / "input" / "data" / "out.txt", "a") as mount:  # its own copy: reaches nothing of a's
    mount.write("through the mount\\n")
with open(root.parent.parent / "a" / "processing" / "output" / "data" / "out.txt", "a") as upstream:  # a's output
    upstream.write("tampered\\n")
(root / "output" / "data" / "out.txt").write_text("b\\n")
"""
TAMPERING = """
name: tampering
steps:
  - {name: a, type: processing, code: scripts/emit.py, arguments: [--text, one], outputs: [data]}
  - {name: b, type: processing, code: scripts/tamper.py, inputs: {data: "${steps.a.outputs.data}"}, outputs: [data]}
  - name: c
    type: processing
    code: scripts/emit.py
    inputs: {data: "${steps.a.outputs.data}", after: "${steps.b.outputs.data}"}
    arguments: [--text, three]
    outputs: [data]
"""


def test_a_step_writing_into_its_input_poisons_neither_the_cache_nor_downstream_keys(tmp_path: Path,
                                                                                     home: Path) -> None:
    path = write_pipeline(tmp_path, TAMPERING)
    (tmp_path / "scripts" / "tamper.py").write_text(TAMPER)
    first = run(path, home)
    assert Path(first.step("c")["outputs"]["data"], "out.txt").read_text() == "one\ntampered\nthree\n"
    second = run(path, home)  # a and b reused; c's input is a's own output again, so c runs again
    assert [second.status(n) for n in "abc"] == ["cached", "cached", "succeeded"]
    assert Path(second.step("a")["outputs"]["data"], "out.txt").read_text() == "one\n"
    assert Path(second.step("c")["outputs"]["data"], "out.txt").read_text() == "one\nthree\n"
    for key, entry in cache_entries(home).items():
        for name, digest in entry["output_digests"].items():
            stored = home / "cache" / key / "outputs" / name
            assert hash_path(stored) == digest
            assert all(f.stat().st_mode & 0o222 == 0 for f in [stored, *stored.rglob("*")] if f.is_file())
    restored = Path(second.step("a")["outputs"]["data"], "out.txt")
    entry_file = home / "cache" / second.step("a")["cache_key"] / "outputs" / "data" / "out.txt"
    assert restored.stat().st_ino != entry_file.stat().st_ino


@pytest.mark.parametrize("damage", ["altered", "deleted", "unreadable entry.json", "entry.json a list"])
def test_a_damaged_cache_entry_is_a_miss_with_one_warning(tmp_path: Path, home: Path, damage: str) -> None:
    path = write_pipeline(tmp_path, LINEAR)
    key = run(path, home).step("a")["cache_key"]
    entry = home / "cache" / key
    stored = entry / "outputs" / "data" / "out.txt"
    stored.chmod(0o644)
    (entry / "entry.json").chmod(0o644)
    if damage == "altered":
        stored.write_text("evil\n")
    elif damage == "deleted":
        stored.unlink()
    elif damage == "unreadable entry.json":
        (entry / "entry.json").write_bytes(b"\xff\xfe\x00garbage")
    else:
        (entry / "entry.json").write_text("[]")
    warnings: list[str] = []
    state = LocalRunner(load_pipeline(path), home, warn=warnings.append).run()
    assert state.data["status"] == "succeeded"
    assert [state.status(n) for n in "abc"] == ["succeeded", "cached", "cached"]
    assert Path(state.step("a")["outputs"]["data"], "out.txt").read_text() == "one\n"
    assert len(warnings) == 1 and f"cache entry {key[:12]}" in warnings[0]
    assert hash_path(entry / "outputs" / "data") == json.loads((entry / "entry.json").read_text())["output_digests"]["data"]


# --- resume re-checks content ------------------------------------------------------------------------
CHECK = """import os, pathlib, sys
root = pathlib.Path(os.environ["SAGEPIPE_PROCESSING_DIR"])
text = (root / "input" / "data" / "out.txt").read_text()
if "bad" in text:
    sys.exit("bad rows in the input")
(root / "output" / "data" / "out.txt").write_text(text)
"""
STAGED = """
name: staged
steps:
  - {name: ingest, type: processing, code: scripts/emit.py, inputs: {data: data}, arguments: [--text, staged],
     outputs: [data]}
  - {name: check, type: processing, code: scripts/check.py, inputs: {data: "${steps.ingest.outputs.data}"},
     outputs: [data]}
"""


def test_resume_after_a_data_failure_reads_the_fixed_input(tmp_path: Path, home: Path) -> None:
    path = write_pipeline(tmp_path, STAGED)
    (tmp_path / "scripts" / "check.py").write_text(CHECK)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "out.txt").write_text("bad\n")
    failed = run(path, home)
    assert [failed.status(n) for n in ("ingest", "check")] == ["succeeded", "failed"]
    (tmp_path / "data" / "out.txt").write_text("good\n")
    warnings: list[str] = []
    state = LocalRunner(load_pipeline(path), home, warn=warnings.append).resume(
        RunState.load(home / "runs" / failed.data["run_id"]))
    assert state.data["status"] == "succeeded", state.step("check").get("error")
    assert Path(state.step("check")["outputs"]["data"], "out.txt").read_text() == "good\nstaged\n"
    assert warnings == ["step 'ingest' runs again: the content of input data changed since it ran"]


def test_resume_reruns_a_step_whose_output_changed_and_what_it_feeds(tmp_path: Path, home: Path) -> None:
    path = write_pipeline(tmp_path, LINEAR)
    first = run(path, home)
    a_out = Path(first.step("a")["outputs"]["data"], "out.txt")
    with open(a_out, "a") as handle:  # in place, the same inode: a stat check alone would be fooled by state.json
        handle.write("evil\n")
    state = LocalRunner(load_pipeline(path), home).resume(mark_failed(home / "runs" / first.data["run_id"], "c"))
    assert [state.status(n) for n in "abc"] == ["cached", "cached", "cached"]
    assert a_out.read_text() == "one\n"
    assert Path(state.step("b")["outputs"]["data"], "out.txt").read_text() == "one\ntwo\n"


# --- one runner per run, and no process left from an earlier one -------------------------------------
SLOW_ONCE = """import os, pathlib, time
marker = pathlib.Path({marker!r})
if not marker.exists():
    marker.write_text(str(os.getpid()))
    time.sleep(120)
(pathlib.Path(os.environ["SAGEPIPE_PROCESSING_DIR"]) / "output" / "data" / "done.txt").write_text("ok")
"""


def slow_pipeline(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "child.pid"
    path = write_pipeline(tmp_path, "name: slow\nsteps:\n  - {name: wait, type: processing, code: scripts/slow.py, "
                                    "outputs: [data]}\n")
    (tmp_path / "scripts" / "slow.py").write_text(SLOW_ONCE.format(marker=str(marker)))
    return path, marker


def only_run(home: Path) -> str:
    deadline = time.time() + 30
    while time.time() < deadline:
        runs = [p for p in (home / "runs").glob("*") if (p / "state.json").exists()] if (home / "runs").exists() else []
        if runs:
            return runs[0].name
        time.sleep(0.05)
    raise AssertionError("no run started")


def test_resume_of_a_running_run_names_the_process_holding_it(tmp_path: Path, home: Path) -> None:
    path, marker = slow_pipeline(tmp_path)
    runner = cli("run", str(path), home=home, cwd=tmp_path)
    try:
        wait_for(marker)
        second = run_cli("resume", only_run(home), home=home, cwd=tmp_path)
        assert second.returncode == 4  # run unavailable
        assert f"in use by process {runner.pid}" in second.stderr and "Traceback" not in second.stderr
        assert alive(int(marker.read_text()))  # the second runner started nothing beside it
    finally:
        runner.send_signal(signal.SIGTERM)
        runner.communicate(timeout=30)


def test_resume_after_kill_9_ends_the_orphaned_step_first(tmp_path: Path, home: Path) -> None:
    path, marker = slow_pipeline(tmp_path)
    runner = cli("run", str(path), home=home, cwd=tmp_path)
    child = int(wait_for(marker))
    run_id = only_run(home)
    runner.kill()
    runner.communicate(timeout=30)
    assert alive(child)  # its own session: SIGKILL of the runner does not reach it
    assert RunState.load(home / "runs" / run_id).data["status"] == "interrupted"  # nobody holds the lock
    assert json.loads(run_cli("runs", "list", "--json", home=home).stdout)[0]["status"] == "interrupted"
    resumed = run_cli("resume", run_id, home=home, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"stopped process group {child}" in resumed.stderr
    assert not alive(child)
    assert RunState.load(home / "runs" / run_id).step("wait")["processes"] == []


def test_a_reused_pid_is_never_signalled(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        me = identity(proc.pid)
        assert me is not None
        assert stop_leftover({"pid": proc.pid, "start": me["start"] - 1}) is False  # another process's pid
        assert alive(proc.pid)
        assert stop_leftover(me) is True
        assert not alive(proc.pid)
    finally:
        proc.kill()
        proc.wait()


# --- state that cannot be written --------------------------------------------------------------------
def test_a_read_only_state_folder_is_one_line_and_an_exit_code(tmp_path: Path, home: Path) -> None:
    prefix = unprivileged()
    path = write_pipeline(tmp_path, LINEAR)
    home.mkdir()
    home.chmod(0o555)
    try:
        proc = cli("run", str(path), home=home, cwd=tmp_path, prefix=prefix)
        out, err = proc.communicate(timeout=60)
    finally:
        home.chmod(0o755)
    assert proc.returncode == 4, out + err  # run unavailable
    assert "Traceback" not in err
    assert "error: cannot write the run state in" in err and "Permission denied" in err


READ_ONLY_RUN = """import os, pathlib
run_dir = pathlib.Path(os.environ["SAGEPIPE_HOME"]) / "runs" / os.environ["SAGEPIPE_RUN_ID"]
run_dir.chmod(0o555)
(pathlib.Path(os.environ["SAGEPIPE_PROCESSING_DIR"]) / "output" / "data" / "x.txt").write_text("x")
"""


def test_a_state_folder_turning_read_only_mid_run_ends_the_run_failed(tmp_path: Path, home: Path) -> None:
    prefix = unprivileged()
    path = write_pipeline(tmp_path, LINEAR.replace("code: scripts/emit.py\n    arguments: [--text, \"${params.text}\"]",
                                                   "code: scripts/lock_out.py"))
    (tmp_path / "scripts" / "lock_out.py").write_text(READ_ONLY_RUN)
    proc = cli("run", str(path), "--json", home=home, cwd=tmp_path, prefix=prefix)
    out, err = proc.communicate(timeout=120)
    run_dir = home / "runs" / only_run(home)
    run_dir.chmod(0o755)
    assert proc.returncode == 1, out + err
    assert "Traceback" not in err and "cannot write" in err
    data = json.loads((run_dir / "state.json").read_text())  # written in place: the folder refused new files
    assert data["status"] == "failed" and "Permission denied" in data["error"]
    assert [s["status"] for s in data["steps"].values()] == ["interrupted", "skipped", "skipped"]


def test_a_full_disk_mid_run_stops_the_run_and_leaves_it_failed(tmp_path: Path, home: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_pipeline(tmp_path, LINEAR)
    real, calls = state_module.atomic_write_json, []

    def filling(target: Path, data: object) -> None:
        calls.append(target)
        if len(calls) > 6:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(target, data)

    monkeypatch.setattr(state_module, "atomic_write_json", filling)
    warnings: list[str] = []
    state = LocalRunner(load_pipeline(path), home, warn=warnings.append).run()
    on_disk = json.loads(state.path.read_text())
    assert on_disk["status"] == "failed" and "No space left on device" in on_disk["error"]
    assert "running" not in {s["status"] for s in on_disk["steps"].values()}
    assert any("No space left on device" in w for w in warnings)
    calls.extend([path] * 100)  # full from the first write: the run cannot start
    with pytest.raises(RunUnavailable, match="No space left on device"):
        LocalRunner(load_pipeline(path), home).run()
