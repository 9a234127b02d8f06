"""MLflow tracking of local runs: a parent run per pipeline execution, a nested run per step.

Tracking never fails a run: the first error (an unreachable server, a locked store) prints one
warning and the run goes on untracked. `mlflow` is imported only when a run is tracked.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from pipelines.fsutil import hash_json, hash_path
from pipelines.netutil import unreachable

# MLflow's HTTP client retries for minutes by default; a pipeline should not hang on a dead server.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
                 "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


def resolve_tracking_uri(configured: str | None, state_root: Path, repo_root: Path) -> str | None:
    """The tracking URI to use: $MLFLOW_TRACKING_URI, else the env overlay's, else none.

    A relative SQLite path is taken from the repository root, and one under `.sagepipe/` from the
    state folder (so $SAGEPIPE_HOME moves the store with the rest of the local state).
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured
    if not uri or uri.strip().lower() == "none":
        return None
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        relative = Path(uri[len(prefix):])
        parts = relative.parts
        path = state_root.joinpath(*parts[1:]) if parts and parts[0] == ".sagepipe" else repo_root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        return prefix + str(path.resolve())
    return uri


def artifact_root(uri: str) -> str | None:
    """Where a SQLite store keeps artifacts (beside the database); a server decides its own."""
    if uri.startswith("sqlite:///"):
        return str(Path(uri[len("sqlite:///"):]).parent / "mlartifacts")
    return None


def mlflow_client(uri: str) -> Any:
    """An MlflowClient for uri (tracking and registry), quiet and with bounded HTTP retries.

    Raises ConnectionError naming the reason when an http(s) server does not accept connections."""
    import logging

    for key, value in HTTP_DEFAULTS.items():  # MLflow reads these when it builds its HTTP session
        os.environ.setdefault(key, value)
    why = unreachable(uri)
    if why:
        raise ConnectionError(why)
    from mlflow.tracking import MlflowClient

    for name in ("mlflow", "alembic"):  # after the import: mlflow sets its own log level when imported
        logging.getLogger(name).setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def git_commit(repo_root: Path) -> str | None:
    """The repository's HEAD commit, or None outside git."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_root, capture_output=True,
                              text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists become JSON-ish text."""
    if not isinstance(data, dict):
        return {prefix: data} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def report_metrics(report: dict[str, Any]) -> dict[str, float]:
    """Numeric leaves of a metrics report, named without the report group and `.value`:
    binary_classification_metrics.auc.value -> auc."""
    metrics = {}
    for key, value in flatten(report).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        parts = key.split(".")
        if len(parts) > 1 and parts[0].endswith("_metrics"):
            parts = parts[1:]
        if parts[-1] == "value" and len(parts) > 1:
            parts = parts[:-1]
        metrics[".".join(parts)] = float(value)
    return metrics


class NullTracker:
    """No tracking configured: every hook does nothing."""

    uri: str | None = None

    def pipeline_started(self, state: Any) -> None:
        pass

    def step_started(self, name: str, step_type: str) -> dict[str, str]:
        return {}

    def step_finished(self, name: str, record: dict[str, Any], params: dict[str, Any], log: Path) -> None:
        pass

    def pipeline_finished(self, state: Any) -> None:
        pass


class MlflowTracker(NullTracker):
    """Records one local run in MLflow: parent run, nested step runs, params, metrics, logs."""

    def __init__(self, uri: str, experiment: str, spec: Any, warn: Callable[[str], None]):
        self.uri = uri
        self.experiment = experiment
        self.spec = spec
        self.warn = warn
        self.broken = False
        self._lock = threading.Lock()
        self._client: Any = None
        self.experiment_id: str | None = None
        self.parent_id: str | None = None
        self.step_runs: dict[str, str] = {}

    # --- hooks (each safe: the first error disables tracking with one warning) ----------------
    def pipeline_started(self, state: Any) -> None:
        self._safe(self._start_parent, state)

    def step_started(self, name: str, step_type: str) -> dict[str, str]:
        return self._safe(self._start_step, name, step_type) or {}

    def step_finished(self, name: str, record: dict[str, Any], params: dict[str, Any], log: Path) -> None:
        self._safe(self._finish_step, name, record, params, log)

    def pipeline_finished(self, state: Any) -> None:
        self._safe(self._finish_parent, state)

    def _safe(self, action: Callable[..., Any], *args: Any) -> Any:
        if self.broken:
            return None
        try:
            with self._lock:
                return action(*args)
        except Exception as exc:  # tracking must never fail a pipeline run
            self.broken = True
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            self.warn(f"warning: MLflow tracking at {self.uri} failed ({first_line}); "
                      "the run goes on untracked")
            return None

    # --- the work ------------------------------------------------------------------------------
    def _connect(self) -> Any:
        if self._client is None:
            client = mlflow_client(self.uri)
            self.experiment_id = _experiment_id(client, self.experiment, artifact_root(self.uri))
            self._client = client
        return self._client

    def _start_parent(self, state: Any) -> None:
        client = self._connect()
        data = state.data
        existing = data.get("mlflow", {}).get("parent_run_id")
        if existing:  # a resumed run continues its MLflow run
            client.update_run(existing, status="RUNNING")
            self.parent_id = existing
            return
        spec = self.spec
        commit = git_commit(Path(spec.repo_root))
        tags = {"sagepipe.run_id": data["run_id"], "sagepipe.pipeline": spec.name, "sagepipe.env": spec.env,
                "sagepipe.config": spec.source_file, "sagepipe.config_hash": config_hash(spec),
                "sagepipe.kind": "pipeline", "mlflow.source.name": spec.source_file}
        if commit:
            tags.update({"sagepipe.git_commit": commit, "mlflow.source.git.commit": commit})
        run = client.create_run(self.experiment_id, run_name=f"{spec.name}-{data['run_id']}", tags=tags)
        self.parent_id = run.info.run_id
        _log(client, self.parent_id, params=spec.param_values)
        state.update(mlflow={"tracking_uri": self.uri, "experiment_id": self.experiment_id,
                             "parent_run_id": self.parent_id})

    def _start_step(self, name: str, step_type: str) -> dict[str, str]:
        client = self._connect()
        if self.parent_id is None:
            return {}
        tags = {"mlflow.parentRunId": self.parent_id, "sagepipe.step": name, "sagepipe.step_type": step_type,
                "sagepipe.kind": "step"}
        run = client.create_run(self.experiment_id, run_name=name, tags=tags)
        self.step_runs[name] = run.info.run_id
        return {"MLFLOW_TRACKING_URI": self.uri, "MLFLOW_RUN_ID": run.info.run_id,
                "MLFLOW_EXPERIMENT_ID": str(self.experiment_id)}

    def _finish_step(self, name: str, record: dict[str, Any], params: dict[str, Any], log: Path) -> None:
        run_id = self.step_runs.get(name)
        if run_id is None:
            return
        client = self._connect()
        status = record.get("status")
        tags = {"sagepipe.status": str(status), "sagepipe.cached": str(status == "cached").lower()}
        for field in ("note", "error", "cache_key"):
            if record.get(field):
                tags[f"sagepipe.{field}"] = str(record[field])[:5000]
        metrics = {k: float(record[k]) for k in ("duration_s", "attempts", "peak_rss_mb")
                   if isinstance(record.get(k), (int, float))}
        metrics.update(report_metrics(record.get("metrics") or {}))
        _log(client, run_id, params=flatten(params), metrics=metrics, tags=tags)
        if log.exists():
            client.log_artifact(run_id, str(log), "logs")
        client.set_terminated(run_id, "FINISHED" if status in ("succeeded", "cached") else
                              "KILLED" if status == "interrupted" else "FAILED")

    def _finish_parent(self, state: Any) -> None:
        if self.parent_id is None:
            return
        client = self._connect()
        data = state.data
        counts: dict[str, float] = {}
        for step in data["steps"].values():
            counts[f"steps_{step['status']}"] = counts.get(f"steps_{step['status']}", 0) + 1
        took = (data.get("ended_at") or time.time()) - data["started_at"]
        _log(client, self.parent_id, metrics={"duration_s": took, **counts},
             tags={"sagepipe.status": data["status"]})
        client.log_artifact(self.parent_id, str(state.path))
        final = {"succeeded": "FINISHED", "interrupted": "KILLED"}.get(data["status"], "FAILED")
        client.set_terminated(self.parent_id, final)


def config_hash(spec: Any) -> str:
    """Content hash of what defines a run: the config file, its env overlay, and the parameter values."""
    config = Path(spec.source_file)
    overlay = config.resolve().parent / "env" / f"{spec.env}.yaml"
    files = [hash_path(p) for p in (config, overlay) if p.is_file()]
    return hash_json({"files": files, "params": spec.param_values})[:16]


def _experiment_id(client: Any, name: str, location: str | None) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # created meanwhile by a concurrent run
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _log(client: Any, run_id: str, params: dict[str, Any] | None = None,
         metrics: dict[str, float] | None = None, tags: dict[str, str] | None = None) -> None:
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k[:250], v, now, 0) for k, v in (metrics or {}).items()],
        params=[Param(k[:250], _text(v)[:6000]) for k, v in (params or {}).items()],
        tags=[RunTag(k[:250], _text(v)[:8000]) for k, v in (tags or {}).items()],
    )


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def open_tracker(spec: Any, state_root: Path, warn: Callable[[str], None] | None = None) -> NullTracker:
    """The tracker for a run of spec: MLflow when a tracking URI is configured, else none."""
    uri = resolve_tracking_uri(spec.settings.tracking_uri, state_root, Path(spec.repo_root))
    if uri is None:
        return NullTracker()
    return MlflowTracker(uri, spec.name, spec, warn or (lambda text: print(text, file=sys.stderr)))
