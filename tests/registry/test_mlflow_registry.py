"""The MLflow model registry as MLflow users read it: plain tags, a description, an `approved` alias, the
training run as the version's source run, and the model's signature.

Each flow runs against the SQLite store and against a real `mlflow server` process on loopback.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from pipelines.registry.mlflow_backend import ALIAS, ARTIFACT_PATH, MlflowRegistry
from tests.mlflow_server import mlflow_server  # noqa: F401  (the real server fixture)

pytestmark = pytest.mark.tracked  # MLflow tracking and registry, as a user has them

REPORT = {"binary_classification_metrics": {
    "auc": {"value": 0.8444301543332015, "standard_deviation": 0.0123},
    "recall": {"value": 0.61, "standard_deviation": 0.02},
    "threshold": {"value": 0.4, "standard_deviation": 0.0},
    "confusion_matrix": {"0": {"0": 90, "1": 3}, "1": {"0": 2, "1": 5}}}}
TRANSFORM = {"version": 1, "numeric": ["injury_claim", "customer_age"], "liability": "policy_liability",
             "categorical": {"incident_type": ["Parked Car", "Theft"], "policy_state": ["OH"]},
             "features": ["injury_claim", "customer_age", "liability_per_person", "liability_per_accident",
                          "incident_type", "policy_state"]}


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's client falls back to ./mlflow.db and ./mlruns for what a test creates without a location."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(params=["sqlite", "server"])
def uri(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The store's URI; MLflow's own `models:/` URIs resolve against it too."""
    found = request.getfixturevalue("mlflow_server") if request.param == "server" else f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", found)
    return found


def _model(folder: Path, n: int, transform: bool = True) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(json.dumps({"n": n}))
    (folder / "metadata.json").write_text(json.dumps({"model_type": "lightgbm", "train_rows": 700}))
    if transform:
        (folder / "feature_transform.json").write_text(json.dumps(TRANSFORM))
    return folder


def _lineage(n: int, **extra: Any) -> dict[str, Any]:
    return {"model_hash": f"h{n}", "run_id": f"20250101-00000{n}", "pipeline": "fraud", "env": "local",
            "git_commit": "0123456789abcdef", "code_hash": "c0de", "data_hashes": {"train": "d1", "test": "d2"},
            **extra}


def _pipeline_runs(client: Any, cached_train_key: str | None = None) -> dict[str, str]:
    """A parent run with nested `train` and `register` runs, tagged as the tracker tags them."""
    found = client.get_experiment_by_name("fraud")
    experiment = found.experiment_id if found else client.create_experiment("fraud")
    parent = client.create_run(experiment, run_name="fraud-run", tags={"sagepipe.kind": "pipeline"}).info.run_id
    cached = cached_train_key is not None
    train_tags = {"mlflow.parentRunId": parent, "sagepipe.step": "train", "sagepipe.cached": str(cached).lower(),
                  "sagepipe.cache_key": cached_train_key or "key-1"}
    runs = {"parent": parent}
    for name, tags in (("train", train_tags), ("register", {"mlflow.parentRunId": parent, "sagepipe.step": "register"})):
        runs[name] = client.create_run(experiment, run_name=name, tags=tags).info.run_id
    return runs


def test_a_version_reads_as_tags_a_description_and_a_signature(uri: str, tmp_path: Path) -> None:
    registry = MlflowRegistry(uri, tmp_path / "models")
    package, created = registry.register("fraud", _model(tmp_path / "m1", 1), REPORT, "PendingManualApproval",
                                         _lineage(1, training_step="train", step="register"))
    assert created and package["status"] == "PendingManualApproval" and package["metrics"] == REPORT
    version = registry.client.get_model_version("fraud", "1")
    tags = version.tags
    assert tags["status"] == "PendingManualApproval"
    assert tags["metric.test_auc"] == "0.84443" and tags["metric.test_auc.standard_deviation"] == "0.0123"
    assert tags["metric.test_confusion_matrix.1.1"] == "5" and tags["metric.test_threshold"] == "0.4"
    assert (tags["pipeline_run_id"], tags["git_commit"], tags["pipeline"]) == ("20250101-000001", "0123456789abcdef",
                                                                                "fraud")
    assert (tags["data.train"], tags["training_step"], tags["register_step"]) == ("d1", "train", "register")
    assert tags["source_run"] == version.run_id
    blobs = [k for k, v in tags.items() if v.startswith(("{", "[")) and k != "sagepipe.evaluation_report"]
    assert not blobs, blobs
    (history,) = [v for k, v in tags.items() if k.startswith("history.")]
    assert history.endswith(" PendingManualApproval by " + package["history"][0]["by"] + " — registered")
    assert "**PendingManualApproval** — fraud version 1, registered by pipeline `fraud` (run `20250101-000001`" \
        in version.description
    assert "Test metrics at threshold 0.4: auc 0.8444 ± 0.0123, recall 0.6100 ± 0.0200." in version.description
    assert "`sagepipe models approve fraud 1`" in version.description

    mlmodel = _mlmodel(uri, "fraud", 1)
    signature = json.loads(mlmodel["signature"]["inputs"])
    assert [(c["name"], c["type"]) for c in signature] == [
        ("injury_claim", "double"), ("customer_age", "double"), ("policy_liability", "string"),
        ("incident_type", "string"), ("policy_state", "string")]
    assert json.loads(mlmodel["signature"]["outputs"]) == [{"type": "double", "name": "fraud_probability",
                                                            "required": True}]
    assert mlmodel["run_id"] == version.run_id and mlmodel["metadata"]["model_type"] == "lightgbm"

    approved = registry.set_status("fraud", 1, "Approved", note="looks good")
    assert approved["aliases"] == [ALIAS] and [h["previous"] for h in approved["history"]] == \
        [None, "PendingManualApproval"]
    assert approved["history"][-1]["note"] == "looks good"
    after = registry.client.get_model_version("fraud", "1")
    assert after.tags["status"] == "Approved" and after.description.startswith("**Approved**")
    assert "Approved (was PendingManualApproval) by" in after.description and "looks good" in after.description
    assert json.loads((registry.model_path(approved) / "model.json").read_text()) == {"n": 1}


def _mlmodel(uri: str, group: str, version: int) -> dict[str, Any]:
    """The MLmodel file of a version, read the way MLflow's UI reads it on a server."""
    import yaml

    if uri.startswith("http"):
        url = f"{uri}/model-versions/get-artifact?path=MLmodel&name={group}&version={version}"
        with urllib.request.urlopen(url, timeout=30) as answer:
            return yaml.safe_load(answer.read())
    import mlflow.artifacts

    local = mlflow.artifacts.download_artifacts(f"models:/{group}/{version}/MLmodel", tracking_uri=uri)
    return yaml.safe_load(Path(local).read_text())


def test_the_approved_alias_follows_approvals_and_rejections(uri: str, tmp_path: Path, home: Path) -> None:
    import mlflow.artifacts

    from pipelines.serving.serve import resolve

    registry = MlflowRegistry(uri, tmp_path / "models")
    for n in (1, 2, 3):
        registry.register("fraud", _model(tmp_path / f"m{n}", n), REPORT, "PendingManualApproval", _lineage(n))

    def alias() -> int | None:
        found = registry.client.get_registered_model("fraud").aliases
        return int(found[ALIAS]) if ALIAS in found else None

    assert alias() is None and registry.approved("fraud") is None
    registry.set_status("fraud", 2, "Approved")
    registry.set_status("fraud", 1, "Approved")  # the later approval names the version, not the number
    assert alias() == 1 and registry.approved("fraud")["version"] == 1
    record = json.loads(resolve("fraud@approved", registry, home).read_text())
    assert record["version"] == 1 and record["threshold"] == 0.4
    local = mlflow.artifacts.download_artifacts(f"models:/fraud@{ALIAS}/MLmodel", tracking_uri=uri)
    assert Path(local).is_file()  # MLflow's own `models:/NAME@approved` names it too

    registry.set_status("fraud", 3, "Rejected")  # not the aliased one: nothing moves
    assert alias() == 1
    registry.set_status("fraud", 1, "Rejected")  # the alias falls back to the newest still Approved
    assert alias() == 2 and registry.show("fraud", 1)["aliases"] == []
    registry.set_status("fraud", 2, "Rejected")
    assert alias() is None and registry.approved("fraud") is None
    registry.set_status("fraud", 3, "Approved", force=True)
    assert alias() == 3 and registry.show("fraud", 3)["aliases"] == [ALIAS]


def test_the_version_links_to_the_run_that_trained_the_model(uri: str, tmp_path: Path) -> None:
    registry = MlflowRegistry(uri, tmp_path / "models")
    first = _pipeline_runs(registry.client)
    package, _ = registry.register("fraud", _model(tmp_path / "m1", 1), REPORT, "PendingManualApproval",
                                   _lineage(1, training_step="train", mlflow_run_id=first["register"]),
                                   run_id=first["register"])
    version = registry.client.get_model_version("fraud", "1")
    assert version.run_id == first["train"] and package["mlflow_run_id"] == first["train"]
    assert version.source.rstrip("/").endswith(f"{first['train']}/artifacts/{ARTIFACT_PATH}")
    assert version.tags["register_run"] == first["register"] and version.tags["source_run"] == first["train"]
    listed = {a.path for a in registry.client.list_artifacts(first["train"], ARTIFACT_PATH)}
    assert listed == {f"{ARTIFACT_PATH}/MLmodel", f"{ARTIFACT_PATH}/model.tar.gz"}

    again = _pipeline_runs(registry.client, cached_train_key="key-1")  # a later run whose training was a cache hit
    registry.register("fraud-copy", _model(tmp_path / "m1b", 1), REPORT, "PendingManualApproval",
                      _lineage(1, training_step="train", mlflow_run_id=again["register"]), run_id=again["register"])
    assert registry.client.get_model_version("fraud-copy", "1").run_id == first["train"]

    plain, _ = registry.register("fraud", _model(tmp_path / "m2", 2, transform=False), {}, "PendingManualApproval",
                                 _lineage(2))  # no pipeline runs named: a registration run of its own
    assert plain["mlflow_run_id"] not in (first["train"], first["register"])
    assert _mlmodel(uri, "fraud", 2).get("signature") is None


def test_versions_written_with_json_tags_still_read_and_change(tmp_path: Path) -> None:
    import tarfile

    registry = MlflowRegistry(f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "models")
    client = registry.client
    client.create_registered_model("old")
    run = client.create_run(client.create_experiment("old-runs")).info.run_id
    model = _model(tmp_path / "m", 7, transform=False)
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as tar:
        tar.add(model / "model.json", "model.json")
    client.log_artifact(run, str(tmp_path / "model.tar.gz"), "model_package")
    source = client.get_run(run).info.artifact_uri + "/model_package/model.tar.gz"
    entry = {"status": "PendingManualApproval", "at": "2025-01-01T00:00:00.000001+00:00", "by": "ana",
             "note": "registered", "previous": None}
    client.create_model_version("old", source, run_id=run, tags={
        "sagepipe.approval_status": "PendingManualApproval", "sagepipe.metrics": json.dumps(REPORT),
        "sagepipe.lineage": json.dumps({"run_id": "r7", "model_hash": "h7"}),
        "sagepipe.history.01735689600000000000.abcd": json.dumps(entry)})
    package = registry.show("old", 1)
    assert (package["status"], package["metrics"], package["lineage"]) == \
        ("PendingManualApproval", REPORT, {"run_id": "r7", "model_hash": "h7"})
    assert package["history"] == [entry]
    changed = registry.set_status("old", 1, "Approved", note="still good")
    assert changed["status"] == "Approved" and changed["aliases"] == [ALIAS]
    assert [h["by"] for h in changed["history"]][0] == "ana" and changed["history"][1]["note"] == "still good"
    assert json.loads((registry.model_path(changed) / "model.json").read_text()) == {"n": 7}


def test_a_pipeline_run_registers_a_version_of_its_training_run(tmp_path: Path, home: Path) -> None:
    from mlflow.tracking import MlflowClient

    from tests.tracking.test_tracking import _models, _run, tracked_project

    folder = tracked_project(tmp_path / "project", "sqlite:///.sagepipe/mlflow.db")
    summary = _run(folder, home)
    uri = f"sqlite:///{home}/mlflow.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("tracked").experiment_id
    (parent,) = client.search_runs([experiment], filter_string=f"tags.`sagepipe.run_id` = '{summary['run_id']}'")
    children = {r.info.run_name: r.info.run_id for r in
                client.search_runs([experiment], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")}
    version = client.get_model_version("tracked-models", "1")
    assert version.run_id == children["train"] and version.tags["register_run"] == children["register"]
    assert version.tags["pipeline_run_id"] == summary["run_id"] and version.tags["metric.test_auc"] == "0.8"

    approved = _models(folder, home, "approve", "tracked-models", "1")
    assert approved.returncode == 0, approved.stderr
    shown = _models(folder, home, "show", "tracked-models", "1").stdout
    assert "aliases       @approved" in shown and f"source_run    {children['train']}" in shown
    assert int(client.get_model_version_by_alias("tracked-models", "approved").version) == 1
