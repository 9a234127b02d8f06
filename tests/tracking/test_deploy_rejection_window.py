"""A rejected version never comes into service, whatever the timing (issue 26, item 9).

What puts a version into service (a pipeline's deploy step, `sagepipe serve GROUP@approved`) reads the version and
writes the endpoint record; a rejection is injected between the two, at the worst moment: right after the read, or
right before the record is written. The rejection runs in another thread with its own registry, as another process
would, and the hook lets the deploy go on only once the rejection has either finished or is waiting for the group's
lock; so the outcome depends on no timing. It must be: the record was never written naming a Rejected version, and
if the endpoint ends up on the rejected version, the rejection saw it (it warns, and --rollback moves it back).
A rejection made in the same thread (re-entering the lock) is caught by the re-check at switch-in.
"""

from __future__ import annotations

import json
import threading
import time
import types
from pathlib import Path
from typing import Any, Callable

import pytest

import pipelines.registry.locking as locking
import pipelines.serving.serve as serve
from pipelines.approvals import Decision, change_status
from pipelines.errors import StepFailed
from pipelines.loader import load_pipeline
from pipelines.local.services import RunServices
from pipelines.registry import LocalRegistry, Registry
from pipelines.registry.mlflow_backend import MlflowRegistry
from pipelines.step_api import StepContext
from tests.conftest import make_project

pytestmark = pytest.mark.tracked  # MLflow tracking and registry, as a user has them

GROUP, ENDPOINT = "window", "window-dev"
PIPELINE = f"""
name: window
steps:
  - {{name: deploy, type: deploy, model_group: {GROUP}, endpoint_name: {ENDPOINT}}}
"""


def _open(kind: str, home: Path) -> Any:
    return LocalRegistry(home / "registry") if kind == "files" else MlflowRegistry(f"sqlite:///{home}/mlflow.db",
                                                                                     home / "models")


def _served(home: Path, name: str = ENDPOINT) -> dict[str, Any] | None:
    path = home / "endpoints" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


@pytest.fixture(params=["files", "mlflow"])
def setup(request: pytest.FixtureRequest, tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Version 1 approved and served; version 2 Approved but not deployed yet (say, registered as Approved)."""
    monkeypatch.chdir(tmp_path)
    kind = request.param
    tracking = "none" if kind == "files" else "sqlite:///.sagepipe/mlflow.db"
    config = make_project(tmp_path / "project", "window", PIPELINE, {"local": f"tracking_uri: {tracking}\n"}, ())
    registry = _open(kind, home)
    for n in (1, 2):
        model = tmp_path / f"model-{n}"
        model.mkdir()
        (model / "model.json").write_text(json.dumps({"n": n}))
        registry.register(GROUP, model, {}, "PendingManualApproval",
                          {"model_hash": f"h{n}", "config": str(config), "env": "local"})
    change_status(registry, GROUP, 1, "Approved", "", False, home)
    registry.set_status(GROUP, 2, "Approved", note="approved elsewhere")
    assert _served(home)["version"] == 1
    return {"kind": kind, "home": home, "config": config}


def _deploy_step(setup: dict) -> Callable[[], Any]:
    spec = load_pipeline(setup["config"], "local")
    home = setup["home"]
    ctx = StepContext(pipeline=spec, run_id="run-1", step_dir=home / "runs" / "run-1" / "deploy",
                      repo_root=setup["config"].parents[1], state_root=home, resolve=lambda value: value,
                      run_process=lambda *args: 0, log=lambda line: None,
                      services=RunServices(spec, home).for_step({}, lambda line: None))
    return lambda: spec.step("deploy").run_local(ctx)


class Rejecter(threading.Thread):
    """A rejection of version 2 with its own registry (as another process would); `blocked` once it waits for a
    lock someone else holds."""

    def __init__(self, setup: dict, rollback: bool):
        super().__init__(daemon=True)
        self.setup, self.rollback = setup, rollback
        self.blocked, self.finished = threading.Event(), threading.Event()
        self.decision: Decision | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            home = self.setup["home"]
            self.decision = change_status(_open(self.setup["kind"], home), GROUP, 2, "Rejected", "drifted", False,
                                          home, rollback=self.rollback)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            self.finished.set()

    def start_and_wait(self) -> None:
        """Start; return once the rejection has finished or waits for the group's lock (no timing involved)."""
        self.start()
        deadline = time.monotonic() + 600
        while not (self.finished.is_set() or self.blocked.is_set()):
            assert time.monotonic() < deadline, "the rejection neither finished nor waited for the lock"
            self.finished.wait(0.01)


def _watch(monkeypatch: pytest.MonkeyPatch, setup: dict, rejecter: Rejecter) -> list[tuple[int, str]]:
    """Note when the rejecter waits for a lock, and each record written: (version, its status at that moment)."""
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        if threading.current_thread() is rejecter:
            rejecter.blocked.set()
        real_sleep(seconds)

    monkeypatch.setattr(locking, "time", types.SimpleNamespace(monotonic=time.monotonic, sleep=sleep))
    written: list[tuple[int, str]] = []
    real_write = serve.write_record

    def write_record(state_root: Path, record: dict[str, Any]) -> Path:
        now = _open(setup["kind"], setup["home"]).show(GROUP, record["version"])
        written.append((record["version"], now["status"]))
        return real_write(state_root, record)

    monkeypatch.setattr(serve, "write_record", write_record)
    return written


def _inject(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, action: Callable[[], None]) -> None:
    """Run action once, in this thread, right after owner.name (a read, or building the record) returns."""
    real = getattr(owner, name)
    main, fired = threading.current_thread(), []

    def hooked(*args: Any, **kwargs: Any) -> Any:
        found = real(*args, **kwargs)
        if threading.current_thread() is main and not fired:
            fired.append(True)
            action()
        return found

    monkeypatch.setattr(owner, name, hooked)


CASES = [("deploy step", "after the read", False), ("deploy step", "before the switch", False),
         ("deploy step", "after the read", True), ("serve @approved", "after the read", False)]


@pytest.mark.parametrize("path,moment,rollback", CASES)
def test_a_rejection_at_the_worst_moment_never_leaves_the_rejected_version_served(
        setup: dict, monkeypatch: pytest.MonkeyPatch, path: str, moment: str, rollback: bool) -> None:
    home = setup["home"]
    rejecter = Rejecter(setup, rollback)
    written = _watch(monkeypatch, setup, rejecter)
    registry = _open(setup["kind"], home)
    if moment == "before the switch":
        _inject(monkeypatch, serve, "endpoint_record", rejecter.start_and_wait)
    elif path == "deploy step":
        _inject(monkeypatch, Registry, "latest", rejecter.start_and_wait)
    else:
        _inject(monkeypatch, type(registry), "approved", rejecter.start_and_wait)
    name = ENDPOINT if path == "deploy step" else f"{GROUP}-approved"

    if path == "deploy step":
        _deploy_step(setup)()
    else:
        serve.resolve(f"{GROUP}@approved", registry, home)
    rejecter.join(600)

    assert rejecter.error is None, repr(rejecter.error)
    assert rejecter.finished.is_set() and rejecter.decision is not None
    assert rejecter.blocked.is_set()  # the rejection waited for the lock the switch-in held: the window is closed
    assert registry.show(GROUP, 2)["status"] == "Rejected"
    assert written and all(status == "Approved" for _, status in written), written  # never switched in Rejected
    served = _served(home, name)
    if rollback:
        assert served["version"] == 1 and served["trigger"] == f"rollback: rejection of {GROUP} version 2"
    elif served and served["version"] == 2:  # it was switched in before the rejection, which saw it
        assert name in rejecter.decision.still_serving and rejecter.decision.fallback == 1, rejecter.decision


def test_a_rejection_inside_the_deploy_is_refused_at_the_switch(setup: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    home = setup["home"]
    rejected: list[Decision] = []
    _inject(monkeypatch, Registry, "latest", lambda: rejected.append(
        change_status(_open(setup["kind"], home), GROUP, 2, "Rejected", "drifted", False, home)))

    refused = f"{GROUP} version 2 is Rejected .* endpoint {ENDPOINT} was not switched to it"
    with pytest.raises(StepFailed, match=refused):
        _deploy_step(setup)()
    assert rejected and _served(home)["version"] == 1

    assert "now serves window version 1" in _deploy_step(setup)().note  # run again: the newest still Approved
