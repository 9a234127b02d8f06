"""A damaged registry record under `sagepipe models list|show|approve` (issue 26, item 17, registry part).

A version's `package.json` (file registry) or the MLflow store's `mlflow.db` that does not read gives one `error:`
line naming the file, what is wrong and how to fix it, exit 5 (the registry refused), no traceback, and the file
stays byte for byte as it was. `models list` still lists the healthy versions, the broken one as `unreadable`.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from pipelines.registry import LocalRegistry
from pipelines.registry.mlflow_backend import MlflowRegistry
from tests.conftest import make_project, run_cli

pytestmark = pytest.mark.tracked  # MLflow tracking and registry, as a user has them

GROUP = "fraud"
PIPELINE = "name: p\nsteps:\n  - {name: deploy, type: deploy, model_group: fraud, endpoint_name: fraud-dev}\n"


def _project(tmp_path: Path, tracking: str) -> Path:
    return make_project(tmp_path / "project", "p", PIPELINE, {"local": f"tracking_uri: {tracking}\n"}, ()).parents[1]


def _register(registry: Any, tmp_path: Path, versions: int) -> None:
    for n in range(1, versions + 1):
        model = tmp_path / f"model-{n}"
        model.mkdir()
        (model / "model.json").write_text(json.dumps({"n": n}))
        registry.register(GROUP, model, {}, "PendingManualApproval", {"model_hash": f"h{n}"})


def _models(project: Path, home: Path, *args: str) -> Any:
    done = run_cli("models", *args, home=home, cwd=project)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


BROKEN_PACKAGES = {
    "cut short": ('{"group": "fraud", "version": 2, "sta', "is not valid JSON"),
    "not an object": ("[1, 2]", "holds a JSON list, not a model package"),
    "fields missing": ('{"group": "fraud", "version": 2}', "is not a model package: 'status', 'lineage'"),
    "another version's": (None, "describes fraud version 3, not the version of its folder"),
    "not text": (b"\xff\xfe\x00garbage", "is not valid JSON"),
}


@pytest.mark.parametrize("damage", list(BROKEN_PACKAGES))
def test_an_unreadable_package_json_is_named_and_left_alone(damage: str, tmp_path: Path, home: Path) -> None:
    project = _project(tmp_path, "none")
    registry = LocalRegistry(home / "registry")
    _register(registry, tmp_path, 3)
    manifest = home / "registry" / GROUP / "2" / "package.json"
    content, fault = BROKEN_PACKAGES[damage]
    if content is None:
        content = (home / "registry" / GROUP / "3" / "package.json").read_text()
    manifest.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = _digest(manifest)
    how = f"restore the file from a backup, or remove the folder {manifest.parent} to drop the version"

    listed = _models(project, home, "list")
    assert listed.returncode == 5
    rows = [line.split()[:3] for line in listed.stdout.splitlines()[1:]]
    assert rows == [[GROUP, "1", "PendingManualApproval"], [GROUP, "2", "unreadable"],
                    [GROUP, "3", "PendingManualApproval"]], listed.stdout
    errors = [line for line in listed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"{GROUP} version 2 cannot be read: {manifest} {fault}" in errors[0], listed.stderr
    assert how in errors[0]

    as_json = _models(project, home, "list", "--json")
    assert as_json.returncode == 5
    assert [(p["version"], p["status"], "error" in p) for p in json.loads(as_json.stdout)] == \
        [(1, "PendingManualApproval", False), (2, "unreadable", True), (3, "PendingManualApproval", False)]

    for args in (("show", GROUP, "2"), ("approve", GROUP, "2"), ("reject", GROUP, "2", "--rollback")):
        done = _models(project, home, *args)
        assert done.returncode == 5 and f"error: {GROUP} version 2 cannot be read: {manifest} {fault}" in done.stderr
        assert how in done.stderr
    assert _digest(manifest) == before

    assert _models(project, home, "show", GROUP, "1").returncode == 0  # the healthy versions still work
    approved = _models(project, home, "approve", GROUP, "3")
    assert approved.returncode == 0 and "PendingManualApproval -> Approved" in approved.stdout
    assert _digest(manifest) == before


def _damage_page(database: Path, table: str) -> None:
    """Overwrite the first page of one table: SQLite then calls the file malformed when it reads that table."""
    with sqlite3.connect(database) as db:
        (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
        (size,) = db.execute("PRAGMA page_size").fetchone()
    data = bytearray(database.read_bytes())
    data[(root - 1) * size:root * size] = b"\x5a" * size
    database.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["not a database", "cut short", "a table's page", "the schema version's page"])
def test_a_damaged_mlflow_db_is_named_and_left_alone(damage: str, tmp_path: Path, home: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    project = _project(tmp_path, "sqlite:///.sagepipe/mlflow.db")
    database = home / "mlflow.db"
    _register(MlflowRegistry(f"sqlite:///{database}", home / "models"), tmp_path, 2)
    if damage == "not a database":
        database.write_bytes(b"this is not a SQLite database " * 200)
    elif damage == "cut short":
        database.write_bytes(database.read_bytes()[:database.stat().st_size // 3])
    else:  # the registry's own table (read by every command), or only what MlflowClient reads when it opens
        _damage_page(database, "model_version_tags" if damage == "a table's page" else "alembic_version")
    before = _digest(database)

    commands = [("approve", GROUP, "1")]
    if damage != "the schema version's page":  # listing and showing read no schema version: they still work
        commands += [("list",), ("list", "--json"), ("show", GROUP, "2")]
    for args in commands:
        done = _models(project, home, *args)
        assert done.returncode == 5, (args, done.stdout, done.stderr)
        error = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert error and f"the MLflow store {database} is damaged (SQLite: " in error[0], done.stderr
        assert f"restore it from a backup, or move it aside (mv {database} {database}.damaged)" in error[0]
    assert _digest(database) == before
    assert not list(database.parent.glob("mlflow.db?*"))  # nothing moved aside, no journal left behind
