"""MLflow logging from inside a step container that never fails the step.

With MLFLOW_TRACKING_URI unset every call does nothing. Under `sagepipe run`, MLFLOW_RUN_ID names
the step's nested run; on SageMaker (a managed tracking-server ARN in MLFLOW_TRACKING_URI) a run
is started for the job. The first error prints one warning; later calls do nothing.

    from tracking import Tracking
    track = Tracking.from_env()
    track.log_params({"num_leaves": 15})
    track.log_metric_history("validation_auc", [0.71, 0.74, 0.75])
"""

from __future__ import annotations

import atexit
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
                 "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


class Tracking:
    """Best-effort MLflow logging for one step."""

    def __init__(self, uri: str | None, run_id: str | None, experiment: str, run_name: str):
        self.uri = uri
        self.run_id = run_id
        self.experiment = experiment
        self.run_name = run_name
        self.enabled = bool(uri)
        self._client: Any = None
        for key, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)

    @classmethod
    def from_env(cls) -> "Tracking":
        job = os.environ.get("TRAINING_JOB_NAME") or os.environ.get("PROCESSING_JOB_NAME")
        name = job or os.environ.get("SAGEPIPE_STEP") or Path(sys.argv[0]).stem
        return cls(os.environ.get("MLFLOW_TRACKING_URI"), os.environ.get("MLFLOW_RUN_ID"),
                   os.environ.get("MLFLOW_EXPERIMENT_NAME", "sagepipe"), name)

    # --- what scripts call ----------------------------------------------------------------------
    def log_params(self, params: dict[str, Any]) -> None:
        def action(client: Any) -> None:
            from mlflow.entities import Param

            items = [Param(str(k)[:250], str(v)[:6000]) for k, v in params.items()]
            for start in range(0, len(items), 100):
                client.log_batch(self.run_id, params=items[start:start + 100])
        self._safe(action)

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        def action(client: Any) -> None:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            client.log_batch(self.run_id, metrics=[Metric(str(k)[:250], float(v), now, step)
                                                   for k, v in metrics.items()])
        self._safe(action)

    def log_metric_history(self, name: str, values: list[float]) -> None:
        """One metric over iterations (step = iteration number, from 1)."""
        def action(client: Any) -> None:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            items = [Metric(name, float(v), now, i) for i, v in enumerate(values, start=1)]
            for start in range(0, len(items), 1000):
                client.log_batch(self.run_id, metrics=items[start:start + 1000])
        self._safe(action)

    def log_artifacts(self, folder: Path, artifact_path: str | None = None) -> None:
        self._safe(lambda client: client.log_artifacts(self.run_id, str(folder), artifact_path))

    def log_model(self, log: Callable[[], Any]) -> None:
        """Run a flavour's log_model (e.g. mlflow.lightgbm.log_model) inside this step's run."""
        def action(client: Any) -> None:
            import mlflow

            mlflow.set_tracking_uri(self.uri)
            with mlflow.start_run(run_id=self.run_id):
                log()
        self._safe(action)

    # --- plumbing --------------------------------------------------------------------------------
    def _safe(self, action: Callable[[Any], Any]) -> None:
        if not self.enabled:
            return
        try:
            action(self._connect())
        except Exception as exc:  # tracking must never fail the step
            self.enabled = False
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            print(f"warning: MLflow tracking at {self.uri} is unavailable ({first_line}); "
                  "this step goes on without tracking", file=sys.stderr, flush=True)

    def _connect(self) -> Any:
        if self._client is not None:
            return self._client
        why = _unreachable(str(self.uri))
        if why:
            raise ConnectionError(why)
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self.uri)
        if not self.run_id:
            found = client.get_experiment_by_name(self.experiment)
            experiment_id = found.experiment_id if found else client.create_experiment(self.experiment)
            self.run_id = client.create_run(experiment_id, run_name=self.run_name).info.run_id
            atexit.register(_end_quietly, client, self.run_id)
        self._client = client
        return client


def _end_quietly(client: Any, run_id: str) -> None:
    try:
        client.set_terminated(run_id, "FINISHED")
    except Exception:
        pass


def _unreachable(uri: str, timeout: float = 2.0) -> str | None:
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "localhost", port), timeout=timeout):
            return None
    except OSError as exc:
        return f"cannot connect to {parsed.hostname}:{port} ({exc.strerror or exc})"
