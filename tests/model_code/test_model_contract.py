"""One container contract on both backends: a training step's model output is a model.tar.gz.

On SageMaker `ModelArtifacts.S3ModelArtifacts` names one object, model.tar.gz (SM_MODEL_DIR's files at
its root); a processing input of it is a folder holding that one file. Locally the same.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest

from pipelines.fsutil import hash_path
from pipelines.loader import load_pipeline
from pipelines.local.runner import LocalRunner
from pipelines.model_archive import ModelArchiveError, model_folder
from pipelines.registry import LocalRegistry
from tests.conftest import FIXTURES, REPO, run_cli
from tests.example_run import ExampleRun

GATED = FIXTURES / "valid" / "gated.yaml"
EVALUATE = REPO / "model_code" / "evaluate.py"


def sagemaker_model_tar(model_dir: Path, archive: Path) -> None:
    """model.tar.gz as SageMaker uploads SM_MODEL_DIR: a gzip tar of the folder's contents, members at its root."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for entry in sorted(model_dir.iterdir()):
            tar.add(entry, arcname=entry.name)


def members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def run_evaluate(processing: Path, tmp: Path) -> subprocess.CompletedProcess:
    """evaluate.py as a processing job runs it: inputs and outputs under the processing folder."""
    (processing / "output" / "evaluation").mkdir(parents=True, exist_ok=True)
    tmp.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(SAGEPIPE_PROCESSING_DIR=str(processing), TMPDIR=str(tmp))
    return subprocess.run([sys.executable, str(EVALUATE), "--bootstrap-rounds", "5"], env=env, capture_output=True,
                          text=True, timeout=300)


# --- the fraud pipeline: a real model ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(example_run: ExampleRun, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The session's example run (2,000 rows), copied: serving and transforming download into its models/."""
    run = example_run.copy(tmp_path_factory.mktemp("contract"))
    return {"home": run.home, "summary": run.summary, "run_dir": run.run_dir, "state": run.state,
            "test": run.test_split}


@pytest.mark.slow
def test_evaluate_reads_the_model_as_a_sagemaker_processing_input_holds_it(trained: dict, tmp_path: Path) -> None:
    processing = tmp_path / "processing"
    sagemaker_model_tar(trained["run_dir"] / "train" / "model", processing / "input" / "model" / "model.tar.gz")
    (processing / "input" / "test").mkdir(parents=True)
    (processing / "input" / "test" / "test.parquet").symlink_to(trained["test"] / "test.parquet")
    done = run_evaluate(processing, tmp_path / "tmp")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((processing / "output" / "evaluation" / "evaluation.json").read_text())
    auc = report["binary_classification_metrics"]["auc"]["value"]
    assert auc == trained["summary"]["metrics"]["evaluate"]["binary_classification_metrics"]["auc"]["value"]
    assert 0.5 < auc <= 1.0
    assert os.listdir(processing / "input" / "model") == ["model.tar.gz"]  # extracted elsewhere, not into the input
    assert not any((tmp_path / "tmp").iterdir())  # and that copy is gone when the script exits


@pytest.mark.slow
def test_local_training_outputs_a_model_tar_gz_of_the_model_dir(trained: dict) -> None:
    train, run_dir = trained["state"]["steps"]["train"], trained["run_dir"]
    archive = Path(train["outputs"]["model"])
    assert archive == run_dir / "train" / "output" / "model.tar.gz" and archive.is_file()
    packed = members(archive)
    assert packed == files(run_dir / "train" / "model")
    assert {"metadata.json", "model.txt", "feature_transform.json", "code/inference.py"} <= set(packed)
    mount = run_dir / "evaluate" / "processing" / "input" / "model"
    assert os.listdir(mount) == ["model.tar.gz"] and not (mount / "model.tar.gz").is_symlink()  # a copy, as S3 gives
    assert (mount / "model.tar.gz").read_bytes() == archive.read_bytes()
    assert train["output_digests"]["model"] == hash_path(archive)


@pytest.mark.slow
@pytest.mark.tracked
def test_registered_archive_serves_and_transforms(trained: dict, tmp_path: Path) -> None:
    from pipelines.registry.mlflow_backend import MlflowRegistry
    from pipelines.serving.app import make_app
    from pipelines.serving.serve import resolve

    home = trained["home"]
    registry = MlflowRegistry(f"sqlite:///{home}/mlflow.db", home / "models")
    package = registry.show("fraud-detection", 1)
    assert package["model_uri"].endswith("/registered_model")  # MLmodel (with the signature) + model.tar.gz
    model_dir = registry.model_path(package)
    assert files(model_dir) == members(Path(trained["state"]["steps"]["train"]["outputs"]["model"]))
    assert package["lineage"]["model_hash"] == hash_path(trained["run_dir"] / "train" / "model")

    sys.path.insert(0, str(REPO / "model_code"))
    from fraud_schema import RAW_FEATURES
    from model_io import FraudModel
    from mlflow.models import Model

    assert set(Model.load(package["model_uri"]).signature.inputs.input_names()) == set(RAW_FEATURES)
    test = pd.read_parquet(trained["test"] / "test.parquet")
    expected = FraudModel(model_dir).predict_proba(test)
    scored = tmp_path / "scored.csv"
    done = run_cli("transform", "fraud-detection@1", str(trained["test"] / "test.parquet"), str(scored), home=home)
    assert done.returncode == 0, done.stderr
    assert pd.read_csv(scored)["fraud_probability"].tolist() == pytest.approx(expected, abs=2e-6)

    app = make_app(resolve("fraud-detection@1", registry, home))
    statuses: list[str] = []
    body = json.dumps(json.loads(test[RAW_FEATURES].head(1).to_json(orient="records"))[0]).encode()
    answer = b"".join(app({"PATH_INFO": "/invocations", "REQUEST_METHOD": "POST", "CONTENT_TYPE": "application/json",
                           "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)},
                          lambda status, headers: statuses.append(status)))
    assert statuses == ["200 OK"], answer
    assert json.loads(answer)["predictions"][0]["fraud_probability"] == pytest.approx(expected[0], abs=2e-6)

    from pipelines.serving.app import _import_inference

    inference = _import_inference(REPO / "model_code")  # model_fn takes a model.tar.gz as well as its folder
    direct = inference.model_fn(str(Path(trained["state"]["steps"]["train"]["outputs"]["model"])))
    assert direct.predict_frame(test.head(50)) == pytest.approx(expected[:50], abs=2e-6)


# --- tiny fixture pipelines: fast --------------------------------------------------------------------------


def test_tiny_pipeline_packs_caches_and_registers_the_archive(home: Path) -> None:
    first = LocalRunner(load_pipeline(GATED), home).run()
    assert first.data["status"] == "succeeded"
    archive = Path(first.step("train")["outputs"]["model"])
    run_dir = first.path.parent
    assert archive.name == "model.tar.gz" and members(archive) == files(run_dir / "train" / "model")
    assert os.listdir(run_dir / "evaluate" / "processing" / "input" / "model") == ["model.tar.gz"]
    with tarfile.open(archive) as tar:  # reproducible: no times, sorted names
        assert {m.mtime for m in tar.getmembers()} == {0}
    registry = LocalRegistry(home / "registry")
    package = registry.latest("gated-models")
    version_dir = home / "registry" / "gated-models" / "1"
    assert package["model_uri"] == str(version_dir / "model.tar.gz")
    assert (version_dir / "model.tar.gz").read_bytes() == archive.read_bytes()
    assert registry.model_path(package) == version_dir / "model" and files(version_dir / "model") == members(archive)
    assert package["lineage"]["model_hash"] == hash_path(run_dir / "train" / "model")

    cached = LocalRunner(load_pipeline(GATED), home).run()
    assert cached.step("train")["status"] == "cached"
    restored = Path(cached.step("train")["outputs"]["model"])
    assert restored.is_file() and restored.read_bytes() == archive.read_bytes()

    again = LocalRunner(load_pipeline(GATED), home, use_cache=False).run()  # retrained: the same bytes
    assert again.step("train")["output_digests"]["model"] == first.step("train")["output_digests"]["model"]
    assert again.step("register")["note"].startswith("identical model already registered as gated-models version 1")
    assert again.step("register")["registered"] == {"group": "gated-models", "version": 1,
                                                    "status": "PendingManualApproval", "new": False}
    assert len(registry.versions("gated-models")) == 1


def test_a_plain_model_folder_still_registers(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.json").write_text("{}")
    package, created = LocalRegistry(tmp_path / "registry").register("g", folder, {}, "PendingManualApproval",
                                                                      {"model_hash": "h"})
    assert created and members(Path(package["model_uri"])) == {"model.json": b"{}"}


def evil_archive(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name in ("metadata.json", "../x"):
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"{}"))
    return path


def test_evaluate_refuses_a_member_outside_its_folder(tmp_path: Path) -> None:
    processing = tmp_path / "processing"
    evil_archive(processing / "input" / "model" / "model.tar.gz")
    done = run_evaluate(processing, tmp_path / "tmp")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "cannot extract model archive" in done.stderr and "outside the destination" in done.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "tmp" / "x").exists()


def test_register_refuses_a_member_outside_its_folder(tmp_path: Path, home: Path) -> None:
    evil = evil_archive(tmp_path / "evil" / "model.tar.gz")
    with pytest.raises(ModelArchiveError, match="outside the destination"):
        with model_folder(evil):
            pass
    (tmp_path / "pyproject.toml").touch()
    config = tmp_path / "evil.yaml"
    config.write_text(f"name: evil\nsteps:\n  - {{name: register, type: register, model: '{evil}', model_group: g}}\n")
    state = LocalRunner(load_pipeline(config), home).run()
    assert state.status("register") == "failed"
    error = state.step("register")["error"]
    assert error.startswith(f"cannot extract model archive {evil}") and "outside the destination" in error
    assert "internal error" not in error and not (tmp_path / "evil" / "x").exists()
