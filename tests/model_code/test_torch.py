"""PyTorch DDP training: the torch pipeline end to end (2 processes), 1 vs 2 processes, resume after a kill, and
no resume from a checkpoint another run (other arguments, inputs or code) left behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port, run_cli

pytestmark = [pytest.mark.tracked, pytest.mark.slow]
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


@pytest.fixture(scope="module")
def two_processes(torch_run: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The metadata of 8 epochs at a global batch of 256 on 2 processes of one host, trained once: what one process
    and what two hosts must match."""
    return _train(torch_run["channels"], tmp_path_factory.mktemp("two-processes"), 2, "--epochs", "8",
                  "--batch_size", "256")[0]


def test_two_processes_match_one_process_at_the_same_global_batch(torch_run: dict, two_processes: dict,
                                                                  tmp_path: Path) -> None:
    one, _ = _train(torch_run["channels"], tmp_path / "one", 1, "--epochs", "8", "--batch_size", "256")
    two = two_processes
    assert (one["processes"], two["processes"]) == (1, 2)
    assert abs(one["validation_auc"] - two["validation_auc"]) <= 0.01, (one["validation_auc"], two["validation_auc"])
    again, _ = _train(torch_run["channels"], tmp_path / "again", 1, "--epochs", "8", "--batch_size", "256")
    assert again["validation_auc"] == one["validation_auc"]  # seeded: the same run gives the same model


def _compiled_drivers(folder: Path) -> tuple[Path, dict]:
    """The sm_drivers channel of the compiled torch definition, as SageMaker puts it into each container."""
    from pipelines.loader import load_pipeline
    from pipelines.sagemaker.compiler import compile_pipeline

    compiled = compile_pipeline(load_pipeline(REPO / CONFIG, "dev"))
    train = next(s for s in compiled.definition["Steps"] if s["Name"] == "train")["Arguments"]
    uri = next(c["DataSource"]["S3DataSource"]["S3Uri"] for c in train["InputDataConfig"]
               if c["ChannelName"] == "sm_drivers")
    prefix = uri.split(f"s3://{compiled.bucket}/", 1)[1] + "/"
    for key, data in compiled.artifacts.items():
        if key.startswith(prefix):
            (folder / key[len(prefix):]).parent.mkdir(parents=True, exist_ok=True)
            (folder / key[len(prefix):]).write_bytes(data)
    return folder, train


def test_two_hosts_rendezvous_through_the_compiled_sdk_torchrun_driver(torch_run: dict, two_processes: dict,
                                                                      tmp_path: Path) -> None:
    """What a 2-instance SageMaker job runs: the SDK's torchrun driver (from the compiled sm_drivers channel) on
    each host, with the variables the SDK's environment script sets there; rendezvous at the first host."""
    drivers, train = _compiled_drivers(tmp_path / "sm_drivers")
    distributed = (drivers / "distributed.json").read_text()
    assert json.loads(distributed)["process_count_per_node"] == 2
    channels, port = torch_run["channels"], free_port()
    procs = []
    for rank in range(2):
        work = tmp_path / f"algo-{rank + 1}"
        for folder in ("model", "output", "checkpoints"):
            (work / folder).mkdir(parents=True)
        env = {**os.environ, "SM_CURRENT_INSTANCE_TYPE": "ml.m5.xlarge", "SM_HOST_COUNT": "2",
               "SM_MASTER_ADDR": "127.0.0.1", "SM_MASTER_PORT": str(port), "SM_CURRENT_HOST_RANK": str(rank),
               "SM_ENTRY_SCRIPT": str(REPO / "model_code" / "train_torch.py"),
               "SM_DISTRIBUTED_CONFIG": json.dumps({"process_count_per_node": 1, "smp": None}),
               "SM_HPS": json.dumps({"epochs": "8", "batch_size": "256"}),
               "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               "SM_CHANNEL_TRAIN": str(channels / "train"), "SM_CHANNEL_VALIDATION": str(channels / "validation"),
               "SM_CHANNEL_TRANSFORM": str(channels / "transform"), "SM_MODEL_DIR": str(work / "model"),
               "SM_OUTPUT_DATA_DIR": str(work / "output"), "SAGEPIPE_CHECKPOINT_DIR": str(work / "checkpoints")}
        env.pop("MLFLOW_TRACKING_URI", None)
        procs.append(subprocess.Popen(
            [sys.executable, str(drivers / "distributed_drivers" / "torchrun_driver.py")], cwd=work,
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert "--nnodes=2 --nproc_per_node=1 --master_addr=127.0.0.1" in outputs[1] and "--node_rank=1" in outputs[1]
    metadata = json.loads((tmp_path / "algo-1" / "model" / "metadata.json").read_text())
    assert metadata["processes"] == 2 and metadata["epochs_run"] == 8
    assert not any((tmp_path / "algo-2" / "model").iterdir())  # only the first host's rank 0 saves
    single = two_processes  # 2 processes on a single host, the same epochs and batch
    assert abs(metadata["validation_auc"] - single["validation_auc"]) <= 0.01


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


# A checkpoint folder left by another execution (SageMaker restores CheckpointConfig.S3Uri into
# /opt/ml/checkpoints) is resumed only when its fingerprint (arguments, inputs, code) is this run's.
SHORT = ("--epochs", "3", "--batch_size", "256")
REFUSED = "was written by a run with different arguments or inputs"


def _weights(work: Path) -> dict:
    import torch

    return torch.load(work / "model" / "model.pt", map_location="cpu", weights_only=True)


def _same_weights(one: dict, two: dict) -> bool:
    import torch

    return one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one)


def _epochs_trained(work: Path) -> list[int]:
    return [h["epoch"] for h in json.loads((work / "output" / "training_history.json").read_text())]


@pytest.fixture(scope="module")
def fresh_seed_42(torch_run: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short seed-42 run from an empty checkpoint folder: what a run that refuses a checkpoint must match."""
    work = tmp_path_factory.mktemp("fresh-seed-42")
    _, output = _train(torch_run["channels"], work, 2, *SHORT, "--seed", "42")
    assert REFUSED not in output and "resumed from checkpoint" not in output
    return work


def test_a_checkpoint_of_the_same_arguments_and_inputs_is_resumed(torch_run: dict, fresh_seed_42: Path,
                                                                  tmp_path: Path) -> None:
    work = tmp_path / "job"
    (work / "checkpoints").mkdir(parents=True)
    shutil.copy(fresh_seed_42 / "checkpoints" / "last.pt", work / "checkpoints" / "last.pt")
    metadata, output = _train(torch_run["channels"], work, 2, *SHORT, "--seed", "42", "--epoch_sleep_s", "0")
    assert "resumed from checkpoint after epoch 3" in output and REFUSED not in output
    assert "epoch 1/3" not in output and metadata["epochs_run"] == 3  # nothing left to train
    assert _same_weights(_weights(work), _weights(fresh_seed_42))


def test_a_checkpoint_left_by_a_run_with_another_seed_is_not_resumed(torch_run: dict, fresh_seed_42: Path,
                                                                     tmp_path: Path) -> None:
    work = tmp_path / "job"
    _train(torch_run["channels"], work, 2, *SHORT, "--seed", "7")
    seed_7 = _weights(work)
    metadata, output = _train(torch_run["channels"], work, 2, *SHORT, "--seed", "42")
    assert (f"checkpoint in {work / 'checkpoints'} {REFUSED} (seed 7 vs 42); starting fresh from epoch 1"
            in output), output
    assert "resumed from checkpoint" not in output and output.count(REFUSED) == 1  # rank 0 alone logs it
    assert _epochs_trained(work) == [1, 2, 3] and metadata["epochs_run"] == 3
    assert not _same_weights(_weights(work), seed_7)
    assert _same_weights(_weights(work), _weights(fresh_seed_42))  # as if the folder had been empty
    import torch

    rewritten = torch.load(work / "checkpoints" / "last.pt", weights_only=True)  # the stale one is overwritten
    assert rewritten["epoch"] == 3 and rewritten["fingerprint"]["arguments"]["seed"] == 42


def test_a_checkpoint_left_by_a_run_on_other_input_data_is_not_resumed(torch_run: dict, fresh_seed_42: Path,
                                                                       tmp_path: Path) -> None:
    import pandas as pd

    other = tmp_path / "other-data"
    for channel in ("train", "validation", "transform"):
        shutil.copytree(torch_run["channels"] / channel, other / channel)
    for path in sorted((other / "train").glob("*.parquet")):  # the same arguments, a little less training data
        frame = pd.read_parquet(path)
        frame.iloc[: len(frame) * 9 // 10].to_parquet(path)
    work = tmp_path / "job"
    _train(other, work, 2, *SHORT, "--seed", "42")
    metadata, output = _train(torch_run["channels"], work, 2, *SHORT, "--seed", "42")
    assert f"{REFUSED} (input channel 'train' differs); starting fresh from epoch 1" in output, output
    assert _epochs_trained(work) == [1, 2, 3] and metadata["epochs_run"] == 3
    assert _same_weights(_weights(work), _weights(fresh_seed_42))


def test_a_checkpoint_without_a_fingerprint_is_not_resumed(torch_run: dict, fresh_seed_42: Path,
                                                           tmp_path: Path) -> None:
    import torch

    work = tmp_path / "job"
    (work / "checkpoints").mkdir(parents=True)
    old = torch.load(fresh_seed_42 / "checkpoints" / "last.pt", weights_only=True)
    del old["fingerprint"]  # what the script wrote before checkpoints carried one
    torch.save(old, work / "checkpoints" / "last.pt")
    metadata, output = _train(torch_run["channels"], work, 1, "--epochs", "1", "--batch_size", "256", "--seed", "42")
    assert f"{REFUSED} (it records no fingerprint" in output and "resumed from checkpoint" not in output
    assert _epochs_trained(work) == [1] and metadata["epochs_run"] == 1


def test_the_fingerprint_sees_names_sizes_and_bytes_of_every_channel_file(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("checkpoint_guard", REPO / "model_code" / "checkpoint_guard.py")
    checkpoint_guard = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(checkpoint_guard)
    code = tmp_path / "train.py"
    code.write_text("print('train')\n")
    (tmp_path / "train" / "part").mkdir(parents=True)
    (tmp_path / "train" / "part" / "a.parquet").write_bytes(b"0123456789")
    env = {"SM_CHANNEL_TRAIN": str(tmp_path / "train"), "SM_CHANNELS": '["train"]'}
    base = checkpoint_guard.fingerprint({"seed": 42, "epochs": 3}, 2, [code], env)
    assert list(base["inputs"]) == ["train"]

    def now() -> list[str]:
        own = checkpoint_guard.fingerprint({"epochs": 3, "seed": 42}, 2, [code], env)
        return checkpoint_guard.differences(base, own)

    assert now() == []
    (tmp_path / "train" / "part" / "a.parquet").write_bytes(b"0123456780")  # same name and size, other bytes
    assert now() == ["input channel 'train' differs"]
    (tmp_path / "train" / "part" / "a.parquet").write_bytes(b"0123456789")
    assert now() == []
    (tmp_path / "train" / "part" / "a.parquet").rename(tmp_path / "train" / "part" / "b.parquet")
    assert now() == ["input channel 'train' differs"]
    code.write_text("print('train!')\n")
    other = checkpoint_guard.fingerprint({"seed": 7, "epochs": 3, "lr": 0.1}, 1, [code], {})
    assert checkpoint_guard.differences(base, other) == [
        "lr unset vs 0.1", "seed 42 vs 7", "processes 2 vs 1", "input channel 'train' removed", "training code differs"]
    assert checkpoint_guard.differences(None, base) == checkpoint_guard.differences({"model": 1}, base) == [
        "it records no fingerprint: an older version of the script wrote it"]


def test_emulating_the_compiled_torch_pipeline_gives_the_local_runs_auc(torch_run: dict,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled definition, emulated with 2 torchrun processes, on the data the local run used. Untracked: the
    local env's MLflow store would log every step and the model again (the local run's tracking is checked above)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "none")
    raw = torch_run["run_dir"] / "ingest" / "processing" / "output" / "raw"
    done = run_cli("emulate", CONFIG, "--env", "dev", "--param", f"input_data={raw}", "--json",
                   home=torch_run["home"])
    assert done.returncode == 0, done.stdout + done.stderr
    emulated = json.loads(done.stdout)
    local = torch_run["summary"]
    aucs = [s["metrics"]["evaluate"]["binary_classification_metrics"]["auc"]["value"] for s in (local, emulated)]
    assert abs(aucs[0] - aucs[1]) < 1e-6, aucs
    statuses = {s["name"]: s["status"] for s in emulated["steps"]}
    assert statuses["register"] == "succeeded" and statuses["auc-too-low"] == "skipped"
