"""The MLflow record of a run, kept first as a journal in the run's own folder.

The runner and the step processes only append JSON lines here (no MLflow import, no store to open);
`python -m pipelines.tracking_writer RUN_DIR` replays them into MLflow in the background. What the
writer has applied is recorded as byte offsets in `progress.json`, so a writer that was killed, or a
store that was locked or down, leaves the rest pending for the next writer, and none is applied twice.

    <run dir>/mlflow/events.jsonl        the runner's events (start, step_start, step_end, end, file)
    <run dir>/mlflow/steps/<key>.jsonl   what step <key>'s own code logged (params, metrics, artifacts)
    <run dir>/mlflow/steps/<key>.run_id  the nested run's id, written by the writer once created
    <run dir>/mlflow/progress.json       the writer's progress: offsets, run ids, last error
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pipelines.fsutil import atomic_write_json, held_by_another

FOLDER = "mlflow"
EVENTS = "events.jsonl"
PROGRESS = "progress.json"
WRITER_LOCK = "writer.lock"


def journal_dir(run_dir: Path) -> Path:
    return run_dir / FOLDER


def append_line(path: Path, record: dict[str, Any]) -> None:
    """One JSON line, appended in one write (readers never see half a line followed by more)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(record, default=str, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read_progress(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((journal_dir(run_dir) / PROGRESS).read_text())
    except (OSError, ValueError):
        return {}


def write_progress(run_dir: Path, progress: dict[str, Any]) -> None:
    atomic_write_json(journal_dir(run_dir) / PROGRESS, progress)


def unwritten(run_dir: Path, progress: dict[str, Any] | None = None) -> bool:
    """Whether the journal holds lines the writer has not applied yet (file sizes against offsets)."""
    folder = journal_dir(run_dir)
    progress = read_progress(run_dir) if progress is None else progress
    if _size(folder / EVENTS) != progress.get("events", 0):
        return True
    done = progress.get("steps", {})
    return any(_size(path) != done.get(path.stem, 0) for path in (folder / "steps").glob("*.jsonl"))


def writer_busy(run_dir: Path) -> bool:
    """Whether a writer holds this run's journal now."""
    return held_by_another(journal_dir(run_dir) / WRITER_LOCK)


def record_status(run_dir: Path) -> dict[str, Any] | None:
    """The state of a run's MLflow record: None when the run is untracked, else
    {"state": "written" | "writing" | "pending", "uri", "parent_run_id", "error"}."""
    folder = journal_dir(run_dir)
    if not (folder / EVENTS).exists():
        return None
    progress = read_progress(run_dir)
    pending = unwritten(run_dir, progress)
    state = "written" if not pending else "writing" if writer_busy(run_dir) else "pending"
    return {"state": state, "uri": progress.get("uri") or _first_uri(folder / EVENTS),
            "parent_run_id": progress.get("parent"), "error": progress.get("error") if pending else None}


def spawn_writer(run_dir: Path, *, follow: bool = False, wait_s: float = 0) -> bool:
    """Start a writer for run_dir that outlives this process (its own session, output to writer.log); False
    when the run folder cannot be written (the record stays pending for a later command)."""
    folder = journal_dir(run_dir)
    argv = [sys.executable, "-m", "pipelines.tracking_writer", str(run_dir), "--wait", str(wait_s)]
    if follow:
        argv.append("--follow")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "writer.log", "ab") as log:
            subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=root,
                             start_new_session=True, close_fds=True)
    except OSError:
        return False
    return True


def complete_pending(state_root: Path, limit: int = 20) -> list[str]:
    """Start a writer for each run (newest first, at most limit) whose record is pending and that no writer
    holds: a record a killed writer or an unreachable store left behind is written by the next command."""
    started: list[str] = []
    runs = state_root / "runs"
    try:
        folders = sorted((p.parent.parent for p in runs.glob(f"*/{FOLDER}/{EVENTS}")), reverse=True)
    except OSError:
        return started
    for run_dir in folders:
        if len(started) >= limit:
            break
        if unwritten(run_dir) and not writer_busy(run_dir) and spawn_writer(run_dir):
            started.append(run_dir.name)
    return started


def wait_for_run_id(run_file: str | None, timeout: float = 600.0) -> str | None:
    """The nested run id the writer writes to run_file, waited for while a writer is at work on the run."""
    if not run_file:
        return None
    path = Path(run_file)
    run_dir = path.parent.parent.parent
    deadline = time.time() + timeout
    grace = time.time() + 5  # a writer just spawned may not hold its lock yet
    while time.time() < deadline:
        if path.is_file() and path.read_text().strip():
            return path.read_text().strip()
        if time.time() > grace and not writer_busy(run_dir):
            return None
        time.sleep(0.1)
    return None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _first_uri(events: Path) -> str | None:
    try:
        with open(events) as handle:
            return json.loads(handle.readline()).get("uri")
    except (OSError, ValueError):
        return None
