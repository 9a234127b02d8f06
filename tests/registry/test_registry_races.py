"""Registry decisions are atomic, and a rejection never leaves an endpoint silently serving what it rejected.

Races run 4 real processes (2 approve, 2 reject) on one Pending version, released together by a barrier,
for the file registry and the MLflow (SQLite) registry; one round also races the CLI itself.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pipelines.approvals import change_status
from pipelines.registry.mlflow_backend import MlflowRegistry
from pipelines.registry import LocalRegistry, TransitionConflict
from tests.conftest import make_project, run_cli
from tests.mlflow_server import forkserver

pytestmark = pytest.mark.tracked  # MLflow tracking and registry, as a user has them

GROUP, ENDPOINT = "racing", "racing-dev"
PIPELINE = f"""
name: racing
steps:
  - {{name: deploy, type: deploy, model_group: {GROUP}, endpoint_name: {ENDPOINT}}}
"""
LOST = "while you were deciding; nothing changed"
ROUNDS = {"files": 6, "mlflow": 3}


def _open(kind: str, home: Path) -> Any:
    if kind == "files":
        return LocalRegistry(home / "registry")
    return MlflowRegistry(f"sqlite:///{home}/mlflow.db", home / "models")


def _project(tmp_path: Path, kind: str) -> Path:
    tracking = "none" if kind == "files" else "sqlite:///.sagepipe/mlflow.db"
    return make_project(tmp_path / "project", "racing", PIPELINE, {"local": f"tracking_uri: {tracking}\n"}, ())


def _register(registry: Any, config: Path, n: int) -> int:
    model = config.parents[2] / f"model-{n}"
    model.mkdir()
    (model / "model.json").write_text(json.dumps({"n": n}))
    lineage = {"model_hash": f"h{n}", "config": str(config), "env": "local"}
    package, created = registry.register(GROUP, model, {"n": n}, "PendingManualApproval", lineage)
    assert created
    return package["version"]


def _served(home: Path, name: str = ENDPOINT) -> dict[str, Any] | None:
    path = home / "endpoints" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _decide(kind: str, home: str, version: int, status: str, barrier: Any, results: Any) -> None:
    registry = _open(kind, Path(home))
    since = time.time()  # the racer has decided; from here on it acts
    barrier.wait(120)
    try:
        decision = change_status(registry, GROUP, version, status, f"racer {os.getpid()}", False, Path(home), since)
        results.put((status, "won", decision.deployments))
    except TransitionConflict as exc:
        results.put((status, "lost", str(exc)))
    except BaseException as exc:  # reported to the test, which fails on it
        results.put((status, "error", repr(exc)))


def _race(ctx: Any, kind: str, home: Path, version: int, statuses: list[str]) -> list[tuple]:
    barrier, results = ctx.Barrier(len(statuses)), ctx.Queue()
    racers = [ctx.Process(target=_decide, args=(kind, str(home), version, s, barrier, results)) for s in statuses]
    for racer in racers:
        racer.start()
    outcomes = [results.get(timeout=300) for _ in racers]
    for racer in racers:
        racer.join(60)
    return outcomes


def _check_round(registry: Any, home: Path, version: int, winners: list[tuple]) -> None:
    assert len(winners) == 1, winners
    status = winners[0][0]
    shown = registry.show(GROUP, version)
    assert shown["status"] == status
    assert [h["previous"] for h in shown["history"]] == [None, "PendingManualApproval"], shown["history"]
    served = _served(home)
    if status == "Approved":
        assert served and served["version"] == version and served["trigger"] == f"approval of {GROUP} version {version}"
    if served:
        assert registry.show(GROUP, served["version"])["status"] == "Approved"


@pytest.mark.parametrize("kind", ["files", "mlflow"])
def test_four_processes_racing_approve_and_reject_one_pending_version(kind: str, tmp_path: Path, home: Path) -> None:
    config = _project(tmp_path, kind)
    registry = _open(kind, home)
    ctx = forkserver()  # racers fork with MLflow already imported
    shuffle = random.Random(14)
    for n in range(ROUNDS[kind]):
        version = _register(registry, config, n)
        statuses = ["Approved", "Approved", "Rejected", "Rejected"]
        shuffle.shuffle(statuses)
        outcomes = _race(ctx, kind, home, version, statuses)
        assert not [o for o in outcomes if o[1] == "error"], outcomes
        winners = [o for o in outcomes if o[1] == "won"]
        _check_round(registry, home, version, winners)
        for _, _, message in (o for o in outcomes if o[1] == "lost"):
            assert f"{GROUP} version {version} was {winners[0][0]} by " in message and LOST in message

    if _served(home) is None:  # every round was rejected: approve one to have something to roll back
        change_status(registry, GROUP, 1, "Approved", "", True, home)
    approved = [p["version"] for p in registry.versions(GROUP) if p["status"] == "Approved"]
    _register(registry, config, 99)  # an unrelated Pending version is never a rollback target
    decision = change_status(registry, GROUP, approved[-1], "Rejected", "bad", False, home, rollback=True)
    fallback = approved[-2] if len(approved) > 1 else None
    assert decision.fallback == fallback
    if fallback is None:
        assert decision.still_serving == [ENDPOINT] and _served(home)["version"] == approved[-1]
    else:
        assert decision.still_serving == [] and _served(home)["version"] == fallback
        assert _served(home)["trigger"] == f"rollback: rejection of {GROUP} version {approved[-1]}"


def test_four_cli_processes_racing(tmp_path: Path, home: Path) -> None:
    config = _project(tmp_path, "files")
    registry = _open("files", home)
    version = _register(registry, config, 1)
    verbs = ["reject", "approve", "reject", "approve"]
    env = {**os.environ, "SAGEPIPE_HOME": str(home)}
    racers = [subprocess.Popen([sys.executable, "-m", "pipelines.cli", "models", verb, GROUP, str(version)],
                               cwd=config.parents[1], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for verb in verbs]
    done = [(verb, racer.wait(120), *racer.communicate()) for verb, racer in zip(verbs, racers)]
    winners = [("Approved" if verb == "approve" else "Rejected", "won") for verb, rc, _, _ in done if rc == 0]
    _check_round(registry, home, version, winners)
    for _, rc, _, err in done:
        assert "Traceback" not in err and (rc == 0 or (rc == 5 and LOST in err)), err


def test_a_decision_after_the_decider_started_conflicts_unless_forced(tmp_path: Path, home: Path) -> None:
    config = _project(tmp_path, "files")
    registry = _open("files", home)
    version = _register(registry, config, 1)
    since = time.time()
    registry.set_status(GROUP, version, "Rejected", note="someone else")
    with pytest.raises(TransitionConflict, match=f"{GROUP} version 1 was Rejected by .* at .*{LOST}"):
        registry.set_status(GROUP, version, "Approved", since=since)
    assert registry.show(GROUP, version)["status"] == "Rejected"
    forced = registry.set_status(GROUP, version, "Approved", force=True, since=since)
    again = registry.set_status(GROUP, version, "Rejected", since=time.time())  # a later, informed decision
    assert [h["previous"] for h in again["history"]] == [None, "PendingManualApproval", "Rejected", "Approved"]
    assert forced["status"] == "Approved" and again["status"] == "Rejected"


def _models(project: Path, home: Path, *args: str) -> subprocess.CompletedProcess:
    done = run_cli("models", *args, home=home, cwd=project)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_rejecting_a_served_version_warns_and_rollback_moves_every_endpoint_back(tmp_path: Path, home: Path) -> None:
    from pipelines.serving.serve import resolve

    config = _project(tmp_path, "files")
    project, registry = config.parents[1], _open("files", home)  # its env file: tracking off
    for n in (1, 2):
        _register(registry, config, n)
        assert _models(project, home, "approve", GROUP, str(n)).returncode == 0
    resolve(f"{GROUP}@approved", registry, home)  # a `serve racing@approved` endpoint follows approvals
    assert _served(home)["version"] == _served(home, f"{GROUP}-approved")["version"] == 2

    rejected = _models(project, home, "reject", GROUP, "2", "--note", "drifted")
    assert rejected.returncode == 0 and "Approved -> Rejected" in rejected.stdout
    for name in (ENDPOINT, f"{GROUP}-approved"):
        assert f"WARNING: endpoint {name} still serves {GROUP} version 2, which is Rejected" in rejected.stderr
        assert _served(home, name)["version"] == 2
    assert f"roll back to version 1 (the newest Approved) with: sagepipe models reject {GROUP} 2 --rollback" \
        in rejected.stderr

    rolled = _models(project, home, "reject", GROUP, "2", "--rollback")
    assert rolled.returncode == 0 and f"{GROUP} version 2: already Rejected" in rolled.stdout, rolled.stdout
    assert f"rollback: endpoint {ENDPOINT} rolled back to {GROUP} version 1" in rolled.stdout
    assert "WARNING" not in rolled.stderr
    for name, follow in ((ENDPOINT, None), (f"{GROUP}-approved", "approved")):
        record = _served(home, name)
        assert (record["version"], record["follow"]) == (1, follow)
        assert record["trigger"] == f"rollback: rejection of {GROUP} version 2"
        assert Path(record["model_dir"]) == registry.model_path(registry.show(GROUP, 1))
    assert len(registry.show(GROUP, 2)["history"]) == 3  # the rollback changed no status

    alone = _models(project, home, "reject", GROUP, "1", "--rollback")
    assert alone.returncode == 0 and "Approved -> Rejected" in alone.stdout
    assert f"WARNING: endpoint {ENDPOINT} still serves {GROUP} version 1, which is Rejected" in alone.stderr
    assert f"{GROUP} has no other Approved version to roll back to" in alone.stderr
    assert _served(home)["version"] == 1

    pending = _models(project, home, "reject", GROUP, "9", "--rollback")
    assert pending.returncode == 5 and "has no version 9" in pending.stderr  # a registry error
