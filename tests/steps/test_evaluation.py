"""`type: evaluation`: a processing step whose report is a PropertyFile that conditions read."""

from __future__ import annotations

from pathlib import Path

from tests.steps.conftest import config_error, load

STEP = """
  - name: evaluate
    type: evaluation
    code: scripts/score.py
    outputs: [evaluation]
"""


def test_report_must_be_an_output(tmp_path: Path) -> None:
    message = config_error(tmp_path, STEP + "    report: {output: metrics}\n")
    assert "report.output 'metrics' is not one of this step's outputs (evaluation)" in message


def test_has_metrics(tmp_path: Path) -> None:
    step = load(tmp_path, STEP).step("evaluate")
    assert step.has_metrics() and step.runs_script and step.refs() == []


def test_compiled_form(compiled: dict) -> None:
    step = compiled["evaluate"]
    assert step["Type"] == "Processing"
    assert step["PropertyFiles"] == [{"PropertyFileName": "evaluate-report", "OutputName": "evaluation",
                                      "FilePath": "evaluation.json"}]


def test_a_report_read_before_it_is_declared_is_a_config_error(tmp_path: Path) -> None:
    from pipelines.errors import ConfigError
    from pipelines.sagemaker.compiler import CompileContext

    spec = load(tmp_path, STEP)
    cc = CompileContext(spec, session=None, s3=None, role="r", bucket="b", region="us-east-1")
    try:
        cc.property_file("evaluate")
    except ConfigError as exc:
        assert exc.problems[0].path == "steps.evaluate" and "declares no metrics report" in str(exc)
    else:
        raise AssertionError("no ConfigError")
