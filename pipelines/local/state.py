"""A run's state file: one JSON document per run, rewritten atomically on every change."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from pipelines.fsutil import atomic_write_json

TERMINAL = {"succeeded", "cached", "failed", "skipped", "interrupted"}
DONE_OK = {"succeeded", "cached"}


class RunState:
    """The state of one run; thread-safe, persisted after each change."""

    def __init__(self, path: Path, data: dict[str, Any]):
        self.path = path
        self.data = data
        self._lock = threading.Lock()

    @classmethod
    def create(cls, run_dir: Path, header: dict[str, Any], step_names: list[str]) -> "RunState":
        data = {**header, "status": "running", "started_at": time.time(), "ended_at": None,
                "steps": {name: {"status": "pending", "attempts": 0} for name in step_names}}
        state = cls(run_dir / "state.json", data)
        state.save()
        return state

    @classmethod
    def load(cls, run_dir: Path) -> "RunState":
        return cls(run_dir / "state.json", json.loads((run_dir / "state.json").read_text()))

    def step(self, name: str) -> dict[str, Any]:
        return self.data["steps"][name]

    def status(self, name: str) -> str:
        return self.data["steps"][name]["status"]

    def update_step(self, name: str, **fields: Any) -> None:
        with self._lock:
            self.data["steps"][name].update(fields)
            self.save()

    def update(self, **fields: Any) -> None:
        with self._lock:
            self.data.update(fields)
            self.save()

    def save(self) -> None:
        atomic_write_json(self.path, self.data)


def list_runs(runs_root: Path) -> list[dict[str, Any]]:
    """Every recorded run, newest first (unreadable state files are skipped)."""
    runs = []
    if runs_root.is_dir():
        for folder in runs_root.iterdir():
            try:
                runs.append(json.loads((folder / "state.json").read_text()))
            except (OSError, json.JSONDecodeError):
                continue
    return sorted(runs, key=lambda r: r.get("started_at") or 0, reverse=True)
