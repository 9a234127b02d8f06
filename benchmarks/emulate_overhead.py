"""`sagepipe emulate --env dev` against `sagepipe run` on the example, same data, same run (target: ratio
<= 1.5x), both with the step cache out of the way; and the moto server's start-up time."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write

REPO = Path(__file__).resolve().parents[1]
ROUNDS = 2


def wall(argv: list[str], home: Path) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=REPO, capture_output=True, env={**os.environ, "SAGEPIPE_HOME": str(home),
                                                            "MLFLOW_TRACKING_URI": "none"})
    return time.perf_counter() - start


def moto_start_s() -> float:
    from pipelines.netutil import free_port, unreachable

    port = free_port()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while unreachable(f"http://127.0.0.1:{port}", timeout=0.2):
        time.sleep(0.05)
    took = time.perf_counter() - start
    proc.terminate()
    proc.wait()
    return took


def main() -> None:
    scratch = Path(tempfile.mkdtemp())
    data = scratch / "data"
    subprocess.run([sys.executable, "model_code/generate_data.py", "--rows", "5000", "--seed", "42", "--out",
                    str(data)], cwd=REPO, check=True, capture_output=True)
    cli = [sys.executable, "-m", "pipelines.cli"]
    params = ["--param", f"input_data={data}", "--param", "min_auc=0"]
    run_s, emulate_s = [], []
    for i in range(ROUNDS):  # fresh homes: nothing cached on either side
        run_s.append(wall([*cli, "run", "configs/fraud-detection.yaml", *params], scratch / f"run-{i}"))
        emulate_s.append(wall([*cli, "emulate", "configs/fraud-detection.yaml", "--env", "dev", *params],
                              scratch / f"emulate-{i}"))
    moto = [moto_start_s() for _ in range(3)]
    ratio = min(emulate_s) / min(run_s)
    result = {"run_wall_s": [round(x, 2) for x in run_s], "emulate_wall_s": [round(x, 2) for x in emulate_s],
              "ratio_best": round(ratio, 2), "moto_start_s": [round(x, 2) for x in moto], "target_ratio": 1.5}
    print("emulate vs run on the example (5,000 rows, untracked, no cache; wall seconds)")
    write("emulate_overhead", result, [("measure", "value", "target"),
                                       ("run, best", f"{min(run_s):.1f}", ""),
                                       ("emulate --env dev, best", f"{min(emulate_s):.1f}", ""),
                                       ("emulate / run", f"{ratio:.2f}x", "<= 1.5x"),
                                       ("moto server start-up, best", f"{min(moto):.2f}", "")])


if __name__ == "__main__":
    main()
