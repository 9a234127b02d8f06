"""Compile a PipelineSpec into a SageMaker Pipeline definition through SageMaker Python SDK v3.

Each step type compiles itself (`compile_sagemaker(cc)` in steps/<type>.py) with the helpers of the
CompileContext here. Compile is offline and deterministic: it runs against moto's in-memory AWS,
and code goes to content-addressed S3 locations that `upsert` fills.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.graph import Graph
from pipelines.refs import MetricRef, OutputRef, ParamRef, Template
from pipelines.spec import PipelineSpec

FRAMEWORK_IMAGE = {"framework": "sklearn", "version": "1.2-1"}
# Serves any model whose archive carries code/inference.py (+ code/requirements.txt), as ours do.
INFERENCE_IMAGE = {"framework": "pytorch", "version": "2.6.0", "py_version": "py312", "scope": "inference"}
CODE_ROOT = "/opt/ml/processing/input/code"
DEFAULTED = {("ModelApprovalStatus", "PendingManualApproval"), ("SkipModelValidation", "None")}


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

    @property
    def beyond_schema(self) -> list[str]:
        """Training steps with warm-pool keep-alive: the one opt-in field the published schema lacks."""
        return [s["Name"] for s in self.definition["Steps"] if s.get("Type") == "Training"
                and "KeepAlivePeriodInSeconds" in s["Arguments"].get("ResourceConfig", {})]

    def json(self) -> str:
        """The definition as canonical JSON (sorted keys): byte-identical for the same inputs."""
        return json.dumps(self.definition, indent=2, sort_keys=True) + "\n"


@dataclass
class CompileContext:
    """What a step type needs to build its SDK step: session, account settings, references."""

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
    held: set[str] = field(default_factory=set)  # steps inside a ConditionStep, or folded into a gate

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

            return JsonGet(step_name=value.step, property_file=self.property_files[value.step],
                           json_path=value.key)
        if isinstance(value, Template):
            from sagemaker.core.workflow.functions import Join

            return Join(on="", values=[p if isinstance(p, str) else self.value(p) for p in value.parts])
        return value

    def text(self, value: Any) -> Any:
        """Like value(), for places that take strings: plain values become text."""
        resolved = self.value(value)
        if isinstance(resolved, bool):
            return "true" if resolved else "false"
        return resolved if hasattr(resolved, "expr") else str(resolved)

    def output_property(self, ref: OutputRef) -> Any:
        step = self.steps[ref.step]
        if step.step_type.value == "Training":
            if ref.output == "model":
                return step.properties.ModelArtifacts.S3ModelArtifacts
            return step.properties.OutputDataConfig.S3OutputPath
        return step.properties.ProcessingOutputConfig.Outputs[ref.output].S3Output.S3Uri

    def output_uri(self, step: str, output: str) -> str:
        """Where a processing output goes (a plain string: the schema allows no Join here)."""
        return f"s3://{self.bucket}/{self.spec.name}/outputs/{step}/{output}"

    def plain_text(self, value: Any) -> str:
        """Text for fields that take no functions: references shown as <step.key> or <parameter>."""
        parts = value.parts if isinstance(value, Template) else [value]
        shown = []
        for part in parts:
            if isinstance(part, ParamRef):
                shown.append(f"<{part.name}>")
            elif isinstance(part, (MetricRef, OutputRef)):
                shown.append(f"<{part.step}.{getattr(part, 'key', None) or getattr(part, 'output', '')}>")
            else:
                shown.append(str(part))
        return "".join(shown)

    def code_archive(self, folder: Path, extra: dict[str, bytes] | None = None) -> str:
        """The code folder (plus `extra` files) as a reproducible sourcedir.tar.gz for script mode; its S3 URI."""
        from pipelines.sagemaker.artifacts import reproducible_targz

        key = f"staging/archives/{len(self.staged)}/sourcedir.tar.gz"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=reproducible_targz(folder, extra))
        self.staged[f"archive:{folder}"] = key
        return f"s3://{self.bucket}/{key}"

    # --- inputs, images, shared step settings --------------------------------------------------
    def input_source(self, value: Any) -> Any:
        """An input: an S3 URI, a parameter, another step's output, or a repository file (uploaded)."""
        if isinstance(value, str) and not value.startswith("s3://"):
            return self.stage(Path(self.spec.repo_root) / value)
        return self.value(value)

    def stage(self, path: Path) -> str:
        """Put a repository file or folder into the (in-memory) bucket; returns its S3 URI."""
        path = path.resolve()
        if str(path) not in self.staged:
            prefix = f"staging/{len(self.staged)}"
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
            for file in files:
                name = file.name if path.is_file() else str(file.relative_to(path))
                self.s3.put_object(Bucket=self.bucket, Key=f"{prefix}/{name}", Body=file.read_bytes())
            self.staged[str(path)] = f"s3://{self.bucket}/{prefix}" + (f"/{path.name}" if path.is_file() else "")
        return self.staged[str(path)]

    def image(self, step: Any) -> str:
        """The step's image, the pipeline default, or the SDK's scikit-learn framework image."""
        chosen = getattr(step, "image", None) or self.spec.defaults.image
        return chosen or self.framework_image(step, FRAMEWORK_IMAGE, self.resources(step).instance_type)

    def framework_image(self, step: Any, default: dict[str, str], instance_type: str) -> str:
        """A framework image the SDK knows (default, or the step's sagemaker.framework_image)."""
        from sagemaker.core import image_uris

        framework = {**default, **(getattr(step, "sagemaker", {}) or {}).get("framework_image", {})}
        try:
            return image_uris.retrieve(framework["framework"], region=self.region, version=str(framework["version"]),
                                       py_version=framework.get("py_version", "py3"),
                                       image_scope=framework.get("scope"), instance_type=instance_type)
        except ValueError as exc:
            raise ValueError(f"step '{step.name}': no {framework['framework']} {framework['version']} image for "
                             f"{instance_type} in {self.region} ({exc}); set image: or "
                             "sagemaker.framework_image") from None

    def script_job(self, step: Any, script: Path, arguments: list[Any], inputs: list[Any] | None = None) -> Any:
        """A small processing job running one of our standard-library scripts (the gate, the deploy job)."""
        from sagemaker.core.processing import Processor
        from sagemaker.core.shapes import ProcessingInput, ProcessingS3Input
        from sagemaker.mlops.workflow import ProcessingStep as SdkProcessingStep

        code = ProcessingInput(input_name="code", s3_input=ProcessingS3Input(
            s3_uri=self.stage(script), local_path=CODE_ROOT, s3_data_type="S3Prefix", s3_input_mode="File"))
        processor = Processor(role=self.role, image_uri=self.image(step), instance_count=1, instance_type="ml.t3.medium",
                              entrypoint=["python3", f"{CODE_ROOT}/{script.name}"], base_job_name=step.name,
                              sagemaker_session=self.session, network_config=self.network_config())
        return SdkProcessingStep(name=step.name, step_args=processor.run(inputs=[*(inputs or []), code],
                                                                         arguments=arguments),
                                 description=step.description or None, depends_on=self.depends_on(step),
                                 retry_policies=self.retry_policies(step) or None)

    def resources(self, step: Any) -> Any:
        return getattr(step, "resources", None) or self.spec.defaults.resources

    def cache_config(self, step: Any) -> Any:
        from sagemaker.mlops.workflow.steps import CacheConfig

        cache = step.cache or self.spec.defaults.cache
        return CacheConfig(enable_caching=cache.enabled, expire_after=cache.expire_after)

    def retry_policies(self, step: Any, job: bool = True) -> list[Any]:
        """Local retries as SageMaker retry policies: job failures (job steps) and service faults."""
        from sagemaker.mlops.workflow.retry import (SageMakerJobExceptionTypeEnum, SageMakerJobStepRetryPolicy,
                                                     StepExceptionTypeEnum, StepRetryPolicy)

        retry = step.retry or self.spec.defaults.retry
        if retry.attempts <= 1:
            return []
        common = {"interval_seconds": max(1, int(retry.backoff_s)), "backoff_rate": retry.backoff_rate,
                  "max_attempts": retry.attempts - 1}
        # one policy per exception type: the published schema takes ExceptionType as a single string
        policies = [StepRetryPolicy(exception_types=[kind], **common)
                    for kind in (StepExceptionTypeEnum.SERVICE_FAULT, StepExceptionTypeEnum.THROTTLING)]
        if job:
            policies += [SageMakerJobStepRetryPolicy(exception_types=[kind], **common)
                         for kind in (SageMakerJobExceptionTypeEnum.INTERNAL_ERROR,
                                      SageMakerJobExceptionTypeEnum.CAPACITY_ERROR)]
        return policies

    def depends_on(self, step: Any) -> list[str] | None:
        return list(step.depends_on) or None

    def kms_key(self) -> str | None:
        return self.spec.settings.sagemaker.get("kms_key")

    def repo_path(self, relative: str) -> Path:
        return (Path(self.spec.repo_root) / relative).resolve()

    def network_config(self) -> Any:
        """Processing jobs' VPC settings from the env overlay (sagemaker.vpc), or None."""
        vpc = self.spec.settings.sagemaker.get("vpc")
        if not vpc:
            return None
        from sagemaker.core.network import NetworkConfig

        return NetworkConfig(subnets=vpc.get("subnets"), security_group_ids=vpc.get("security_group_ids"))

    def networking(self) -> Any:
        """Training jobs' VPC settings (the same sagemaker.vpc), or None."""
        vpc = self.spec.settings.sagemaker.get("vpc")
        if not vpc:
            return None
        from sagemaker.core.training.configs import Networking

        return Networking(subnets=vpc.get("subnets"), security_group_ids=vpc.get("security_group_ids"))


def compile_pipeline(spec: PipelineSpec) -> Compiled:
    """Build the definition (offline, deterministic) for a cloud env of spec."""
    from pipelines.sagemaker.checks import check_cloud_config

    check_cloud_config(spec)
    settings = spec.settings.sagemaker
    region, bucket, role = settings["region"], settings["bucket"], settings["role"]
    from pipelines.sagemaker.artifacts import content_address
    from pipelines.sagemaker.offline import offline_session, uploaded_objects

    with offline_session(region, bucket) as (session, s3):
        cc = CompileContext(spec, session, s3, role, bucket, region)
        cc.parameters = _parameters(spec)
        top_level = _compile_steps(spec, cc)
        from sagemaker.mlops.workflow import Pipeline

        pipeline = Pipeline(name=spec.name, parameters=list(cc.parameters.values()), steps=top_level,
                            sagemaker_session=session, mlflow_config=_mlflow_config(spec),
                            pipeline_experiment_config=None)
        definition = conform_to_schema(json.loads(pipeline.definition()))
        objects = uploaded_objects(s3, bucket)
    definition, artifacts = content_address(definition, objects, bucket, spec.name)
    tags = {str(k): str(v) for k, v in (settings.get("tags") or {}).items()}
    return Compiled(spec.name, definition, artifacts, bucket, region, role, tags)


def conform_to_schema(definition: dict[str, Any]) -> dict[str, Any]:
    """Drop what the SDK emits but the published definition schema does not allow (defaults)."""
    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            if "S3OutputPath" in value and value.get("CompressionType") == "GZIP":  # OutputDataConfig
                value = {k: v for k, v in value.items() if k != "CompressionType"}
            if isinstance(value.get("ExceptionType"), list) and len(value["ExceptionType"]) == 1:  # retry policy
                value = {**value, "ExceptionType": value["ExceptionType"][0]}
            if "ModelPackageGroupName" in value:  # both are CreateModelPackage's defaults for a version
                value = {k: v for k, v in value.items() if not (isinstance(v, str) and (k, v) in DEFAULTED)}
            source = value.get("S3DataSource")
            if isinstance(source, dict) and source.get("S3DataDistributionType") == "FullyReplicated":
                value = {**value, "S3DataSource": {k: v for k, v in source.items() if k != "S3DataDistributionType"}}
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value
    return walk(definition)


def _parameters(spec: PipelineSpec) -> dict[str, Any]:
    from sagemaker.core.workflow.parameters import (ParameterBoolean, ParameterFloat, ParameterInteger,
                                                    ParameterString)

    kinds = {"string": ParameterString, "integer": ParameterInteger, "float": ParameterFloat,
             "boolean": ParameterBoolean}
    out = {}
    for name, param in spec.parameters.items():
        # allowed values stay a local check: the published schema has no EnumValues
        out[name] = kinds[param.type](name=name, default_value=spec.param_values.get(name))
    return out


def _compile_steps(spec: PipelineSpec, cc: CompileContext) -> list[Any]:
    """Every step in graph order; conditions last, as they hold their branches' step objects."""
    order = Graph(spec).topological()
    conditions = [n for n in order if spec.step(n).branch_targets()]
    for name in order:
        if name not in conditions:
            cc.steps[name] = spec.step(name).compile_sagemaker(cc)
    for name in reversed(conditions):  # an inner condition is built before the one that holds it
        cc.steps[name] = spec.step(name).compile_sagemaker(cc)
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
