"""MLflow tracking, the MLflow model registry and approval-driven deployment.

Each flow runs against the SQLite store and against a real `mlflow server` process on loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipelines.approvals import DEPLOY_ON_APPROVAL, matches, state_change_event
from pipelines.registry.mlflow_backend import MlflowRegistry
from pipelines.tracking_journal import record_status
from tests.conftest import REPO, free_port, make_project, run_cli, run_cli_here
from tests.mlflow_server import mlflow_server  # noqa: F401  (the real server fixture)

pytestmark = pytest.mark.tracked  # MLflow tracking and registry, as a user has them

TRACKED = """
name: tracked
parameters:
  min_auc: {type: float, default: 0.7}
  epochs: {type: integer, default: 3}
steps:
  - {name: prepare, type: processing, code: scripts/emit.py, outputs: [data]}
  - name: train
    type: training
    code: scripts/tracked_train.py
    inputs: {train: "${steps.prepare.outputs.data}"}
    hyperparameters: {epochs: "${params.epochs}"}
  - name: evaluate
    type: evaluation
    code: scripts/score.py
    inputs: {model: "${steps.train.outputs.model}"}
    arguments: [--auc, "0.8"]
    outputs: [evaluation]
  - name: gate
    type: condition
    condition: {left: "${steps.evaluate.metrics.binary_classification_metrics.auc.value}", op: ">=",
                right: "${params.min_auc}"}
    if_true: [register]
    if_false: [too-low]
  - {name: register, type: register, model: "${steps.train.outputs.model}", model_group: tracked-models,
     metrics: "${steps.evaluate.outputs.evaluation}"}
  - {name: too-low, type: fail, message: AUC too low}
  - {name: deploy, type: deploy, depends_on: [register], model_group: tracked-models, endpoint_name: tracked-dev}
"""


def tracked_project(folder: Path, tracking_uri: str, pipeline: str = TRACKED) -> Path:
    """A small git repository with a tracked pipeline, its scripts and a local env overlay."""
    make_project(folder, "tracked", pipeline, {"local": f"tracking_uri: {tracking_uri}\n"},
                 ("emit.py", "score.py", "tracked_train.py"))
    shutil.copy(REPO / "model_code" / "tracking.py", folder / "scripts" / "tracking.py")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    subprocess.run(["git", "add", "."], cwd=folder, check=True)
    subprocess.run([*git, "commit", "-qm", "pipeline"], cwd=folder, check=True)
    return folder


@pytest.fixture(params=["sqlite", "server"])
def project(request: pytest.FixtureRequest, tmp_path: Path, home: Path) -> tuple[Path, str]:
    """(project folder, the tracking URI a client reads it back with), for each backend."""
    if request.param == "server":
        uri = request.getfixturevalue("mlflow_server")
        return tracked_project(tmp_path / "project", uri), uri
    return tracked_project(tmp_path / "project", "sqlite:///.sagepipe/mlflow.db"), f"sqlite:///{home}/mlflow.db"


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _run(project: Path, home: Path, *extra: str, wait: bool = True) -> dict:
    done = run_cli("run", "configs/tracked.yaml", "--json", *extra, home=home, cwd=project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "warning" not in done.stderr, done.stderr
    summary = json.loads(done.stdout)
    if wait:
        _wait_written(home / "runs" / summary["run_id"])
    return summary


def _wait_written(run_dir: Path, seconds: float = 180) -> dict:
    """The run's MLflow record once the background writer has written it all."""
    deadline = time.time() + seconds
    while True:
        record = record_status(run_dir)
        assert record is not None, f"{run_dir} has no MLflow journal"
        if record["state"] == "written":
            return record
        if time.time() > deadline:
            log = run_dir / "mlflow" / "writer.log"
            pytest.fail(f"MLflow record of {run_dir.name} still {record}: {log.read_text() if log.exists() else ''}")
        time.sleep(0.3)


def _runs(client, experiment_id: str, filter_string: str) -> list:
    return client.search_runs([experiment_id], filter_string=filter_string)


def test_a_run_is_a_parent_run_with_a_nested_run_per_executed_step(project: tuple[Path, str], home: Path) -> None:
    folder, uri = project
    summary = _run(folder, home)
    client = _client(uri)
    experiment = client.get_experiment_by_name("tracked")
    (parent,) = _runs(client, experiment.experiment_id, f"tags.`sagepipe.run_id` = '{summary['run_id']}'")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True).stdout.strip()
    assert parent.info.run_name == f"tracked-{summary['run_id']}" and parent.info.status == "FINISHED"
    assert parent.data.tags["sagepipe.env"] == "local" and parent.data.tags["sagepipe.git_commit"] == commit
    assert len(parent.data.tags["sagepipe.config_hash"]) == 16
    assert parent.data.params == {"min_auc": "0.7", "epochs": "3"}
    assert "state.json" in [a.path for a in client.list_artifacts(parent.info.run_id)]

    children = {r.info.run_name: r for r in
                _runs(client, experiment.experiment_id, f"tags.mlflow.parentRunId = '{parent.info.run_id}'")}
    assert set(children) == {"prepare", "train", "evaluate", "gate", "register", "deploy"}  # too-low was skipped
    assert all(r.info.status == "FINISHED" and r.data.tags["sagepipe.cached"] == "false" for r in children.values())
    train = children["train"]
    assert train.data.params["epochs"] == "3" and train.data.params["hyperparameters.epochs"] == "3"
    assert [m.value for m in client.get_metric_history(train.info.run_id, "loss")] == [1.0, 0.5, 1 / 3]
    assert train.data.tags["sagepipe.step_type"] == "training" and train.data.metrics["duration_s"] > 0
    assert {a.path for a in client.list_artifacts(train.info.run_id)} >= {"logs", "model_files"}
    log = client.download_artifacts(train.info.run_id, "logs/log.txt")
    assert "trained 3 epochs" in Path(log).read_text()
    assert children["evaluate"].data.metrics["auc"] == 0.8

    again = _run(folder, home)  # everything but the gate and registry steps comes from the cache
    (parent2,) = _runs(client, experiment.experiment_id, f"tags.`sagepipe.run_id` = '{again['run_id']}'")
    cached = {r.info.run_name: r.data.tags["sagepipe.cached"] for r in
              _runs(client, experiment.experiment_id, f"tags.mlflow.parentRunId = '{parent2.info.run_id}'")}
    assert cached["prepare"] == cached["train"] == cached["evaluate"] == "true"
    assert cached["register"] == "false"


def _models(folder: Path, home: Path, *args: str) -> subprocess.CompletedProcess:
    # In this process: MLflow is imported once. Several commands in one process also hold what a command-line
    # test cannot: a decision's "while you were deciding" time is the command's start, not the module's import
    # (a rejection followed by a forced approval in one process once refused as a conflict).
    done = run_cli_here("models", *args, home=home, cwd=folder)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def _endpoint(home: Path) -> dict:
    return json.loads((home / "endpoints" / "tracked-dev.json").read_text())


def test_register_pending_then_approval_deploys_and_rejection_does_not(project: tuple[Path, str], home: Path) -> None:
    folder, _ = project
    first = _run(folder, home)
    listed = json.loads(_models(folder, home, "list", "--json").stdout)
    assert listed == [{"group": "tracked-models", "version": 1, "status": "PendingManualApproval",
                       "metrics": {"auc": 0.8, "auc.standard_deviation": 0.0}, "run_id": first["run_id"]}]
    assert not (home / "endpoints" / "tracked-dev.json").exists()  # pending never deploys

    approved = _models(folder, home, "approve", "tracked-models", "1", "--note", "looks good")
    assert approved.returncode == 0, approved.stderr
    assert "PendingManualApproval -> Approved" in approved.stdout
    assert "endpoint tracked-dev now serves tracked-models version 1" in approved.stdout
    endpoint = _endpoint(home)
    assert endpoint["version"] == 1 and json.loads((Path(endpoint["model_dir"]) / "model.json").read_text())["epochs"] == 3
    shown = json.loads(_models(folder, home, "show", "tracked-models", "1", "--json").stdout)
    assert shown["status"] == "Approved" and shown["lineage"]["run_id"] == first["run_id"]
    assert [h["status"] for h in shown["history"]] == ["PendingManualApproval", "Approved"]
    assert shown["history"][-1]["previous"] == "PendingManualApproval" and shown["history"][-1]["note"] == "looks good"
    assert shown["history"][-1]["by"] and shown["history"][-1]["at"]
    assert set(shown["lineage"]["data_hashes"]) == {"train"} and shown["lineage"]["code_hash"]

    _run(folder, home, "--param", "epochs=5")  # a new model: version 2, pending
    rejected = _models(folder, home, "reject", "tracked-models", "2", "--note", "worse")
    assert rejected.returncode == 0 and "no deployment" in rejected.stdout
    assert _endpoint(home)["version"] == 1

    refused = _models(folder, home, "approve", "tracked-models", "2")
    assert refused.returncode == 5 and "was rejected; approving it needs --force" in refused.stderr
    assert _endpoint(home)["version"] == 1
    forced = _models(folder, home, "approve", "tracked-models", "2", "--force", "--note", "second look")
    assert forced.returncode == 0 and _endpoint(home)["version"] == 2

    typo = _models(folder, home, "show", "tracked-modles", "1")
    assert typo.returncode == 5 and "no model group 'tracked-modles' — did you mean 'tracked-models'?" in typo.stderr
    missing = _models(folder, home, "approve", "tracked-models", "9")
    assert missing.returncode == 5 and "has no version 9 (versions: 1, 2)" in missing.stderr
    twice = _models(folder, home, "approve", "tracked-models", "1")
    assert twice.returncode == 5 and "already Approved" in twice.stderr
    table = _models(folder, home, "list").stdout
    assert "Approved" in table and "Rejected" not in table.split("\n")[1]


def test_unreachable_tracking_server_warns_once_and_the_run_succeeds(tmp_path: Path, home: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    untracked_tail = TRACKED.split("  - name: gate")[0]  # no registration: that needs a reachable registry
    folder = tracked_project(tmp_path / "project", "sqlite:///.sagepipe/mlflow.db", untracked_tail)
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)  # the variable wins over the env file
    started = time.time()
    done = run_cli("run", "configs/tracked.yaml", "--json", home=home, cwd=folder)
    assert done.returncode == 0, done.stderr
    assert time.time() - started < 60  # no minutes of HTTP retries
    assert [s["status"] for s in json.loads(done.stdout)["steps"]] == ["succeeded"] * 3
    assert done.stderr.count(f"warning: MLflow tracking at {dead}") == 1 and "Traceback" not in done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    train_log = (home / "runs" / run_id / "train" / "log.txt").read_text()
    assert "warning" not in train_log and "trained 3 epochs" in train_log  # the step's logging is journaled
    assert not (home / "mlflow.db").exists()
    shown = _shown(folder, home, run_id)  # kept, not lost: pending until the server answers
    assert "MLflow record: pending" in shown and dead in shown


def test_the_deploy_rule_matches_approvals_only() -> None:
    package = {"group": "g", "version": 3, "model_uri": "s3://b/model.tar.gz"}
    assert matches(DEPLOY_ON_APPROVAL, state_change_event({**package, "status": "Approved"}))
    for status in ("Rejected", "PendingManualApproval"):
        assert not matches(DEPLOY_ON_APPROVAL, state_change_event({**package, "status": status}))
    other = {**state_change_event({**package, "status": "Approved"}), "detail-type": "SageMaker Endpoint State Change"}
    assert not matches(DEPLOY_ON_APPROVAL, other)


def test_concurrent_registrations_and_an_approval_racing_a_registration(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"

    def model(n: int) -> Path:
        folder = tmp_path / f"model-{n}"
        folder.mkdir()
        (folder / "model.json").write_text(json.dumps({"n": n}))
        return folder

    def register(n: int) -> None:
        MlflowRegistry(uri, tmp_path / "models").register("race", model(n), {"n": n}, "PendingManualApproval",
                                                          {"model_hash": f"h{n}", "run_id": f"r{n}"})

    def together(*actions) -> None:
        barrier = threading.Barrier(len(actions))
        errors: list[BaseException] = []

        def run(action):
            barrier.wait()
            try:
                action()
            except BaseException as exc:  # surfaced below
                errors.append(exc)
        threads = [threading.Thread(target=run, args=(a,)) for a in actions]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors

    register(0)  # creates the store and the group
    together(lambda: register(1), lambda: register(2))
    registry = MlflowRegistry(uri, tmp_path / "models")
    assert [p["version"] for p in registry.versions("race")] == [1, 2, 3]
    assert sorted(p["metrics"]["n"] for p in registry.versions("race")) == [0, 1, 2]
    together(lambda: MlflowRegistry(uri, tmp_path / "models").set_status("race", 2, "Approved", note="ok"),
             lambda: register(3))
    packages = {p["version"]: p for p in registry.versions("race")}
    assert packages[2]["status"] == "Approved" and len(packages[2]["history"]) == 2
    assert packages[4]["status"] == "PendingManualApproval" and packages[4]["metrics"] == {"n": 3}
    assert json.loads((registry.model_path(packages[4]) / "model.json").read_text()) == {"n": 3}


def _shown(folder: Path, home: Path, run_id: str) -> str:
    done = run_cli("runs", "show", run_id, home=home, cwd=folder)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return done.stdout


def test_parent_run_carries_headline_metrics_and_the_registered_version(tmp_path: Path, home: Path) -> None:
    folder = tracked_project(tmp_path / "project", "sqlite:///.sagepipe/mlflow.db")
    summary = _run(folder, home)
    client = _client(f"sqlite:///{home}/mlflow.db")
    experiment = client.get_experiment_by_name("tracked")
    (parent,) = _runs(client, experiment.experiment_id, f"tags.`sagepipe.run_id` = '{summary['run_id']}'")
    assert parent.data.metrics["auc"] == 0.8 and parent.data.metrics["auc.standard_deviation"] == 0.0
    assert parent.data.tags["sagepipe.registered_model"] == "tracked-models"
    assert parent.data.tags["sagepipe.registered_version"] == "1"
    assert parent.data.tags["sagepipe.registered"] == "tracked-models version 1"
    best = client.search_runs([experiment.experiment_id], "tags.`sagepipe.kind` = 'pipeline'",
                              order_by=["metrics.auc DESC"])
    assert [r.info.run_id for r in best] == [parent.info.run_id]
    shown = _shown(folder, home, summary["run_id"])
    assert f"MLflow record: written (sqlite:///{home}/mlflow.db, parent run {parent.info.run_id})" in shown


def test_a_killed_writer_leaves_the_record_pending_and_the_next_command_writes_it(tmp_path: Path,
                                                                                   home: Path) -> None:
    folder = tracked_project(tmp_path / "project", "sqlite:///.sagepipe/mlflow.db", TRACKED.split("  - name: gate")[0])
    command = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", "configs/tracked.yaml", "--json"],
                               cwd=folder, env={**os.environ, "SAGEPIPE_HOME": str(home)}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    killed = _kill_writers(home, command)  # every writer the run starts dies before it writes anything
    out, err = command.communicate(timeout=120)
    assert command.returncode == 0 and "warning" not in err, err
    run_id = json.loads(out)["run_id"]
    run_dir = home / "runs" / run_id
    assert killed and record_status(run_dir)["state"] == "pending"
    assert "MLflow record: pending, being written in the background now" in _shown(folder, home, run_id)
    _wait_written(run_dir)
    client = _client(f"sqlite:///{home}/mlflow.db")
    experiment = client.get_experiment_by_name("tracked")
    (parent,) = _runs(client, experiment.experiment_id, f"tags.`sagepipe.run_id` = '{run_id}'")
    children = _runs(client, experiment.experiment_id, f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert parent.info.status == "FINISHED" and sorted(r.info.run_name for r in children) == ["evaluate", "prepare",
                                                                                            "train"]
    train = next(r for r in children if r.info.run_name == "train")
    assert [m.value for m in client.get_metric_history(train.info.run_id, "loss")] == [1.0, 0.5, 1 / 3]
    assert train.data.params["epochs"] == "3" and parent.data.metrics["auc"] == 0.8
    assert "MLflow record: written" in _shown(folder, home, run_id)


def _kill_writers(home: Path, command: subprocess.Popen) -> list[int]:
    """SIGKILL each journal writer as soon as it holds its lock, until 3 s after command ends."""
    import signal

    from pipelines.tracking_journal import writer_busy

    killed: list[int] = []
    quiet_until = None
    while quiet_until is None or time.time() < quiet_until:
        if quiet_until is None and command.poll() is not None:
            quiet_until = time.time() + 3
        for lock in home.glob("runs/*/mlflow/writer.lock"):
            holder = lock.read_text().strip()
            if holder and writer_busy(lock.parent.parent) and int(holder) not in killed:
                with contextlib_suppress():
                    os.kill(int(holder), signal.SIGKILL)
                    killed.append(int(holder))
        time.sleep(0.02)
    return killed


def contextlib_suppress():
    import contextlib

    return contextlib.suppress(ProcessLookupError, ValueError)


POISON = """import os, pathlib
pathlib.Path(os.environ["POISON_MARK"], str(os.getpid())).write_text(repr(__import__("sys").argv))
raise ImportError("mlflow imported while tracking is off")
"""


@pytest.mark.parametrize("how", ["variable", "env-file"])
def test_tracking_none_imports_mlflow_nowhere(tmp_path: Path, home: Path, how: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    untracked = TRACKED.split("  - name: gate")[0]
    uri = "none" if how == "env-file" else "sqlite:///.sagepipe/mlflow.db"
    folder = tracked_project(tmp_path / "project", uri, untracked)
    poison, marks = tmp_path / "poison", tmp_path / "marks"
    (poison / "mlflow").mkdir(parents=True)
    (poison / "mlflow" / "__init__.py").write_text(POISON)
    marks.mkdir()
    monkeypatch.setenv("POISON_MARK", str(marks))
    monkeypatch.setenv("PYTHONPATH", str(poison))  # the runner and every step process see the poisoned mlflow
    if how == "variable":
        monkeypatch.setenv("MLFLOW_TRACKING_URI", "none")
    done = run_cli("run", "configs/tracked.yaml", "--json", home=home, cwd=folder)
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    assert list(marks.iterdir()) == [] and "warning" not in done.stderr
    train_log = (home / "runs" / run_id / "train" / "log.txt").read_text()
    assert "trained 3 epochs" in train_log and "unavailable" not in train_log
    assert not (home / "runs" / run_id / "mlflow").exists() and "MLflow record" not in _shown(folder, home, run_id)


def test_a_file_attached_after_the_run_lands_on_the_parent_run(tmp_path: Path, home: Path) -> None:
    from pipelines.loader import load_pipeline
    from pipelines.local.runner import LocalRunner
    from pipelines.tracking import open_tracker

    folder = tracked_project(tmp_path / "project", "sqlite:///.sagepipe/mlflow.db", TRACKED.split("  - name: gate")[0])
    spec = load_pipeline(folder / "configs" / "tracked.yaml", "local")
    tracker = open_tracker(spec, home, warn=lambda text: pytest.fail(text))
    state = LocalRunner(spec, home, tracker=tracker, report=lambda *a: None).run()
    report = state.path.parent / "report.html"
    report.write_text("<html>the run</html>")
    tracker.attach_run_file(report)
    _wait_written(state.path.parent)
    client = _client(f"sqlite:///{home}/mlflow.db")
    parent = client.get_run(record_status(state.path.parent)["parent_run_id"])
    assert {"report.html", "state.json"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert Path(client.download_artifacts(parent.info.run_id, "report.html")).read_text() == "<html>the run</html>"


def test_odd_step_and_metric_names_reach_mlflow_and_stay_in_the_run_folder(tmp_path: Path) -> None:
    """A step named '../../x' (an emulated definition can carry one) keeps its journal files in the run folder,
    and metrics MLflow refuses by name ('recall@top5') or value ('n/a') no longer hold the run's record up for
    good: the writer failed on that line for ever, and the step's files were written outside the state folder."""
    from pipelines.tracking import MlflowTracker
    from pipelines.tracking_journal import EVENTS, append_line, journal_dir
    from pipelines.tracking_writer import JournalWriter

    run_dir = tmp_path / "state" / "runs" / "r1"
    steps = journal_dir(run_dir) / "steps"
    steps.mkdir(parents=True)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(uri, "odd", spec=None, warn=print)
    tracker.run_dir = run_dir
    append_line(journal_dir(run_dir) / EVENTS, {"e": "start", "uri": uri, "experiment": "odd", "run_name": "odd-r1",
                                                "tags": {"sagepipe.run_id": "r1", "sagepipe.kind": "pipeline"},
                                                "params": {"a@b": 1}, "t": 1})
    env = tracker.step_started("../../x'y", "processing")
    for variable in ("SAGEPIPE_MLFLOW_JOURNAL", "SAGEPIPE_MLFLOW_RUN_FILE"):
        assert Path(env[variable]).resolve().parent == steps.resolve()
    append_line(Path(env["SAGEPIPE_MLFLOW_JOURNAL"]),
                {"e": "metrics", "metrics": {"recall@top5": 0.5, "loss": float("nan"), "note": "n/a"}})
    tracker.step_finished("../../x'y", {"status": "succeeded", "metrics": {"auc": {"value": float("inf")}}},
                          {"top@k": 5}, run_dir / "log.txt")
    append_line(journal_dir(run_dir) / EVENTS, {"e": "end", "status": "succeeded", "state": str(run_dir / "none"),
                                                "metrics": {"recall@top5": 0.5}, "t": 2})
    writer = JournalWriter(run_dir)
    writer.apply_pending()
    assert "error" not in writer.progress and writer.ended
    client = _client(uri)
    experiment = client.get_experiment_by_name("odd")
    (step,) = _runs(client, experiment.experiment_id, "tags.`sagepipe.kind` = 'step'")
    assert step.data.metrics["recall_top5"] == 0.5 and step.data.params["top_k"] == "5"
    assert step.data.metrics["auc"] > 1e308 and "note" not in step.data.metrics  # the SQL store keeps inf as max float
    assert step.info.run_name == "../../x'y" and step.info.status == "FINISHED"
    assert {p.name for p in tmp_path.iterdir()} <= {"mlflow.db", ".mlflow.db.lock", "state"}  # the store's lock
    assert sorted(p.name for p in steps.iterdir()) == sorted(Path(env[v]).name for v in ("SAGEPIPE_MLFLOW_JOURNAL",
                                                                                     "SAGEPIPE_MLFLOW_RUN_FILE"))


@pytest.mark.parametrize("name", ["recall@top5", "a//b", "../x", "./x", "x/", ".", "", "/abs", "ok name:1"])
def test_a_job_logging_to_mlflow_directly_names_keys_as_the_writer_does(name: str) -> None:
    """On SageMaker a job logs to MLflow itself (model_code/tracking.py): the same key MLflow accepts as the
    local journal writer's, so one metric has one name on every backend (there, MLflow refused it and the
    job's tracking went off for the rest of the step)."""
    from mlflow.utils.validation import _validate_metric_name

    from pipelines.tracking_writer import mlflow_name

    sys.path.insert(0, str(REPO / "model_code"))
    try:
        import tracking as job_tracking
    finally:
        sys.path.remove(str(REPO / "model_code"))
    assert job_tracking._key(name) == mlflow_name(name)
    _validate_metric_name(mlflow_name(name))
