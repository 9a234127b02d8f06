"""What a definition may ask of SageMaker that emulate does not do: said once per kind, before the run starts.

Each kind is one warning line naming the steps that use it and what happens here instead, e.g.
`warning: emulate does not honour NetworkConfig (steps: a, b): jobs run with this machine's network`.
What emulate cannot run at all is refused before this (pipelines/emulate/launch.py `refuse`); everything
else a definition says is honoured.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TextIO


def anywhere(node: Any, *keys: str) -> Iterator[Any]:
    """The value of every key of those names at any depth of node (pipeline functions count as values)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in keys:
                yield value
            if key not in ("Get", "Std:Join", "Std:JsonGet"):
                yield from anywhere(value, *keys)
    elif isinstance(node, list):
        for value in node:
            yield from anywhere(value, *keys)


def _may_be(value: Any, *wanted: Any) -> bool:
    """A literal among wanted, or an expression (a parameter, say) that may evaluate to one."""
    return isinstance(value, dict) and bool(set(value) & {"Get", "Std:Join", "Std:JsonGet"}) or value in wanted


def _set(value: Any) -> bool:
    """Given, with something in it: {"EnableNetworkIsolation": false} asks for nothing."""
    if isinstance(value, dict) and not set(value) & {"Get", "Std:Join", "Std:JsonGet"}:
        return any(_set(v) for v in value.values())
    if isinstance(value, list):
        return any(_set(v) for v in value)
    return value not in (None, "", False)


@dataclass(frozen=True)
class Kind:
    name: str
    uses: Callable[[dict[str, Any], dict[str, Any]], bool]  # (step, its Arguments)
    instead: str


KINDS = (
    Kind("NetworkConfig", lambda s, a: any(_set(v) for v in anywhere(a, "NetworkConfig")),
         "jobs run with this machine's network (no VPC, no network isolation, no inter-container encryption)"),
    Kind("VpcConfig", lambda s, a: any(_set(v) for v in anywhere(a, "VpcConfig")),
         "jobs and models run with this machine's network, not in the VPC's subnets and security groups"),
    Kind("EnableNetworkIsolation", lambda s, a: any(_may_be(v, True, "true") for v in anywhere(
        a, "EnableNetworkIsolation", "EnableInterContainerTrafficEncryption")),
         "containers can reach the network, and their traffic is not encrypted"),
    Kind("EnableManagedSpotTraining", lambda s, a: any(_may_be(v, True, "true") for v in anywhere(
        a, "EnableManagedSpotTraining")),
         "training runs on this machine and is never interrupted; MaxWaitTimeInSeconds is not enforced"),
    Kind("StoppingCondition", lambda s, a: any(_set(v) for v in anywhere(a, "StoppingCondition")),
         "jobs run until they end, however long (MaxRuntimeInSeconds is not enforced)"),
    Kind("RetryPolicies", lambda s, a: bool(s.get("RetryPolicies")),
         "the service faults they retry (throttling, capacity, internal errors) do not happen here, and a job "
         "that fails is not run again"),
    Kind("RetryStrategy", lambda s, a: any(_set(v) for v in anywhere(a, "RetryStrategy")),
         "a training job that fails is not run again"),
    Kind("KmsKeyId", lambda s, a: any(_set(v) for v in anywhere(a, "KmsKeyId", "VolumeKmsKeyId")),
         "outputs and volumes are not encrypted"),
    Kind("S3UploadMode Continuous", lambda s, a: any(_may_be(v, "Continuous") for v in anywhere(a, "S3UploadMode")),
         "outputs are uploaded when the job ends (EndOfJob)"),
    Kind("S3InputMode Pipe/FastFile", lambda s, a: any(_may_be(v, "Pipe", "FastFile") for v in anywhere(
        a, "S3InputMode")),
         "inputs are downloaded in full before the job starts (File mode)"),
    Kind("InputMode Pipe/FastFile", lambda s, a: any(_may_be(v, "Pipe", "FastFile") for v in anywhere(
        a, "InputMode", "TrainingInputMode")),
         "training channels are downloaded in full before the job starts (File mode)"),
    Kind("S3DataType ManifestFile", lambda s, a: any(_may_be(v, "ManifestFile", "AugmentedManifestFile")
                                                      for v in anywhere(a, "S3DataType")),
         "the S3Uri is read as a prefix: the manifest object itself is downloaded, not the objects it lists"),
    Kind("VolumeSizeInGB", lambda s, a: any(v is not None for v in anywhere(a, "VolumeSizeInGB")),
         "jobs write to this machine's disk, whatever its size"),
    Kind("Debugger and Profiler", lambda s, a: any(_set(v) for v in anywhere(
        a, "DebugHookConfig", "DebugRuleConfigurations", "ProfilerConfig", "ProfilerRuleConfigurations",
        "TensorBoardOutputConfig")),
         "no rules run and no tensors, profiles or TensorBoard data are collected"),
    Kind("OutputDataConfig.CompressionType NONE", lambda s, a: s.get("Type") == "Training" and _may_be(
        (a.get("OutputDataConfig") or {}).get("CompressionType"), "NONE"),
         "the model directory is still uploaded as model.tar.gz"),
    Kind("DataProcessing", lambda s, a: s.get("Type") == "Transform" and _set(a.get("DataProcessing")),
         "records are neither filtered nor joined: the model gets whole input records, the output holds its "
         "answers alone"),
)
# top-level keys of the definition
PIPELINE_KINDS = (
    ("PipelineExperimentConfig", "no SageMaker Experiments experiment or trial is created (runs are tracked in "
                                 "MLflow)"),
    ("MlflowConfig", "steps are not pointed at the SageMaker managed MLflow tracking server it names"),
)


def unemulated(definition: dict[str, Any]) -> list[str]:
    """One warning line per kind of thing the definition asks for that emulate does not do."""
    from pipelines.sagemaker.definition_checks import all_steps

    lines = [f"warning: emulate does not honour {key}: {instead}" for key, instead in PIPELINE_KINDS
             if _set(definition.get(key))]
    steps = list(all_steps(definition.get("Steps") or []))
    for kind in KINDS:
        users = [s.get("Name", "?") for s in steps if kind.uses(s, _own(s))]
        if users:
            lines.append(f"warning: emulate does not honour {kind.name} (steps: {', '.join(users)}): {kind.instead}")
    return lines


def _own(step: dict[str, Any]) -> dict[str, Any]:
    """A step's arguments without the steps a condition's branches hold (all_steps visits those)."""
    return {k: v for k, v in (step.get("Arguments") or {}).items() if k not in ("IfSteps", "ElseSteps")}


def say_unemulated(definition: dict[str, Any], out: TextIO | None = None) -> None:
    """Print unemulated(definition), one line each, to stderr (stdout stays `--json`'s)."""
    for line in unemulated(definition):
        print(line, file=out or sys.stderr, flush=True)
