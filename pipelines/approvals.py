"""Approval-driven deployment: a status change is an event; only Approved deploys.

This mirrors the cloud flow, where an EventBridge rule on "SageMaker Model Package State Change"
filtered to ModelApprovalStatus = Approved starts the deploy pipeline. Locally the same rule picks
the events, and the deploy steps of the pipeline that registered the version carry them out.
A decision and what it does to the local endpoints happen under the group's lock, so endpoint records
agree with the registry; whatever else switches an endpoint (a pipeline's deploy step, `serve GROUP@approved`)
chooses the version and writes the record under the same lock, so a rejection is never lost in between:
it happens first (and the version is not switched in) or after (and sees the endpoint). A rejection never
redeploys by itself: endpoints still serving the rejected version are reported, and `--rollback` moves them
to the newest version still Approved.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.registry import RegistryError

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


@dataclass
class Decision:
    """What a decision did: the package after it, whether its status changed, what it deployed or rolled
    back, and the endpoints left serving it although it is Rejected (with the version to roll back to)."""

    package: dict[str, Any]
    changed: bool = True
    deployments: list[str] = field(default_factory=list)
    rollbacks: list[str] = field(default_factory=list)
    still_serving: list[str] = field(default_factory=list)
    fallback: int | None = None
    problems: list[str] = field(default_factory=list)


def change_status(registry: Any, group: str, version: int, status: str, note: str, force: bool,
                  state_root: Path, since: float | None = None, rollback: bool = False) -> Decision:
    """Record a person's decision; an approval runs the group's deployments, a rejection reports (or with
    rollback moves) the local endpoints serving the version. rollback on a version already Rejected only
    moves its endpoints. since: when the person started deciding (see registry.check_transition)."""
    cloud = getattr(registry, "deploys_by_event", False)
    if rollback and cloud:
        raise RegistryError("--rollback moves local endpoints; on AWS the deploy pipeline deploys what is approved: "
                            "start it for the version to go back to")
    with registry.locked(group):
        current = registry.show(group, version) if rollback else None
        if current and current["status"] == "Rejected":
            decision = Decision(current, changed=False)
        else:
            decision = Decision(registry.set_status(group, version, status, note=note, force=force, since=since))
        package = decision.package
        if not matches(DEPLOY_ON_APPROVAL, state_change_event(package)):
            if package["status"] == "Rejected" and not cloud:
                _withdraw(decision, registry, state_root, rollback)
        elif cloud:
            decision.deployments = ["SageMaker emits the approval; the EventBridge rule starts the deploy pipeline"]
        else:
            from pipelines.serving.serve import refresh_followers

            trigger = f"approval of {package['group']} version {package['version']}"
            decision.deployments = (deploy(package, registry, state_root, trigger)
                                    + refresh_followers(package, registry, state_root, trigger))
        return decision


def endpoints_serving(state_root: Path, group: str, version: int) -> list[dict[str, Any]]:
    """The local endpoint records that serve this version."""
    records = []
    for path in sorted((state_root / "endpoints").glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("model_group") == group and record.get("version") == version:
            records.append(record)
    return records


def _withdraw(decision: Decision, registry: Any, state_root: Path, rollback: bool) -> None:
    """Roll back (or report) the endpoints serving a rejected version: to the newest version still Approved."""
    from pipelines.serving.serve import endpoint_record, write_record

    package = decision.package
    records = endpoints_serving(state_root, package["group"], package["version"])
    if not records:
        return
    try:
        fallback = registry.approved(package["group"])
    except RegistryError as exc:  # another version's record does not read: which one to roll back to is unknown
        fallback = None
        decision.problems.append(f"no rollback target: {exc}")
    decision.fallback = fallback["version"] if fallback else None
    if not (rollback and fallback):
        decision.still_serving = [r["endpoint_name"] for r in records]
        return
    trigger = f"rollback: rejection of {package['group']} version {package['version']}"
    for record in records:
        write_record(state_root, endpoint_record(fallback, registry, record["endpoint_name"], trigger,
                                                 record.get("follow")))
        decision.rollbacks.append(f"endpoint {record['endpoint_name']} rolled back to {package['group']} "
                                    f"version {fallback['version']}")


def deploy(package: dict[str, Any], registry: Any, state_root: Path, trigger: str) -> list[str]:
    """Run the deploy steps for this group in the pipeline (and env) that registered the version."""
    from pipelines.errors import ConfigError
    from pipelines.loader import load_pipeline
    from pipelines.local.services import LocalServing
    from pipelines.step_api import deploy_steps

    lineage = package.get("lineage") or {}
    config = lineage.get("config")
    if not config or not Path(config).is_file():
        return [f"no deployment: the pipeline config that registered it ({config or 'unknown'}) is not here"]
    try:
        spec = load_pipeline(config, lineage.get("env", "local"))
    except ConfigError as exc:
        return [f"no deployment: {config} no longer loads ({exc.problems[0] if exc.problems else exc})"]
    targets = [step for step in deploy_steps(spec) if step.deployed_group() == package["group"]]
    if not targets:
        return [f"no deploy step for {package['group']} in {config}"]
    serving = LocalServing(state_root)
    return [step.deploy_approved(package, registry, serving, trigger) for step in targets]
