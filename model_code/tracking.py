"""MLflow logging from inside a step container that never fails the step.

With MLFLOW_TRACKING_URI unset (or `none`) every call does nothing and mlflow is never imported. Under
`sagepipe run`, SAGEPIPE_MLFLOW_JOURNAL names a file where params, metrics and artifacts are recorded
(no mlflow import, no store to open); sagepipe's background writer puts them into the step's nested run.
A model is logged live, into the nested run whose id the writer puts in SAGEPIPE_MLFLOW_RUN_FILE. With
MLFLOW_RUN_ID the calls go to that run; on SageMaker (a managed tracking-server ARN in
MLFLOW_TRACKING_URI) a run is started for the job. The first error prints one warning; later calls do nothing.

    from tracking import Tracking
    track = Tracking.from_env()
    track.log_params({"num_leaves": 15})
    track.log_metric_history("validation_auc", [0.71, 0.74, 0.75])
"""

from __future__ import annotations

import atexit
import json
import os
import posixpath
import re
import shutil
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

    def __init__(self, uri: str | None, run_id: str | None, experiment: str, run_name: str,
                 journal: str | None = None, run_file: str | None = None):
        self.uri = None if (uri or "").strip().lower() in ("", "none") else uri
        self.run_id = run_id
        self.experiment = experiment
        self.run_name = run_name
        self.enabled = bool(self.uri)
        self.journal = Path(journal) if journal and self.enabled and not run_id else None
        self.run_file = run_file
        self._client: Any = None
        self._artifacts = 0
        for key, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)

    @classmethod
    def from_env(cls) -> "Tracking":
        job = os.environ.get("TRAINING_JOB_NAME") or os.environ.get("PROCESSING_JOB_NAME")
        name = job or os.environ.get("SAGEPIPE_STEP") or Path(sys.argv[0]).stem
        return cls(os.environ.get("MLFLOW_TRACKING_URI"), os.environ.get("MLFLOW_RUN_ID"),
                   os.environ.get("MLFLOW_EXPERIMENT_NAME", "sagepipe"), name,
                   os.environ.get("SAGEPIPE_MLFLOW_JOURNAL"), os.environ.get("SAGEPIPE_MLFLOW_RUN_FILE"))

    # --- what scripts call ----------------------------------------------------------------------
    def log_params(self, params: dict[str, Any]) -> None:
        if self._record({"e": "params", "params": {str(k): str(v) for k, v in params.items()}}):
            return

        def action(client: Any) -> None:
            from mlflow.entities import Param

            items = [Param(_key(k), str(v)[:6000]) for k, v in params.items()]
            for start in range(0, len(items), 100):
                client.log_batch(self.run_id, params=items[start:start + 100])
        self._safe(action)

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        if self._record({"e": "metrics", "metrics": {str(k): float(v) for k, v in metrics.items()}, "step": step}):
            return

        def action(client: Any) -> None:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            client.log_batch(self.run_id, metrics=[Metric(_key(k), float(v), now, step)
                                                   for k, v in metrics.items()])
        self._safe(action)

    def log_metric_history(self, name: str, values: list[float]) -> None:
        """One metric over iterations (step = iteration number, from 1)."""
        if self._record({"e": "history", "name": name, "values": [float(v) for v in values]}):
            return

        def action(client: Any) -> None:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            items = [Metric(_key(name), float(v), now, i) for i, v in enumerate(values, start=1)]
            for start in range(0, len(items), 1000):
                client.log_batch(self.run_id, metrics=items[start:start + 1000])
        self._safe(action)

    def log_artifacts(self, folder: Path, artifact_path: str | None = None) -> None:
        if self.journal is not None and self.enabled:  # a copy: the folder may change before it is written
            self._artifacts += 1
            copy = self.journal.with_suffix(".files") / str(self._artifacts)
            try:
                shutil.copytree(folder, copy, dirs_exist_ok=True)
            except OSError as exc:
                self._unavailable(exc)
                return
            self._record({"e": "artifacts", "path": str(copy), "artifact_path": artifact_path})
            return
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
    def _record(self, line: dict[str, Any]) -> bool:
        """Append line to the step's journal; False when there is none (log to MLflow directly)."""
        if not self.enabled:
            return True
        if self.journal is None:
            return False
        try:
            data = (json.dumps({**line, "t": int(time.time() * 1000)}) + "\n").encode()
            fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except (OSError, TypeError, ValueError) as exc:
            self._unavailable(exc)
        return True

    def _safe(self, action: Callable[[Any], Any]) -> None:
        if not self.enabled:
            return
        try:
            action(self._connect())
        except Exception as exc:  # tracking must never fail the step
            self._unavailable(exc)

    def _unavailable(self, exc: Exception) -> None:
        self.enabled = False
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        print(f"warning: MLflow tracking at {self.uri} is unavailable ({first_line}); "
              "this step goes on without tracking", file=sys.stderr, flush=True)

    def _connect(self) -> Any:
        if self._client is not None:
            return self._client
        if self.journal is not None and not self.run_id:
            self.run_id = _wait_for_run_id(self.run_file)
            if not self.run_id:
                raise ConnectionError("sagepipe's MLflow writer did not create this step's run")
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


def _key(name: Any) -> str:
    """name as MLflow takes a key: characters it refuses ('@' in 'recall@top5') become '_', and a name that
    reads as a path elsewhere ('../x') is flattened; sagepipe's journal writer names them the same way."""
    text = re.sub(r"[^/\w.\- :]", "_", str(name))[:250]
    if posixpath.normpath(text) != text or text.startswith(("..", "/")) or text in ("", "."):
        text = text.replace("/", "_")
        text = "_" + text if text.startswith(".") or not text else text
    return text


def _wait_for_run_id(run_file: str | None, timeout: float = 600.0) -> str | None:
    """The id sagepipe's background writer puts in run_file, waited for while a writer holds the run's journal.

    The same wait as pipelines.tracking_journal.wait_for_run_id, written again here: this file runs in SageMaker
    containers, where only model_code/ is shipped and `pipelines` cannot be imported."""
    import fcntl

    if not run_file:
        return None
    path = Path(run_file)
    lock = path.parent.parent / "writer.lock"
    deadline, grace = time.time() + timeout, time.time() + 5
    while time.time() < deadline:
        if path.is_file() and path.read_text().strip():
            return path.read_text().strip()
        if time.time() > grace:
            try:
                fd = os.open(lock, os.O_RDONLY)
            except OSError:
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return None  # no writer at work: the id will not come
            except BlockingIOError:
                pass
            finally:
                os.close(fd)
        time.sleep(0.1)
    return None


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
