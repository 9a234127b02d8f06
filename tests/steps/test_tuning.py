"""`type: tuning`: ranges must be hyperparameters, typed cloud settings, compiled TuningStep."""

from __future__ import annotations

from pathlib import Path

from tests.steps.conftest import config_error, load

STEP = """
  - name: tune
    type: tuning
    code: scripts/train.py
    hyperparameters: {x: 0.0}
    tuning:
      strategy: random
      max_jobs: 2
      objective: {metric: score, regex: "score=([0-9.]+)"}
      ranges: {x: {continuous: [0.0, 1.0]}}
"""


def test_ranges_and_cloud_block_are_checked(tmp_path: Path) -> None:
    message = config_error(tmp_path, STEP.replace("ranges: {x:", "ranges: {y:"))
    assert "ranges.y: 'y' is not one of this step's hyperparameters" in message
    message = config_error(tmp_path / "b", STEP + "    sagemaker: {spto: true}\n")
    assert "steps.tune.sagemaker.spto" in message and "did you mean 'spot'" in message


def test_outputs(tmp_path: Path) -> None:
    step = load(tmp_path, STEP).step("tune")
    assert step.output_names() == ["model", "trials"] and step.runs_script


def test_compiled_form(compiled: dict) -> None:
    step = compiled["tune"]
    config = step["Arguments"]["HyperParameterTuningJobConfig"]
    assert step["Type"] == "Tuning" and config["Strategy"] == "Random"
    assert config["ResourceLimits"]["MaxNumberOfTrainingJobs"] == 4


def test_what_sagemaker_cannot_run_names_the_step_and_field(tmp_path: Path) -> None:
    import pytest

    from pipelines.errors import ConfigError
    from pipelines.loader import load_pipeline
    from pipelines.sagemaker.compiler import compile_pipeline
    from tests.steps.conftest import HEADER, project

    config = project(tmp_path, HEADER + STEP + "    environment: {LOG_LEVEL: debug}\n")
    with pytest.raises(ConfigError) as caught:
        compile_pipeline(load_pipeline(config, "dev"))
    problem = caught.value.problems[0]
    assert problem.path == "steps.tune.environment" and problem.file.endswith("step-types.yaml")
    assert "takes no environment" in problem.message
