"""The example pipeline end to end, on generated data, on the real reference data, and on bad data."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.registry.mlflow_backend import MlflowRegistry
from tests.conftest import REPO, SHARED_DATA, run_cli, run_cli_here
from tests.example_run import PARAMS, ExampleRun

CONFIG = "configs/fraud-detection.yaml"
pytestmark = pytest.mark.slow


def _registry(home: Path) -> MlflowRegistry:
    """The local env's registry: MLflow's, on the SQLite store in the state folder."""
    return MlflowRegistry(f"sqlite:///{home}/mlflow.db", home / "models")


def _auc(summary: dict) -> float:
    return summary["metrics"]["evaluate"]["binary_classification_metrics"]["auc"]["value"]


@pytest.mark.tracked  # the example's version in MLflow's registry, and its logged model
def test_generated_data_run_registers_a_pending_model(example_run: ExampleRun, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The session's run of the example on 2,000 generated rows (a copy of its state folder: this test runs again)."""
    home = example_run.copy(tmp_path / "copy").home
    summary = example_run.summary
    assert 0.75 <= _auc(summary) <= 0.95  # over the config's default gate (min_auc 0.75), not only the test's 0.5
    statuses = {s["name"]: s["status"] for s in summary["steps"]}
    assert statuses["register"] == "succeeded" and statuses["auc-too-low"] == "skipped"
    package = _registry(home).latest("fraud-detection")
    assert package["status"] == "PendingManualApproval"
    assert package["metrics"]["binary_classification_metrics"]["auc"]["value"] == _auc(summary)
    model_dir = _registry(home).model_path(package)
    assert {"model.txt", "feature_transform.json", "metadata.json"} <= {p.name for p in model_dir.iterdir()}
    assert (model_dir / "model.txt").read_text().startswith("tree")
    run_dir = home / "runs" / summary["run_id"]
    evaluation = run_dir / "evaluate" / "processing" / "output" / "evaluation"
    for plot in ("roc.png", "precision_recall.png", "feature_importance.png"):
        assert (evaluation / plot).read_bytes()[:4] == b"\x89PNG"
    docs = run_dir / "preprocess" / "processing" / "output" / "data_docs"
    assert "claims_csv" in (docs / "index.html").read_text()
    assert len(list((docs / "validations").rglob("*.html"))) == 2
    # a second run is fully cached and registers nothing new
    again = json.loads(run_cli("run", CONFIG, *PARAMS, "--json", home=home).stdout)
    assert {s["name"]: s["cached"] for s in again["steps"]}["train"] is True
    assert len(_registry(home).versions("fraud-detection")) == 1
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home}/mlflow.db")  # for models:/ URIs
    _check_logged_lightgbm_model(home, summary["run_id"])


def _check_logged_lightgbm_model(home: Path, run_id: str) -> None:
    """Training logged the booster through mlflow.lightgbm, with a signature and an input example."""
    import mlflow.lightgbm
    from mlflow.models import get_model_info
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{home}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("fraud-detection")
    (parent,) = client.search_runs([experiment.experiment_id], f"tags.`sagepipe.run_id` = '{run_id}'")
    (train,) = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}' "
                                                                "and attributes.run_name = 'train'")
    assert train.data.params["num_leaves"] == "15" and len(client.get_metric_history(train.info.run_id,
                                                                                     "validation_auc")) > 10
    (logged,) = client.search_logged_models([experiment.experiment_id],
                                            filter_string=f"source_run_id = '{train.info.run_id}'")
    info = get_model_info(logged.model_uri)
    assert info.signature is not None and info.saved_input_example_info is not None
    assert "lightgbm" in info.flavors
    booster = mlflow.lightgbm.load_model(logged.model_uri)
    assert booster.num_trees() > 0


@pytest.mark.skipif(not SHARED_DATA.exists(), reason="../shared/data/insurance-claims is not present")
def test_real_reference_data_reaches_the_gate(home: Path) -> None:
    done = run_cli("run", CONFIG, "--param", f"input_data={SHARED_DATA}", "--json", home=home)
    assert done.returncode == 0, done.stderr
    assert _auc(json.loads(done.stdout)) >= 0.75


def _make_data(folder: Path) -> Path:
    subprocess.run([sys.executable, str(REPO / "model_code" / "generate_data.py"), "--rows", "400",
                    "--out", str(folder)], check=True, capture_output=True)
    return folder


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """400 generated rows, made once: each bad-data case corrupts its own copy."""
    return _make_data(tmp_path_factory.mktemp("generated") / "data")


def _edit_csv(path: Path, edit) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


def _drop_column(lines: list[str], name: str) -> list[str]:
    index = lines[0].split(",").index(name)
    return [",".join(c for i, c in enumerate(line.split(",")) if i != index) for line in lines]


def _set_column(lines: list[str], name: str, value: str, rows=slice(1, None)) -> list[str]:
    index = lines[0].split(",").index(name)
    out = [lines[0]]
    for number, line in enumerate(lines[1:], start=1):
        cells = line.split(",")
        if number in range(*rows.indices(len(lines))):
            cells[index] = value
        out.append(",".join(cells))
    return out


CORRUPTIONS = {
    "missing_column": ("claims.csv", lambda l: _drop_column(l, "incident_severity"),
                       "column 'incident_severity': expect_column_to_exist"),
    "all_null_column": ("customers.csv", lambda l: _set_column(l, "customer_age", ""),
                        "column 'customer_age': expect_column_values_to_not_be_null"),
    "label_not_binary": ("claims.csv", lambda l: _set_column(l, "fraud", "2", slice(1, 5)),
                         "column 'fraud': expect_column_values_to_be_in_set"),
    "out_of_range": ("claims.csv", lambda l: _set_column(l, "incident_hour", "31", slice(3, 4)),
                     "column 'incident_hour': expect_column_values_to_be_between"),
    "empty_file": ("customers.csv", lambda l: [], "customers.csv: the file is empty"),
    "wrong_delimiter": ("claims.csv", lambda l: [line.replace(",", ";") for line in l],
                        "it seems to use ';'"),
    "duplicate_policy_id": ("customers.csv", lambda l: l + [l[1]],
                            "column 'policy_id': expect_column_values_to_be_unique"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS) + ["non_utf8"])
def test_bad_data_fails_at_preprocess_with_a_clear_message(case: str, generated: Path, tmp_path: Path,
                                                           home: Path) -> None:
    data = Path(shutil.copytree(generated, tmp_path / "data"))
    if case == "non_utf8":
        raw = (data / "claims.csv").read_bytes().replace(b"Collision", b"Coll\xe9sion", 1)
        (data / "claims.csv").write_bytes(raw)
        expected = "claims.csv: line 2: not valid UTF-8"
    else:
        file, edit, expected = CORRUPTIONS[case]
        _edit_csv(data / file, edit)
    done = run_cli("run", CONFIG, "--param", f"input_data={data}", "--param", "rows=400", "--json", home=home)
    assert done.returncode == 1
    summary = json.loads(done.stdout)
    statuses = {s["name"]: s["status"] for s in summary["steps"]}
    assert statuses["ingest"] == "succeeded" and statuses["preprocess"] == "failed"
    assert statuses["train"] == statuses["register"] == "skipped"
    assert expected in done.stderr, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    listed = run_cli_here("models", "list", "--json", home=home)
    assert (listed.returncode, json.loads(listed.stdout)) == (0, [])  # nothing registered
    shutil.rmtree(data)
