"""The PyTorch fraud model: an MLP over standardised numeric features and embedded categoricals.

Shared by training (train_torch.py) and serving (inference.py): both turn the feature transform's float32
matrix (numeric columns, then categorical codes with NaN for unknown) into the model's inputs the same way.
Weights are a state dict (model.pt), loaded with weights_only=True; the architecture and the
standardisation statistics are JSON (model_config.json).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

CONFIG_FILE, WEIGHTS_FILE = "model_config.json", "model.pt"


class TabularMLP(nn.Module):
    def __init__(self, numeric: int, cardinalities: list[int], embedding_dim: int, hidden: list[int]):
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(size + 1, embedding_dim) for size in cardinalities)
        width = numeric * 2 + embedding_dim * len(cardinalities)  # values and their missing-flags
        layers: list[nn.Module] = []
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(0.1)]
            width = size
        self.body = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        embedded = [emb(categorical[:, i]) for i, emb in enumerate(self.embeddings)]
        return self.body(torch.cat([numeric, *embedded], dim=1)).squeeze(1)


def split_inputs(matrix: np.ndarray, config: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature matrix -> (standardised numeric with missing flags, categorical indices; 0 = unknown)."""
    n_numeric = config["numeric_count"]
    numeric = matrix[:, :n_numeric].astype(np.float32)
    missing = np.isnan(numeric)
    numeric = (np.nan_to_num(numeric, nan=0.0) - np.asarray(config["mean"], np.float32)) / \
        np.asarray(config["std"], np.float32)
    numeric[missing] = 0.0
    codes = matrix[:, n_numeric:]
    categorical = np.where(np.isnan(codes), 0, codes + 1).astype(np.int64)
    return (torch.from_numpy(np.concatenate([numeric, missing.astype(np.float32)], axis=1)),
            torch.from_numpy(categorical))


def build(config: dict[str, Any]) -> TabularMLP:
    return TabularMLP(config["numeric_count"], config["cardinalities"], config["embedding_dim"], config["hidden"])


def save(model: nn.Module, config: dict[str, Any], folder: Path) -> None:
    torch.save(model.state_dict(), folder / WEIGHTS_FILE)
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2))


def load(folder: Path) -> tuple[TabularMLP, dict[str, Any]]:
    config = json.loads((folder / CONFIG_FILE).read_text())
    model = build(config)
    model.load_state_dict(torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    model.eval()
    return model, config


def predict(model: nn.Module, config: dict[str, Any], matrix: np.ndarray) -> np.ndarray:
    numeric, categorical = split_inputs(matrix, config)
    device = next(model.parameters()).device
    with torch.no_grad():
        return torch.sigmoid(model(numeric.to(device), categorical.to(device))).cpu().numpy().astype(np.float64)
