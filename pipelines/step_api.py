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
from typing import Any, Callable, ClassVar, ContextManager, Protocol, TypeVar

from pipelines.errors import ConfigError, Problem, StepFailed
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
    note: str = ""  # for people only: nothing reads it back
    decision: dict[str, Any] | None = None  # a branching step's decision: see `decision_record`
    registered: dict[str, Any] | None = None  # a registering step's version: see `registered_record`
    cached_from: str | None = None  # the earlier run or execution whose result a backend's own cache reused
    emulated: dict[str, Any] | None = None  # an emulated definition step: its Type and properties


def decision_record(outcome: bool, conditions: list[dict[str, Any]], expression: Any,
                    branches: dict[str, list[str]]) -> dict[str, Any]:
    """What a gate decided, as the run's state keeps it (the same keys locally and under emulate).

    conditions: each comparison made, `{op, left, right, holds, left_from, right_from}` with the values compared
    and where they came from in words ('evaluate report: <json path>', 'parameter <name>', '' for a literal);
    expression: how they combine, an index into conditions or `{"and"|"or"|"not": [expression, ...]}`;
    branches: the steps of each branch, `{"if_true": [...], "if_false": [...]}`."""
    return {"outcome": outcome, "branch": "if_true" if outcome else "if_false", "conditions": conditions,
            "expression": expression, "branches": {k: list(v) for k, v in branches.items()}}


def registered_record(group: str, version: int, status: str, new: bool) -> dict[str, Any]:
    """A model version a step registered (new: False when an identical model was already that version)."""
    return {"group": group, "version": int(version), "status": status, "new": new}


# --- what the runner lends a step (pipelines/local/services.py builds them, once per run) -------------
class ModelRegistry(Protocol):
    """The model registry as a step uses it (pipelines/registry/base.py's Registry is one)."""

    def groups(self) -> list[str]: ...
    def show(self, group: str, version: int) -> dict[str, Any]: ...
    def latest(self, group: str, status: str | None = None) -> dict[str, Any] | None: ...
    def approved(self, group: str) -> dict[str, Any] | None: ...
    def identical(self, group: str, model_hash: str) -> dict[str, Any] | None: ...
    def register(self, group: str, model: Path, metrics: dict[str, Any], status: str,
                 lineage: dict[str, Any], run_id: str | None = None) -> tuple[dict[str, Any], bool]: ...
    def model_path(self, package: dict[str, Any]) -> Path: ...
    def locked(self, group: str) -> ContextManager[None]: ...


class StepTracker(Protocol):
    """Where a step that works in the runner's own process (register, tuning) records itself: its MLflow run and
    nested runs under it. Tracking never fails a step: these methods do not raise."""

    def run_id(self) -> str | None:
        """The step's own MLflow run (waited for while tracking creates it); None when tracking is off."""
        ...

    def git_commit(self) -> str | None:
        """The repository's commit, for lineage; None outside git."""
        ...

    def start_child(self, name: str, tags: dict[str, str]) -> str | None:
        """A nested run under the step's run (a tuning trial, say); its id, or None when it cannot be made."""
        ...

    def finish_child(self, run_id: str, status: str, params: dict[str, Any], metrics: dict[str, float],
                     tags: dict[str, str], files: dict[str, Path]) -> None:
        """Log a nested run's params, metrics, tags and files (artifact folder -> file) and end it with status
        (Completed, Stopped or Failed)."""
        ...


class Serving(Protocol):
    """The local endpoints and batch scoring, as a deploying or scoring step uses them."""

    def switch_endpoint(self, endpoint: str, package: dict[str, Any], registry: ModelRegistry,
                        trigger: str) -> Path:
        """Point a local endpoint at one registered version (a running server follows); its record."""
        ...

    def ensure_server(self, record: Path, port: int, workers: int, capture_percent: int | None = None) -> str:
        """Start a server for the endpoint unless one runs (capturing that percentage of calls in SageMaker's
        data-capture format, unless None); what was done, in words."""
        ...

    def scoring_command(self, model: Path, source: Path, target: Path, threshold: float,
                        chunk_rows: int) -> tuple[list[str], dict[str, str]]:
        """The process (argv, extra environment) that scores one file with a model's own inference handlers."""
        ...


class StepServices(Protocol):
    """The services of one step execution."""

    @property
    def registry(self) -> ModelRegistry: ...
    @property
    def tracker(self) -> StepTracker: ...
    @property
    def serving(self) -> Serving: ...


class NoServices:
    """The services of a context that lends none: using one is a step failure that says so."""

    def _missing(self, what: str) -> StepFailed:
        return StepFailed(f"no {what} in this context (the local runner lends one to each step)")

    @property
    def registry(self) -> ModelRegistry:
        raise self._missing("model registry")

    @property
    def tracker(self) -> StepTracker:
        raise self._missing("tracker")

    @property
    def serving(self) -> Serving:
        raise self._missing("local serving")


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
    services: StepServices = field(default_factory=NoServices)

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

    # --- errors ---------------------------------------------------------------------------------
    def config_error(self, field_path: str, message: str) -> ConfigError:
        """A config error at `steps.<this>.<field_path>`, for what only compile can tell (the compiler adds the
        file)."""
        path = ".".join(p for p in ("steps", self.name, field_path) if p)
        return ConfigError([Problem("", None, path, message)])


class Deploys(Step):
    """A step type that puts a model group's approved versions behind an endpoint: what approvals
    (pipelines/approvals.py) and `sagepipe endpoint-params` ask of it."""

    @abstractmethod
    def deployed_group(self) -> str:
        """The model package group this step puts behind an endpoint."""

    @abstractmethod
    def endpoint_request(self, pipeline: PipelineSpec, model_package_arn: str) -> dict[str, str]:
        """CloudFormation parameters of infra/endpoint.yaml serving one version."""

    @abstractmethod
    def deploy_approved(self, package: dict[str, Any], registry: ModelRegistry, serving: Serving,
                        trigger: str) -> str:
        """Serve an approved version of its group locally; what was done, in words."""


def deploy_steps(spec: PipelineSpec) -> list[Deploys]:
    """The pipeline's deploying steps, in pipeline order."""
    return [step for step in spec.steps if isinstance(step, Deploys)]
