"""Runner overhead: linear pipelines of N trivial steps (N = 1, 5, 20), sagepipe vs Metaflow vs bare python3.

Each step reads the previous step's small output and writes its own. Per-step overhead is
(T20 - T1) / 19 and start-up is T1. Targets: per step <= 0.15 s, start-up <= 0.6 s. sagepipe runs
untracked (MLFLOW_TRACKING_URI=none) and tracked (a SQLite store, created before timing); tracked per
step <= 0.1 s and <= 1.5x untracked (issue 19). After each tracked run the benchmark waits for its
background MLflow writer, so that one run's writer does not slow the next.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from common import best_of, timed, write

SIZES = (1, 5, 20)
REPEATS = 3
STEP = """import os, pathlib
root = pathlib.Path(os.environ.get("SAGEPIPE_PROCESSING_DIR", "/opt/ml/processing"))
prev = root / "input" / "prev" / "value.txt"
n = int(prev.read_text()) if prev.exists() else 0
(root / "output" / "value" / "value.txt").write_text(str(n + 1))
"""


def sagepipe_pipeline(folder: Path, n: int) -> Path:
    (folder / "pyproject.toml").touch()
    (folder / "step.py").write_text(STEP)
    lines = [f"name: linear-{n}", "steps:"]
    for i in range(n):
        inputs = f", inputs: {{prev: '${{steps.s{i - 1}.outputs.value}}'}}" if i else ""
        lines.append(f"  - {{name: s{i}, type: processing, code: step.py, outputs: [value]{inputs}}}")
    path = folder / f"linear-{n}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def metaflow_flow(folder: Path, n: int) -> Path:
    """The same linear chain as a Metaflow flow: start, s1 .. s{n-1}, end; each adds one to a value."""
    names = ["start"] + [f"s{i}" for i in range(1, n)] + ["end"]
    lines = ["from metaflow import FlowSpec, step", "", f"class Linear{n}(FlowSpec):"]
    for i, name in enumerate(names[:-1]):
        body = "self.value = 0" if i == 0 else "self.value = self.value + 1"
        lines += ["    @step", f"    def {name}(self):", f"        {body}", f"        self.next(self.{names[i + 1]})", ""]
    lines += ["    @step", "    def end(self):", "        pass", "", "", "if __name__ == '__main__':",
              f"    Linear{n}()"]
    path = folder / f"linear_{n}.py"
    path.write_text("\n".join(lines) + "\n")
    return path


def bare(folder: Path, n: int) -> list[str]:
    script = folder / "bare.sh"
    script.write_text("".join(f"{sys.executable} -c 'pass'\n" for _ in range(n)))
    return ["bash", str(script)]


def tracked_best_of(runs: int, argv: list[str], home: Path, **kwargs: object) -> float:
    """best_of, waiting after each run until its background MLflow writer is done."""
    import time

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from pipelines.tracking_journal import unwritten, writer_busy

    best = float("inf")
    for _ in range(runs):
        best = min(best, timed(argv, **kwargs))
        deadline = time.time() + 300
        while time.time() < deadline and any(writer_busy(r.parent) or unwritten(r.parent)
                                             for r in (home / "runs").glob("*/mlflow")):
            time.sleep(0.1)
    return best


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="sagepipe-bench-"))
    env = {**os.environ, "SAGEPIPE_HOME": str(work / "state"), "METAFLOW_HOME": str(work / "mf"),
           "USERNAME": "bench", "METAFLOW_DEFAULT_DATASTORE": "local", "METAFLOW_DEFAULT_METADATA": "local",
           "MLFLOW_TRACKING_URI": "none"}
    tracked_env = {**env, "SAGEPIPE_HOME": str(work / "tracked"), "MLFLOW_TRACKING_URI": f"sqlite:///{work}/mlflow.db"}
    sagepipe = str(Path(sys.executable).parent / "sagepipe")
    times: dict[str, dict[int, float]] = {"sagepipe": {}, "sagepipe_tracked": {}, "metaflow": {}, "bare_python3": {}}
    for n in SIZES:
        folder = work / f"n{n}"
        folder.mkdir()
        config = sagepipe_pipeline(folder, n)
        times["sagepipe"][n] = best_of(REPEATS, [sagepipe, "run", str(config), "--no-cache"], env=env, cwd=folder)
        if n == SIZES[0]:  # the store's one-time schema set-up is not what a run costs
            tracked_best_of(1, [sagepipe, "run", str(config), "--no-cache"], work / "tracked", env=tracked_env,
                            cwd=folder)
        times["sagepipe_tracked"][n] = tracked_best_of(REPEATS, [sagepipe, "run", str(config), "--no-cache"],
                                                       work / "tracked", env=tracked_env, cwd=folder)
        flow = metaflow_flow(folder, n)
        try:
            times["metaflow"][n] = best_of(REPEATS, [sys.executable, str(flow), "--quiet", "run"], env=env, cwd=folder)
        except Exception as exc:  # the peer may be missing; say so in the results
            times["metaflow"][n] = float("nan")
            print(f"metaflow failed for N={n}: {getattr(exc, 'stderr', exc)!s:.300}")
        times["bare_python3"][n] = best_of(REPEATS, bare(folder, n), env=env)
    result: dict = {}
    rows = [("tool", "start-up T1 s", "per step s", "T20 s")]
    for tool, t in times.items():
        per_step = (t[20] - t[1]) / 19
        result[tool] = {"T": {str(k): round(v, 4) for k, v in t.items()}, "startup_s": round(t[1], 4),
                        "per_step_s": round(per_step, 4)}
        rows.append((tool, f"{t[1]:.3f}", f"{per_step:.3f}", f"{t[20]:.3f}"))
    ours, peer = result["sagepipe"], result["metaflow"]
    result["ratios_vs_metaflow"] = {"per_step": round(peer["per_step_s"] / ours["per_step_s"], 2),
                                    "startup": round(peer["startup_s"] / ours["startup_s"], 2)}
    result["targets"] = {"per_step_s": 0.15, "startup_s": 0.6,
                         "met": ours["per_step_s"] <= 0.15 and ours["startup_s"] <= 0.6}
    rows.append(("metaflow / sagepipe", f"{result['ratios_vs_metaflow']['startup']}x",
                 f"{result['ratios_vs_metaflow']['per_step']}x", ""))
    tracked = result["sagepipe_tracked"]
    result["tracked_over_untracked"] = {"per_step": round(tracked["per_step_s"] / ours["per_step_s"], 2),
                                        "startup": round(tracked["startup_s"] / ours["startup_s"], 2)}
    result["targets"]["tracked_per_step_s"] = 0.1
    result["targets"]["tracked_met"] = (tracked["per_step_s"] <= 0.1
                                        and result["tracked_over_untracked"]["per_step"] <= 1.5)
    rows.append(("tracked / untracked", f"{result['tracked_over_untracked']['startup']}x",
                 f"{result['tracked_over_untracked']['per_step']}x", ""))
    print("Runner overhead (best of 3, wall seconds; Metaflow local runtime as the peer)")
    write("runner_overhead", result, rows)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
