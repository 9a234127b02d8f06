"""The step contract: what a step type (steps/<type>.py) provides, and what each backend hands it.

A step type is a pydantic model (its config) that subclasses `Step` and writes two methods:
`run_local(ctx)` and `compile_sagemaker(cc)`. Everything else has a default that fits most types.
Neither backend asks a step what type it is: the runner reads `runs_script`, `local_output_dirs` and
`local_fingerprint`; the compiler reads `sagemaker_output` and `branch_targets`; the graph reads `refs()`.
This module imports no backend.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol, TypeVar

from pipelines.errors import ConfigError, Problem
from pipelines.refs import Ref, refs_in
from pipelines.spec import Cache, Defaults, FrameworkImage, PipelineSpec, Resources, Retry, StepSpec

SETTLED = ("resources", "image", "retry", "cache")  # a step's own value, else the pipeline default
S = TypeVar("S", bound="Step")


@dataclass
class LocalResult:
    """What a step produced: output folders, a metrics report, a branch taken, a model version registered."""

    outputs: dict[str, Path] = field(default_factory=dict)
    metrics: dict[str, Any] | None = None
    skip: list[str] = field(default_factory=list)
    note: str = ""
    registered: dict[str, Any] | None = None  # {group, version, status} of a register step
    cached_from: str | None = None  # the earlier run or execution whose result a backend's own cache reused
    emulated: dict[str, Any] | None = None  # an emulated definition step: its Type, properties, branch decision


@dataclass
class StepContext:
    """The local runner's services for one step execution."""

    pipeline: PipelineSpec
    run_id: str
    step_dir: Path
    repo_root: Path
    state_root: Path
    resolve: Callable[[Any], Any]
    run_process: Callable[[list[str], dict[str, str], Path], int]
    log: Callable[[str], None]
    step_record: Callable[[str], dict[str, Any]] = lambda name: {}
    tracking_env: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, Path] = field(default_factory=dict)  # staged inputs of a script step, by name

    @property
    def run_dir(self) -> Path:
        """The run's folder: nothing a step removes or replaces may lie outside it."""
        return self.step_dir.parent

    def repo_path(self, relative: str) -> Path:
        """A path in the repository (code and local data paths are relative to its root)."""
        return (self.repo_root / relative).resolve()


class CompileContext(Protocol):
    """What the SageMaker compiler (pipelines/sagemaker/compiler.py) hands a step type's compile_sagemaker."""

    spec: PipelineSpec
    session: Any  # the SDK's PipelineSession
    s3: Any  # boto3 S3 client of the offline (in-memory) AWS
    role: str
    bucket: str
    region: str
    steps: dict[str, Any]  # compiled SDK steps so far, by step name
    property_files: dict[str, Any]
    held: set[str]  # steps inside a condition's branches (not top-level)

    def value(self, value: Any) -> Any: ...
    def text(self, value: Any) -> Any: ...
    def execution_uri(self, *parts: Any) -> Any: ...
    def input_source(self, value: Any) -> Any: ...
    def stage(self, path: Path) -> str: ...
    def framework_image(self, step: str, default: dict[str, str], instance_type: str,
                        override: FrameworkImage | None = None) -> str: ...
    def resources(self, step: Step) -> Resources: ...
    def cache_config(self, step: Step) -> Any: ...
    def retry_policies(self, step: Step, job: bool = True) -> list[Any]: ...
    def depends_on(self, step: Step) -> list[str] | None: ...
    def kms_key(self) -> str | None: ...
    def repo_path(self, relative: str) -> Path: ...
    def network_config(self) -> Any: ...
    def networking(self) -> Any: ...


class Step(StepSpec):
    """A step type. Subclasses declare their config fields (pydantic) and implement the two abstract methods."""

    runs_script: ClassVar[bool] = False
    """True for a type that runs a script over staged inputs: the runner stages `inputs`, keys the step cache on
    code + `local_fingerprint` + input content, and restores `local_output_dirs` on a cache hit."""

    # --- config and graph ---------------------------------------------------------------------
    def refs(self) -> list[Ref]:
        """Every reference this step makes, wherever in its fields it sits (the graph's edges)."""
        return refs_in([getattr(self, name) for name in type(self).model_fields])

    def output_names(self) -> list[str]:
        """Names a `${steps.<this>.outputs.<name>}` may use."""
        return []

    def has_metrics(self) -> bool:
        """Whether `${steps.<this>.metrics.*}` may refer to this step."""
        return False

    def branch_targets(self) -> dict[str, list[str]]:
        """For a step that chooses a branch: branch name -> step names (compiled inside this step)."""
        return {}

    def code_path(self) -> str | None:
        """The script this step runs, if any (the graph checks it exists)."""
        return None

    def input_values(self) -> dict[str, Any]:
        """A script step's inputs by name: paths, URIs or references (staged locally, channels on SageMaker)."""
        return {}

    def settle(self: S, defaults: Defaults) -> S:
        """This step with every setting it leaves unset taken from the pipeline's defaults (done once, at load)."""
        fields = type(self).model_fields
        update = {name: getattr(defaults, name) for name in SETTLED if name in fields and getattr(self, name) is None}
        return self.model_copy(update=update) if update else self

    def settled_retry(self) -> Retry:
        return self.retry or Retry()

    def settled_cache(self) -> Cache:
        return self.cache or Cache()

    def settled_resources(self) -> Resources | None:
        """The compute this step runs on, or None for a step that runs no job."""
        return None

    # --- local backend ------------------------------------------------------------------------
    def local_output_dirs(self, step_dir: Path) -> dict[str, Path]:
        """Where a script step's outputs lie under its folder (restored there on a cache hit)."""
        return {}

    def local_fingerprint(self, ctx: StepContext) -> dict[str, Any]:
        """The resolved settings that decide this step's result (cache key, tracked parameters)."""
        return {}

    @abstractmethod
    def run_local(self, ctx: StepContext) -> LocalResult:
        """Do the step on this machine; raise StepFailed with a one-line reason when it fails."""

    # --- SageMaker backend --------------------------------------------------------------------
    @abstractmethod
    def compile_sagemaker(self, cc: CompileContext) -> Any:
        """The SDK step (or a list of them, or None for a step with no SageMaker form)."""

    def sagemaker_output(self, compiled: Any, output: str) -> Any:
        """The SDK property of this step's compiled form that holds output `output` (its S3 URI)."""
        raise self.config_error("outputs", f"step '{self.name}' ({self.type}) has no outputs on SageMaker")

    # --- deployment -----------------------------------------------------------------------------
    def deployed_group(self) -> str | None:
        """The model package group this step puts behind an endpoint, for a deploying step."""
        return None

    def endpoint_request(self, pipeline: PipelineSpec, model_package_arn: str) -> dict[str, str] | None:
        """CloudFormation parameters of infra/endpoint.yaml serving one version, for a deploying step."""
        return None

    def deploy_approved(self, package: dict[str, Any], registry: Any, state_root: Path, trigger: str) -> str:
        """Serve an approved version locally (for a deploying step of its group); what was done, in words."""
        raise NotImplementedError(f"step '{self.name}' ({self.type}) deploys nothing")

    # --- errors ---------------------------------------------------------------------------------
    def config_error(self, field_path: str, message: str) -> ConfigError:
        """A config error at `steps.<this>.<field_path>`, for what only compile can tell (the compiler adds the
        file)."""
        path = ".".join(p for p in ("steps", self.name, field_path) if p)
        return ConfigError([Problem("", None, path, message)])
