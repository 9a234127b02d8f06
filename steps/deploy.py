"""`type: deploy` — put the group's latest approved model behind an endpoint."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import Field

from pipelines.fsutil import atomic_write_json
from pipelines.local.context import LocalResult, StepContext
from pipelines.registry import LocalRegistry
from pipelines.spec import Resources, StepSpec


class DeployStep(StepSpec):
    """Deploys the newest Approved version; a Pending one waits for a person's approval."""

    type: Literal["deploy"] = "deploy"
    model_group: str = Field(pattern=r"^[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$")
    endpoint_name: str = Field(pattern=r"^[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$")
    enabled: bool = True
    resources: Resources | None = None
    sagemaker: dict[str, Any] = {}

    def run_local(self, ctx: StepContext, inputs: dict) -> LocalResult:
        if not self.enabled:
            return LocalResult(note="deployment disabled in this environment")
        registry = LocalRegistry(ctx.state_root / "registry")
        approved = registry.latest(self.model_group, "Approved") if self.model_group in registry.groups() else None
        if approved is None:
            return LocalResult(note=f"no approved version of {self.model_group} yet; "
                                    "deployment waits for an approval")
        record = {
            "endpoint_name": self.endpoint_name, "model_group": self.model_group,
            "version": approved["version"], "model_dir": approved["model_dir"],
            "deployed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "run_id": ctx.run_id,
        }
        atomic_write_json(ctx.state_root / "endpoints" / f"{self.endpoint_name}.json", record)
        return LocalResult(note=f"endpoint {self.endpoint_name} now serves {self.model_group} "
                                f"version {approved['version']}")
