"""Step status as people see it: one class per status, its colours, and the short label of a step's outcome.

Shared by the HTML report's DAG and by `sagepipe graph --run` (dot and mermaid), so both draw a run alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# status class -> (fill, stroke, text colour, words for the legend)
STYLES: dict[str, tuple[str, str, str, str]] = {
    "succeeded": ("#dcf5e3", "#1f883d", "#0f3d1d", "succeeded"),
    "cached": ("#ddeeff", "#3d7fd6", "#0b2e5c", "cached"),
    "failed": ("#ffe1df", "#cf222e", "#5c0a10", "failed"),
    "interrupted": ("#fff1d6", "#bf8700", "#4d3500", "interrupted"),
    "running": ("#fff8c5", "#9a6700", "#4d3500", "running"),
    "skipped": ("#f1f3f5", "#8c959f", "#57606a", "skipped"),
    "not-run": ("#ffffff", "#afb8c1", "#6e7781", "not run"),
}


def status_class(status: str | None) -> str:
    """The class for a recorded step status (pending, or anything unknown, is 'not-run')."""
    return status if status in STYLES and status != "not-run" else "not-run"


def duration_text(seconds: Any) -> str:
    """0.004 -> '<0.01s', 4.93 -> '4.9s', 75 -> '1m 15s'."""
    if not isinstance(seconds, (int, float)):
        return ""
    if seconds < 0.01:
        return "<0.01s"
    if seconds < 10:
        return f"{seconds:.2f}s" if seconds < 1 else f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}m {rest:02d}s" if minutes < 60 else f"{minutes // 60}h {minutes % 60:02d}m"


@dataclass(frozen=True)
class StepOutcome:
    """What one step of a run did, for drawing: its class, duration and, for a cache hit, the source run."""

    name: str
    status: str
    duration: str = ""
    cached_from: str | None = None

    def detail(self) -> str:
        """'succeeded · 4.9s', 'cached from run X · 0.12s', 'skipped'."""
        words = f"cached from run {self.cached_from}" if self.cached_from else STYLES[self.status][3]
        return f"{words} · {self.duration}" if self.duration else words


def outcomes(state: dict[str, Any], runs_root: Path | None = None) -> dict[str, StepOutcome]:
    """Each recorded step's outcome; runs_root (the folder of all runs) lets a cache hit name its source run."""
    found = {}
    for name, record in state.get("steps", {}).items():
        cls = status_class(record.get("status"))
        source = cached_from(name, record, state.get("run_id"), runs_root) if cls == "cached" else None
        found[name] = StepOutcome(name, cls, duration_text(record.get("duration_s")) if cls != "skipped" else "",
                                  source)
    return found


def cached_from(step: str, record: dict[str, Any], run_id: str | None, runs_root: Path | None) -> str | None:
    """The run that produced a cache hit's outputs: as recorded, else the newest other run in which this step
    ran (not from cache) with the same cache key."""
    for name in ("cached_from", "cached_from_run", "cache_source_run", "source_run"):
        if isinstance(record.get(name), str) and record[name]:
            return str(record[name])
    key = record.get("cache_key")
    if not key or runs_root is None or not runs_root.is_dir():
        return None
    best: tuple[float, str] | None = None
    for folder in runs_root.iterdir():
        if folder.name == run_id:
            continue
        try:
            other = json.loads((folder / "state.json").read_text()).get("steps", {}).get(step) or {}
        except (OSError, ValueError, AttributeError):
            continue
        if other.get("cache_key") == key and other.get("status") == "succeeded":
            ended = float(other.get("ended_at") or 0)
            if best is None or ended > best[0]:
                best = (ended, folder.name)
    return best[1] if best else None
