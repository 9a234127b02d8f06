"""SageMaker's step cache key, per step type, as the developer guide lists it ("Default cache key attributes by
pipeline step type"): a job step is a cache hit when these fields, resolved, equal those of an earlier
successful execution of the same step within ExpireAfter. Everything else (resources, stopping condition,
role, output locations, tags) is left out, so changing it alone is still a hit, as on SageMaker."""

from __future__ import annotations

import hashlib
import json
from typing import Any

KEY_FIELDS: dict[str, tuple[str, ...]] = {
    "Processing": ("AppSpecification", "Environment", "ProcessingInputs"),
    "Training": ("AlgorithmSpecification", "CheckpointConfig", "DebugHookConfig", "DebugRuleConfigurations",
                 "Environment", "HyperParameters", "InputDataConfig"),
    "Tuning": ("HyperParameterTuningJobConfig", "TrainingJobDefinition", "TrainingJobDefinitions"),
    "Transform": ("DataProcessing", "Environment", "ModelName", "TransformInput"),
}
# Of a tuning job's training job definition, only these children can cause a re-run.
TRAINING_DEFINITION_FIELDS = ("AlgorithmSpecification", "HyperParameterRanges", "InputDataConfig",
                              "StaticHyperParameters", "TuningObjective")


def key_fields(kind: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The part of a job step's resolved arguments that its cache key is made of."""
    kept = {name: arguments[name] for name in KEY_FIELDS[kind] if name in arguments}
    if kind == "Tuning":
        if isinstance(kept.get("TrainingJobDefinition"), dict):
            kept["TrainingJobDefinition"] = _definition(kept["TrainingJobDefinition"])
        if isinstance(kept.get("TrainingJobDefinitions"), list):
            kept["TrainingJobDefinitions"] = [_definition(d) for d in kept["TrainingJobDefinitions"]]
    return kept


def cache_key(kind: str, arguments: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps([kind, key_fields(kind, arguments)], sort_keys=True,
                                     default=str).encode()).hexdigest()


def _definition(definition: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in definition.items() if k in TRAINING_DEFINITION_FIELDS}
