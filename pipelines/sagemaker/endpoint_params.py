"""CloudFormation parameters for infra/endpoint.yaml from a pipeline's deploy step and env overlay."""

from __future__ import annotations

import json
from typing import Any

from pipelines.errors import ConfigError, Problem, did_you_mean
from pipelines.sagemaker.checks import INSTANCE_TYPES, check_account
from steps.deploy import DeployStep


def endpoint_parameters(spec: Any, model_package_arn: str, step_name: str | None = None) -> dict[str, Any]:
    """The template configuration CodePipeline's CloudFormation action takes: {"Parameters", "Tags"}."""
    overlay = f"{spec.source_file.rsplit('/', 1)[0]}/env/{spec.env}.yaml"
    problems = list(check_account(spec, overlay))
    deploys = [s for s in spec.steps if isinstance(s, DeployStep)]
    names = [s.name for s in deploys]
    if not deploys:
        problems.append(Problem(spec.source_file, None, "steps", "no deploy step to take endpoint settings from"))
    elif step_name and step_name not in names:
        problems.append(Problem(spec.source_file, None, "--step", f"no deploy step '{step_name}'"
                                                                  f"{did_you_mean(step_name, names)}"))
    if model_package_arn == "approved" and deploys and not problems:
        model_package_arn = latest_approved_arn(spec, next(s for s in deploys if s.name == (step_name or names[0])))
    if not model_package_arn.startswith("arn:aws") or ":model-package/" not in model_package_arn:
        problems.append(Problem(spec.source_file, None, "--model-package",
                                f"'{model_package_arn}' is not a model package ARN "
                                "(arn:aws:sagemaker:<region>:<account>:model-package/<group>/<version>)"))
    if problems:
        raise ConfigError(problems)
    step = next(s for s in deploys if s.name == (step_name or names[0]))
    resources = step.resources or spec.defaults.resources
    if resources.instance_type not in INSTANCE_TYPES:
        raise ConfigError([Problem(spec.source_file, None, f"steps.{step.name}.resources.instance_type",
                                   f"'{resources.instance_type}' is not a SageMaker instance type"
                                   f"{did_you_mean(resources.instance_type, INSTANCE_TYPES)}")])
    cloud, endpoint = spec.settings.sagemaker, step.endpoint
    params = {
        "EndpointName": f"{step.endpoint_name}", "ModelPackageArn": model_package_arn,
        "ExecutionRoleArn": cloud["role"], "Mode": {"realtime": "RealTime", "serverless": "Serverless",
                                                    "async": "Async"}[endpoint.mode],
        "InstanceType": resources.instance_type, "InstanceCount": resources.instance_count,
        "MinCapacity": endpoint.autoscaling.min, "MaxCapacity": endpoint.autoscaling.max,
        "TargetInvocationsPerInstance": endpoint.autoscaling.target_invocations_per_instance,
        "ServerlessMemoryMB": endpoint.serverless.memory_mb,
        "ServerlessMaxConcurrency": endpoint.serverless.max_concurrency,
        "AsyncOutputPath": _async_output(spec, endpoint),
        "AsyncMaxConcurrentInvocationsPerInstance": endpoint.asynchronous.max_concurrent_invocations_per_instance,
        "DataCaptureEnabled": str(endpoint.data_capture.enabled).lower(),
        "DataCapturePercent": endpoint.data_capture.sampling_percent,
        "DataCaptureDestination": _capture_destination(spec, endpoint),
        "CanaryPercent": endpoint.blue_green.canary_percent, "CanaryWaitSeconds": endpoint.blue_green.wait_s,
        "TerminationWaitSeconds": endpoint.blue_green.termination_wait_s,
        "RollbackAlarmName": endpoint.blue_green.rollback_alarm or "", "KmsKeyId": cloud.get("kms_key") or "",
    }
    tags = {str(k): str(v) for k, v in (cloud.get("tags") or {}).items()}
    return {"Parameters": {k: str(v) for k, v in params.items()}, "Tags": tags}


def _async_output(spec: Any, endpoint: Any) -> str:
    return endpoint.asynchronous.output_path or f"s3://{spec.settings.sagemaker['bucket']}/{spec.name}/async-output/"


def _capture_destination(spec: Any, endpoint: Any) -> str:
    return endpoint.data_capture.destination or f"s3://{spec.settings.sagemaker['bucket']}/{spec.name}/data-capture/"


def latest_approved_arn(spec: Any, step: Any) -> str:
    """The newest Approved version of the deploy step's model group in the env's SageMaker Model Registry."""
    from pipelines.registry import RegistryError
    from pipelines.sagemaker.registry import SageMakerRegistry

    package = SageMakerRegistry(spec.settings.sagemaker["region"]).latest(step.model_group, "Approved")
    if package is None:
        raise RegistryError(f"{step.model_group} has no Approved version in {spec.settings.sagemaker['region']}; "
                            f"approve one with: sagepipe models approve {step.model_group} VERSION --env {spec.env}")
    return package["arn"]


def endpoint_params_command(spec: Any, model_package_arn: str, step_name: str | None) -> int:
    print(json.dumps(endpoint_parameters(spec, model_package_arn, step_name), indent=2, sort_keys=True))
    return 0
