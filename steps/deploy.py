"""`type: deploy` — put the group's latest approved model behind an endpoint."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from pipelines.errors import RegistryError, StepFailed
from pipelines.spec import PipelineSpec, Resources, Strict
from pipelines.step_api import CompileContext, Deploys, LocalResult, ModelRegistry, Serving, StepContext
from pipelines.values import bool_text, value_text


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


class DeployStep(Deploys):
    """Deploys the newest Approved version; a Pending one waits for a person's approval.

    The choice of version and the switch of the endpoint record happen under the group's lock, the lock every
    approval and rejection takes: a rejection lands either before (this step then deploys the newest version
    still Approved) or after, when the endpoint is already switched and the rejection sees it (and warns, or
    with --rollback moves it back). A Rejected version is never switched in."""

    type: Literal["deploy"] = "deploy"
    model_group: str = Field(pattern=r"^[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$")
    endpoint_name: str = Field(pattern=r"^[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$")
    enabled: bool = True
    resources: Resources | None = None
    endpoint: EndpointSettings = EndpointSettings()
    local: LocalServing = LocalServing()

    def settled_resources(self) -> Resources:
        return self.resources or Resources()

    def deployed_group(self) -> str:
        return self.model_group

    def run_local(self, ctx: StepContext) -> LocalResult:
        if not self.enabled:
            return LocalResult(note="deployment disabled in this environment")
        waiting = LocalResult(note=f"no approved version of {self.model_group} yet; deployment waits for an approval")
        try:
            registry = ctx.services.registry
            if self.model_group not in registry.groups():
                return waiting
            with registry.locked(self.model_group):  # no decision between choosing the version and switching to it
                approved = registry.latest(self.model_group, "Approved")
                if approved is None:
                    return waiting
                return LocalResult(note=self.deploy_version(approved, registry, ctx.services.serving,
                                                            f"pipeline run {ctx.run_id}"))
        except RegistryError as exc:
            raise StepFailed(str(exc)) from None

    def deploy_approved(self, package: dict[str, Any], registry: ModelRegistry, serving: Serving,
                        trigger: str) -> str:
        if not self.enabled:
            return f"{self.name}: deployment disabled in this environment"
        return self.deploy_version(package, registry, serving, trigger)

    def deploy_version(self, package: dict[str, Any], registry: ModelRegistry, serving: Serving,
                       trigger: str) -> str:
        """Point the local endpoint at one registered version (a running `sagepipe serve` follows).

        Under the group's lock the version is read again, and the switch refused (RegistryError) when it is
        Rejected, or its status is no longer the one the caller chose it by."""
        group, version = package["group"], package["version"]
        with registry.locked(group):
            current = registry.show(group, version)
            if current["status"] == "Rejected" or current["status"] != package["status"]:
                last = (current.get("history") or [{}])[-1]
                changed = "" if current["status"] == package["status"] else \
                    f", not {package['status']} as when this deployment chose it"
                raise RegistryError(f"{group} version {version} is {current['status']} (by {last.get('by')} at "
                                    f"{last.get('at')}){changed}; endpoint {self.endpoint_name} was not switched to it")
            record = serving.switch_endpoint(self.endpoint_name, current, registry, trigger)
            done = f"endpoint {self.endpoint_name} now serves {self.model_group} version {version}"
            if self.local.serve:
                capture = self.endpoint.data_capture
                started = serving.ensure_server(record, self.local.port, self.local.workers,
                                                capture.sampling_percent if capture.enabled else None)
                done += f" ({started})"
        return done

    def compile_sagemaker(self, cc: CompileContext) -> None:
        """Nothing, in every env: on AWS an approval deploys (EventBridge -> the deploy CodePipeline, infra/cicd.yaml).

        The deploy pipeline takes this step's endpoint settings through `sagepipe endpoint-params`.
        """
        return None

    def endpoint_request(self, pipeline: PipelineSpec, model_package_arn: str) -> dict[str, str]:
        """infra/endpoint.yaml's parameters for serving one version with this step's endpoint settings."""
        cloud, endpoint, resources = pipeline.settings.sagemaker, self.endpoint, self.settled_resources()
        bucket_prefix = f"s3://{cloud['bucket']}/{pipeline.name}"
        params = {
            "EndpointName": self.endpoint_name, "ModelPackageArn": model_package_arn,
            "ExecutionRoleArn": cloud["role"], "Mode": {"realtime": "RealTime", "serverless": "Serverless",
                                                        "async": "Async"}[endpoint.mode],
            "InstanceType": resources.instance_type, "InstanceCount": resources.instance_count,
            "MinCapacity": endpoint.autoscaling.min, "MaxCapacity": endpoint.autoscaling.max,
            "TargetInvocationsPerInstance": endpoint.autoscaling.target_invocations_per_instance,
            "ServerlessMemoryMB": endpoint.serverless.memory_mb,
            "ServerlessMaxConcurrency": endpoint.serverless.max_concurrency,
            "AsyncOutputPath": endpoint.asynchronous.output_path or f"{bucket_prefix}/async-output/",
            "AsyncMaxConcurrentInvocationsPerInstance": endpoint.asynchronous.max_concurrent_invocations_per_instance,
            "DataCaptureEnabled": bool_text(endpoint.data_capture.enabled),
            "DataCapturePercent": endpoint.data_capture.sampling_percent,
            "DataCaptureDestination": endpoint.data_capture.destination or f"{bucket_prefix}/data-capture/",
            "CanaryPercent": endpoint.blue_green.canary_percent, "CanaryWaitSeconds": endpoint.blue_green.wait_s,
            "TerminationWaitSeconds": endpoint.blue_green.termination_wait_s,
            "RollbackAlarmName": endpoint.blue_green.rollback_alarm or "", "KmsKeyId": cloud.get("kms_key") or "",
        }
        return {k: value_text(v) for k, v in params.items()}
