"""A new step type is one class (the contract of pipelines/step_api.py) plus one registry line: it loads, runs
here and compiles, and neither backend knows it by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest

import steps
from pipelines.errors import StepFailed
from pipelines.loader import load_pipeline
from pipelines.local.runner import LocalRunner
from pipelines.step_api import CompileContext, LocalResult, Step, StepContext
from tests.steps.conftest import project

PIPELINE = """
name: echo-pipeline
parameters:
  greeting: {type: string, default: hello}
  data: {type: string, default: ""}
steps:
  - {name: shout, type: echo, text: "${params.greeting}, world"}
  - {name: after, type: echo, text: done, depends_on: [shout]}
"""


class EchoStep(Step):
    """Says its text (references filled in); on SageMaker a FailStep carrying it, as the README shows."""

    type: Literal["echo"] = "echo"
    text: Any

    def run_local(self, ctx: StepContext) -> LocalResult:
        text = str(ctx.resolve(self.text))
        if not text:
            raise StepFailed("nothing to say")
        return LocalResult(note=text)

    def compile_sagemaker(self, cc: CompileContext) -> Any:
        from sagemaker.mlops.workflow import FailStep

        return FailStep(name=self.name, error_message=cc.text(self.text), depends_on=cc.depends_on(self))


@pytest.fixture
def echo_type(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(steps.STEP_TYPES, "echo", EchoStep)  # the one registry line


def test_a_type_without_both_methods_cannot_exist() -> None:
    class Half(Step):
        type: Literal["half"] = "half"

        def run_local(self, ctx: StepContext) -> LocalResult:
            return LocalResult()

    with pytest.raises(TypeError, match="compile_sagemaker"):
        Half(name="half")


def test_unknown_until_registered(tmp_path: Path) -> None:
    from pipelines.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown step type 'echo'"):
        load_pipeline(project(tmp_path, PIPELINE))


def test_new_type_runs_locally(echo_type: None, tmp_path: Path) -> None:
    spec = load_pipeline(project(tmp_path / "p", PIPELINE), params=["greeting=hi"])
    state = LocalRunner(spec, tmp_path / "state").run()
    assert state.data["status"] == "succeeded"
    assert state.step("shout")["note"] == "hi, world" and state.step("after")["status"] == "succeeded"


def test_new_type_compiles(echo_type: None, tmp_path: Path) -> None:
    from pipelines.sagemaker.compiler import compile_pipeline

    spec = load_pipeline(project(tmp_path, PIPELINE), "dev")
    steps_out = {s["Name"]: s for s in compile_pipeline(spec).definition["Steps"]}
    assert steps_out["shout"]["Type"] == "Fail"
    assert steps_out["shout"]["Arguments"]["ErrorMessage"] == {
        "Std:Join": {"On": "", "Values": [{"Get": "Parameters.greeting"}, ", world"]}}
    assert steps_out["after"]["DependsOn"] == ["shout"]


def test_a_defect_in_a_step_type_is_not_passed_off_as_a_config_error(echo_type: None, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.sagemaker.compiling import compile_pipeline_or_explain

    def broken(self: EchoStep, cc: CompileContext) -> Any:
        raise ValueError("a bug")

    monkeypatch.setattr(EchoStep, "compile_sagemaker", broken)
    spec = load_pipeline(project(tmp_path, PIPELINE), "dev")
    with pytest.raises(ValueError, match="a bug"):
        compile_pipeline_or_explain(spec)
