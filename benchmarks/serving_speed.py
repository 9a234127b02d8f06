"""Our local endpoint against MLflow's scoring server: same machine, same booster, same load.

MLflow's server (`mlflow models serve --env-manager local`, uvicorn, one worker) serves the LightGBM model
the training step logged, fed encoded features; ours takes raw claim fields and encodes them itself.
Targets: >= 20x MLflow's single-row requests/s at concurrency 8 with p99 < 20 ms, >= 4x its rows/s in
1,000-row JSON batches, zero errors.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import write
from loadgen import run_load

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "model_code"))
from pipelines.netutil import free_port, wait_for_http  # noqa: E402


def prepare(home: Path) -> dict:
    """Run the pipeline, approve its model; the test rows raw and encoded; the logged MLflow model."""
    env = {**os.environ, "SAGEPIPE_HOME": str(home)}
    cli = [sys.executable, "-m", "pipelines.cli"]
    done = subprocess.run([*cli, "run", "configs/fraud-detection.yaml", "--json"], cwd=REPO, env=env,
                          capture_output=True, text=True, check=True)
    run_id = json.loads(done.stdout)["run_id"]
    subprocess.run([*cli, "models", "approve", "fraud-detection", "1"], cwd=REPO, env=env, check=True,
                   capture_output=True)
    import features
    import pandas as pd
    from mlflow.tracking import MlflowClient
    from fraud_schema import RAW_FEATURES

    test = pd.read_parquet(home / "runs" / run_id / "preprocess" / "processing" / "output" / "test" / "test.parquet")
    transform = features.load(home / "models" / "fraud-detection" / "1")
    encoded = features.apply(transform, test)
    client = MlflowClient(f"sqlite:///{home}/mlflow.db")
    experiment = client.get_experiment_by_name("fraud-detection")
    (logged,) = client.search_logged_models([experiment.experiment_id])
    return {"raw": json.loads(test[RAW_FEATURES].to_json(orient="records")),
            "encoded": json.loads(encoded.to_json(orient="records")), "model_uri": logged.model_uri}


def batches(records: list[dict], size: int) -> list[dict]:
    out = []
    while len(out) < size:
        out += records
    return out[:size]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per load level")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="sagepipe-serving-"))
    data = prepare(home)
    env = {**os.environ, "SAGEPIPE_HOME": str(home), "MLFLOW_TRACKING_URI": f"sqlite:///{home}/mlflow.db",
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    ours_port, mlflow_port = free_port(), free_port()
    ours = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "serve", "fraud-detection@1", "--port",
                             str(ours_port), "--workers", "2"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    theirs = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", data["model_uri"],
                               "--env-manager", "local", "--host", "127.0.0.1", "--port", str(mlflow_port)],
                              cwd=home, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results: dict = {"seconds_per_level": args.seconds}
    try:
        wait_for_http(f"http://127.0.0.1:{ours_port}/ping", ours)
        wait_for_http(f"http://127.0.0.1:{mlflow_port}/ping", theirs)
        servers = {
            "sagepipe": (ours_port, "/invocations", lambda rows: rows),
            "mlflow": (mlflow_port, "/invocations", lambda rows: {"dataframe_records": rows}),
        }
        for name, (port, path, wrap) in servers.items():
            rows = data["raw"] if name == "sagepipe" else data["encoded"]
            single = [json.dumps(wrap([r])).encode() for r in rows[:200]]
            batch = [json.dumps(wrap(batches(rows, 1000))).encode()]
            for concurrency in (1, 8, 32):
                results[f"{name}_single_c{concurrency}"] = run_load(port, path, single, concurrency, args.seconds)
            stats = run_load(port, path, batch, 4, args.seconds)
            stats["rows_per_s"] = round(stats["requests_per_s"] * 1000, 1)
            results[f"{name}_batch1000_c4"] = stats
    finally:
        for proc in (ours, theirs):
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(home, ignore_errors=True)
    ours8, theirs8 = results["sagepipe_single_c8"], results["mlflow_single_c8"]
    results["ratio_single_c8_rps"] = round(ours8["requests_per_s"] / max(theirs8["requests_per_s"], 1e-9), 1)
    results["ratio_batch_rows_per_s"] = round(results["sagepipe_batch1000_c4"]["rows_per_s"]
                                              / max(results["mlflow_batch1000_c4"]["rows_per_s"], 1e-9), 1)
    results["targets"] = {"ratio_single_c8_rps": 20, "sagepipe_single_c8_p99_ms": 20, "ratio_batch_rows_per_s": 4,
                          "errors": 0}
    table = [("load", "sagepipe req/s", "p50 ms", "p99 ms", "mlflow req/s", "p50 ms", "p99 ms")]
    for level in ("single_c1", "single_c8", "single_c32", "batch1000_c4"):
        a, b = results[f"sagepipe_{level}"], results[f"mlflow_{level}"]
        table.append((level, a["requests_per_s"], a["p50_ms"], a["p99_ms"], b["requests_per_s"], b["p50_ms"],
                      b["p99_ms"]))
    table.append(("ratio single c8 / batch rows", f"{results['ratio_single_c8_rps']}x",
                  f"{results['ratio_batch_rows_per_s']}x", "", "", "", ""))
    errors = sum(v.get("errors", 0) for v in results.values() if isinstance(v, dict))
    table.append(("errors (all levels, both)", errors, "", "", "", "", ""))
    print("Local endpoint vs MLflow scoring server (same booster, this machine)")
    write("serving_speed", results, table)


if __name__ == "__main__":
    main()
