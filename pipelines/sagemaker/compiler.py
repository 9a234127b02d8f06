"""Compile a PipelineSpec into a SageMaker Pipeline definition through SageMaker Python SDK v3.

Each step type compiles itself (`compile_sagemaker(cc)` in steps/<type>.py) with the helpers of the
CompileContext here. Compile is offline and deterministic: it runs against moto's in-memory AWS,
and code goes to content-addressed S3 locations that `upsert` fills.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipelines.errors import ConfigError, Problem
from pipelines.graph import Graph
from pipelines.refs import MetricRef, OutputRef, ParamRef, Template
from pipelines.spec import FrameworkImage, PipelineSpec, Resources
from pipelines.step_api import Step
from pipelines.values import bool_text


@dataclass
class Compiled:
    """A compiled pipeline: its definition and the code artifacts upsert uploads."""

    name: str
    definition: dict[str, Any]
    artifacts: dict[str, bytes]
    bucket: str
    region: str
    role: str
    tags: dict[str, str] = field(default_factory=dict)
    reused: str = field(default="", compare=False)  # how the compile cache gave it ("" when compiled now)

    def json(self) -> str:
        """The definition as canonical JSON (sorted keys): byte-identical for the same inputs."""
        return json.dumps(self.definition, indent=2, sort_keys=True) + "\n"


@dataclass
class CompileContext:
    """What a step type needs to build its SDK step: session, account settings, references (the
    CompileContext protocol of pipelines/step_api.py)."""

    spec: PipelineSpec
    session: Any
    s3: Any
    role: str
    bucket: str
    region: str
    parameters: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, Any] = field(default_factory=dict)
    property_files: dict[str, Any] = field(default_factory=dict)
    staged: dict[str, str] = field(default_factory=dict)
    held: set[str] = field(default_factory=set)  # steps inside a ConditionStep's branches
    read: set[Path] = field(default_factory=set)  # local files and folders the compile read (compile_cache.py)

    # --- references -------------------------------------------------------------------------
    def value(self, value: Any) -> Any:
        """A config value with its references turned into SDK parameters, properties and JsonGets."""
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, ParamRef):
            return self.parameters[value.name]
        if isinstance(value, OutputRef):
            return self.output_property(value)
        if isinstance(value, MetricRef):
            from sagemaker.core.workflow.functions import JsonGet

            return JsonGet(step_name=value.step, property_file=self.property_file(value.step),
                           json_path=value.key)
        if isinstance(value, Template):
            from sagemaker.core.workflow.functions import Join

            return Join(on="", values=[p if isinstance(p, str) else self.value(p) for p in value.parts])
        return value

    def text(self, value: Any) -> Any:
        """Like value(), for String fields: numbers and booleans become text, and so do numeric parameters
        and report values, through `.to_string()` (CreatePipeline rejects them bare in a String field)."""
        resolved = self.value(value)
        if isinstance(resolved, bool):
            return bool_text(resolved)
        if isinstance(value, MetricRef) or (isinstance(value, ParamRef)
                                            and self.spec.parameters[value.name].type != "string"):
            return resolved.to_string()
        return resolved if hasattr(resolved, "expr") else str(resolved)

    def output_property(self, ref: OutputRef) -> Any:
        """The step type says which property of its compiled form holds the output."""
        return self.spec.step(ref.step).sagemaker_output(self.steps[ref.step], ref.output)

    def execution_uri(self, *parts: Any) -> Any:
        """`s3://<bucket>/<pipeline>/<execution id>/<parts...>`: where one execution writes (the SDK's own
        default shape). A cache hit then hands back the earlier execution's files, never a later one's."""
        from sagemaker.core.workflow.execution_variables import ExecutionVariables
        from sagemaker.core.workflow.functions import Join

        return Join(on="/", values=["s3:/", self.bucket, self.spec.name, ExecutionVariables.PIPELINE_EXECUTION_ID,
                                    *parts])

    def property_file(self, step: str) -> Any:
        """The PropertyFile an evaluation step declares for its report (JsonGet reads it)."""
        try:
            return self.property_files[step]
        except KeyError:
            raise ConfigError([Problem(self.spec.source_file, None, f"steps.{step}",
                                       f"step '{step}' declares no metrics report here; only evaluation steps "
                                       "have metrics")]) from None

    # --- inputs, images, shared step settings --------------------------------------------------
    def input_source(self, value: Any) -> Any:
        """An input: an S3 URI, a parameter, another step's output, or a repository file (uploaded)."""
        if isinstance(value, str) and not value.startswith("s3://"):
            return self.stage(Path(self.spec.repo_root) / value)
        return self.value(value)

    def stage(self, path: Path) -> str:
        """Put a repository file or folder into the (in-memory) bucket; returns its S3 URI."""
        path = path.resolve()
        self.read.add(path)
        if str(path) not in self.staged:
            from pipelines.archives import local_members

            prefix = f"staging/{len(self.staged)}"
            for name, body in (local_members(path) or {}).items():  # as it will be content-addressed
                self.s3.put_object(Bucket=self.bucket, Key=f"{prefix}/{name}", Body=body)
            self.staged[str(path)] = f"s3://{self.bucket}/{prefix}" + (f"/{path.name}" if path.is_file() else "")
        return self.staged[str(path)]

    def framework_image(self, step: str, default: dict[str, str], instance_type: str,
                        override: FrameworkImage | None = None) -> str:
        """A framework image the SDK knows: default, with what the step's sagemaker.framework_image sets."""
        from sagemaker.core import image_uris

        framework = override.over(default) if override else default
        try:
            return image_uris.retrieve(framework["framework"], region=self.region, version=str(framework["version"]),
                                       py_version=framework.get("py_version", "py3"),
                                       image_scope=framework.get("scope"), instance_type=instance_type)
        except ValueError as exc:
            raise ConfigError([Problem(self.spec.source_file, None, f"steps.{step}.sagemaker.framework_image",
                                       f"no {framework['framework']} {framework['version']} image for "
                                       f"{instance_type} in {self.region} ({exc}); set image: or "
                                       "sagemaker.framework_image")]) from None

    def resources(self, step: Step) -> Resources:
        """The compute a job step runs on (settled at load: its own, else the pipeline default)."""
        resources = step.settled_resources()
        if resources is None:
            raise step.config_error("resources", f"a {step.type} step runs no job")
        return resources

    def cache_config(self, step: Step) -> Any:
        from sagemaker.mlops.workflow.steps import CacheConfig

        cache = step.settled_cache()
        return CacheConfig(enable_caching=cache.enabled, expire_after=cache.expire_after)

    def retry_policies(self, step: Step, job: bool = True) -> list[Any]:
        """Local retries as SageMaker retry policies: job failures (job steps) and service faults."""
        from sagemaker.mlops.workflow.retry import (SageMakerJobExceptionTypeEnum, SageMakerJobStepRetryPolicy,
                                                     StepExceptionTypeEnum, StepRetryPolicy)

        retry = step.settled_retry()
        if retry.attempts <= 1:
            return []
        common = {"interval_seconds": max(1, int(retry.backoff_s)), "backoff_rate": retry.backoff_rate,
                  "max_attempts": retry.attempts - 1}
        policies = [StepRetryPolicy(exception_types=[StepExceptionTypeEnum.SERVICE_FAULT,
                                                     StepExceptionTypeEnum.THROTTLING], **common)]
        if job:
            policies.append(SageMakerJobStepRetryPolicy(
                exception_types=[SageMakerJobExceptionTypeEnum.INTERNAL_ERROR,
                                 SageMakerJobExceptionTypeEnum.CAPACITY_ERROR], **common))
        return policies

    def depends_on(self, step: Step) -> list[str] | None:
        return list(step.depends_on) or None

    def kms_key(self) -> str | None:
        """The env's sagemaker.kms_key: every job's volumes and outputs are encrypted with it."""
        return self.spec.settings.sagemaker.kms_key

    def repo_path(self, relative: str) -> Path:
        """A repository path a step ships; for a script, the SDK uploads its whole folder."""
        path = (Path(self.spec.repo_root) / relative).resolve()
        self.read.add(path.parent if path.is_file() else path)
        return path

    def network_config(self) -> Any:
        """Processing jobs' VPC settings from the env file (sagemaker.vpc), or None."""
        vpc = self.spec.settings.sagemaker.vpc
        if vpc is None:
            return None
        from sagemaker.core.network import NetworkConfig

        return NetworkConfig(subnets=list(vpc.subnets), security_group_ids=list(vpc.security_group_ids))

    def networking(self) -> Any:
        """Training (and tuning) jobs' VPC settings (the same sagemaker.vpc), or None."""
        vpc = self.spec.settings.sagemaker.vpc
        if vpc is None:
            return None
        from sagemaker.core.training.configs import Networking

        return Networking(subnets=list(vpc.subnets), security_group_ids=list(vpc.security_group_ids))


def compile_pipeline(spec: PipelineSpec, read: set[Path] | None = None) -> Compiled:
    """Build the definition (offline, deterministic) for a cloud env of spec; read, when given, gets every local
    file or folder the compile read."""
    from pipelines.sagemaker.checks import check_cloud_config

    check_cloud_config(spec)
    settings = spec.settings.sagemaker
    region, bucket, role = settings["region"], settings["bucket"], settings["role"]
    from pipelines.sagemaker.artifacts import content_address
    from pipelines.sagemaker.offline import offline_session, uploaded_objects

    # in the repo root: the SDK records training source folders as given, and they must not name this machine
    with offline_session(region, bucket) as (session, s3), contextlib.chdir(spec.repo_root):
        cc = CompileContext(spec, session, s3, role, bucket, region, read=read if read is not None else set())
        cc.parameters = _parameters(spec)
        top_level = _compile_steps(spec, cc)
        from sagemaker.mlops.workflow import Pipeline

        pipeline = Pipeline(name=spec.name, parameters=list(cc.parameters.values()), steps=top_level,
                            sagemaker_session=session, mlflow_config=_mlflow_config(spec),
                            pipeline_experiment_config=None)
        from pipelines.sagemaker.security import apply_security_settings

        definition = apply_security_settings(json.loads(pipeline.definition()), settings)
        refuse_what_the_service_refuses(spec, definition)
        objects = uploaded_objects(s3, bucket)
    definition, artifacts = content_address(definition, objects, bucket, spec.name)
    return Compiled(spec.name, definition, artifacts, bucket, region, role, dict(settings.tags))


def refuse_what_the_service_refuses(spec: PipelineSpec, definition: dict[str, Any]) -> None:
    """Raise ConfigError for what CreatePipeline would reject (pipelines/sagemaker/definition_checks.py)."""
    from pipelines.sagemaker.definition_checks import check_definition

    findings = check_definition(definition)
    if findings:
        raise ConfigError([Problem(spec.source_file, None, f"steps.{step} (compiled: {path})", message)
                           for step, path, message in findings])


def _parameters(spec: PipelineSpec) -> dict[str, Any]:
    from sagemaker.core.workflow.parameters import (ParameterBoolean, ParameterFloat, ParameterInteger,
                                                    ParameterString)

    kinds = {"string": ParameterString, "integer": ParameterInteger, "float": ParameterFloat,
             "boolean": ParameterBoolean}
    out = {}
    for name, param in spec.parameters.items():
        enum = {"enum_values": [str(v) for v in param.allowed]} if param.type == "string" and param.allowed else {}
        out[name] = kinds[param.type](name=name, default_value=spec.param_values.get(name), **enum)
    return out


def _compile_steps(spec: PipelineSpec, cc: CompileContext) -> list[Any]:
    """Every step in graph order; conditions last, as they hold their branches' step objects."""
    order = Graph(spec).topological()
    conditions = [n for n in order if spec.step(n).branch_targets()]
    for name in [n for n in order if n not in conditions] + conditions[::-1]:  # inner conditions before outer
        try:
            cc.steps[name] = spec.step(name).compile_sagemaker(cc)
        except ConfigError as exc:  # a step type names the field; the file is the pipeline's
            raise ConfigError([replace(p, file=p.file or spec.source_file) for p in exc.problems]) from None
    top_level: list[Any] = []
    for name in order:
        compiled = cc.steps[name]
        if name not in cc.held and compiled is not None:
            top_level.extend(compiled if isinstance(compiled, list) else [compiled])
    return top_level


def _mlflow_config(spec: PipelineSpec) -> Any:
    uri = spec.settings.tracking_uri or ""
    if not uri.startswith("arn:aws"):
        return None
    from sagemaker.core.shapes.shapes import MlflowConfig

    return MlflowConfig(mlflow_resource_arn=uri, mlflow_experiment_name=spec.name)
