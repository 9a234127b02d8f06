"""Chaos: runs killed at random moments (SIGKILL or SIGTERM), each resumed to the end, then checked.

A small generated pipeline (processing steps in a diamond, a training step, a step that scores it; the
processing script appends its output line by line, so two writers in one folder show) runs
once cleanly for reference digests. Then N runs share one state folder: each is killed at a random moment
of its run (once its folder exists), sometimes its first resume is killed too, and a last resume finishes it. Every finished run's
outputs must equal the clean run's digests, no cache entry may hold files that differ from its recorded
digest, and no step process may outlive the runs. Odd runs use --no-cache (steps really run and store
entries); even runs reuse the cache (kills land in restores).

Half the runs name the state folder by a relative SAGEPIPE_HOME (their resumes alternate forms). Then the
torch and HPO example configs are killed and resumed the same way (benchmarks/chaos_examples.py; the HPO run
while its tuning step runs), each checked against a clean run of its own.

    python benchmarks/chaos.py [--runs 6] [--seed 1] [--example-runs 2] [--skip-examples]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from chaos_examples import EXAMPLES, example_chaos
from common import write

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.fsutil import hash_path  # noqa: E402

WRITER = """import os, pathlib, sys, time
root = pathlib.Path(os.environ["SAGEPIPE_PROCESSING_DIR"])
source = root / "input" / "data" / "out.txt"
lines = source.read_text().splitlines() if source.exists() else []
out = root / "output" / "data" / "out.txt"
for i in range(6):  # written progressively, the file reopened each time, as a long job's writer does
    with open(out, "a") as handle:
        handle.write(f"{sys.argv[1]} {i} after {len(lines)}\\n")
    time.sleep(0.1)
"""
PIPELINE = """
name: chaos
steps:
  - {name: ingest, type: processing, code: scripts/writer.py, arguments: [raw], outputs: [data]}
  - name: left
    type: processing
    code: scripts/writer.py
    inputs: {data: "${steps.ingest.outputs.data}"}
    arguments: [left]
    outputs: [data]
  - name: right
    type: processing
    code: scripts/writer.py
    inputs: {data: "${steps.ingest.outputs.data}"}
    arguments: [right]
    outputs: [data]
  - name: train
    type: training
    code: trainer/train.py
    inputs: {train: "${steps.left.outputs.data}"}
    hyperparameters: {epochs: 3}
  - name: score
    type: processing
    code: scripts/writer.py
    inputs: {data: "${steps.right.outputs.data}", model: "${steps.train.outputs.model}"}
    arguments: [scored]
    outputs: [data]
"""


def project(folder: Path) -> Path:
    (folder / "scripts").mkdir(parents=True)
    (folder / "trainer").mkdir()
    (folder / "pyproject.toml").touch()
    (folder / "scripts" / "writer.py").write_text(WRITER)
    shutil.copy(REPO / "tests" / "fixtures" / "scripts" / "train.py", folder / "trainer" / "train.py")
    (folder / "pipeline.yaml").write_text(PIPELINE)
    return folder / "pipeline.yaml"


def cli(args: list[str], home: Path, cwd: Path, relative: bool = False) -> subprocess.Popen:
    """sagepipe ARGS in cwd, the state folder named relative to cwd or absolute."""
    named = os.path.relpath(home, cwd) if relative else str(home)
    env = {**os.environ, "SAGEPIPE_HOME": named, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def newest_run(home: Path, known: set[str]) -> str | None:
    runs = home / "runs"
    fresh = [p.name for p in runs.iterdir() if p.name not in known] if runs.is_dir() else []
    return max(fresh) if fresh else None


def digests(state: dict) -> dict[str, dict[str, str]]:
    """Each step's outputs as they are on disk now (not as the state says)."""
    return {name: {out: hash_path(Path(path)) for out, path in step.get("outputs", {}).items()}
            for name, step in state["steps"].items()}


def clean_run(path: Path, home: Path, known: set[str]) -> tuple[str, float]:
    """A run nobody disturbs: its id and the seconds from the moment its folder exists to its end."""
    proc = cli(["run", str(path), "--json"], home, path.parent)
    while newest_run(home, known) is None and proc.poll() is None:
        time.sleep(0.01)
    started = time.perf_counter()
    out, err = proc.communicate(timeout=600)
    if not out or json.loads(out)["status"] != "succeeded":
        raise SystemExit(f"the clean run failed:\n{err}")
    known.add(json.loads(out)["run_id"])
    return json.loads(out)["run_id"], time.perf_counter() - started


def killed(proc: subprocess.Popen, rng: random.Random, window_s: float, tally: dict[str, Any],
           started: Callable[[], bool] = lambda: True) -> bool:
    """Once started() (or at once), send SIGKILL or SIGTERM at a random moment of most of window_s; False when the
    process ended first."""
    while not started() and proc.poll() is None:
        time.sleep(0.01)
    at = rng.uniform(0.0, 0.8 * window_s)
    try:
        proc.wait(at)
        tally["late"].append(round(at, 2))
        return False
    except subprocess.TimeoutExpired:
        sig = rng.choice([signal.SIGKILL, signal.SIGTERM])
        proc.send_signal(sig)
        proc.communicate(timeout=60)
        tally[sig.name] += 1
        tally["at"].append(round(at, 2))
        return True


def damaged_entries(cache: Path) -> tuple[int, int]:
    """(entries, entries whose files differ from their recorded digests or cannot be read)."""
    entries = bad = 0
    for folder in cache.iterdir() if cache.is_dir() else []:
        if folder.name.startswith("."):
            continue
        entries += 1
        try:
            entry = json.loads((folder / "entry.json").read_text())
            ok = all(hash_path(folder / "outputs" / name) == digest for name, digest in entry["output_digests"].items())
        except (OSError, ValueError, KeyError):
            ok = False
        bad += not ok
    return entries, bad


def leftovers(home: Path) -> int:
    """Live processes whose working folder is inside the chaos state folder (a step nobody ended)."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cwd = os.readlink(f"/proc/{entry.name}/cwd")
            except OSError:
                continue
            count += cwd.startswith(str(home) + os.sep)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--example-runs", type=int, default=2, help="killed runs of each example pipeline")
    parser.add_argument("--skip-examples", action="store_true", help="only the small generated pipeline")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="sagepipe-chaos-"))
    try:
        path = project(work / "project")
        clean: set[str] = set()
        (run_id, clean_s), (_, cached_s) = clean_run(path, work / "clean", clean), clean_run(path, work / "clean", clean)
        reference = digests(json.loads((work / "clean" / "runs" / run_id / "state.json").read_text()))

        home, known = work / "chaos", set()
        tally: dict = {"SIGKILL": 0, "SIGTERM": 0, "at": [], "late": []}
        counts = {"runs": args.runs, "finished_before_kill": 0, "resumes": 0, "resumes_killed": 0,
                  "succeeded": 0, "outputs_match_clean": 0, "outputs_differ": 0, "leftover_processes_stopped": 0,
                  "relative_home_runs": 0}
        failures = []
        for number in range(args.runs):
            extra, window_s = (["--no-cache"], clean_s) if number % 2 == 0 else ([], cached_s)
            relative = (number // 2) % 2 == 1  # each cache mode with each form of SAGEPIPE_HOME
            counts["relative_home_runs"] += relative
            proc = cli(["run", str(path), *extra], home, path.parent, relative)
            if not killed(proc, rng, window_s, tally, lambda: newest_run(home, known) is not None):
                counts["finished_before_kill"] += 1
            run = newest_run(home, known)
            if run is None:
                raise SystemExit("a run left no folder")
            known.add(run)
            for attempt in range(3):
                resume = cli(["resume", run], home, path.parent, relative=(attempt % 2 == 1) != relative)
                counts["resumes"] += 1
                if attempt == 0 and rng.random() < 0.3 and killed(resume, rng, window_s, tally):
                    counts["resumes_killed"] += 1
                    continue
                _, err = resume.communicate(timeout=600)
                counts["leftover_processes_stopped"] += err.count("stopped process group")
                break
            state = json.loads((home / "runs" / run / "state.json").read_text())
            if state["status"] != "succeeded":
                failures.append({"run": run, "status": state["status"], "stderr": err[-2000:]})
                continue
            counts["succeeded"] += 1
            same = digests(state) == reference
            counts["outputs_match_clean" if same else "outputs_differ"] += 1
            if not same:
                failures.append({"run": run, "differs": digests(state), "expected": reference})
        for name in [] if args.skip_examples else list(EXAMPLES):
            example = example_chaos(name, work, rng, args.example_runs)
            counts.update({f"{name}_{k}": v for k, v in example["counts"].items()})
            counts["outputs_differ"] += example["counts"]["runs"] - example["counts"]["same_as_clean"]
            failures += example["failures"]
        entries, bad = damaged_entries(home / "cache")
        counts.update(kills=tally["SIGKILL"] + tally["SIGTERM"], kills_SIGKILL=tally["SIGKILL"],
                      kills_SIGTERM=tally["SIGTERM"],
                      cache_entries=entries, cache_entries_damaged=bad, leftover_processes=leftovers(home),
                      clean_run_s=round(clean_s, 2), cached_run_s=round(cached_s, 2))
        write("chaos", {**counts, "seed": args.seed, "kill_moments_s": tally["at"],
                        "ended_before_s": tally["late"], "failures": failures},
              [("measure", "count"), *[(k, v) for k, v in counts.items()]])
        if failures or bad or counts["leftover_processes"]:
            raise SystemExit(f"chaos found {len(failures)} bad runs, {bad} damaged cache entries, "
                             f"{counts['leftover_processes']} leftover processes")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
