"""Approval-driven deployment: a status change is an event; only Approved deploys.

This mirrors the cloud flow, where an EventBridge rule on "SageMaker Model Package State Change"
filtered to ModelApprovalStatus = Approved starts the deploy pipeline. Locally the same rule picks
the events, and the deploy steps of the pipeline that registered the version carry them out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DETAIL_TYPE = "SageMaker Model Package State Change"
# The event pattern of the deploy rule (the same pattern the CloudFormation rule carries).
DEPLOY_ON_APPROVAL = {"source": ["aws.sagemaker"], "detail-type": [DETAIL_TYPE],
                      "detail": {"ModelApprovalStatus": ["Approved"]}}


def state_change_event(package: dict[str, Any]) -> dict[str, Any]:
    """The event SageMaker emits when a model package's approval status changes."""
    return {"source": "aws.sagemaker", "detail-type": DETAIL_TYPE,
            "detail": {"ModelPackageGroupName": package["group"], "ModelPackageVersion": package["version"],
                       "ModelApprovalStatus": package["status"], "ModelDataUrl": package.get("model_uri")}}


def matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """EventBridge matching for exact values: each pattern key lists the values it accepts."""
    for key, wanted in pattern.items():
        value = event.get(key)
        if isinstance(wanted, dict):
            if not isinstance(value, dict) or not matches(wanted, value):
                return False
        elif value not in wanted:
            return False
    return True


def change_status(registry: Any, group: str, version: int, status: str, note: str, force: bool,
                  state_root: Path) -> tuple[dict[str, Any], list[str]]:
    """Record a person's decision; when the deploy rule matches, run the group's deployments."""
    package = registry.set_status(group, version, status, note=note, force=force)
    if not matches(DEPLOY_ON_APPROVAL, state_change_event(package)):
        return package, []
    if getattr(registry, "deploys_by_event", False):
        return package, ["SageMaker emits the approval; the EventBridge rule starts the deploy pipeline"]
    from pipelines.serving.serve import refresh_followers

    trigger = f"approval of {package['group']} version {package['version']}"
    return package, (deploy(package, registry, state_root, trigger)
                     + refresh_followers(package, registry, state_root, trigger))


def deploy(package: dict[str, Any], registry: Any, state_root: Path, trigger: str) -> list[str]:
    """Run the deploy steps for this group in the pipeline (and env) that registered the version."""
    from pipelines.errors import ConfigError
    from pipelines.loader import load_pipeline
    from steps.deploy import DeployStep

    lineage = package.get("lineage") or {}
    config = lineage.get("config")
    if not config or not Path(config).is_file():
        return [f"no deployment: the pipeline config that registered it ({config or 'unknown'}) is not here"]
    try:
        spec = load_pipeline(config, lineage.get("env", "local"))
    except ConfigError as exc:
        return [f"no deployment: {config} no longer loads ({exc.problems[0] if exc.problems else exc})"]
    targets = [s for s in spec.steps if isinstance(s, DeployStep) and s.model_group == package["group"]]
    if not targets:
        return [f"no deploy step for {package['group']} in {config}"]
    done = []
    for step in targets:
        if not step.enabled:
            done.append(f"{step.name}: deployment disabled in env {spec.env}")
            continue
        done.append(step.deploy_version(package, registry, state_root, trigger))
    return done
