"""The env file's security settings in every job and model of a compiled definition.

`sagemaker.kms_key` encrypts each job's storage volume and its outputs; `sagemaker.vpc` puts each job, and each
model a transform job serves from, in the VPC's subnets and security groups. Step types hand both to the SDK
(CompileContext.kms_key, network_config, networking), but the SDK does not carry every one through: its
HyperparameterTuner builds the tuning job's ResourceConfig without the trainer's volume key, and a ModelStep's
CreateModel gets no VpcConfig from a pipeline session. So after the SDK has built the definition, each setting
that the env sets is put in every field of the SageMaker API that takes it (FIELDS), where a step left it out;
a setting that is set is never silently off. A job whose definition holds another value keeps it.
"""

from __future__ import annotations

from typing import Any, Iterator

from pipelines.spec import SageMakerSettings

# setting -> step Type -> where in the step's Arguments the API takes it (the last key is the field)
FIELDS: dict[str, dict[str, tuple[tuple[str, ...], ...]]] = {
    "kms_key": {
        "Processing": (("ProcessingResources", "ClusterConfig", "VolumeKmsKeyId"),
                       ("ProcessingOutputConfig", "KmsKeyId")),
        "Training": (("ResourceConfig", "VolumeKmsKeyId"), ("OutputDataConfig", "KmsKeyId")),
        "Tuning": (("TrainingJobDefinition", "ResourceConfig", "VolumeKmsKeyId"),
                   ("TrainingJobDefinition", "OutputDataConfig", "KmsKeyId")),
        "Transform": (("TransformResources", "VolumeKmsKeyId"), ("TransformOutput", "KmsKeyId")),
    },
    "vpc": {
        "Processing": (("NetworkConfig", "VpcConfig"),),
        "Training": (("VpcConfig",),),
        "Tuning": (("TrainingJobDefinition", "VpcConfig"),),
        "Model": (("VpcConfig",),),  # a transform job runs in its model's VPC (TransformJob has no VpcConfig)
    },
}


def setting_values(settings: SageMakerSettings) -> dict[str, Any]:
    """The security settings an env sets, as the API spells their values."""
    values: dict[str, Any] = {}
    if settings.kms_key:
        values["kms_key"] = settings.kms_key
    if settings.vpc is not None:
        values["vpc"] = {"SecurityGroupIds": list(settings.vpc.security_group_ids),
                         "Subnets": list(settings.vpc.subnets)}
    return values


def apply_security_settings(definition: dict[str, Any], settings: SageMakerSettings) -> dict[str, Any]:
    """The definition with each security setting the env sets in every field that takes it (in place)."""
    from pipelines.sagemaker.definition_checks import all_steps

    values = setting_values(settings)
    for step in all_steps(definition.get("Steps") or []):
        arguments = step.get("Arguments")
        if not isinstance(arguments, dict):
            continue
        for setting, value in values.items():
            for path in FIELDS[setting].get(step.get("Type", ""), ()):
                parent = _parent(arguments, path, make=True)
                if parent is not None and parent.get(path[-1]) in (None, "", {}):
                    parent[path[-1]] = value
    return definition


def where_settings_go(definition: dict[str, Any], setting: str) -> Iterator[tuple[str, str, Any]]:
    """(step name, field path, value) of each field that takes setting in the definition's jobs and models
    (None where the field is missing): what tests and `explain` read."""
    from pipelines.sagemaker.definition_checks import all_steps

    for step in all_steps(definition.get("Steps") or []):
        arguments = step.get("Arguments") or {}
        for path in FIELDS[setting].get(step.get("Type", ""), ()):
            parent = _parent(arguments, path)
            if parent is not None:
                yield step["Name"], ".".join(("Arguments", *path)), parent.get(path[-1])


def _parent(arguments: dict[str, Any], path: tuple[str, ...], make: bool = False) -> dict[str, Any] | None:
    """The object holding path's field; None when the job has no such part (a processing job without outputs
    has no ProcessingOutputConfig to encrypt). With make, a missing NetworkConfig (VpcConfig's parent) is made."""
    node: Any = arguments
    for key in path[:-1]:
        if not isinstance(node, dict):
            return None
        if make and key not in node and key == "NetworkConfig":
            node[key] = {}
        node = node.get(key)
    return node if isinstance(node, dict) else None
