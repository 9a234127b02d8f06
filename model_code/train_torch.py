"""Training step: a PyTorch MLP with DistributedDataParallel, launched by torchrun (1..N processes).

Channels: SM_CHANNEL_TRAIN, SM_CHANNEL_VALIDATION (parquet), SM_CHANNEL_TRANSFORM (feature_transform.json).
Writes to SM_MODEL_DIR (rank 0 only): model.pt (state dict), model_config.json, feature_transform.json,
metadata.json. Checkpoints after every epoch to $SAGEPIPE_CHECKPOINT_DIR (SageMaker: /opt/ml/checkpoints); a
restarted job resumes from the last one, so it ends after the same total number of epochs. A checkpoint is
resumed only when it records this run's fingerprint (arguments, process count, input channels' bytes, code; see
checkpoint_guard): one left by another execution is refused, and training starts fresh and overwrites it.
`--batch_size` is the global batch: each of the N processes takes batch_size / N rows per step.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import checkpoint_guard
import features
import fraud_schema
import model_io
import torch_model
from fraud_schema import LABEL
from tracking import Tracking


def _read(channel: str) -> pd.DataFrame:
    folder = Path(os.environ[f"SM_CHANNEL_{channel.upper()}"])
    return pd.concat([pd.read_parquet(p) for p in sorted(folder.glob("*.parquet"))], ignore_index=True)


def _setup() -> tuple[int, int, torch.device]:
    """(rank, world size, device); joins the process group torchrun describes (gloo on CPU, nccl on GPUs)."""
    world, local_rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return int(os.environ.get("RANK", "0")), world, device


def _checkpoint_path() -> Path:
    return Path(os.environ.get("SAGEPIPE_CHECKPOINT_DIR", "/opt/ml/checkpoints")) / "last.pt"


def _resume_point(checkpoint: Path, own: dict | None, rank: int, world: int) -> dict | None:
    """The checkpoint to resume from, or None to start fresh. Rank 0 reads it and decides whether its fingerprint
    is this run's; every other rank follows, receiving the weights and optimizer state from rank 0."""
    saved = None
    if rank == 0 and checkpoint.exists():
        try:
            saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - what cannot be read cannot be resumed
            print(f"checkpoint {checkpoint} cannot be read ({type(exc).__name__}: {exc}); starting fresh from epoch 1",
                  flush=True)
        else:
            why = checkpoint_guard.differences(saved.get("fingerprint") if isinstance(saved, dict) else None, own)
            if why:
                print(f"checkpoint in {checkpoint.parent} was written by a run with different arguments or inputs "
                      f"({'; '.join(why)}); starting fresh from epoch 1", flush=True)
                saved = None
    if world > 1:
        shared = [{k: saved[k] for k in ("epoch", "model", "optimizer")} if saved is not None else None]
        dist.broadcast_object_list(shared, src=0)
        if rank != 0:
            saved = shared[0]
    return saved


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if y.min() != y.max() else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description="train the PyTorch fraud model (DDP under torchrun)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=256, help="global batch size, split across processes")
    parser.add_argument("--learning_rate", type=float, default=0.003)
    parser.add_argument("--weight_decay", type=float, default=1e-4)
    parser.add_argument("--hidden", default="64,32")
    parser.add_argument("--embedding_dim", type=int, default=4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--epoch_sleep_s", type=float, default=0.0, help="testing aid: pause after each epoch")
    args, _ = parser.parse_known_args()
    rank, world, device = _setup()
    own = checkpoint_guard.fingerprint(  # rank 0 alone decides on resuming and writes checkpoints
        {k: v for k, v in vars(args).items() if k != "epoch_sleep_s"}, world,
        [Path(__file__), Path(features.__file__), Path(torch_model.__file__), Path(fraud_schema.__file__)],
    ) if rank == 0 else None
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world))))
    transform = features.load(Path(os.environ["SM_CHANNEL_TRANSFORM"]))
    train, validation = _read("train"), _read("validation")
    x_train, x_val = features.apply(transform, train).to_numpy(), features.apply(transform, validation).to_numpy()
    y_train, y_val = train[LABEL].to_numpy(np.float32), validation[LABEL].to_numpy()
    numeric_count = len(transform["numeric"]) + 2
    stats = x_train[:, :numeric_count]
    config = {"numeric_count": numeric_count, "cardinalities": [len(v) for v in transform["categorical"].values()],
              "embedding_dim": args.embedding_dim, "hidden": [int(h) for h in args.hidden.split(",")],
              "mean": np.nanmean(stats, axis=0).tolist(), "std": (np.nanstd(stats, axis=0) + 1e-6).tolist()}
    model = torch_model.build(config).to(device)
    ddp = torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None) if world > 1 else model
    positives = max(float(y_train.sum()), 1.0)
    loss_fn = torch.nn.BCEWithLogitsLoss(
        pos_weight=torch.tensor(((len(y_train) - positives) / positives) ** 0.5, device=device))
    optimizer = torch.optim.AdamW(ddp.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    numeric, categorical = torch_model.split_inputs(x_train, config)
    dataset = TensorDataset(numeric, categorical, torch.from_numpy(y_train))
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=args.seed)
    loader = DataLoader(dataset, batch_size=max(1, args.batch_size // world), sampler=sampler)
    start_epoch, history, best = 1, [], {"auc": -1.0, "epoch": 0, "state": None}
    checkpoint = _checkpoint_path()
    saved = _resume_point(checkpoint, own, rank, world)
    if saved is not None:  # a restarted (e.g. spot-interrupted) job: every rank resumes from rank 0's save
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        start_epoch = int(saved["epoch"]) + 1
        if rank == 0:
            history = list(saved["history"])
            best = {"auc": float(saved["best_auc"]), "epoch": int(saved["best_epoch"]), "state": saved["best_model"]}
            print(f"resumed from checkpoint after epoch {saved['epoch']}", flush=True)
    started, samples = time.time(), 0
    for epoch in range(start_epoch, args.epochs + 1):
        sampler.set_epoch(epoch)
        ddp.train()
        for batch_numeric, batch_categorical, target in loader:
            batch_numeric, batch_categorical, target = (t.to(device) for t in (batch_numeric, batch_categorical, target))
            optimizer.zero_grad()
            loss = loss_fn(ddp(batch_numeric, batch_categorical), target)
            loss.backward()
            optimizer.step()
            samples += len(target)
        if rank == 0:
            model.eval()
            val_auc = _auc(y_val, torch_model.predict(model, config, x_val))
            history.append({"epoch": epoch, "loss": float(loss.detach()), "validation_auc": val_auc})
            if val_auc > best["auc"]:  # keep the best epoch's weights, as early stopping would
                best = {"auc": val_auc, "epoch": epoch,
                        "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
            print(f"epoch {epoch}/{args.epochs}: loss {float(loss.detach()):.4f}, validation auc {val_auc:.4f}",
                  flush=True)
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            partial = checkpoint.with_suffix(".partial")
            torch.save({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "history": history, "best_auc": best["auc"], "best_epoch": best["epoch"],
                        "best_model": best["state"], "fingerprint": own}, partial)
            partial.replace(checkpoint)
        if world > 1:
            dist.barrier()
        time.sleep(args.epoch_sleep_s)
    seconds = time.time() - started
    throughput = torch.tensor([float(samples)], device=device)
    if world > 1:
        dist.all_reduce(throughput)
    if rank == 0:
        model.cpu()
        if best["state"] is not None:
            model.load_state_dict(best["state"])
        _save(model, config, transform, args, history, world, float(throughput) / max(seconds, 1e-9),
              x_val, len(train), best["epoch"])
    if world > 1:
        dist.barrier()  # leave together: a rank that tears down while rank 0 still saves aborts in gloo
        del ddp, loader  # DDP's reducer holds gloo work; release it before the group goes
        dist.destroy_process_group()
        if rank != 0:  # nothing left to do here; skip interpreter teardown, where gloo's threads can abort
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)


def _save(model, config, transform, args, history, world, samples_per_s, x_val, train_rows, best_epoch) -> None:
    model_dir, output_dir = Path(os.environ["SM_MODEL_DIR"]), Path(os.environ["SM_OUTPUT_DATA_DIR"])
    torch_model.save(model, config, model_dir)
    features.save(transform, model_dir)
    model_io.pack_serving_code(model_dir)
    metadata = {"model_type": "torch", "framework_version": torch.__version__, "epochs": args.epochs,
                "epochs_run": len(history), "processes": world, "samples_per_s": round(samples_per_s, 1),
                "best_epoch": best_epoch, "validation_auc": history[best_epoch - 1]["validation_auc"] if history else None,
                "hyperparameters": vars(args),
                "features": transform["features"], "train_rows": train_rows}
    (model_dir / "metadata.json").write_text(json.dumps(metadata, indent=2, default=str))
    (output_dir / "training_history.json").write_text(json.dumps(history))
    print(f"trained {len(history)} epochs on {world} process(es): validation auc "
          f"{metadata['validation_auc']:.4f}, {samples_per_s:,.0f} samples/s", flush=True)
    track = Tracking.from_env()
    if not track.enabled:
        return
    track.log_params({k: v for k, v in vars(args).items() if k != "epoch_sleep_s"} | {"processes": world})
    track.log_metric_history("validation_auc", [h["validation_auc"] for h in history])
    track.log_metric_history("train_loss", [h["loss"] for h in history])
    track.log_metrics({"samples_per_s": samples_per_s})

    def log_model() -> None:
        import mlflow.pytorch
        from mlflow.models import infer_signature

        example = x_val[:5].astype(np.float32)
        wrapped = _MatrixModel(model, config)
        signature = infer_signature(example, wrapped(torch.from_numpy(example)).detach().numpy())
        mlflow.pytorch.log_model(wrapped, name="model", signature=signature, input_example=example,
                                 pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
    track.log_model(log_model)


class _MatrixModel(torch.nn.Module):
    """The MLP behind a plain feature-matrix input (what mlflow.pytorch logs and MLflow serves)."""

    def __init__(self, model: torch.nn.Module, config: dict):
        super().__init__()
        self.model, self.count = model, config["numeric_count"]
        self.register_buffer("mean", torch.tensor(config["mean"], dtype=torch.float32))
        self.register_buffer("std", torch.tensor(config["std"], dtype=torch.float32))

    def forward(self, matrix: torch.Tensor) -> torch.Tensor:  # torch_model.split_inputs, in torch operations
        numeric, codes = matrix[:, :self.count], matrix[:, self.count:]
        missing = torch.isnan(numeric)
        numeric = torch.where(missing, torch.zeros_like(numeric), (torch.nan_to_num(numeric) - self.mean) / self.std)
        categorical = torch.where(torch.isnan(codes), torch.zeros_like(codes), codes + 1).long()
        return torch.sigmoid(self.model(torch.cat([numeric, missing.float()], dim=1), categorical))


if __name__ == "__main__":
    main()
