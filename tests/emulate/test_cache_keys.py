"""Emulate's step cache key is the service's: the developer guide's fields per step type, nothing more or less."""

from __future__ import annotations

import copy
import json
import re

import pytest

from pipelines.emulate.cache_keys import KEY_FIELDS, cache_key
from tests.conftest import REPO

GOLDEN = REPO / "tests" / "golden"


def _job(kind: str) -> dict:
    definitions = {"Processing": "fraud-detection.dev.json", "Training": "fraud-detection.dev.json",
                   "Tuning": "fraud-detection-hpo.dev.json"}
    for step in json.loads((GOLDEN / definitions[kind]).read_text())["Steps"]:
        if step["Type"] == kind:
            return step["Arguments"]
    raise AssertionError(kind)


def test_the_documented_fields_per_step_type() -> None:
    # https://docs.aws.amazon.com/sagemaker/latest/dg/pipelines-default-keys.html
    assert KEY_FIELDS["Processing"] == ("AppSpecification", "Environment", "ProcessingInputs")
    assert KEY_FIELDS["Training"] == ("AlgorithmSpecification", "CheckpointConfig", "DebugHookConfig",
                                      "DebugRuleConfigurations", "Environment", "HyperParameters", "InputDataConfig")
    assert KEY_FIELDS["Tuning"] == ("HyperParameterTuningJobConfig", "TrainingJobDefinition", "TrainingJobDefinitions")
    assert KEY_FIELDS["Transform"] == ("DataProcessing", "Environment", "ModelName", "TransformInput")


@pytest.mark.parametrize("kind, path, in_key", [
    ("Processing", ("ProcessingResources", "ClusterConfig", "InstanceType"), False),
    ("Processing", ("RoleArn",), False),
    ("Processing", ("StoppingCondition",), False),
    ("Processing", ("ProcessingOutputConfig", "Outputs"), False),
    ("Processing", ("AppSpecification", "ImageUri"), True),
    ("Processing", ("Environment",), True),
    ("Training", ("ResourceConfig", "InstanceType"), False),
    ("Training", ("StoppingCondition", "MaxRuntimeInSeconds"), False),
    ("Training", ("RoleArn",), False),
    ("Training", ("OutputDataConfig", "S3OutputPath"), False),
    ("Training", ("CheckpointConfig", "S3Uri"), True),
    ("Training", ("HyperParameters",), True),
    ("Training", ("AlgorithmSpecification", "TrainingImage"), True),
    ("Tuning", ("TrainingJobDefinition", "OutputDataConfig", "S3OutputPath"), False),
    ("Tuning", ("TrainingJobDefinition", "ResourceConfig", "InstanceType"), False),
    ("Tuning", ("TrainingJobDefinition", "StaticHyperParameters"), True),
    ("Tuning", ("HyperParameterTuningJobConfig", "ResourceLimits", "MaxNumberOfTrainingJobs"), True),
])
def test_a_change_misses_exactly_when_its_field_is_in_the_key(kind: str, path: tuple, in_key: bool) -> None:
    arguments = _job(kind)
    changed = copy.deepcopy(arguments)
    holder = changed
    for part in path[:-1]:
        holder = holder.setdefault(part, {})
    holder[path[-1]] = {"changed": True}
    assert (cache_key(kind, changed) != cache_key(kind, arguments)) is in_key


def test_the_compiled_training_step_can_be_a_cache_hit_and_keeps_configurations_apart() -> None:
    """Its CheckpointConfig (in the key) names no execution, and differs between configurations."""
    from pipelines.loader import load_pipeline
    from steps.training import TrainingStep

    training = _job("Training")
    assert "Execution" not in json.dumps(training["CheckpointConfig"])
    spec = load_pipeline(REPO / "configs" / "fraud-detection.yaml", "dev")
    step = spec.step("train")
    assert isinstance(step, TrainingStep)
    other = step.model_copy(update={"hyperparameters": {**step.hyperparameters, "num_leaves": 7}})

    class Context:
        bucket = "b"

    Context.spec = spec  # type: ignore[attr-defined]
    assert re.fullmatch(r"s3://sagepipe-dev-artifacts/fraud-detection/checkpoints/train/[0-9a-f]{16}",
                        training["CheckpointConfig"]["S3Uri"])
    assert re.fullmatch(r"s3://b/fraud-detection/checkpoints/train/[0-9a-f]{16}", step.checkpoint_uri(Context()))
    assert other.checkpoint_uri(Context()) != step.checkpoint_uri(Context())
