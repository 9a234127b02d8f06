"""Our local endpoint against MLflow's scoring server: same machine, same booster, same load.

MLflow's server (`mlflow models serve --env-manager local`, uvicorn, one worker) serves the LightGBM model
the training step logged, fed encoded features; ours (`sagepipe serve`, 2 gevent workers that slow clients
cannot block) takes raw claim fields and encodes them itself. Both are driven by fastload.py, one epoll thread.
Targets (issue 19): >= 30x MLflow's single-row requests/s at concurrency 8 with p99 <= 5 ms, >= 5x its rows/s
in 1,000-row JSON batches, zero errors. Beside them, the in-process floor: Booster.predict on 1 and 1,000
encoded rows in this process, what no server can beat.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fastload
import loadgen
from common import example_model, write

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "model_code"))
from pipelines.netutil import free_port, wait_for_http  # noqa: E402


def prepare(home: Path) -> dict:
    """Run the pipeline, approve its model; the test rows raw and encoded; the logged MLflow model."""
    run_id = example_model(home)
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
            "encoded": json.loads(encoded.to_json(orient="records")), "model_uri": logged.model_uri,
            "model_dir": home / "models" / "fraud-detection" / "1", "matrix": encoded.to_numpy("float32")}


def floor(model_dir: Path, matrix, rows: int, seconds: float = 2.0) -> float:
    """Median ms of the model's own predict on `rows` encoded rows (as the endpoint calls it), in this process."""
    from model_io import FraudModel

    model = FraudModel(model_dir)
    block = matrix[list(range(rows)) if rows <= len(matrix) else [i % len(matrix) for i in range(rows)]]
    runs: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(runs) < 20:
        start = time.perf_counter()
        for _ in range(10):
            model.predict_matrix(block)
        runs.append((time.perf_counter() - start) / 10)
    runs.sort()
    return round(1000 * runs[len(runs) // 2], 4)


def batches(records: list[dict], size: int) -> list[dict]:
    out = []
    while len(out) < size:
        out += records
    return out[:size]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per load level")
    parser.add_argument("--client", choices=("fastload", "loadgen"), default="fastload",
                        help="load generator: one epoll thread (default), or a thread per connection (http.client)")
    args = parser.parse_args()
    run_load = fastload.run_load if args.client == "fastload" else loadgen.run_load
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
    results: dict = {"seconds_per_level": args.seconds, "client": args.client}
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
        for proc in (ours, theirs):  # quiet CPUs for the floor
            proc.terminate()
            proc.wait(30)
        results["floor_predict_1row_ms"] = floor(data["model_dir"], data["matrix"], 1)
        results["floor_predict_1000rows_ms"] = floor(data["model_dir"], data["matrix"], 1000)
    finally:
        for proc in (ours, theirs):
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(home, ignore_errors=True)
    ours8, theirs8 = results["sagepipe_single_c8"], results["mlflow_single_c8"]
    results["ratio_single_c8_rps"] = round(ours8["requests_per_s"] / max(theirs8["requests_per_s"], 1e-9), 1)
    results["ratio_batch_rows_per_s"] = round(results["sagepipe_batch1000_c4"]["rows_per_s"]
                                              / max(results["mlflow_batch1000_c4"]["rows_per_s"], 1e-9), 1)
    results["sagepipe_single_c8_p99_ms"] = ours8["p99_ms"]
    results["errors"] = sum(v.get("errors", 0) for v in results.values() if isinstance(v, dict))
    # the floor: what the model itself costs; the endpoint's p50 as a multiple of it is what the server adds
    results["ratio_single_c1_p50_to_floor"] = round(results["sagepipe_single_c1"]["p50_ms"]
                                                    / results["floor_predict_1row_ms"], 1)
    results["ratio_batch_p50_to_floor"] = round(results["sagepipe_batch1000_c4"]["p50_ms"]
                                                / results["floor_predict_1000rows_ms"], 1)
    results["load_average_1min"] = round(os.getloadavg()[0], 1)
    results["targets"] = {"ratio_single_c8_rps": 30, "sagepipe_single_c8_p99_ms": 5, "ratio_batch_rows_per_s": 5,
                          "errors": 0}
    table = [("load", "sagepipe req/s", "p50 ms", "p99 ms", "mlflow req/s", "p50 ms", "p99 ms")]
    for level in ("single_c1", "single_c8", "single_c32", "batch1000_c4"):
        a, b = results[f"sagepipe_{level}"], results[f"mlflow_{level}"]
        table.append((level, a["requests_per_s"], a["p50_ms"], a["p99_ms"], b["requests_per_s"], b["p50_ms"],
                      b["p99_ms"]))
    table.append(("ratio single c8 / batch rows", f"{results['ratio_single_c8_rps']}x",
                  f"{results['ratio_batch_rows_per_s']}x", "", "", "", ""))
    table.append(("errors (all levels, both)", results["errors"], "", "", "", "", ""))
    table.append(("floor: predict 1 / 1,000 rows ms", results["floor_predict_1row_ms"],
                  results["floor_predict_1000rows_ms"], "", "", "", ""))
    table.append(("p50 / floor: c1 single, batch", f"{results['ratio_single_c1_p50_to_floor']}x",
                  f"{results['ratio_batch_p50_to_floor']}x", "", "", "", ""))
    print(f"Local endpoint vs MLflow scoring server (same booster, this machine, load average "
          f"{results['load_average_1min']} on {os.cpu_count()} CPUs)")
    write("serving_speed", results, table)


if __name__ == "__main__":
    main()
