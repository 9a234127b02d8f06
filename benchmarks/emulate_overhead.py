"""`sagepipe emulate --env dev` against `sagepipe run` on the example, same data, same machine (target: median
ratio <= 1.5x), both with the step cache out of the way; and the moto server's start-up time.

Four emulate cases: cold (a fresh state folder: the compile included, SDK import and all); warm compile (the
same config emulated again: its compile is reused from the state's compile cache, every job still runs); after
a code edit (a script in model_code/ changed since the cached compile: the entry is brought up to date without
the SDK, as compile_cache.py describes); and again (the cold one's state folder emulated a second time: the
emulated AWS kept its objects, so every job step is a cache hit; target: <= 15 % of the first). Everything runs
in a copy of the example project, which the edit case changes. The requirements check's answers (per machine) are
asked once before the rounds, and that first check is timed on its own.

Rounds are interleaved (run, emulate, run, emulate, ...) so that a change in the machine's load hits both sides;
each round's emulate/run ratio is taken and the median reported. CPU seconds (the command and every process it
waited for) are shown next to wall seconds: on a shared machine they say more than the wall clock does.
Usage: python benchmarks/emulate_overhead.py [--rounds N]   (default 3, at least 2)
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write

REPO = Path(__file__).resolve().parents[1]


def wall_and_cpu(argv: list[str], home: Path, project: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and its descendants) of one command, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=project, capture_output=True, text=True,
                          env={**os.environ, "SAGEPIPE_HOME": str(home), "MLFLOW_TRACKING_URI": "none"})
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv[3:5])} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return took, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def moto_start_s() -> float:
    from pipelines.netutil import free_port, unreachable

    port = free_port()
    start = time.perf_counter()
    state = Path(tempfile.mkdtemp())  # emulate's own server (moto with the state folder), empty
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.emulate.aws_state", "--port", str(port), "--state",
                             str(state)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    while unreachable(f"http://127.0.0.1:{port}", timeout=0.2):
        time.sleep(0.05)
    took = time.perf_counter() - start
    proc.kill()
    proc.wait()
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = max(2, parser.parse_args().rounds)
    scratch = Path(tempfile.mkdtemp())
    data = scratch / "data"
    subprocess.run([sys.executable, "model_code/generate_data.py", "--rows", "5000", "--seed", "42", "--out",
                    str(data)], cwd=REPO, check=True, capture_output=True)
    project = scratch / "project"
    for part in ("configs", "model_code"):
        shutil.copytree(REPO / part, project / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", project)
    cli = [sys.executable, "-m", "pipelines.cli"]
    params = ["--param", f"input_data={data}", "--param", "min_auc=0"]
    # each job's requirements are checked against its image (pip resolving for the image's Python); the answers are
    # kept per machine, as pip's cache is: asked once here, in a cache of this benchmark's own, and timed
    os.environ["SAGEPIPE_REQUIREMENTS_CACHE"] = str(scratch / "verdicts")
    first_check, _ = wall_and_cpu([*cli, "validate", "configs/fraud-detection.yaml", "--env", "dev"],
                                  scratch / "check", project)
    run, emulate, warm, edited, again = [], [], [], [], []
    emulate_argv = [*cli, "emulate", "configs/fraud-detection.yaml", "--env", "dev", *params]
    for i in range(rounds):  # fresh homes: nothing cached on either side
        run_argv = [*cli, "run", "configs/fraud-detection.yaml", *params]
        run.append(wall_and_cpu(run_argv, scratch / f"run-{i}", project))
        emulate.append(wall_and_cpu(emulate_argv, scratch / f"emulate-{i}", project))
        again.append(wall_and_cpu(emulate_argv, scratch / f"emulate-{i}", project))
        for case, times in (("warm", warm), ("edited", edited)):  # the compile cache only, no job cache
            shutil.copytree(scratch / f"emulate-{i}" / "compiled", scratch / f"{case}-{i}" / "compiled")
            if case == "edited":
                with open(project / "model_code" / "evaluate.py", "a") as script:
                    script.write(f"# edit {i}\n")
            times.append(wall_and_cpu(emulate_argv, scratch / f"{case}-{i}", project))
        print(f"  round {i + 1}: run {run[-1][0]:.1f} s ({run[-1][1]:.1f} s CPU), emulate {emulate[-1][0]:.1f} s "
              f"({emulate[-1][1]:.1f} s CPU), with the compile cached {warm[-1][0]:.1f} s, after a code edit "
              f"{edited[-1][0]:.1f} s, again (every job cached) {again[-1][0]:.1f} s", flush=True)
    ratios = [e[0] / r[0] for r, e in zip(run, emulate)]
    warm_ratios = [e[0] / r[0] for r, e in zip(run, warm)]
    edited_ratios = [e[0] / r[0] for r, e in zip(run, edited)]
    cpu_ratios = [e[1] / r[1] for r, e in zip(run, emulate)]
    again_shares = [a[0] / e[0] for e, a in zip(emulate, again)]
    moto = [moto_start_s() for _ in range(3)]
    median = statistics.median
    result = {"rounds": rounds, "run_wall_s": [round(w, 2) for w, _ in run],
              "emulate_wall_s": [round(w, 2) for w, _ in emulate], "run_cpu_s": [round(c, 2) for _, c in run],
              "emulate_cpu_s": [round(c, 2) for _, c in emulate], "ratios": [round(x, 3) for x in ratios],
              "ratio_median": round(median(ratios), 2), "cpu_ratio_median": round(median(cpu_ratios), 2),
              "warm_compile_wall_s": [round(w, 2) for w, _ in warm], "warm_compile_ratios": [round(x, 3) for x in warm_ratios],
              "warm_compile_ratio_median": round(median(warm_ratios), 2),
              "code_edit_wall_s": [round(w, 2) for w, _ in edited],
              "code_edit_ratios": [round(x, 3) for x in edited_ratios],
              "code_edit_ratio_median": round(median(edited_ratios), 2),
              "again_wall_s": [round(w, 2) for w, _ in again], "again_shares": [round(x, 3) for x in again_shares],
              "again_share_median": round(median(again_shares), 3), "again_target_share": 0.15,
              "requirements_first_check_s": round(first_check, 2),
              "moto_start_s": [round(x, 2) for x in moto], "target_ratio": 1.5,
              "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
    print(f"emulate vs run on the example (5,000 rows, untracked, no cache; {rounds} interleaved rounds)")
    write("emulate_overhead", result, [("measure", "median", "target"),
                                       ("run, wall s", f"{median(w for w, _ in run):.1f}", ""),
                                       ("emulate --env dev, wall s", f"{median(w for w, _ in emulate):.1f}", ""),
                                       ("emulate / run, wall", f"{median(ratios):.2f}x", "<= 1.5x"),
                                       ("emulate, compile cached, wall s", f"{median(w for w, _ in warm):.1f}", ""),
                                       ("emulate (compile cached) / run, wall", f"{median(warm_ratios):.2f}x",
                                        "<= 1.5x"),
                                       ("emulate after a code edit, wall s", f"{median(w for w, _ in edited):.1f}", ""),
                                       ("emulate (code edited) / run, wall", f"{median(edited_ratios):.2f}x",
                                        "<= 1.5x"),
                                       ("emulate again, every job cached, wall s",
                                        f"{median(w for w, _ in again):.1f}", ""),
                                       ("emulate again / first emulate, wall", f"{median(again_shares):.2f}",
                                        "<= 0.15"),
                                       ("emulate / run, CPU", f"{median(cpu_ratios):.2f}x", ""),
                                       ("moto server start-up, s", f"{median(moto):.2f}", ""),
                                       ("requirements check, first on a machine, s", f"{first_check:.1f}", "")])


if __name__ == "__main__":
    main()
