"""`type: processing` — a script over named input folders that writes named output folders."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import field_validator

from pipelines.errors import StepFailed
from pipelines.local.context import LocalResult, StepContext
from steps.base import ScriptStep, link_input


class ProcessingStep(ScriptStep):
    """SageMaker ProcessingStep: inputs under /opt/ml/processing/input/<name>, outputs under .../output/<name>."""

    type: Literal["processing"] = "processing"
    outputs: dict[str, str | None] = {}
    arguments: list[Any] = []

    @field_validator("outputs", mode="before")
    @classmethod
    def _names_only(cls, value: Any) -> Any:
        if isinstance(value, list) and all(isinstance(name, str) for name in value):
            return {name: None for name in value}
        return value

    def output_names(self) -> list[str]:
        return list(self.outputs)

    def local_output_dirs(self, step_dir: Path) -> dict[str, Path]:
        return {name: step_dir / "processing" / "output" / name for name in self.outputs}

    def local_fingerprint(self, ctx: StepContext) -> dict[str, Any]:
        return {"arguments": ctx.resolve(self.arguments), "environment": ctx.resolve(self.environment),
                "outputs": sorted(self.outputs)}

    def run_local(self, ctx: StepContext, inputs: dict[str, Path]) -> LocalResult:
        root = ctx.step_dir / "processing"
        for name, source in inputs.items():
            link_input(source, root / "input" / name)
        outputs = self.local_output_dirs(ctx.step_dir)
        for folder in outputs.values():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
        env = {str(k): str(v) for k, v in ctx.resolve(self.environment).items()}
        env["SAGEPIPE_PROCESSING_DIR"] = str(root)
        argv = [sys.executable, str(ctx.repo_path(self.code)), *map(_arg, ctx.resolve(self.arguments))]
        code = ctx.run_process(argv, env, ctx.step_dir)
        if code != 0:
            raise StepFailed(f"script {self.code} exited with code {code}")
        return LocalResult(outputs=outputs)


def _arg(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
