"""Batch transform at scale: wall time and peak RSS of `sagepipe transform` over N generated rows
(target: 5,000,000 rows under 2 GB peak RSS)."""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "model_code"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    args = parser.parse_args()
    from generate_data import claim_records

    work = Path(tempfile.mkdtemp(prefix="sagepipe-transform-"))
    env = {**os.environ, "SAGEPIPE_HOME": str(work / "state")}
    cli = [sys.executable, "-m", "pipelines.cli"]
    try:
        subprocess.run([*cli, "run", "configs/fraud-detection.yaml"], cwd=REPO, env=env, check=True,
                       capture_output=True)
        source = work / "claims.csv"
        for start in range(0, args.rows, 500_000):
            chunk = claim_records(min(500_000, args.rows - start), seed=start + 1)
            chunk["policy_id"] += start
            chunk.to_csv(source, mode="a", header=start == 0, index=False)
        started = time.perf_counter()
        subprocess.run([*cli, "transform", "fraud-detection@1", str(source), str(work / "scored.csv")], cwd=REPO,
                       env=env, check=True, capture_output=True)
        wall = time.perf_counter() - started
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        scored = sum(1 for _ in open(work / "scored.csv")) - 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"rows": args.rows, "scored_rows": scored, "wall_s": round(wall, 1), "rows_per_s": round(args.rows / wall),
              "peak_rss_mb": round(peak_mb), "note": "peak RSS is the largest child process of this script",
              "targets": {"peak_rss_mb": 2048}}
    print("Batch transform at scale")
    write("transform_memory", result, [("measure", "value", "target"), ("rows", f"{args.rows:,}", ""),
                                       ("wall s", f"{wall:.1f}", ""), ("rows/s", f"{args.rows / wall:,.0f}", ""),
                                       ("peak RSS MB", f"{peak_mb:.0f}", "< 2048")])


if __name__ == "__main__":
    main()
