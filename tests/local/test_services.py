"""What the runner lends its steps (pipelines/local/services.py): the registry, the step's tracker and the local
endpoints, built once per run; step types reach them only through the step context."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ContextManager

import pytest

import pipelines.local.services as services
from pipelines.loader import load_pipeline
from pipelines.local.runner import LocalRunner
from pipelines.local.services import LocalServing, RunServices
from pipelines.step_api import Deploys, Step, deploy_steps
from tests.conftest import make_project
from tests.gated_pipeline import SCRIPTS, gated_pipeline
from tests.project.test_import_graph import import_graph

PIPELINE = gated_pipeline("served", approved=True) + \
    "  - {name: ship, type: deploy, depends_on: [publish], model_group: served, endpoint_name: served-dev}\n"
FORBIDDEN = ("pipelines.registry", "pipelines.serving", "pipelines.tracking", "pipelines.tracking_journal",
             "pipelines.tracking_writer")


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "none")
    return make_project(tmp_path / "project", "served", PIPELINE, {}, SCRIPTS)


class FakeRegistry:
    """A registry in memory, recording what steps asked of it."""

    def __init__(self) -> None:
        self.packages: list[dict[str, Any]] = []
        self.calls: list[str] = []

    def groups(self) -> list[str]:
        return sorted({p["group"] for p in self.packages})

    def show(self, group: str, version: int) -> dict[str, Any]:
        return next(p for p in self.packages if p["group"] == group and p["version"] == version)

    def latest(self, group: str, status: str | None = None) -> dict[str, Any] | None:
        found = [p for p in self.packages if p["group"] == group and status in (None, p["status"])]
        return found[-1] if found else None

    def approved(self, group: str) -> dict[str, Any] | None:
        return self.latest(group, "Approved")

    def identical(self, group: str, model_hash: str) -> dict[str, Any] | None:
        return None

    def register(self, group: str, model: Path, metrics: dict[str, Any], status: str, lineage: dict[str, Any],
                 run_id: str | None = None) -> tuple[dict[str, Any], bool]:
        self.calls.append(f"register {group}")
        package = {"group": group, "version": 41 + len(self.packages), "status": status, "lineage": lineage,
                   "model_uri": str(model), "history": []}
        self.packages.append(package)
        return package, True

    def model_path(self, package: dict[str, Any]) -> Path:
        return Path(package["model_uri"])

    def locked(self, group: str) -> ContextManager[None]:
        return nullcontext()


class FakeServing:
    def __init__(self) -> None:
        self.switched: list[tuple[str, int]] = []
        self.servers: list[tuple[str, int, int, int | None]] = []

    def switch_endpoint(self, endpoint: str, package: dict[str, Any], registry: Any, trigger: str) -> Path:
        self.switched.append((endpoint, package["version"]))
        return Path("/nowhere") / f"{endpoint}.json"

    def ensure_server(self, record: Path, port: int, workers: int, capture_percent: int | None = None) -> str:
        self.servers.append((record.stem, port, workers, capture_percent))
        return "a server"

    def scoring_command(self, model: Path, source: Path, target: Path, threshold: float,
                        chunk_rows: int) -> tuple[list[str], dict[str, str]]:
        raise AssertionError("no scoring in this test")


def test_register_and_deploy_use_the_services_on_their_context(config: Path, home: Path) -> None:
    spec = load_pipeline(config)
    registry, serving = FakeRegistry(), FakeServing()
    state = LocalRunner(spec, home, services=RunServices(spec, home, registry=registry, serving=serving)).run()
    assert state.data["status"] == "succeeded", state.data
    assert registry.calls == ["register served"] and serving.switched == [("served-dev", 41)]
    assert state.step("publish")["registered"] == {"group": "served", "version": 41, "status": "Approved",
                                                   "new": True}
    assert not (home / "registry").exists() and not (home / "endpoints").exists()  # nothing opened its own


def test_the_registry_is_opened_once_per_run_and_only_when_used(config: Path, home: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[Path] = []
    real = services.open_registry

    def counting(settings: Any, state_root: Path, repo_root: Path) -> Any:
        opened.append(state_root)
        return real(settings, state_root, repo_root)

    monkeypatch.setattr(services, "open_registry", counting)
    state = LocalRunner(load_pipeline(config), home).run()
    assert state.data["status"] == "succeeded" and state.step("ship")["note"].startswith("endpoint served-dev")
    assert opened == [home.resolve()]  # register and deploy: one registry
    opened.clear()
    failed = LocalRunner(load_pipeline(config, params=["min_auc=0.9"]), home).run()
    assert failed.step("publish")["status"] == "skipped" and opened == []


def test_tuning_trials_are_tracked_through_the_step_tracker(tmp_path: Path, home: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "none")
    pipeline = """
name: tuned
steps:
  - {name: prepare, type: processing, code: scripts/emit.py, outputs: [data]}
  - name: tune
    type: tuning
    code: scripts/train.py
    inputs: {train: "${steps.prepare.outputs.data}"}
    hyperparameters: {epochs: 1}
    tuning:
      strategy: grid
      max_jobs: 2
      max_parallel_jobs: 1
      objective: {metric: "lines", regex: "lines=([0-9]+)"}
      ranges: {epochs: {categorical: [1, 2]}}
"""
    train = "import json, os, pathlib\nprint('lines=1')\n" \
            "(pathlib.Path(os.environ['SM_MODEL_DIR']) / 'model.json').write_text('{}')\n"
    config = make_project(tmp_path / "p", "tuned", pipeline, {}, ("emit.py",), {"scripts/train.py": train})
    spec = load_pipeline(config)

    class Tracker:
        def __init__(self) -> None:
            self.started: list[tuple[str, dict[str, str]]] = []
            self.finished: list[tuple[str, str, dict[str, Any], dict[str, float]]] = []

        def run_id(self) -> str | None:
            return "step-run"

        def git_commit(self) -> str | None:
            return None

        def start_child(self, name: str, tags: dict[str, str]) -> str | None:
            self.started.append((name, tags))
            return f"child-{len(self.started)}"

        def finish_child(self, run_id: str, status: str, params: dict[str, Any], metrics: dict[str, float],
                         tags: dict[str, str], files: dict[str, Path]) -> None:
            assert files["logs"].is_file()
            self.finished.append((run_id, status, params, metrics))

    tracker = Tracker()

    class Recording(RunServices):
        def for_step(self, tracking_env: dict[str, str], log: Any) -> Any:
            return SimpleNamespace(registry=None, serving=None, tracker=tracker)

    state = LocalRunner(spec, home, services=Recording(spec, home)).run()
    assert state.data["status"] == "succeeded", state.data
    assert sorted(name for name, _ in tracker.started) == ["tune-001", "tune-002"]
    assert {"sagepipe.step": "tune", "sagepipe.kind": "trial", "sagepipe.trial": "1"} in [t for _, t in tracker.started]
    assert sorted((r, s, p["tuned.epochs"], m["lines"]) for r, s, p, m in tracker.finished) == \
        [("child-1", "Completed", "1", 1.0), ("child-2", "Completed", "2", 1.0)]


def test_no_step_type_reaches_the_registry_serving_or_tracking_itself() -> None:
    """Every import counts, at module level or inside a function (only `if TYPE_CHECKING:` ones do not)."""
    graph = import_graph()
    reached = {module: sorted(t for t in targets if t.startswith(FORBIDDEN))
               for module, targets in graph.items() if module == "steps" or module.startswith("steps.")}
    assert {m: t for m, t in reached.items() if t} == {}
    assert not [t for t in graph["pipelines.report.gate"] | graph["pipelines.report.collect"]
                if t == "steps" or t.startswith("steps.")]


def test_only_deploying_steps_carry_the_deploy_methods(config: Path) -> None:
    spec = load_pipeline(config)
    assert [s.name for s in deploy_steps(spec)] == ["ship"]
    assert isinstance(spec.step("ship"), Deploys) and not isinstance(spec.step("publish"), Deploys)
    assert not hasattr(Step, "deployed_group") and not hasattr(Step, "deploy_approved")


def test_local_serving_scores_with_the_engine_process(tmp_path: Path) -> None:
    argv, env = LocalServing(tmp_path).scoring_command(tmp_path / "m", tmp_path / "in.csv", tmp_path / "out.csv",
                                                       0.25, 10)
    assert argv[1:3] == ["-m", "pipelines.local.score_file"] and argv[argv.index("--threshold") + 1] == "0.25"
    assert env["PYTHONPATH"].split(":")[0] == str(Path(services.__file__).resolve().parents[2])
    assert json.loads(json.dumps(env))  # plain strings, as run_process takes them


@pytest.mark.parametrize("endpoint,capture", [("", None), ("\n    endpoint: {data_capture: {enabled: true, sampling_percent: 20}}", 20)])
def test_a_deploy_that_serves_locally_captures_as_its_data_capture_says(tmp_path: Path, home: Path, endpoint: str,
                                                                       capture: int | None) -> None:
    """The endpoint's data_capture (what SageMaker's endpoint captures) also turns on the local server's capture."""
    pipeline = PIPELINE.replace(
        "  - {name: ship, type: deploy, depends_on: [publish], model_group: served, endpoint_name: served-dev}\n",
        "  - name: ship\n    type: deploy\n    depends_on: [publish]\n    model_group: served\n"
        f"    endpoint_name: served-dev\n    local: {{serve: true, port: 8123, workers: 1}}{endpoint}\n")
    config = make_project(tmp_path / "project", "served", pipeline, {}, SCRIPTS)
    spec = load_pipeline(config)
    serving = FakeServing()
    state = LocalRunner(spec, home, services=RunServices(spec, home, registry=FakeRegistry(), serving=serving)).run()
    assert state.data["status"] == "succeeded", state.data
    assert serving.servers == [("served-dev", 8123, 1, capture)]
    assert state.step("ship")["note"].endswith("(a server)")
