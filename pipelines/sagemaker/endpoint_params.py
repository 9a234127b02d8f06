"""CloudFormation parameters for infra/endpoint.yaml from a pipeline's deploy step and env overlay."""

from __future__ import annotations

import json
from typing import Any

from pipelines.errors import ConfigError, Problem, did_you_mean
from pipelines.sagemaker.checks import INSTANCE_TYPES, check_account
from pipelines.spec import PipelineSpec
from pipelines.step_api import Deploys, deploy_steps


def endpoint_parameters(spec: PipelineSpec, model_package_arn: str, step_name: str | None = None) -> dict[str, Any]:
    """The template configuration CodePipeline's CloudFormation action takes: {"Parameters", "Tags"}."""
    overlay = f"{spec.source_file.rsplit('/', 1)[0]}/env/{spec.env}.yaml"
    problems = list(check_account(spec, overlay))
    deploys = {s.name: s for s in deploy_steps(spec)}
    chosen = deploys.get(step_name or next(iter(deploys), ""))
    if not deploys:
        problems.append(Problem(spec.source_file, None, "steps", "no deploy step to take endpoint settings from"))
    elif chosen is None:
        problems.append(Problem(spec.source_file, None, "--step", f"no deploy step '{step_name}'"
                                                                  f"{did_you_mean(str(step_name), deploys)}"))
    if spec.settings.sagemaker.vpc is not None:  # never serve outside the VPC the env file asks for
        problems.append(Problem(overlay, None, "sagemaker.vpc",
                                "infra/endpoint.yaml creates the endpoint's model without a VpcConfig, so the "
                                "endpoint would serve outside this VPC; give the template's model the subnets and "
                                "security groups before deploying from this env"))
    if model_package_arn == "approved" and chosen is not None and not problems:
        model_package_arn = latest_approved_arn(spec, chosen)
    if not model_package_arn.startswith("arn:aws") or ":model-package/" not in model_package_arn:
        problems.append(Problem(spec.source_file, None, "--model-package",
                                f"'{model_package_arn}' is not a model package ARN "
                                "(arn:aws:sagemaker:<region>:<account>:model-package/<group>/<version>)"))
    if problems or chosen is None:
        raise ConfigError(problems)
    resources = chosen.settled_resources()
    if resources is not None and resources.instance_type not in INSTANCE_TYPES:
        raise ConfigError([Problem(spec.source_file, None, f"steps.{chosen.name}.resources.instance_type",
                                   f"'{resources.instance_type}' is not a SageMaker instance type"
                                   f"{did_you_mean(resources.instance_type, INSTANCE_TYPES)}")])
    return {"Parameters": chosen.endpoint_request(spec, model_package_arn), "Tags": dict(spec.settings.sagemaker.tags)}


def latest_approved_arn(spec: PipelineSpec, step: Deploys) -> str:
    """The newest Approved version of the deploy step's model group in the env's SageMaker Model Registry."""
    from pipelines.registry import RegistryError
    from pipelines.registry.sagemaker_backend import SageMakerRegistry

    group = step.deployed_group()
    region = spec.settings.sagemaker["region"]  # check_account: set
    package = SageMakerRegistry(region).latest(group, "Approved")
    if package is None:
        raise RegistryError(f"{group} has no Approved version in {region}; "
                            f"approve one with: sagepipe models approve {group} VERSION --env {spec.env}")
    return package["arn"]


def endpoint_params_command(spec: PipelineSpec, model_package_arn: str, step_name: str | None) -> int:
    print(json.dumps(endpoint_parameters(spec, model_package_arn, step_name), indent=2, sort_keys=True))
    return 0
