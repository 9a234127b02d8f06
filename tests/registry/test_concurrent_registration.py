"""Registering one model from 8 processes at once makes exactly one version, on the file registry and on MLflow's,
and every process gets that version back; 8 processes whose first use of a fresh MLflow SQLite store is that
registration all succeed (issue 26, item 5).

Each racer does what the register step does (identical(), then register()), released together by a barrier.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipelines.registry import LocalRegistry
from pipelines.registry.mlflow_backend import MlflowRegistry
from tests.conftest import make_project, run_cli
from tests.mlflow_server import forkserver

pytestmark = pytest.mark.tracked  # MLflow tracking and registry, as a user has them

GROUP, RACERS = "racing", 8


def _open(kind: str, home: Path) -> Any:
    if kind == "files":
        return LocalRegistry(home / "registry")
    return MlflowRegistry(f"sqlite:///{home}/mlflow.db", home / "models")


def _register(kind: str, home: str, model: str, barrier: Any, results: Any) -> None:
    """One racer: the register step's two calls, after every racer is ready."""
    try:
        registry = _open(kind, Path(home))
        lineage = {"model_hash": "one-model", "pipeline": "racing", "env": "local"}
        barrier.wait(300)
        package, created = registry.identical(GROUP, "one-model"), False
        if package is None:
            package, created = registry.register(GROUP, Path(model), {"auc": 0.9}, "PendingManualApproval", lineage)
        results.put(("ok", package["version"], created))
    except BaseException as exc:  # reported to the test, which fails on it
        results.put(("error", repr(exc)[-2000:], None))


@pytest.mark.parametrize("kind,store", [("files", "fresh"), ("mlflow", "existing"), ("mlflow", "fresh")])
def test_eight_processes_registering_one_model_make_one_version(kind: str, store: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # whatever MLflow writes without a location stays in tmp_path
    home, model = tmp_path / "state", tmp_path / "model"
    model.mkdir(parents=True)
    (model / "model.json").write_text(json.dumps({"weights": [1, 2, 3]}))
    if store == "existing":  # only the registrations race
        _open(kind, home).client.search_registered_models()
    assert (home / "mlflow.db").exists() == (store == "existing")

    ctx = forkserver()  # racers fork with MLflow and the registry already imported
    barrier, results = ctx.Barrier(RACERS), ctx.Queue()
    racers = [ctx.Process(target=_register, args=(kind, str(home), str(model), barrier, results))
              for _ in range(RACERS)]
    for racer in racers:
        racer.start()
    outcomes = [results.get(timeout=600) for _ in racers]
    for racer in racers:
        racer.join(60)

    assert [o for o in outcomes if o[0] != "ok"] == [], outcomes
    assert sorted(o[1] for o in outcomes) == [1] * RACERS, outcomes  # every caller got the one version back
    assert sum(o[2] for o in outcomes) == 1, outcomes  # which exactly one of them created
    registry = _open(kind, home)
    assert [(p["version"], p["status"]) for p in registry.versions(GROUP)] == [(1, "PendingManualApproval")]
    if kind == "files":
        assert sorted(p.name for p in (home / "registry" / GROUP).iterdir() if not p.name.startswith(".")) == ["1"]
    else:
        assert [int(v.version) for v in registry.client.search_model_versions(f"name = '{GROUP}'")] == [1]


def test_eight_pipeline_runs_registering_one_model_on_a_fresh_store_all_succeed(tmp_path: Path, home: Path) -> None:
    """What a user does: 8 `sagepipe run` at once on a new machine; each run's tracking writer and register step
    open the fresh MLflow store."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text(json.dumps({"weights": [1, 2, 3]}))
    pipeline = f"name: reg\nsteps:\n  - {{name: register, type: register, model: '{model}', model_group: {GROUP}}}\n"
    config = make_project(tmp_path / "project", "reg", pipeline,
                          {"local": "tracking_uri: sqlite:///.sagepipe/mlflow.db\n"}, ())
    env = {**os.environ, "SAGEPIPE_HOME": str(home)}
    runs = [subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", str(config), "--json"], cwd=config.parents[1],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(RACERS)]
    done = [(run.wait(600), *run.communicate()) for run in runs]
    assert [rc for rc, _, _ in done] == [0] * RACERS, [err[-2000:] for rc, _, err in done if rc]
    listed = run_cli("models", "list", "--json", home=home, cwd=config.parents[1])
    assert [(p["group"], p["version"]) for p in json.loads(listed.stdout)] == [(GROUP, 1)], listed.stdout
