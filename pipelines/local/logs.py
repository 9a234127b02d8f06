"""`sagepipe logs RUN STEP [-f]`: a step's log from the run folder, followed until the step ends."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from pipelines.errors import NotFound, did_you_mean
from pipelines.local.state import TERMINAL, list_runs, read_state


def run_folder(root: Path, run_id: str) -> Path:
    """The folder of a recorded run; NotFound naming recent runs when there is none."""
    run_dir = root / "runs" / run_id
    if not (run_dir / "state.json").exists():
        known = [r["run_id"] for r in list_runs(root / "runs")][:5]
        raise NotFound(f"no run '{run_id}' in {root / 'runs'} (recent: {', '.join(known) or 'none'}); "
                       "list them with: sagepipe runs list")
    return run_dir


def show_log(root: Path, run_id: str, step: str, follow: bool, out: TextIO | None = None,
             poll_s: float = 0.2) -> int:
    """Print the step's log; with follow, keep printing what it writes until the step (or its run) ends."""
    out = out or sys.stdout
    run_dir = run_folder(root, run_id)
    steps = read_state(run_dir)["steps"]
    if step not in steps:
        raise NotFound(f"run {run_id} has no step '{step}'{did_you_mean(step, steps)}")
    log = run_dir / step / "log.txt"
    offset = 0
    while True:
        offset = _copy_from(log, offset, out, whole_lines=True)
        data = read_state(run_dir)
        status = data["steps"][step]["status"]
        ended = status in TERMINAL or data.get("status") != "running"
        if not follow or ended:
            offset = _copy_from(log, offset, out)  # what it wrote while the state said it was ending
            break
        time.sleep(poll_s)
    if offset == 0:
        record = data["steps"][step]
        why = record.get("reason") or record.get("error") or ""
        print(f"step '{step}' of run {run_id} wrote no log ({status}{': ' + why if why else ''})", file=sys.stderr)
    return 0


def _copy_from(log: Path, offset: int, out: TextIO, whole_lines: bool = False) -> int:
    """Write the log's bytes from offset on (up to its last newline, with whole_lines); the new offset."""
    try:
        with open(log, "rb") as handle:
            handle.seek(offset)
            chunk = handle.read()
    except FileNotFoundError:
        return offset
    if whole_lines:
        chunk = chunk[:chunk.rfind(b"\n") + 1]
    if not chunk:
        return offset
    out.write(chunk.decode(errors="replace"))
    out.flush()
    return offset + len(chunk)
