"""PyTorch DDP training throughput on this machine: samples/s with 1 and 2 torchrun processes
(same data, same global batch size, same epochs), and the validation AUC each reaches."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write

from pipelines.netutil import free_port

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="sagepipe-ddp-"))
    env = {**os.environ, "SAGEPIPE_HOME": str(work / "state")}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", "configs/fraud-detection-torch.yaml",
                           "--param", "rows=50000", "--json"], cwd=REPO, env=env, capture_output=True, text=True,
                          check=True)
    channels = work / "state" / "runs" / json.loads(done.stdout)["run_id"] / "preprocess" / "processing" / "output"
    results: dict = {"rows": 50000, "global_batch_size": 256, "epochs": 4}
    try:
        for processes in (1, 2):
            out = work / f"p{processes}"
            for folder in ("model", "output", "checkpoints"):
                (out / folder).mkdir(parents=True)
            run_env = {**env, "SM_CHANNEL_TRAIN": str(channels / "train"),
                       "SM_CHANNEL_VALIDATION": str(channels / "validation"),
                       "SM_CHANNEL_TRANSFORM": str(channels / "transform"), "SM_MODEL_DIR": str(out / "model"),
                       "SM_OUTPUT_DATA_DIR": str(out / "output"), "SAGEPIPE_CHECKPOINT_DIR": str(out / "checkpoints")}
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node",
                            str(processes), "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
                            str(REPO / "model_code" / "train_torch.py"), "--epochs", "4", "--batch_size", "256"],
                           env=run_env, check=True, capture_output=True)
            metadata = json.loads((out / "model" / "metadata.json").read_text())
            results[f"processes_{processes}"] = {"samples_per_s": metadata["samples_per_s"],
                                                 "validation_auc": round(metadata["validation_auc"], 4),
                                                 "wall_s": round(time.perf_counter() - started, 1)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    one, two = results["processes_1"], results["processes_2"]
    results["speedup_2_over_1"] = round(two["samples_per_s"] / one["samples_per_s"], 2)
    print("PyTorch DDP training throughput (CPU, gloo, this 2-core machine)")
    write("ddp_throughput", results, [("processes", "samples/s", "val AUC", "wall s"),
                                      ("1", one["samples_per_s"], one["validation_auc"], one["wall_s"]),
                                      ("2", two["samples_per_s"], two["validation_auc"], two["wall_s"]),
                                      ("2 / 1", f"{results['speedup_2_over_1']}x", "", "")])


if __name__ == "__main__":
    main()
