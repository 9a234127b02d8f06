"""What MLflow tracking costs a user, tracked (SQLite store) against untracked (MLFLOW_TRACKING_URI=none).

- command start -> first step starts (a 1-step pipeline; once on a brand-new store, then on an existing one);
- a fully cached re-run of a 20-step linear pipeline, and its fraction of the first run;
- how long after the command the background writer has the MLflow record complete (not waited for by users).
Between timed commands the benchmark waits for the previous run's writer, so one run's background work
does not slow the next. Targets (issue 19): first step <= 0.5 s, cached re-run <= 1 s and <= 5 % of a first run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write
from runner_overhead import sagepipe_pipeline

REPEATS = 3
SAGEPIPE = str(Path(sys.executable).parent / "sagepipe")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run(config: Path, env: dict[str, str], *extra: str) -> tuple[float, dict, float]:
    """(wall s, the run's state, seconds from command start to its first step starting)."""
    start_wall, start = time.time(), time.perf_counter()
    done = subprocess.run([SAGEPIPE, "run", str(config), "--json", *extra], env=env, cwd=config.parent,
                          capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    run_id = json.loads(done.stdout)["run_id"]
    state = json.loads((Path(env["SAGEPIPE_HOME"]) / "runs" / run_id / "state.json").read_text())
    first = min(s["started_at"] for s in state["steps"].values() if s.get("started_at"))
    return wall, state, first - start_wall


def record_written_s(home: Path, state: dict, ended: float, limit: float = 300) -> float | None:
    """Seconds from the command's end until the run's MLflow record is complete (None if untracked)."""
    from pipelines.tracking_journal import record_status

    run_dir = home / "runs" / state["run_id"]
    while record_status(run_dir) is not None and time.time() - ended < limit:
        if record_status(run_dir)["state"] == "written":
            return time.time() - ended
        time.sleep(0.1)
    return None if record_status(run_dir) is None else float("nan")


def measure(work: Path, tracked: bool) -> dict:
    home = work / ("tracked" if tracked else "untracked")
    uri = f"sqlite:///{home}/mlflow.db" if tracked else "none"
    env = {**os.environ, "SAGEPIPE_HOME": str(home), "MLFLOW_TRACKING_URI": uri}
    one, twenty = work / f"one-{tracked}", work / f"twenty-{tracked}"
    one.mkdir(), twenty.mkdir()
    config1, config20 = sagepipe_pipeline(one, 1), sagepipe_pipeline(twenty, 20)
    _, state, new_store = run(config1, env, "--no-cache")
    record_written_s(home, state, time.time())
    starts, firsts, cached, written = [], [], [], []
    for _ in range(REPEATS):
        _, state, latency = run(config1, env, "--no-cache")
        record_written_s(home, state, time.time())
        starts.append(latency)
        wall, state, _ = run(config20, env, "--no-cache")
        ended = time.time()
        firsts.append(wall)
        written.append(record_written_s(home, state, ended))
        wall, state, _ = run(config20, env)
        assert all(s["status"] == "cached" for s in state["steps"].values()), state
        cached.append(wall)
        record_written_s(home, state, time.time())
    median = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    return {"first_step_s_new_store": round(new_store, 3), "first_step_s": round(median(starts), 3),
            "first_run_20_s": round(median(firsts), 3), "cached_rerun_20_s": round(median(cached), 3),
            "cached_fraction": round(median(cached) / median(firsts), 3),
            "record_written_after_s": None if not tracked else round(median(written), 2)}


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="sagepipe-tracking-"))
    try:
        on, off = measure(work, True), measure(work, False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratios = {k: round(on[k] / off[k], 2) for k in ("first_step_s", "first_run_20_s", "cached_rerun_20_s") if off[k]}
    result = {"tracked": on, "untracked": off, "tracked_over_untracked": ratios,
              "targets": {"first_step_s": 0.5, "cached_rerun_s": 1.0, "cached_fraction": 0.05,
                          "met": on["first_step_s"] <= 0.5 and on["first_step_s_new_store"] <= 0.5
                          and on["cached_rerun_20_s"] <= 1.0}}
    rows = [("measure", "tracked", "untracked", "on / off"),
            ("command -> first step s (new store)", on["first_step_s_new_store"], off["first_step_s_new_store"], ""),
            ("command -> first step s", on["first_step_s"], off["first_step_s"], f"{ratios.get('first_step_s')}x"),
            ("20-step first run s", on["first_run_20_s"], off["first_run_20_s"], f"{ratios.get('first_run_20_s')}x"),
            ("20-step cached re-run s", on["cached_rerun_20_s"], off["cached_rerun_20_s"],
             f"{ratios.get('cached_rerun_20_s')}x"),
            ("cached / first", on["cached_fraction"], off["cached_fraction"], ""),
            ("MLflow record complete after command s", on["record_written_after_s"], "-", "")]
    print(f"Tracking latency (median of {REPEATS}, wall seconds; SQLite store vs MLFLOW_TRACKING_URI=none)")
    write("tracking_latency", result, rows)


if __name__ == "__main__":
    main()
