"""`type: register` — add the trained model to a model package group, awaiting approval."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from pipelines.errors import StepFailed
from pipelines.fsutil import hash_path
from pipelines.local.context import LocalResult, StepContext
from pipelines.registry import LocalRegistry
from pipelines.spec import StepSpec
from steps.evaluation import read_report


class RegisterStep(StepSpec):
    """SageMaker RegisterModel: a model package version with metrics and PendingManualApproval."""

    type: Literal["register"] = "register"
    model: Any
    model_group: str = Field(pattern=r"^[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$")
    metrics: Any = None
    metrics_file: str = "evaluation.json"
    approval_status: Literal["PendingManualApproval", "Approved", "Rejected"] = "PendingManualApproval"
    inference: dict[str, Any] = {}
    sagemaker: dict[str, Any] = {}

    def run_local(self, ctx: StepContext, inputs: dict) -> LocalResult:
        model_dir = Path(ctx.resolve(self.model))
        if not model_dir.is_dir() or not any(model_dir.iterdir()):
            raise StepFailed(f"model folder {model_dir} is missing or empty")
        metrics: dict[str, Any] = {}
        if self.metrics is not None:
            metrics = read_report(Path(ctx.resolve(self.metrics)) / self.metrics_file, self.metrics_file)
        lineage = {
            "run_id": ctx.run_id, "pipeline": ctx.pipeline.name, "step": self.name,
            "git_commit": git_commit(ctx.repo_root), "model_hash": hash_path(model_dir),
        }
        registry = LocalRegistry(ctx.state_root / "registry")
        package, created = registry.register(self.model_group, model_dir, metrics, self.approval_status, lineage)
        version = package["version"]
        if created:
            note = f"{self.model_group} version {version}: {package['status']}"
        else:
            note = f"identical model already registered as {self.model_group} version {version} ({package['status']})"
        return LocalResult(note=note)


def git_commit(repo_root: Path) -> str | None:
    """The repository's HEAD commit, or None outside git."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_root, capture_output=True,
                              text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None
