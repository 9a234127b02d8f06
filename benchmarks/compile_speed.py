"""Cold `sagepipe compile` of the example pipeline (target <= 6 s) and `sagepipe validate` (target <= 0.5 s,
and it must not import the SageMaker SDK, boto3, mlflow or moto). Best of several cold processes; the load
average is recorded, as a busy machine inflates both."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write

REPO = Path(__file__).resolve().parents[1]


def wall(argv: list[str], **env: str) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=REPO, check=True, capture_output=True, env={**os.environ, **env})
    return time.perf_counter() - start


def main() -> None:
    cli = [sys.executable, "-m", "pipelines.cli"]
    out = Path(tempfile.mkdtemp()) / "definition.json"
    compile_s = [wall([*cli, "compile", "configs/fraud-detection.yaml", "--env", "dev", "-o", str(out)],
                      SAGEPIPE_COMPILE_CACHE="off") for _ in range(3)]  # cold: the compile cache out of the way
    validate_s = [wall([*cli, "validate", "configs/fraud-detection.yaml", "--env", "dev"]) for _ in range(5)]
    probe = ("import sys; from pipelines.cli import main; main(['validate', 'configs/fraud-detection.yaml']); "
             "print('HEAVY:' + ','.join(m for m in ('sagemaker', 'boto3', 'mlflow', 'moto') if m in sys.modules))")
    shown = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True).stdout
    heavy = [line[len("HEAVY:"):] for line in shown.splitlines() if line.startswith("HEAVY:") and line != "HEAVY:"]
    result = {"compile_wall_s": {"best": round(min(compile_s), 2), "all": [round(x, 2) for x in compile_s]},
              "validate_wall_s": {"best": round(min(validate_s), 3), "all": [round(x, 3) for x in validate_s]},
              "validate_imports_heavy_modules": heavy[-1] if heavy else "",
              "targets": {"compile_wall_s": 6, "validate_wall_s": 0.5},
              "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
    print("Compile and validate (cold processes, wall seconds)")
    write("compile_speed", result, [("measure", "value", "target"),
                                    ("compile, best of 3", f"{min(compile_s):.2f}", "<= 6"),
                                    ("validate, best of 5", f"{min(validate_s):.3f}", "<= 0.5"),
                                    ("validate imports", heavy[-1] if heavy else "nothing heavy", "nothing heavy")])


if __name__ == "__main__":
    main()
