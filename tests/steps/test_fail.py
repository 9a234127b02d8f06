"""`type: fail`: its message may hold references; compiled FailStep."""

from __future__ import annotations

from pathlib import Path

from pipelines.refs import ParamRef
from tests.steps.conftest import config_error, load


def test_unknown_key_is_rejected(tmp_path: Path) -> None:
    message = config_error(tmp_path, "  - {name: stop, type: fail, mesage: no}\n")
    assert "steps.stop.mesage" in message and "did you mean 'message'" in message


def test_refs(tmp_path: Path) -> None:
    step = load(tmp_path, '  - {name: stop, type: fail, message: "below ${params.min_auc}"}\n').step("stop")
    assert step.refs() == [ParamRef("min_auc")] and step.settled_resources() is None


def test_compiled_form(compiled: dict) -> None:
    step = compiled["too-low"]
    assert step["Type"] == "Fail"
    values = step["Arguments"]["ErrorMessage"]["Std:Join"]["Values"]
    assert values[0] == "AUC " and "Std:JsonGet" in values[1]
