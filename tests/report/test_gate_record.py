"""The gate's decision and a registered version are data in the run's state; the report, `explain` and tracking
read them from there (never from notes or step names), and a state recorded before they were kept still reports."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from pipelines.explain import explain
from pipelines.loader import load_pipeline
from pipelines.local.runner import LocalRunner
from pipelines.local.state import RunState
from pipelines.report import write_report
from pipelines.report.collect import collect
from pipelines.tracking import headline_record
from tests.conftest import make_project
from tests.gated_pipeline import SCRIPTS, gated_pipeline

PIPELINE = gated_pipeline("gated")
DECISION = {"outcome": True, "branch": "if_true", "expression": 0, "branches": {"if_true": ["publish"],
                                                                                "if_false": ["too-low"]},
            "conditions": [{"op": ">=", "left": 0.8125, "right": 0.7, "holds": True,
                            "left_from": "evaluate report: binary_classification_metrics.auc.value",
                            "right_from": "parameter min_auc"}]}


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "none")
    return make_project(tmp_path / "project", "gated", PIPELINE, {}, SCRIPTS)


def state_of(*steps: tuple[str, dict[str, Any]], **header: Any) -> dict[str, Any]:
    return {"run_id": "r1", "pipeline": "gated", "env": "local", "status": "succeeded", "started_at": 1.7e9,
            "params": {"min_auc": 0.7}, "steps": dict(steps), **header}


def test_the_state_records_the_decision_and_the_version(config: Path, home: Path) -> None:
    state = LocalRunner(load_pipeline(config), home).run()
    recorded = json.loads(state.path.read_text())["steps"]
    assert recorded["gate"]["decision"] == DECISION
    assert recorded["publish"]["registered"] == {"group": "gated", "version": 1, "status": "PendingManualApproval",
                                                 "new": True}
    again = LocalRunner(load_pipeline(config), home).run()  # the identical model: its existing version
    assert again.step("publish")["registered"]["new"] is False
    failed = LocalRunner(load_pipeline(config, params=["min_auc=0.9"]), home).run()
    decision = failed.step("gate")["decision"]
    assert decision["outcome"] is False and decision["branch"] == "if_false"
    assert decision["conditions"][0]["holds"] is False and decision["conditions"][0]["right"] == 0.9


def test_the_report_reads_the_decision_not_the_note_nor_the_names(tmp_path: Path) -> None:
    """No spec, a note that says nothing, and a register step not named 'register': all from the records."""
    gate = ("gate", {"status": "succeeded", "note": "", "skip": ["too-low"], "decision": DECISION})
    published = ("publish", {"status": "succeeded",
                             "registered": {"group": "gated", "version": 3, "status": "PendingManualApproval",
                                            "new": True}})
    report = collect(state_of(gate, published), tmp_path / "r1", None)
    assert report.gate is not None and report.gate.passed is True
    assert report.gate.sentence == ("ROC AUC (evaluate) 0.812 ≥ min_auc 0.7: the model passed the gate and was "
                                    "registered as gated version 3 (PendingManualApproval).")
    broken = ("publish", {"status": "failed", "error": "registry unreachable"})
    sentence = collect(state_of(gate, broken), tmp_path / "r1", None).gate.sentence  # type: ignore[union-attr]
    assert sentence.endswith("the model passed the gate, but step 'publish' did not succeed.")
    page = write_report(tmp_path / "r1", None, state=state_of(gate, published)).read_text()
    assert "registered as gated version 3" in page and "sagepipe models approve gated 3" in page


def test_a_failed_gate_from_its_record_gives_the_values_and_the_change(tmp_path: Path) -> None:
    condition = {**DECISION["conditions"][0], "right": 0.9, "holds": False}
    decision = {**DECISION, "outcome": False, "branch": "if_false", "conditions": [condition]}
    gate = ("gate", {"status": "succeeded", "note": "whatever it said", "skip": ["publish"], "decision": decision})
    report = collect(state_of(gate, ("publish", {"status": "skipped"})), tmp_path / "r1", None)
    assert report.gate is not None and report.gate.passed is False
    assert report.gate.sentence == ("ROC AUC (evaluate) 0.812 < min_auc 0.9: the model did not pass the gate; "
                                    "it was not registered.")
    assert report.gate.change == "sagepipe resume r1 --param min_auc=0.81"


def test_a_combined_condition_says_its_truth_once(tmp_path: Path) -> None:
    second = {"op": "==", "left": "", "right": "", "holds": True, "left_from": "parameter data", "right_from": ""}
    decision = {**DECISION, "outcome": False, "branch": "if_false", "expression": {"and": [0, {"not": [1]}]},
                "conditions": [DECISION["conditions"][0], second]}
    gate = ("gate", {"status": "succeeded", "decision": decision})
    sentence = collect(state_of(gate), tmp_path / "r1", None).gate.sentence  # type: ignore[union-attr]
    assert sentence.startswith("(ROC AUC (evaluate) 0.812 ≥ min_auc 0.7) and (not (data '' = '')) does not hold: ")


def test_explain_and_tracking_read_the_records(config: Path, home: Path) -> None:
    spec = load_pipeline(config, params=["min_auc=0.9"])
    state = LocalRunner(spec, home).run()
    state.update_step("gate", note="a note nobody reads")
    out = io.StringIO()
    explain(state, out, spec)
    assert "the model did not pass the gate 'gate': ROC AUC (evaluate) 0.812 < min_auc 0.9" in out.getvalue()
    assert "--param min_auc=VALUE   (now 0.9)" in out.getvalue()
    tags = headline_record(spec, state.data)["tags"]
    assert tags["sagepipe.gate"] == "gate" and tags["sagepipe.gate_passed"] == "false"
    passed = LocalRunner(load_pipeline(config), home).run()
    tags = headline_record(spec, passed.data)["tags"]
    assert tags["sagepipe.gate_passed"] == "true" and tags["sagepipe.registered"] == "gated version 1"


def test_an_old_state_without_the_records_still_reports(config: Path, home: Path, tmp_path: Path) -> None:
    """Recorded before decisions and `new` were kept: the report shows less, explain and tracking go on."""
    old_gate = ("gate", {"status": "succeeded", "note": "0.8125 >= 0.7 is true", "skip": ["too-low"]})
    old_version = ("publish", {"status": "succeeded",
                               "registered": {"group": "gated", "version": 1, "status": "PendingManualApproval"}})
    state = state_of(old_gate, old_version, ("too-low", {"status": "skipped"}))
    bare = collect(state, tmp_path / "r1", None)
    assert bare.gate is None  # neither a decision nor the branches: nothing to say about the gate
    assert [(v.group, v.version) for v in bare.registered] == [("gated", 1)]
    spec = load_pipeline(config)
    with_spec = collect(state, tmp_path / "r1", spec).gate
    assert with_spec is not None and with_spec.passed is True  # the branch it skipped says which way it went
    assert with_spec.sentence == ("0.8125 >= 0.7 is true: the model passed the gate and was registered as gated "
                                  "version 1 (PendingManualApproval).")
    assert "sagepipe models approve gated 1" in write_report(tmp_path / "r1", None, state=state).read_text()
    emulated = ("check", {"status": "succeeded", "skip": ["register"], "emulated": {
        "type": "Condition", "outcome": False, "conditions": [
            {"type": "GreaterThanOrEqualTo", "left": 0.5, "right": 0.7, "holds": False,
             "left_from": "evaluate report: binary_classification_metrics.auc.value",
             "right_from": "parameter min_auc"}]}})
    old_emulated = collect(state_of(emulated, execution_arn="arn:x"), tmp_path / "r1", None).gate
    assert old_emulated is not None and old_emulated.sentence == (
        "ROC AUC (evaluate) 0.5 < min_auc 0.7: the model did not pass the gate; it was not registered.")
    assert headline_record(spec, state)["tags"]["sagepipe.registered_version"] == "1"

    run = LocalRunner(spec, home).run()  # an old state file of a finished run: explain goes on
    data = json.loads(run.path.read_text())
    for record in data["steps"].values():
        record.pop("decision", None)
        (record.get("registered") or {}).pop("new", None)
    run.path.write_text(json.dumps(data))
    out = io.StringIO()
    explain(RunState.load(run.path.parent), out, spec)
    assert "succeeded" in out.getvalue() and "sagepipe models approve gated 1" in out.getvalue()


def test_an_emulated_condition_records_the_same_decision() -> None:
    from types import SimpleNamespace

    from pipelines.emulate.expressions import Scope
    from pipelines.emulate.steps import HANDLERS, DefinitionStep
    from pipelines.report.gate import decision_words

    raw = {"Name": "Gate", "Type": "Condition", "Arguments": {"Conditions": [
        {"Type": "GreaterThanOrEqualTo", "LeftValue": 0.8, "RightValue": {"Get": "Parameters.MinAuc"}},
        {"Type": "Not", "Expression": {"Type": "Equals", "LeftValue": 1, "RightValue": 2}}]}}
    step = DefinitionStep(raw, SimpleNamespace(scope=Scope({"MinAuc": 0.9}, {})), [],  # type: ignore[arg-type]
                          {"if_true": ["Register"], "if_false": ["TooLow"]})
    decision = HANDLERS["Condition"](step, None).decision  # type: ignore[arg-type]
    assert decision is not None and decision["outcome"] is False and decision["branch"] == "if_false"
    assert decision["expression"] == {"and": [0, {"not": [1]}]}
    assert decision["branches"] == {"if_true": ["Register"], "if_false": ["TooLow"]}
    assert [(c["op"], c["holds"], c["right_from"]) for c in decision["conditions"]] == \
        [(">=", False, "parameter MinAuc"), ("==", False, "")]
    assert decision_words(decision) == "(0.8 ≥ MinAuc 0.9) and (not (1 = 2)) does not hold"
