"""What the local runner lends its steps (the protocols of pipelines/step_api.py): the model registry, the step's
MLflow run and the local endpoints. Built once per run, each part on first use: a run that registers and deploys
opens its registry once, a run that does neither never opens it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from pipelines.registry import open_registry
from pipelines.spec import PipelineSpec
from pipelines.step_api import ModelRegistry, Serving, StepServices, StepTracker
from pipelines.tracking import git_commit, mlflow_client, step_run_id

TRIAL_END = {"Completed": "FINISHED", "Stopped": "KILLED"}  # anything else: FAILED


class RunServices:
    """The services of one run; `for_step` gives a step its view of them (with its own tracker)."""

    def __init__(self, spec: PipelineSpec, state_root: Path, registry: ModelRegistry | None = None,
                 serving: Serving | None = None):
        self.spec = spec
        self.state_root = state_root
        self._registry = registry
        self._serving = serving
        self._commit: tuple[str | None] | None = None
        self._lock = threading.Lock()

    @property
    def registry(self) -> ModelRegistry:
        with self._lock:
            if self._registry is None:
                self._registry = open_registry(self.spec.settings, self.state_root, Path(self.spec.repo_root))
            return self._registry

    @property
    def serving(self) -> Serving:
        with self._lock:
            if self._serving is None:
                self._serving = LocalServing(self.state_root)
            return self._serving

    def git_commit(self) -> str | None:
        with self._lock:
            if self._commit is None:
                self._commit = (git_commit(Path(self.spec.repo_root)),)
            return self._commit[0]

    def for_step(self, tracking_env: dict[str, str], log: Callable[[str], None]) -> StepServices:
        return _StepView(self, MlflowStepTracker(tracking_env, log, self.git_commit))


class _StepView:
    def __init__(self, run: RunServices, tracker: StepTracker):
        self._run = run
        self._tracker = tracker

    @property
    def registry(self) -> ModelRegistry:
        return self._run.registry

    @property
    def tracker(self) -> StepTracker:
        return self._tracker

    @property
    def serving(self) -> Serving:
        return self._run.serving


class LocalServing:
    """Endpoint records under `<state root>/endpoints/`, their `sagepipe serve` processes, and batch scoring."""

    def __init__(self, state_root: Path):
        self.state_root = state_root

    def switch_endpoint(self, endpoint: str, package: dict[str, Any], registry: ModelRegistry,
                        trigger: str) -> Path:
        from pipelines.serving.serve import endpoint_record, write_record

        return write_record(self.state_root, endpoint_record(package, registry, endpoint, trigger))

    def ensure_server(self, record: Path, port: int, workers: int, capture_percent: int | None = None) -> str:
        from pipelines.serving.serve import ensure_server

        return ensure_server(record, port, workers, capture_percent)

    def scoring_command(self, model: Path, source: Path, target: Path, threshold: float,
                        chunk_rows: int) -> tuple[list[str], dict[str, str]]:
        argv = [sys.executable, "-m", "pipelines.local.score_file", "--model", str(model), "--input", str(source),
                "--output", str(target), "--threshold", repr(threshold), "--chunk-rows", str(chunk_rows)]
        code_root = str(Path(__file__).resolve().parents[2])
        return argv, {"PYTHONPATH": os.pathsep.join(filter(None, [code_root, os.environ.get("PYTHONPATH")]))}


class MlflowStepTracker:
    """A step's MLflow run, and nested runs under it, through MlflowClient in the runner's process. The first
    failure turns it off with one line in the step's log: tracking never fails a step."""

    def __init__(self, tracking_env: dict[str, str], log: Callable[[str], None],
                 commit: Callable[[], str | None]):
        self.env = tracking_env
        self.uri = tracking_env.get("MLFLOW_TRACKING_URI") or ""
        self.log = log
        self._commit = commit
        self.client: Any = None
        self.parent: str | None = None
        self.experiment: str | None = None
        self.broken = not self.uri
        self._lock = threading.Lock()

    def run_id(self) -> str | None:
        return step_run_id(self.env) if self.uri else None

    def git_commit(self) -> str | None:
        return self._commit()

    def start_child(self, name: str, tags: dict[str, str]) -> str | None:
        def create(client: Any) -> str:
            run = client.create_run(self.experiment, run_name=name, tags={"mlflow.parentRunId": self.parent, **tags})
            return str(run.info.run_id)
        return self._safely(create)

    def finish_child(self, run_id: str, status: str, params: dict[str, Any], metrics: dict[str, float],
                     tags: dict[str, str], files: dict[str, Path]) -> None:
        def finish(client: Any) -> None:
            from pipelines.tracking_writer import log_values

            log_values(client, run_id, params, metrics, tags, at=int(time.time() * 1000))
            for folder, path in files.items():
                if path.exists():
                    client.log_artifact(run_id, str(path), folder)
            client.set_terminated(run_id, TRIAL_END.get(status, "FAILED"))
        self._safely(finish)

    def _safely(self, action: Callable[[Any], Any]) -> Any:
        if self.broken:
            return None
        try:
            with self._lock:
                if self.client is None:
                    self.parent = step_run_id(self.env)  # created by the background writer
                    if not self.parent:
                        raise ConnectionError("the step's MLflow run was not created")
                    self.client = mlflow_client(self.uri)
                    self.experiment = self.client.get_run(self.parent).info.experiment_id
                return action(self.client)
        except Exception as exc:  # tracking never fails a step
            self.broken = True
            self.log(f"[sagepipe] warning: MLflow tracking of nested runs failed "
                     f"({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}); the step goes on "
                     "untracked")
            return None
