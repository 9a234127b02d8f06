"""`type: deploy` — put the group's latest approved model behind an endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from pipelines.errors import StepFailed
from pipelines.local.context import LocalResult, StepContext
from pipelines.registry import RegistryError, open_registry
from pipelines.spec import Resources, StepSpec, Strict


class Autoscaling(Strict):
    """Real-time endpoints: target tracking on invocations per instance."""

    min: int = Field(1, ge=1, le=100)
    max: int = Field(1, ge=1, le=100)
    target_invocations_per_instance: int = Field(100, ge=1)


class Serverless(Strict):
    memory_mb: Literal[1024, 2048, 3072, 4096, 5120, 6144] = 2048
    max_concurrency: int = Field(10, ge=1, le=200)


class Asynchronous(Strict):
    output_path: str | None = Field(None, pattern=r"^s3://.+")
    max_concurrent_invocations_per_instance: int = Field(4, ge=1, le=1000)


class DataCapture(Strict):
    enabled: bool = False
    sampling_percent: int = Field(100, ge=1, le=100)
    destination: str | None = Field(None, pattern=r"^s3://.+")


class BlueGreen(Strict):
    """Canary traffic shifting; the deployment rolls back when the alarm fires."""

    canary_percent: int = Field(10, ge=1, le=99)
    wait_s: int = Field(600, ge=0, le=3600)
    termination_wait_s: int = Field(300, ge=0, le=3600)
    rollback_alarm: str | None = None


class EndpointSettings(Strict):
    """How the endpoint runs on AWS (infra/endpoint.yaml); `resources` gives instance type and count."""

    mode: Literal["realtime", "serverless", "async"] = "realtime"
    autoscaling: Autoscaling = Autoscaling()
    serverless: Serverless = Serverless()
    asynchronous: Asynchronous = Asynchronous()
    data_capture: DataCapture = DataCapture()
    blue_green: BlueGreen = BlueGreen()

    @model_validator(mode="after")
    def _consistent(self) -> "EndpointSettings":
        if self.autoscaling.min > self.autoscaling.max:
            raise ValueError(f"autoscaling.min ({self.autoscaling.min}) is above autoscaling.max "
                             f"({self.autoscaling.max})")
        if self.mode == "serverless" and self.data_capture.enabled:
            raise ValueError("serverless endpoints cannot capture data; use mode: realtime or turn data_capture off")
        return self


class LocalServing(Strict):
    """Whether deploying here also starts `sagepipe serve` for the endpoint (a background process)."""

    serve: bool = False
    port: int = Field(8080, ge=1024, le=65535)
    workers: int = Field(2, ge=1, le=64)


class DeployStep(StepSpec):
    """Deploys the newest Approved version; a Pending one waits for a person's approval."""

    type: Literal["deploy"] = "deploy"
    model_group: str = Field(pattern=r"^[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$")
    endpoint_name: str = Field(pattern=r"^[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$")
    enabled: bool = True
    resources: Resources | None = None
    endpoint: EndpointSettings = EndpointSettings()
    local: LocalServing = LocalServing()
    sagemaker: dict[str, Any] = {}

    def run_local(self, ctx: StepContext, inputs: dict) -> LocalResult:
        if not self.enabled:
            return LocalResult(note="deployment disabled in this environment")
        registry = open_registry(ctx.pipeline.settings, ctx.state_root, ctx.repo_root)
        try:
            approved = registry.latest(self.model_group, "Approved") if self.model_group in registry.groups() else None
            if approved is None:
                return LocalResult(note=f"no approved version of {self.model_group} yet; "
                                        "deployment waits for an approval")
            return LocalResult(note=self.deploy_version(approved, registry, ctx.state_root, f"pipeline run {ctx.run_id}"))
        except RegistryError as exc:
            raise StepFailed(str(exc)) from None

    def deploy_version(self, package: dict[str, Any], registry: Any, state_root: Path, trigger: str) -> str:
        """Point the local endpoint at one registered version (a running `sagepipe serve` follows)."""
        from pipelines.serving.serve import endpoint_record, ensure_server, write_record

        record = write_record(state_root, endpoint_record(package, registry, self.endpoint_name, trigger))
        done = f"endpoint {self.endpoint_name} now serves {self.model_group} version {package['version']}"
        if self.local.serve:
            done += f" ({ensure_server(record, self.local.port, self.local.workers)})"
        return done

    def compile_sagemaker(self, cc: Any) -> None:
        """Nothing, in every env: on AWS an approval deploys (EventBridge -> the deploy CodePipeline, infra/cicd.yaml).

        The deploy pipeline takes this step's endpoint settings through `sagepipe endpoint-params`.
        """
        return None
