"""PyTorch DDP training: the torch pipeline end to end (2 processes), 1 vs 2 processes, and resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port, run_cli

pytestmark = pytest.mark.slow
CONFIG = "configs/fraud-detection-torch.yaml"


@pytest.fixture(scope="module")
def torch_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("torch") / "state"
    done = run_cli("run", CONFIG, "--param", "rows=4000", "--json", home=home)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    run_dir = home / "runs" / summary["run_id"]
    return {"home": home, "summary": summary, "run_dir": run_dir,
            "channels": run_dir / "preprocess" / "processing" / "output"}


def _train(channels: Path, work: Path, processes: int, *args: str, wait: bool = True):
    for folder in ("model", "output", "checkpoints"):
        (work / folder).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SM_CHANNEL_TRAIN": str(channels / "train"), "SM_CHANNEL_VALIDATION": str(channels / "validation"),
           "SM_CHANNEL_TRANSFORM": str(channels / "transform"), "SM_MODEL_DIR": str(work / "model"),
           "SM_OUTPUT_DATA_DIR": str(work / "output"), "SAGEPIPE_CHECKPOINT_DIR": str(work / "checkpoints")}
    env.pop("MLFLOW_TRACKING_URI", None)
    argv = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(processes),
            "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(REPO / "model_code" / "train_torch.py"),
            *args]
    if not wait:
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads((work / "model" / "metadata.json").read_text()), done.stdout + done.stderr


def test_the_torch_pipeline_trains_with_two_processes_and_registers(torch_run: dict,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    summary = torch_run["summary"]
    statuses = {s["name"]: s["status"] for s in summary["steps"]}
    assert statuses["register"] == "succeeded" and statuses["auc-too-low"] == "skipped"
    assert summary["metrics"]["evaluate"]["binary_classification_metrics"]["auc"]["value"] >= 0.75
    model_dir = torch_run["run_dir"] / "train" / "model"
    metadata = json.loads((model_dir / "metadata.json").read_text())
    assert metadata["model_type"] == "torch" and metadata["processes"] == 2 and metadata["epochs_run"] == 12
    assert {"model.pt", "model_config.json", "feature_transform.json"} <= {p.name for p in model_dir.iterdir()}
    import torch

    state = torch.load(model_dir / "model.pt", map_location="cpu", weights_only=True)  # a plain state dict
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    log = (torch_run["run_dir"] / "train" / "log.txt").read_text()
    assert log.count("trained 12 epochs on 2 process(es)") == 1  # rank 0 alone logs and saves
    listed = json.loads(run_cli("models", "list", "fraud-detection-torch", "--json", home=torch_run["home"]).stdout)
    assert [p["status"] for p in listed] == ["PendingManualApproval"]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{torch_run['home']}/mlflow.db")
    experiment = client.get_experiment_by_name("fraud-detection-torch")
    (logged,) = client.search_logged_models([experiment.experiment_id])
    from mlflow.models import get_model_info

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{torch_run['home']}/mlflow.db")
    info = get_model_info(logged.model_uri)
    assert "pytorch" in info.flavors and info.signature is not None


def test_two_processes_match_one_process_at_the_same_global_batch(torch_run: dict, tmp_path: Path) -> None:
    one, _ = _train(torch_run["channels"], tmp_path / "one", 1, "--epochs", "8", "--batch_size", "256")
    two, _ = _train(torch_run["channels"], tmp_path / "two", 2, "--epochs", "8", "--batch_size", "256")
    assert (one["processes"], two["processes"]) == (1, 2)
    assert abs(one["validation_auc"] - two["validation_auc"]) <= 0.01, (one["validation_auc"], two["validation_auc"])
    again, _ = _train(torch_run["channels"], tmp_path / "again", 1, "--epochs", "8", "--batch_size", "256")
    assert again["validation_auc"] == one["validation_auc"]  # seeded: the same run gives the same model


def test_two_hosts_rendezvous_through_the_sagemaker_launcher(torch_run: dict, tmp_path: Path) -> None:
    """What a 2-instance SageMaker job runs: the launcher on each host, torchrun with one node per host."""
    channels, port = torch_run["channels"], free_port()
    hosts = ["127.0.0.1", "algo-2"]  # the first host is the rendezvous address
    procs = []
    for host in hosts:
        work = tmp_path / host
        for folder in ("model", "output", "checkpoints"):
            (work / folder).mkdir(parents=True)
        env = {**os.environ, "SM_HOSTS": json.dumps(hosts), "SM_CURRENT_HOST": host,
               "SM_CHANNEL_TRAIN": str(channels / "train"), "SM_CHANNEL_VALIDATION": str(channels / "validation"),
               "SM_CHANNEL_TRANSFORM": str(channels / "transform"), "SM_MODEL_DIR": str(work / "model"),
               "SM_OUTPUT_DATA_DIR": str(work / "output"), "SAGEPIPE_CHECKPOINT_DIR": str(work / "checkpoints")}
        env.pop("MLFLOW_TRACKING_URI", None)
        procs.append(subprocess.Popen(
            [sys.executable, str(REPO / "pipelines" / "sagemaker" / "torchrun_launcher.py"),
             "--sagepipe_entry_point", str(REPO / "model_code" / "train_torch.py"), "--sagepipe_processes_per_host", "1",
             "--sagepipe_master_port", str(port), "--epochs", "8", "--batch_size", "256"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert "--nnodes 2 --node_rank 1 --nproc_per_node 1 --master_addr 127.0.0.1" in outputs[1]
    metadata = json.loads((tmp_path / hosts[0] / "model" / "metadata.json").read_text())
    assert metadata["processes"] == 2 and metadata["epochs_run"] == 8
    assert not any((tmp_path / hosts[1] / "model").iterdir())  # only the first host's rank 0 saves
    single, _ = _train(channels, tmp_path / "single-host", 2, "--epochs", "8", "--batch_size", "256")
    assert abs(metadata["validation_auc"] - single["validation_auc"]) <= 0.01


def test_the_launcher_rejects_a_host_outside_the_cluster() -> None:
    from pipelines.sagemaker.torchrun_launcher import torchrun_command

    command = torchrun_command(["--sagepipe_entry_point", "train.py", "--epochs", "3"],
                               {"SM_HOSTS": '["algo-1", "algo-2", "algo-3"]', "SM_CURRENT_HOST": "algo-3",
                                "SM_NUM_GPUS": "4"})
    assert command[command.index("--node_rank") + 1] == "2" and command[command.index("--nproc_per_node") + 1] == "4"
    assert command[-3:] == [command[-3], "--epochs", "3"] and command[-3].endswith("train.py")
    with pytest.raises(SystemExit, match="'algo-9' is not in SM_HOSTS"):
        torchrun_command(["--sagepipe_entry_point", "train.py"], {"SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-9"})


def test_a_killed_job_resumes_from_its_checkpoint_and_runs_the_same_epochs(torch_run: dict, tmp_path: Path) -> None:
    work = tmp_path / "job"
    proc = _train(torch_run["channels"], work, 2, "--epochs", "6", "--epoch_sleep_s", "1.5", wait=False)
    checkpoint = work / "checkpoints" / "last.pt"
    deadline = time.time() + 240
    import torch

    while True:
        if checkpoint.exists() and torch.load(checkpoint, weights_only=True)["epoch"] >= 2:
            break
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.2)
    import psutil

    tree = [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]
    for pid in tree:  # a spot interruption: launcher and workers die at once, no chance to clean up
        os.kill(pid, signal.SIGKILL)
    proc.wait(30)
    psutil.wait_procs([psutil.Process(p) for p in tree[1:] if psutil.pid_exists(p)], timeout=30)
    assert not (work / "model" / "metadata.json").exists()
    killed_at = torch.load(checkpoint, weights_only=True)["epoch"]
    metadata, output = _train(torch_run["channels"], work, 2, "--epochs", "6")
    assert f"resumed from checkpoint after epoch {killed_at}" in output
    history = json.loads((work / "output" / "training_history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5, 6] and metadata["epochs_run"] == 6
