"""Chaos on the example pipelines: the torch (DDP) and HPO configs, killed and resumed, against a clean run.

Each example runs once undisturbed, then `--runs` times killed (SIGKILL or SIGTERM) and resumed to the end, with
the state folder given as a relative or an absolute SAGEPIPE_HOME (the resume may use the other form). The HPO
run is killed while its tuning step runs (once a trial has finished), so the resume continues a search: its
best trial, its hyperparameters and the model it hands on must equal the clean run's. Every resumed run must
score the same evaluation metrics as the clean one.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = {"torch": REPO / "configs" / "fraud-detection-torch.yaml",
            "hpo": REPO / "configs" / "fraud-detection-hpo.yaml"}


def cli(args: list[str], home: Path, relative: bool) -> subprocess.Popen:
    """sagepipe ARGS from the repository root, with the state folder named relative to it or absolute."""
    named = os.path.relpath(home, REPO) if relative else str(home)
    env = {**os.environ, "SAGEPIPE_HOME": named, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def outcome(home: Path, run_id: str) -> dict[str, Any]:
    """What a finished run must share with the clean run: its evaluation metrics and, for a tuning step, the best
    trial, its hyperparameters and the digest of the model it handed on."""
    from pipelines.fsutil import hash_path

    state = json.loads((home / "runs" / run_id / "state.json").read_text())
    found: dict[str, Any] = {"status": state["status"]}
    for name, step in state["steps"].items():
        if name == "evaluate":
            found["metrics"] = step.get("metrics")
        trials = Path(step.get("outputs", {}).get("trials", "/nonexistent")) / "trials.json"
        if trials.is_file():
            best = step["metrics"]["tuning_metrics"]["best_trial"]["value"]
            records = {t["number"]: t for t in json.loads(trials.read_text())}
            found["best_trial"] = {"number": best, "hyperparameters": records[best]["hyperparameters"],
                                   "objective": records[best]["objective"],
                                   "model": hash_path(Path(step["outputs"]["model"]))}
    return found


def _run_id(home: Path, known: set[str], proc: subprocess.Popen) -> str | None:
    while True:
        ended = proc.poll() is not None
        fresh = [p.name for p in (home / "runs").iterdir() if p.name not in known] if (home / "runs").is_dir() else []
        if fresh or ended:
            return max(fresh) if fresh else None
        time.sleep(0.05)


def _kill_when(proc: subprocess.Popen, ready: Callable[[], bool], rng: random.Random, window_s: float) -> str | None:
    """Once ready(), SIGKILL or SIGTERM at a random moment within window_s; the signal's name, or None."""
    while not ready() and proc.poll() is None:
        time.sleep(0.05)
    try:
        proc.wait(rng.uniform(0.0, window_s))
        return None
    except subprocess.TimeoutExpired:
        sig = rng.choice([signal.SIGKILL, signal.SIGTERM])
        proc.send_signal(sig)
        proc.communicate(timeout=120)
        return sig.name


def example_chaos(name: str, work: Path, rng: random.Random, runs: int) -> dict[str, Any]:
    """The clean run and `runs` killed-and-resumed runs of one example; counts and any differences."""
    config = str(EXAMPLES[name])
    clean_home, home = work / f"{name}-clean", work / f"{name}-chaos"
    started = time.perf_counter()
    proc = cli(["run", config, "--no-cache", "--json"], clean_home, relative=False)
    out, err = proc.communicate(timeout=1800)
    clean_s = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"the clean run of {name} failed:\n{err[-3000:]}")
    reference = outcome(clean_home, json.loads(out)["run_id"])
    counts: dict[str, Any] = {"runs": runs, "kills": 0, "resumes": 0, "succeeded": 0, "same_as_clean": 0,
                              "relative_home_runs": 0, "clean_run_s": round(clean_s, 1)}
    failures: list[dict[str, Any]] = []
    known: set[str] = set()
    for number in range(runs):
        relative = number % 2 == 0
        counts["relative_home_runs"] += relative
        proc = cli(["run", config, "--no-cache"], home, relative)
        run_id = _run_id(home, known, proc)
        if run_id is None:
            raise SystemExit(f"a run of {name} left no folder: {proc.communicate()[1][-2000:]}")
        known.add(run_id)
        trials = home / "runs" / run_id / "tune" / "trials"
        ready = (lambda: any(trials.glob("*/trial.json"))) if name == "hpo" else (lambda: True)
        window = 0.3 * clean_s if name == "hpo" else 0.8 * clean_s
        if _kill_when(proc, ready, rng, window):
            counts["kills"] += 1
        for attempt in range(3):
            resume = cli(["resume", run_id], home, relative=(attempt % 2 == 1) != relative)
            counts["resumes"] += 1
            _, err = resume.communicate(timeout=1800)
            if resume.returncode in (0, 1):
                break
        found = outcome(home, run_id)
        counts["succeeded"] += found["status"] == "succeeded"
        same = found == reference
        counts["same_as_clean"] += same
        if not same:
            failures.append({"example": name, "run": run_id, "found": found, "expected": reference,
                             "stderr": err[-2000:]})
    return {"counts": counts, "failures": failures, "reference": reference}
