"""Helpers for benchmarks: timing commands and writing results as JSON plus a table."""

from __future__ import annotations

import json
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def timed(argv: list[str], **kwargs: Any) -> float:
    """Wall seconds of one command (it must succeed)."""
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)
    return time.perf_counter() - start


def best_of(runs: int, argv: list[str], **kwargs: Any) -> float:
    return min(timed(argv, **kwargs) for _ in range(runs))


def write(name: str, data: dict[str, Any], rows: list[tuple]) -> None:
    RESULTS.mkdir(exist_ok=True)
    data = {**data, "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2))
    width = max(len(str(r[0])) for r in rows)
    for row in rows:
        print(f"  {str(row[0]):<{width}}  " + "  ".join(f"{c:>12}" for c in row[1:]))
    print(f"  -> {RESULTS / f'{name}.json'}")


def example_model(home: Path, *params: str) -> str:
    """Run the example pipeline in state folder home (`--param` KEY=VALUE each) and approve version 1 of its
    model; the run's id."""
    import os
    import sys

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "SAGEPIPE_HOME": str(home)}
    cli = [sys.executable, "-m", "pipelines.cli"]
    extra = [arg for param in params for arg in ("--param", param)]
    done = subprocess.run([*cli, "run", "configs/fraud-detection.yaml", *extra, "--json"], cwd=repo, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the example pipeline failed, nothing to serve:\n{done.stderr[-3000:]}")
    subprocess.run([*cli, "models", "approve", "fraud-detection", "1"], cwd=repo, env=env, check=True,
                   capture_output=True)
    return json.loads(done.stdout)["run_id"]
