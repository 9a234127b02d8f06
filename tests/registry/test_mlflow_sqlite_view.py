"""Reading a SQLite MLflow registry without mlflow: the view answers exactly what MlflowClient answers,
and a cached re-run's register and deploy steps import no mlflow."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.registry.mlflow_backend import MlflowRegistry
from pipelines.registry.mlflow_sqlite import SqliteView
from tests.conftest import REPO
from tests.registry.test_mlflow_registry import REPORT, _lineage, _model

pytestmark = pytest.mark.tracked  # MLflow tracking and registry, as a user has them


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def _store(tmp_path: Path) -> str:
    """Two groups; fraud has an Approved version (aliased), a Rejected one, a pending one and a deleted one."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    registry = MlflowRegistry(uri, tmp_path / "models")
    for n in (1, 2, 3, 4):
        registry.register("fraud", _model(tmp_path / f"m{n}", n), REPORT, "PendingManualApproval", _lineage(n))
    registry.register("other", _model(tmp_path / "o1", 9), {}, "Approved", _lineage(9))
    registry.set_status("fraud", 2, "Approved", note="looks good")
    registry.set_status("fraud", 1, "Rejected")
    registry.client.delete_model_version("fraud", "4")
    return uri


def test_the_sqlite_view_reads_what_mlflow_reads(tmp_path: Path) -> None:
    uri = _store(tmp_path)
    viewed = MlflowRegistry(uri, tmp_path / "models")
    direct = MlflowRegistry(uri, tmp_path / "models")
    direct._view = None  # every read through MlflowClient
    assert viewed.groups() == direct.groups() == ["fraud", "other"]
    for group in ("fraud", "other"):
        # MlflowClient's version search leaves aliases out; its get_model_version has them
        assert viewed.versions(group) == [direct.show(group, p["version"]) for p in direct.versions(group)]
        assert viewed.approved(group) == direct.approved(group)
    assert [p["version"] for p in viewed.versions("fraud")] == [1, 2, 3]  # the deleted version is gone
    assert viewed.approved("fraud")["version"] == 2 and viewed.show("fraud", 2)["aliases"] == ["approved"]
    assert viewed.show("fraud", 3) == direct.show("fraud", 3)
    assert viewed.identical("fraud", "h3")["version"] == 3 and viewed.identical("fraud", "h4") is None
    assert viewed.identical("nope", "h1") is None
    for registry in (viewed, direct):
        with pytest.raises(Exception, match="no model group 'fraudd' — did you mean 'fraud'"):
            registry.versions("fraudd")
        with pytest.raises(Exception, match="has no version 4"):
            registry.show("fraud", 4)


def test_a_database_that_is_not_an_mlflow_store_is_left_to_mlflow(tmp_path: Path) -> None:
    missing = SqliteView(f"sqlite:///{tmp_path}/none.db")
    assert missing.groups() is None and missing.versions("fraud") is None
    with sqlite3.connect(tmp_path / "other.db") as db:
        db.execute("CREATE TABLE registered_models (name TEXT)")  # no workspace column: another schema
    assert SqliteView(f"sqlite:///{tmp_path}/other.db").groups() is None
    assert SqliteView.of("http://127.0.0.1:5000") is None


def test_an_identical_model_and_the_approved_version_are_read_without_importing_mlflow(tmp_path: Path) -> None:
    uri = _store(tmp_path)
    probe = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from pipelines.registry.mlflow_backend import MlflowRegistry\n"
        f"registry = MlflowRegistry({uri!r}, Path({str(tmp_path / 'models')!r}))\n"
        "found = registry.identical('fraud', 'h3')\n"
        "approved = registry.latest('fraud', 'Approved')\n"
        "print(json.dumps([found['version'], approved['version'], sorted(m for m in sys.modules if m.startswith('mlflow'))]))\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [3, 2, []]
