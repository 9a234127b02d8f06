"""MLflow tracking of local runs: a parent run per pipeline execution, a nested run per step.

Tracking never delays or fails a run: the runner and the steps append to a journal in the run's folder,
and a background writer (pipelines/tracking_writer.py) puts it into MLflow. A record that cannot be
written yet (an unreachable server, a locked store, a killed writer) stays pending and the next command
that opens tracking (`run`, `resume`, `runs show`) writes it. The runner never imports `mlflow`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from pipelines.fsutil import hash_json, hash_path
from pipelines.netutil import unreachable
from pipelines.values import bool_text, value_text

# MLflow's HTTP client retries for minutes by default; a pipeline should not hang on a dead server.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
                 "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


EMBEDDED_TRACKING_URI = "sqlite:///.sagepipe/mlflow.db"  # the default when no env file sets one


def resolve_tracking_uri(configured: str | None, state_root: Path, repo_root: Path) -> str | None:
    """The tracking URI to use: $MLFLOW_TRACKING_URI, else the env overlay's, else the embedded store
    (SQLite in the state folder); `none` (either way) turns tracking off.

    A relative SQLite path is taken from the repository root, and one under `.sagepipe/` from the
    state folder (so $SAGEPIPE_HOME moves the store with the rest of the local state).
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured or EMBEDDED_TRACKING_URI
    if uri.strip().lower() == "none":
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

    from pipelines.registry.locking import store_lock

    for name in ("mlflow", "alembic"):  # after the import: mlflow sets its own log level when imported
        logging.getLogger(name).setLevel(logging.WARNING)
    with store_lock(uri):  # the first to open a fresh SQLite store creates its tables: one process at a time
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

    def attach_run_file(self, path: Path, artifact_path: str | None = None) -> None:
        """Log a file (a report written after the run, say) as an artifact of the parent run."""


class MlflowTracker(NullTracker):
    """Records one local run in MLflow without waiting for it: each hook appends a line to the run's journal
    (`<run dir>/mlflow/`, see pipelines/tracking_journal.py) and a writer process started with the run
    replays the journal into MLflow in the background. Nothing here imports mlflow or opens the store."""

    def __init__(self, uri: str, experiment: str, spec: Any, warn: Callable[[str], None]):
        self.uri: str = uri
        self.experiment = experiment
        self.spec = spec
        self.warn = warn
        self.run_dir: Path | None = None
        self._lock = threading.Lock()
        self._lines = 0
        self._probe: threading.Thread | None = None
        self._keys: dict[str, str] = {}  # step -> the journal key of its latest execution
        self._journal_error: OSError | None = None

    def pipeline_started(self, state: Any) -> None:
        from pipelines.tracking_journal import EVENTS, journal_dir, spawn_writer

        self.run_dir = state.path.parent
        events = journal_dir(self.run_dir) / EVENTS
        self._lines = _count_lines(events)
        data, spec = state.data, self.spec
        tags = {"sagepipe.run_id": data["run_id"], "sagepipe.pipeline": spec.name, "sagepipe.env": spec.env,
                "sagepipe.config": spec.source_file, "sagepipe.config_hash": config_hash(spec),
                "sagepipe.kind": "pipeline", "mlflow.source.name": spec.source_file}
        commit = git_commit(Path(spec.repo_root))
        if commit:
            tags.update({"sagepipe.git_commit": commit, "mlflow.source.git.commit": commit})
        self._append({"e": "start", "uri": self.uri, "experiment": self.experiment, "tags": tags,
                      "run_name": f"{spec.name}-{data['run_id']}", "params": spec.param_values})
        state.update(mlflow={"tracking_uri": self.uri, "experiment": self.experiment, "journal": str(events.parent)})
        (events.parent / "steps").mkdir(exist_ok=True)
        spawn_writer(self.run_dir, follow=True, wait_s=600)
        self._probe = threading.Thread(target=self._check_reachable, daemon=True)
        self._probe.start()

    def step_started(self, name: str, step_type: str) -> dict[str, str]:
        from pipelines.tracking_journal import journal_dir

        if self.run_dir is None:
            return {}
        key = self._append({"e": "step_start", "step": name, "type": step_type}, key_for=name)
        steps = journal_dir(self.run_dir) / "steps"
        return {"MLFLOW_TRACKING_URI": self.uri, "MLFLOW_EXPERIMENT_NAME": self.experiment,
                "SAGEPIPE_MLFLOW_JOURNAL": str(steps / f"{key}.jsonl"),
                "SAGEPIPE_MLFLOW_RUN_FILE": str(steps / f"{key}.run_id")}

    def step_finished(self, name: str, record: dict[str, Any], params: dict[str, Any], log: Path) -> None:
        key = self._keys.get(name)
        if self.run_dir is None or key is None:
            return
        status = record.get("status")
        tags = {"sagepipe.status": str(status), "sagepipe.cached": bool_text(status == "cached")}
        for field in ("note", "error", "cache_key"):
            if record.get(field):
                tags[f"sagepipe.{field}"] = str(record[field])[:5000]
        metrics = {k: float(record[k]) for k in ("duration_s", "attempts", "peak_rss_mb")
                   if isinstance(record.get(k), (int, float))}
        metrics.update(report_metrics(record.get("metrics") or {}))
        self._append({"e": "step_end", "key": key, "step": name, "status": status, "params": flatten(params),
                      "metrics": metrics, "tags": tags, "log": str(log)})

    def pipeline_finished(self, state: Any) -> None:
        from pipelines.tracking_journal import spawn_writer, writer_busy

        if self.run_dir is None:
            return
        data = state.data
        counts: dict[str, float] = {}
        for step in data["steps"].values():
            counts[f"steps_{step['status']}"] = counts.get(f"steps_{step['status']}", 0) + 1
        took = (data.get("ended_at") or time.time()) - data["started_at"]
        headline = headline_record(self.spec, data)
        self._append({"e": "end", "status": data["status"], "state": str(state.path),
                      "metrics": {"duration_s": took, **counts, **headline["metrics"]},
                      "tags": {"sagepipe.status": data["status"], **headline["tags"]}})
        if self._probe is not None:
            self._probe.join(3)
        if not writer_busy(self.run_dir):
            spawn_writer(self.run_dir, wait_s=600)

    def attach_run_file(self, path: Path, artifact_path: str | None = None) -> None:
        from pipelines.tracking_journal import spawn_writer

        if self.run_dir is None:
            return
        self._append({"e": "file", "path": str(Path(path).resolve()), "artifact_path": artifact_path})
        spawn_writer(self.run_dir, wait_s=600)  # the writer of the run may have finished already

    # --- plumbing -------------------------------------------------------------------------------
    def _append(self, event: dict[str, Any], key_for: str | None = None) -> str | None:
        from pipelines.tracking_journal import EVENTS, append_line, journal_dir

        assert self.run_dir is not None
        with self._lock:
            key = None
            if key_for is not None:
                key = f"{re.sub(r'[^A-Za-z0-9_-]', '_', key_for)[:100]}.{self._lines}"  # a safe file name
                self._keys[key_for] = key
                event["key"] = key
            if self._journal_error is None:
                try:
                    append_line(journal_dir(self.run_dir) / EVENTS, {**event, "t": int(time.time() * 1000)})
                except OSError as exc:  # the run folder turned read-only, say: tracking never fails a run
                    self._journal_error = exc
                    self.warn(f"warning: cannot write the run's MLflow journal ({exc.strerror or exc}); the rest "
                              "of this run is not recorded in MLflow")
            self._lines += 1
        return key

    def _check_reachable(self) -> None:
        why = unreachable(self.uri)
        if why:
            self.warn(f"warning: MLflow tracking at {self.uri} failed ({why}); the run goes on, and its MLflow "
                      "record is kept in the run folder and written by a later sagepipe command")


def headline_record(spec: Any, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What the parent run shows to sort and compare runs by: the evaluation reports' metrics (prefixed with
    the step name when there are several) and, as tags (params cannot change on a resume), the model version
    a register step registered and the gate's decision, as the run's state records them."""
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    steps = {s.name: s for s in spec.steps}
    evaluated = [n for n, r in data["steps"].items()
                 if getattr(steps.get(n), "type", None) == "evaluation" and r.get("metrics")]
    for name in evaluated:
        for key, value in report_metrics(data["steps"][name]["metrics"]).items():
            metrics[key if len(evaluated) == 1 else f"{name}.{key}"] = value
    for name, record in data["steps"].items():
        done = record.get("registered") if record.get("status") == "succeeded" else None
        if done:
            group, version = done["group"], str(done["version"])
            tags.update({"sagepipe.registered_model": group, "sagepipe.registered_version": version,
                         "sagepipe.registered": f"{group} version {version}"})
        decision = record.get("decision")
        if isinstance(decision, dict) and "outcome" in decision and "sagepipe.gate" not in tags:
            tags.update({"sagepipe.gate": name, "sagepipe.gate_passed": bool_text(bool(decision["outcome"]))})
    return {"metrics": metrics, "tags": tags}


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as handle:
            return sum(1 for _ in handle)
    except OSError:
        return 0


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
        params=[Param(k[:250], value_text(v)[:6000]) for k, v in (params or {}).items()],
        tags=[RunTag(k[:250], value_text(v)[:8000]) for k, v in (tags or {}).items()],
    )


def open_tracker(spec: Any, state_root: Path, warn: Callable[[str], None] | None = None) -> NullTracker:
    """The tracker for a run of spec: MLflow when a tracking URI is configured, else none."""
    uri = resolve_tracking_uri(spec.settings.tracking_uri, state_root, Path(spec.repo_root))
    if uri is None:
        return NullTracker()
    from pipelines.tracking_journal import complete_pending

    complete_pending(state_root)
    return MlflowTracker(uri, spec.name, spec, warn or (lambda text: print(text, file=sys.stderr)))


def step_run_id(tracking_env: dict[str, str], timeout: float = 600.0) -> str | None:
    """The MLflow run id of a step that runs in the runner's process (register, tuning): the nested run the
    background writer creates, waited for while the writer works (None when tracking is off or failed)."""
    if tracking_env.get("MLFLOW_RUN_ID"):
        return tracking_env["MLFLOW_RUN_ID"]
    from pipelines.tracking_journal import wait_for_run_id

    return wait_for_run_id(tracking_env.get("SAGEPIPE_MLFLOW_RUN_FILE"), timeout)
