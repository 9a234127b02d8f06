"""What the local runner hands a step type when it runs one step."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pipelines.spec import PipelineSpec


@dataclass
class LocalResult:
    """What a step produced: output folders, a metrics report, a branch taken."""

    outputs: dict[str, Path] = field(default_factory=dict)
    metrics: dict[str, Any] | None = None
    skip: list[str] = field(default_factory=list)
    note: str = ""


@dataclass
class StepContext:
    """The runner's services for one step execution."""

    pipeline: PipelineSpec
    run_id: str
    step_dir: Path
    repo_root: Path
    state_root: Path
    resolve: Callable[[Any], Any]
    run_process: Callable[[list[str], dict[str, str], Path], int]
    log: Callable[[str], None]
    step_record: Callable[[str], dict[str, Any]] = lambda name: {}
    tracking_env: dict[str, str] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        """The run's folder: nothing a step removes or replaces may lie outside it."""
        return self.step_dir.parent

    def repo_path(self, relative: str) -> Path:
        """A path in the repository (code and local data paths are relative to its root)."""
        return (self.repo_root / relative).resolve()
