"""Data capture's cost to an answer (issue 28): the local endpoint's p99 with `--capture` (100 % of calls) against
without, single-row JSON requests from --clients kept-alive connections (fastload.py), servers started in turn
and measured interleaved --rounds times; the target is p99 with capture within 10 % of without (medians of the
rounds). Also checks that every answered call of the capture rounds was captured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import fastload
from common import example_model, write

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "model_code"))
from pipelines.netutil import free_port, wait_for_http  # noqa: E402


def measure(home: Path, bodies: list[bytes], capture: Path | None, args: argparse.Namespace) -> dict:
    port = free_port()
    extra = ["--capture", str(capture)] if capture else []
    log = open(home / "server.log", "a")
    server = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "serve", "fraud-detection@1", "--port",
                               str(port), "--workers", str(args.workers), *extra], cwd=REPO,
                              env={**os.environ, "SAGEPIPE_HOME": str(home)}, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", server)
        fastload.run_load(port, "/invocations", bodies, args.clients, 1.0)  # warm-up
        return fastload.run_load(port, "/invocations", bodies, args.clients, args.seconds)
    finally:
        server.terminate()
        server.wait(60)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rows", type=int, default=3000, help="rows the example model is trained on")
    args = parser.parse_args()
    import pandas as pd
    from fraud_schema import RAW_FEATURES

    home = Path(tempfile.mkdtemp(prefix="sagepipe-capture-"))
    try:
        run_id = example_model(home, f"rows={args.rows}", "min_auc=0.5")
        test = pd.read_parquet(home / "runs" / run_id / "preprocess" / "processing" / "output" / "test" /
                               "test.parquet")
        bodies = [json.dumps([r]).encode() for r in json.loads(test[RAW_FEATURES].head(200).to_json(orient="records"))]
        off, on, captured = [], [], 0
        for n in range(args.rounds):
            off.append(measure(home, bodies, None, args))
            folder = home / f"capture-{n}"
            on.append(measure(home, bodies, folder, args))
            captured += sum(len(p.read_text().splitlines()) for p in folder.rglob("*.jsonl"))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    p99_off = statistics.median(r["p99_ms"] for r in off)
    p99_on = statistics.median(r["p99_ms"] for r in on)
    results = {"clients": args.clients, "workers": args.workers, "rounds": args.rounds,
               "off": off, "on": on, "p99_ms_off": p99_off, "p99_ms_on": p99_on,
               "p99_ratio": round(p99_on / p99_off, 3), "captured_records": captured,
               "load_average_1min": round(os.getloadavg()[0], 1), "targets": {"p99_ratio": 1.10}}
    print(f"Data capture's cost to an answer ({args.workers} workers, {args.clients} clients, medians of "
          f"{args.rounds} interleaved rounds, load average {results['load_average_1min']})")
    write("serving_capture", results, [
        ("case", "p99 ms", "req/s"),
        ("capture off", p99_off, statistics.median(r["requests_per_s"] for r in off)),
        ("capture on (100 %)", p99_on, statistics.median(r["requests_per_s"] for r in on)),
        ("p99 on / off (target <= 1.10)", results["p99_ratio"], ""),
        ("records captured (incl. warm-up calls)", captured, ""),
    ])


if __name__ == "__main__":
    main()
