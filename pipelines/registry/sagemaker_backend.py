"""The SageMaker Model Registry behind `sagepipe models` in a cloud env (same package shape as locally).

SageMaker keeps one approval description per version; every change is also recorded as a
`sagepipe.history.<time>` customer-metadata entry, so `models show` lists who, when, why and before.
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from typing import Any, ContextManager

from pipelines.registry.base import Registry
from pipelines.sagemaker.aws import client, explained

HISTORY_PREFIX = "sagepipe.history."


class SageMakerRegistry(Registry):
    """Model package groups in one account and region."""

    deploys_by_event = True  # an approval reaches the deploy pipeline through EventBridge, not this process

    def __init__(self, region: str):
        self.region = region
        self.sm = client("sagemaker", region)
        self.s3 = client("s3", region)

    def identical(self, group: str, model_hash: str) -> dict[str, Any] | None:
        return None  # nothing registers from this machine (see Registry.register), so nothing is looked up

    def groups(self) -> list[str]:
        with explained("listing model package groups"):
            pages = self.sm.get_paginator("list_model_package_groups").paginate()
            return sorted(g["ModelPackageGroupName"] for p in pages for g in p["ModelPackageGroupSummaryList"])

    def versions(self, group: str) -> list[dict[str, Any]]:
        self._require_group(group)
        with explained(f"listing versions of {group}"):
            pages = self.sm.get_paginator("list_model_packages").paginate(ModelPackageGroupName=group)
            summaries = [s for page in pages for s in page["ModelPackageSummaryList"]]
            return sorted((self._package(s["ModelPackageArn"]) for s in summaries), key=lambda p: p["version"])

    def show(self, group: str, version: int) -> dict[str, Any]:
        found = [p for p in self.versions(group) if p["version"] == version]
        if not found:
            raise self.no_such_version(group, version)
        return found[0]

    def locked(self, group: str) -> ContextManager[None]:
        return nullcontext()  # UpdateModelPackage has no compare-and-set, and the deciders share no machine

    def _write_status(self, package: dict[str, Any], status: str, entry: dict[str, Any]) -> dict[str, Any]:
        group, version = package["group"], package["version"]
        with explained(f"updating {group} version {version}"):
            self.sm.update_model_package(
                ModelPackageArn=package["arn"], ModelApprovalStatus=status, ApprovalDescription=entry["note"][:1024],
                CustomerMetadataProperties={f"{HISTORY_PREFIX}{time.time_ns()}": json.dumps(entry)})
        return self.show(group, version)

    def _require_group(self, group: str) -> None:
        if group not in self.groups():
            raise self.no_such_group(group)

    def _package(self, arn: str) -> dict[str, Any]:
        found = self.sm.describe_model_package(ModelPackageName=arn)
        metadata = found.get("CustomerMetadataProperties") or {}
        history = [json.loads(metadata[k]) for k in sorted(metadata) if k.startswith(HISTORY_PREFIX)]
        containers = (found.get("InferenceSpecification") or {}).get("Containers") or [{}]
        lineage = {k: v for k, v in metadata.items() if not k.startswith(HISTORY_PREFIX)}
        return {"group": found["ModelPackageGroupName"], "version": int(found["ModelPackageVersion"]),
                "status": found["ModelApprovalStatus"], "created_at": str(found.get("CreationTime")),
                "metrics": self._metrics(found), "lineage": lineage, "model_uri": containers[0].get("ModelDataUrl"),
                "run_id": lineage.get("run_id"), "arn": arn, "history": history}

    def _metrics(self, package: dict[str, Any]) -> dict[str, Any]:
        """The evaluation report the model metrics point at (empty when it cannot be read)."""
        uri = (((package.get("ModelMetrics") or {}).get("ModelQuality") or {}).get("Statistics") or {}).get("S3Uri")
        if not uri or not uri.startswith("s3://"):
            return {}
        bucket, _, key = uri[len("s3://"):].partition("/")
        try:
            return json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except Exception:  # a report that is gone or unreadable does not hide the version
            return {}
