"""The deploy step as a SageMaker processing job (standard library and boto3; runs in any Python image).

It does on AWS what the step does locally: put the newest Approved version of the model group behind
the endpoint (a model from the package, an endpoint config, then CreateEndpoint or UpdateEndpoint) and
wait until the endpoint is in service. With no Approved version yet it says so and succeeds. The
published definition schema can express neither a model from the run's own training output (CreateModel
takes only a literal ModelDataUrl) nor an endpoint-config step, so the work is one job.

    python3 deploy_job.py --model-group G --endpoint-name E --role ARN --region R \
        --variant '{"InstanceType": "ml.m5.large", "InitialInstanceCount": 1}' [--config-extra '{}']
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

TERMINAL = {"InService", "Failed", "OutOfService"}


class DeployError(Exception):
    """A deployment that cannot go on; the message says why."""


def latest_approved(sm, group: str) -> dict | None:
    found = sm.list_model_packages(ModelPackageGroupName=group, ModelApprovalStatus="Approved",
                                   SortBy="CreationTime", SortOrder="Descending", MaxResults=1)
    packages = found.get("ModelPackageSummaryList", [])
    return packages[0] if packages else None


def resource_names(endpoint: str, package_arn: str, settings: dict) -> tuple[str, str]:
    """(model name, endpoint config name): the same package and settings always give the same names."""
    version = package_arn.rsplit("/", 1)[-1]
    digest = hashlib.sha256(json.dumps([package_arn, settings], sort_keys=True).encode()).hexdigest()[:8]
    base = f"{endpoint[:46]}-v{version}-{digest}"
    return base, f"{base}-config"


def _described(describe, **name) -> dict | None:
    """What a Describe* call returns, or None when the resource does not exist."""
    try:
        return describe(**name)
    except Exception as exc:  # botocore ClientError; botocore itself is the container's, not ours
        if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("ValidationException", "ValidationError"):
            return None
        raise


def ensure_model(sm, name: str, role: str, package_arn: str, tagging: dict) -> None:
    if _described(sm.describe_model, ModelName=name) is None:
        sm.create_model(ModelName=name, ExecutionRoleArn=role, Containers=[{"ModelPackageName": package_arn}],
                        **tagging)


def ensure_config(sm, name: str, model: str, variant: dict, extra: dict, tagging: dict) -> None:
    if _described(sm.describe_endpoint_config, EndpointConfigName=name) is None:
        sm.create_endpoint_config(EndpointConfigName=name,
                                  ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": model, **variant}],
                                  **extra, **tagging)


def point_endpoint(sm, endpoint: str, config: str, deployment: dict, tagging: dict) -> str:
    """Create the endpoint, or move it to the config; returns what was done."""
    current = _described(sm.describe_endpoint, EndpointName=endpoint)
    if current is None:
        sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=config, **tagging)
        return "created"
    if current.get("EndpointConfigName") == config:
        return "unchanged"
    status = current.get("EndpointStatus")
    if status == "Failed":
        raise DeployError(f"endpoint {endpoint} is Failed ({current.get('FailureReason', 'no reason given')}) and "
                          f"cannot be updated; delete it (aws sagemaker delete-endpoint --endpoint-name {endpoint}) "
                          "and run the pipeline again")
    if status != "InService":
        raise DeployError(f"endpoint {endpoint} is {status}; run the pipeline again once it is InService")
    sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=config,
                       **({"DeploymentConfig": deployment} if deployment else {}))
    return "updated"


def wait_in_service(sm, endpoint: str, timeout_s: float, poll_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        described = sm.describe_endpoint(EndpointName=endpoint)
        status = described.get("EndpointStatus")
        if status == "InService":
            return
        if status in TERMINAL:
            raise DeployError(f"endpoint {endpoint} is {status}: {described.get('FailureReason', 'no reason given')}")
        if time.monotonic() > deadline:
            raise DeployError(f"endpoint {endpoint} still {status} after {timeout_s:.0f} s")
        time.sleep(poll_s)


def deploy(sm, args: argparse.Namespace) -> str:
    package = latest_approved(sm, args.model_group)
    if package is None:
        return f"no approved version of {args.model_group} yet; deployment waits for an approval"
    arn = package["ModelPackageArn"]
    variant, extra, deployment = json.loads(args.variant), json.loads(args.config_extra), json.loads(args.deployment)
    tags = [{"Key": k, "Value": v} for k, v in sorted(json.loads(args.tags).items())]
    tagging = {"Tags": tags} if tags else {}
    model, config = resource_names(args.endpoint_name, arn, {"variant": variant, "extra": extra})
    ensure_model(sm, model, args.role, arn, tagging)
    ensure_config(sm, config, model, variant, extra, tagging)
    done = point_endpoint(sm, args.endpoint_name, config, deployment, tagging)
    if args.wait_s > 0:
        wait_in_service(sm, args.endpoint_name, args.wait_s, args.poll_s)
    version = arn.rsplit("/", 1)[-1]
    return f"endpoint {args.endpoint_name} {done}: it serves {args.model_group} version {version} ({config})"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-group", required=True)
    parser.add_argument("--endpoint-name", required=True)
    parser.add_argument("--role", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--variant", default="{}", help="production variant fields (JSON)")
    parser.add_argument("--config-extra", default="{}", help="more CreateEndpointConfig fields (JSON)")
    parser.add_argument("--deployment", default="{}", help="UpdateEndpoint DeploymentConfig (JSON)")
    parser.add_argument("--tags", default="{}", help="tags (JSON object)")
    parser.add_argument("--wait-s", type=float, default=3600)
    parser.add_argument("--poll-s", type=float, default=30)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import boto3
    from botocore.config import Config

    args = parse(argv)
    sm = boto3.client("sagemaker", region_name=args.region, config=Config(retries={"mode": "adaptive"}))
    try:
        print(f"deploy: {deploy(sm, args)}")
    except DeployError as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        error = getattr(exc, "response", {}).get("Error")
        if not error:
            raise
        print(f"deploy: {error.get('Code')}: {error.get('Message')}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
