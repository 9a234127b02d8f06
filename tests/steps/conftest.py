"""Shared by the per-step-type unit tests: a tiny project to load, and one compile of every step type."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipelines.errors import ConfigError
from pipelines.loader import load_pipeline
from pipelines.spec import PipelineSpec
from tests.conftest import make_project

DEV = """
sagemaker: {region: us-east-1, role: "arn:aws:iam::111122223333:role/exec", bucket: step-types-bucket}
parameters: {data: "s3://step-types-bucket/data/"}
"""
HEADER = """
name: step-types
parameters:
  data: {type: string, default: data}
  min_auc: {type: float, default: 0.7}
steps:
"""
# Every step type once; each tests/steps/test_<type>.py reads its own step's compiled form.
EVERY_TYPE = HEADER + """
  - name: prepare
    type: processing
    code: scripts/emit.py
    inputs: {data: "${params.data}"}
    outputs: [data]
    sagemaker: {shard_inputs: [data], max_runtime_s: 1800}
  - name: train
    type: training
    code: scripts/train.py
    inputs: {train: "${steps.prepare.outputs.data}"}
    hyperparameters: {x: 0.3, depth: 2}
    sagemaker: {spot: true, max_runtime_s: 3600}
  - name: tune
    type: tuning
    code: scripts/train.py
    inputs: {train: "${steps.prepare.outputs.data}"}
    hyperparameters: {x: 0.0, depth: 1}
    tuning:
      strategy: random
      max_jobs: 4
      max_parallel_jobs: 2
      objective: {metric: "validation:score", regex: "score=([-0-9.]+)"}
      ranges: {x: {continuous: [0.0, 1.0]}}
  - name: evaluate
    type: evaluation
    code: scripts/score.py
    inputs: {model: "${steps.train.outputs.model}"}
    outputs: [evaluation]
  - name: gate
    type: condition
    condition: {left: "${steps.evaluate.metrics.auc}", op: ">=", right: "${params.min_auc}"}
    if_true: [register]
    if_false: [too-low]
  - {name: too-low, type: fail, message: "AUC ${steps.evaluate.metrics.auc} is below ${params.min_auc}"}
  - {name: register, type: register, model: "${steps.train.outputs.model}", model_group: step-types,
     metrics: "${steps.evaluate.outputs.evaluation}"}
  - name: score
    type: transform
    model: ${steps.train.outputs.model}
    input: ${params.data}
    sagemaker: {batch_strategy: SingleRecord, max_payload_mb: 6}
  - {name: deploy, type: deploy, depends_on: [register], model_group: step-types, endpoint_name: step-types-dev}
"""


def project(folder: Path, pipeline: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = make_project(folder, "step-types", pipeline, {"dev": DEV}, ("emit.py", "score.py", "train.py"))
    (folder / "data").mkdir()
    return config


def load(folder: Path, steps: str, env: str = "local") -> PipelineSpec:
    """A pipeline of HEADER plus `steps` (YAML list items), loaded."""
    return load_pipeline(project(folder, HEADER + steps), env)


def config_error(folder: Path, steps: str) -> str:
    """The message loading HEADER plus `steps` gives (it must fail)."""
    with pytest.raises(ConfigError) as caught:
        load(folder, steps)
    return str(caught.value)


@pytest.fixture(scope="session")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every step type's compiled definition entry, by step name (top-level and inside conditions)."""
    from pipelines.sagemaker.compiler import compile_pipeline

    spec = load_pipeline(project(tmp_path_factory.mktemp("every-type"), EVERY_TYPE), "dev")
    definition = compile_pipeline(spec).definition
    found: dict[str, Any] = {}

    def collect(steps: list[dict[str, Any]]) -> None:
        for step in steps:
            found[step["Name"]] = step
            collect(step.get("Arguments", {}).get("IfSteps", []) + step.get("Arguments", {}).get("ElseSteps", []))

    collect(definition["Steps"])
    return found
